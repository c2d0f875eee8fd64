//! One `droverd` in its own temp dir, for one test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::exec::InstanceExecPost;
use api::instances::InstanceSource;
use api::{InstanceStatePut, InstancesPost, Operation};
use bytes::Bytes;
use futures::StreamExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::lxc::{Output, run};
use crate::raw::{RawResponse, request};

/// How long a (re)started daemon may take to answer `GET /1.0` (it probes the runtime with
/// a real container and re-attaches or autostarts instances first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERMed daemon may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Deadline of an API operation the harness waits for.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of the clean-up (force stop of what a test left running) on drop.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `droverd` with its own state dir, socket, log and `lxc` config dir.
///
/// Dropping it force-stops the instances the test left running, SIGTERMs the daemon,
/// force-deletes any container still in its runtime root, and — when the test is failing —
/// prints the daemon's log.
#[derive(Debug)]
pub struct Member {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    runtime: String,
    env: Vec<(String, String)>,
}

/// What an exec printed and returned.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// The command's exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Member {
    /// Spawns `droverd` in a fresh temp dir and waits until it serves `GET /1.0`.
    ///
    /// # Panics
    ///
    /// When the binary is missing, or the daemon exits or does not answer in time (with
    /// its log).
    pub async fn start() -> Member {
        Self::start_with(crate::droverd_bin()).await
    }

    /// [`Member::start`] running `bin` instead of `droverd`: a wrapper that prepares the
    /// daemon's environment (its own mounts, say) and then runs `droverd` with the same
    /// arguments. `drover` is looked up next to `bin`.
    ///
    /// # Panics
    ///
    /// As [`Member::start`].
    pub async fn start_with(bin: PathBuf) -> Member {
        crate::init_tracing();
        let dir = tempfile::Builder::new()
            .prefix("drover-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let mut m = Member {
            dir,
            bin,
            child: None,
            runtime: String::new(),
            env: Vec::new(),
        };
        m.spawn().await;
        m
    }

    /// `$DROVER_DIR` of this daemon (`LXD_DIR` for `lxc`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("unix.socket")
    }

    /// The daemon's log file (stdout and stderr of every start).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("droverd.log")
    }

    /// The daemon's log so far (a byte that is not UTF-8, from a guest's console say, does
    /// not lose the rest).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// Where the `default` pool keeps instance volumes (`<source>/containers`).
    pub fn volumes_dir(&self) -> PathBuf {
        self.state_dir().join("storage-pools/default/containers")
    }

    /// The volume directory of instance `name` (project `default`).
    pub fn volume_dir(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(format!("default_{name}"))
    }

    /// Entries of [`Member::volumes_dir`], sorted (empty when it does not exist).
    pub fn volume_entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.volumes_dir())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The OCI runtime the daemon picked (`crun` or `runc`).
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// PID of the daemon process.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A typed client of this daemon.
    pub fn client(&self) -> client::Client {
        client::Client::unix(self.socket())
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the daemon log");
        let child = Command::new(&self.bin)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--log")
            .arg(std::env::var("DROVER_E2E_LOG").unwrap_or_else(|_| "info".into()))
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        tracing::info!(pid = child.id(), dir = %self.dir.path().display(), "droverd spawned");
        self.child = Some(child);
        let t0 = Instant::now();
        let mut backoff = Duration::from_millis(5);
        let server = loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "droverd exited with {status} before serving\n--- droverd log\n{}",
                    self.log()
                );
            }
            if let Ok(s) = self.client().server().await {
                break s;
            }
            assert!(
                t0.elapsed() < READY_TIMEOUT,
                "droverd did not answer GET /1.0 within {READY_TIMEOUT:?}\n--- droverd log\n{}",
                self.log()
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(100));
        };
        self.runtime = server
            .environment
            .driver_version
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        tracing::info!(
            ms = t0.elapsed().as_millis(),
            runtime = %self.runtime,
            "droverd serving"
        );
    }

    /// SIGTERMs the daemon and waits for it to exit (instances keep running).
    ///
    /// # Panics
    ///
    /// When it does not exit in time or exits with a failure status.
    pub async fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal(&child, Signal::SIGTERM);
        let t0 = Instant::now();
        let mut status = None;
        crate::wait_until("droverd to exit after SIGTERM", EXIT_TIMEOUT, || {
            status = child.try_wait().ok().flatten();
            std::future::ready(status.is_some())
        })
        .await;
        let status = status.expect("exited");
        tracing::info!(ms = t0.elapsed().as_millis(), %status, "droverd exited");
        assert!(
            status.success(),
            "droverd exited with {status} after SIGTERM\n--- droverd log\n{}",
            self.log()
        );
    }

    /// SIGKILLs the daemon (no clean-up at all, as a crash or power loss) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
            tracing::info!(pid = child.id(), "droverd killed with SIGKILL");
        }
    }

    /// Sets `key=value` in the environment of every later (re)start of the daemon (a
    /// test-only crash point, say).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Waits (up to `timeout`) for the daemon to exit by itself (a crash point killed it)
    /// and reaps it; `None` when it still runs then (it is left running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if let Some(status) = status {
                self.child = None;
                tracing::info!(%status, "droverd exited by itself");
                return Some(status);
            }
            if t0.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the daemon again on the same state dir after [`Member::kill`] or
    /// [`Member::stop_daemon`], and waits until it serves.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the daemon still runs");
        self.spawn().await;
    }

    /// Stops the daemon (SIGTERM) and starts it again on the same state dir.
    pub async fn restart(&mut self) {
        self.stop_daemon().await;
        self.spawn().await;
    }

    /// A raw request; `body` is sent as is (typed JSON, whether it is or not).
    pub async fn raw(&self, method: &str, path: &str, body: Option<&str>) -> RawResponse {
        request(
            &self.socket(),
            method,
            path,
            body.map(|b| ("application/json", Bytes::from(b.to_string()))),
        )
        .await
    }

    /// A raw request with a binary body of type `application/octet-stream` (an upload).
    pub async fn raw_bytes(&self, method: &str, path: &str, body: Vec<u8>) -> RawResponse {
        let body = Some(("application/octet-stream", Bytes::from(body)));
        request(&self.socket(), method, path, body).await
    }

    /// Imports the busybox image under alias `busybox`; returns its fingerprint.
    pub async fn import_busybox(&self) -> String {
        let path = tokio::task::spawn_blocking(crate::busybox_image)
            .await
            .expect("build the busybox image");
        self.import_image(path, "busybox").await
    }

    /// Uploads the unified image tarball `path` and gives it `alias`; its fingerprint.
    ///
    /// # Panics
    ///
    /// When the upload, its operation or the alias fails.
    pub async fn import_image(&self, path: PathBuf, alias: &str) -> String {
        let c = self.client();
        let op = c
            .import_image(&client::ImageUpload {
                metadata: path,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("upload the {alias} image: {e}"));
        let done = self.wait_op(&op).await.expect("image import succeeds");
        let fingerprint = done
            .metadata
            .as_ref()
            .and_then(|m| m["fingerprint"].as_str())
            .expect("the import operation names the fingerprint")
            .to_string();
        c.create_image_alias(&api::images::ImageAliasesPost {
            name: alias.into(),
            description: String::new(),
            target: fingerprint.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("create alias {alias}: {e}"));
        fingerprint
    }

    /// Waits (with a deadline) for `op` to finish; `Err` when it failed.
    pub async fn wait_op(&self, op: &Operation) -> client::Result<Operation> {
        let what = format!("operation {} ({})", op.id, op.description);
        crate::within(&what, OP_TIMEOUT, self.client().wait_done(op)).await
    }

    /// Creates an instance and waits for the operation.
    pub async fn create(&self, req: &InstancesPost) -> client::Result<Operation> {
        let op = self.client().create_instance(req, None).await?;
        self.wait_op(&op).await
    }

    /// Creates `name` from the `busybox` alias with `config`, starts it, and waits.
    ///
    /// # Panics
    ///
    /// When the launch fails.
    pub async fn launch(&self, name: &str, config: &[(&str, &str)]) {
        let req = busybox_request(name, config, true);
        self.create(&req)
            .await
            .unwrap_or_else(|e| panic!("launch {name}: {e}"));
    }

    /// `PUT /1.0/instances/{name}/state` with `action`, then waits for the operation.
    pub async fn change_state(
        &self,
        name: &str,
        action: &str,
        force: bool,
    ) -> client::Result<Operation> {
        let req = InstanceStatePut {
            action: action.into(),
            timeout: -1,
            force,
            stateful: false,
        };
        let op = self.client().update_instance_state(name, &req).await?;
        self.wait_op(&op).await
    }

    /// Deletes `name` and waits.
    pub async fn delete(&self, name: &str) -> client::Result<Operation> {
        let op = self.client().delete_instance(name).await?;
        self.wait_op(&op).await
    }

    /// The status of `name` (`Running`, `Stopped`, ...) as the API reports it.
    pub async fn status(&self, name: &str) -> api::InstanceStatus {
        self.client()
            .instance_state(name)
            .await
            .unwrap_or_else(|e| panic!("state of {name}: {e}"))
            .status
    }

    /// PID 1 of `name` on the host (`state.pid`).
    pub async fn pid(&self, name: &str) -> i64 {
        self.client()
            .instance_state(name)
            .await
            .unwrap_or_else(|e| panic!("state of {name}: {e}"))
            .pid
    }

    /// Runs `command` in `name` with `stdin`, collecting its output; `Err` when the API
    /// refused the exec.
    pub async fn exec_with_stdin(
        &self,
        name: &str,
        command: &[&str],
        stdin: Option<&[u8]>,
    ) -> client::Result<ExecOutput> {
        let req = InstanceExecPost {
            command: command.iter().map(|s| (*s).to_string()).collect(),
            wait_for_websocket: true,
            ..Default::default()
        };
        let (out_w, mut out_r) = tokio::io::duplex(64 * 1024);
        let (err_w, mut err_r) = tokio::io::duplex(64 * 1024);
        let input = stdin.map(|b| {
            futures::stream::iter(vec![Ok(Bytes::from(b.to_vec()))]).boxed()
                as futures::stream::BoxStream<'static, std::io::Result<Bytes>>
        });
        let io = client::ExecIo {
            stdin: input,
            stdout: Box::new(out_w),
            stderr: Box::new(err_w),
            control: None,
        };
        let c = self.client();
        let run = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (code, _, _) = tokio::join!(
                c.exec(name, &req, io),
                out_r.read_to_end(&mut out),
                err_r.read_to_end(&mut err)
            );
            code.map(|code| ExecOutput {
                code,
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            })
        };
        crate::within(&format!("exec {command:?} in {name}"), OP_TIMEOUT, run).await
    }

    /// Runs `command` in `name` with empty stdin.
    pub async fn exec(&self, name: &str, command: &[&str]) -> client::Result<ExecOutput> {
        self.exec_with_stdin(name, command, None).await
    }

    /// A `lxc` command with `LXD_DIR` (and a private `LXD_CONF`) pointing at this daemon.
    pub fn lxc_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.lxc_env_command("lxc");
        cmd.args(args);
        cmd
    }

    /// `program` with the environment [`Member::lxc_command`] gives `lxc`: for a wrapper
    /// that runs `lxc` (`script` for a terminal, `timeout` for a signal).
    pub fn lxc_env_command(&self, program: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env("LXD_DIR", self.state_dir())
            .env("LXD_CONF", self.dir.path().join("lxc-conf"))
            .env_remove("LXD_PROJECT");
        cmd
    }

    /// Runs `lxc args...` against this daemon with empty stdin.
    pub async fn lxc(&self, args: &[&str]) -> Output {
        self.lxc_stdin(args, &[]).await
    }

    /// Runs `lxc args...` against this daemon, feeding `stdin`.
    pub async fn lxc_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let label = format!("lxc {}", args.join(" "));
        run(self.lxc_command(args), label, Some(stdin)).await
    }

    /// Runs drover's own CLI (the `drover` binary next to `droverd`) against this daemon.
    pub async fn drover(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(self.bin.with_file_name("drover"));
        cmd.args(args)
            .env("DROVER_DIR", self.state_dir())
            .env("NO_COLOR", "1");
        let label = format!("drover {}", args.join(" "));
        run(cmd, label, None).await
    }

    /// Runs any command with `LXD_DIR` set to this daemon (pylxd reads it too).
    pub async fn command(&self, program: &str, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).env("LXD_DIR", self.state_dir());
        let label = format!("{program} {}", args.join(" "));
        run(cmd, label, None).await
    }

    /// Runs the pylxd script `crates/e2e/python/<script>` with this daemon's socket and the
    /// busybox image tarball as its arguments, and asserts that it exits 0 having printed
    /// `passed` (its last line when every step passed).
    ///
    /// # Panics
    ///
    /// When the image does not build, or the script fails (with its output).
    pub async fn run_pylxd_script(&self, script: &str, passed: &str) -> Output {
        let image = tokio::task::spawn_blocking(crate::busybox_image)
            .await
            .expect("build the busybox image");
        let script = crate::workspace_root()
            .join("crates/e2e/python")
            .join(script);
        let socket = self.socket();
        let out = self
            .command(
                "python3",
                &[
                    script.to_str().expect("utf-8 path"),
                    socket.to_str().expect("utf-8 path"),
                    image.to_str().expect("utf-8 path"),
                ],
            )
            .await;
        tracing::info!(stdout = %out.stdout, script = %script.display(), "pylxd script finished");
        out.success();
        assert!(out.stdout.contains(passed), "{}", out.stdout);
        out
    }

    /// Stops every running instance with force through the API (on drop).
    async fn force_stop_all(socket: PathBuf) {
        let c = client::Client::unix(socket);
        let Ok(list) = c.instances_full().await else {
            return;
        };
        for inst in list {
            // A frozen instance runs too (a stop unfreezes it first).
            if !matches!(
                inst.status,
                api::InstanceStatus::Running | api::InstanceStatus::Frozen
            ) {
                continue;
            }
            let req = InstanceStatePut {
                action: "stop".into(),
                timeout: -1,
                force: true,
                stateful: false,
            };
            match c.update_instance_state(&inst.name, &req).await {
                Ok(op) => {
                    if let Err(e) = c.wait_done(&op).await {
                        eprintln!("e2e cleanup: force stop of {} failed: {e}", inst.name);
                    }
                }
                Err(e) => eprintln!("e2e cleanup: force stop of {} refused: {e}", inst.name),
            }
        }
    }

    /// Force-deletes whatever container is still in the runtime root (`<state>/runtime`).
    fn delete_leftover_containers(&self) {
        let root = self.state_dir().join("runtime");
        let Ok(entries) = std::fs::read_dir(&root) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if !e.path().is_dir() {
                continue;
            }
            let id = e.file_name().to_string_lossy().into_owned();
            eprintln!("e2e cleanup: container {id} left in {}", root.display());
            for rt in ["crun", "runc"] {
                let _ = Command::new(rt)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "-f", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

fn signal(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    let _ = kill(pid, sig);
}

impl Drop for Member {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                // A thread of its own: drop may run inside a tokio runtime.
                let socket = self.socket();
                let cleanup = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    else {
                        return;
                    };
                    rt.block_on(async {
                        let stop_all = Member::force_stop_all(socket);
                        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, stop_all).await;
                    });
                });
                let _ = cleanup.join();
            }
            signal(&child, Signal::SIGTERM);
            let t0 = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t0.elapsed() > EXIT_TIMEOUT {
                    eprintln!("e2e cleanup: droverd ignored SIGTERM; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.delete_leftover_containers();
        if failing {
            let log = self.log();
            eprintln!(
                "--- droverd log ({})\n{log}--- end of droverd log",
                self.log_path().display()
            );
            self.print_vm_logs();
        }
    }
}

impl Member {
    /// Prints the end of every VM's serial console and QEMU log on this member: a guest
    /// that panicked or a QEMU that aborted says why only there.
    fn print_vm_logs(&self) {
        let Ok(dirs) = std::fs::read_dir(self.state_dir().join("vms")) else {
            return;
        };
        for dir in dirs.flatten() {
            for file in ["console.log", "qemu.log"] {
                let path = dir.path().join(file);
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                let tail = &bytes[bytes.len().saturating_sub(16000)..];
                eprintln!(
                    "--- end of {}\n{}\n--- end of file",
                    path.display(),
                    String::from_utf8_lossy(tail)
                );
            }
        }
    }
}

/// `POST /1.0/instances` for `name` from the `busybox` alias with `config`.
pub fn busybox_request(name: &str, config: &[(&str, &str)], start: bool) -> InstancesPost {
    InstancesPost {
        name: name.into(),
        source: InstanceSource {
            kind: "image".into(),
            alias: "busybox".into(),
            ..Default::default()
        },
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
        start,
        ..Default::default()
    }
}

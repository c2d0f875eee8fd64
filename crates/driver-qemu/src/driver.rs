//! [`QemuDriver`]: the [`InstanceDriver`] of virtual machines, one QEMU process per VM.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drivers::{
    DriverError, ExecProcess, ExecSpec, ExecStdio, InstanceDriver, InstanceSpec, Result,
    RuntimeStatus, StopOutcome, Usage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::agent::{Agent, AgentControl, AgentError, AgentEvent, shell_quote};
use crate::probe::AccelProbe;
use crate::qmp::{Qmp, QmpError};
use crate::vm::{self, Accel, StartMode, VmConfig, VmPaths};

/// Deadline for QEMU to initialise and daemonize.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline to connect to a running QEMU's monitor.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `quit` may take before the process is killed.
const QUIT_GRACE: Duration = Duration::from_secs(3);
/// How long an exec waits for the guest agent (a VM that has just started is still booting).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

impl From<QmpError> for DriverError {
    fn from(e: QmpError) -> DriverError {
        match e {
            QmpError::Disconnected => DriverError::NotRunning,
            e => DriverError::Runtime {
                runtime: "qemu".into(),
                verb: "qmp".into(),
                stderr: e.to_string(),
            },
        }
    }
}

impl From<AgentError> for DriverError {
    fn from(e: AgentError) -> DriverError {
        DriverError::Runtime {
            runtime: "qemu".into(),
            verb: "exec".into(),
            stderr: e.to_string(),
        }
    }
}

/// A running VM this driver is attached to.
#[derive(Debug)]
pub(crate) struct VmHandle {
    pub(crate) pid: u32,
    pub(crate) paths: VmPaths,
    pub(crate) config: VmConfig,
    pub(crate) qmp: Arc<Qmp>,
    pub(crate) agent: tokio::sync::Mutex<Option<Arc<Agent>>>,
}

impl VmHandle {
    fn live(&self) -> bool {
        !self.qmp.is_closed() && vm::alive(self.pid)
    }
}

/// Virtual machines on QEMU. Runtime files of VM `id` live in `<root>/<id>/` (QMP, agent
/// and console sockets, console log, pid file, `vm.json`). QEMU daemonizes, so VMs outlive
/// the daemon; a fresh driver on the same root re-attaches through the pid file and the
/// QMP socket on first use of an id.
#[derive(Debug, Clone)]
pub struct QemuDriver {
    qemu: PathBuf,
    version: String,
    root: PathBuf,
    accel: Arc<tokio::sync::OnceCell<AccelProbe>>,
    probe_timeout: Duration,
    vms: Arc<Mutex<HashMap<String, Arc<VmHandle>>>>,
    /// VMs waiting for their guest to power off (a clean stop), each with whether a force
    /// stop interrupted the wait.
    stopping: Arc<Mutex<HashMap<String, bool>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// QEMU's run state of a guest stopped by QMP `stop` (a frozen VM).
const PAUSED: &str = "paused";

fn runtime_err(verb: &str, stderr: impl Into<String>) -> DriverError {
    DriverError::Runtime {
        runtime: "qemu".into(),
        verb: verb.into(),
        stderr: stderr.into(),
    }
}

impl QemuDriver {
    /// A driver running `qemu` (a `qemu-system-x86_64`) with the accelerator `accel` chose
    /// (see [`crate::probe_accel`]), keeping runtime files under `root`.
    pub async fn new(
        qemu: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
        accel: AccelProbe,
    ) -> Result<QemuDriver> {
        let d = QemuDriver::new_probing(qemu, root, Duration::ZERO).await?;
        let _ = d.accel.set(accel);
        Ok(d)
    }

    /// A driver that probes the accelerator on its first VM, with that VM's own kernel and
    /// initramfs (a real tiny boot, at most `probe_timeout`), for a daemon that has no guest
    /// kernel of its own at start-up.
    pub async fn new_probing(
        qemu: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
        probe_timeout: Duration,
    ) -> Result<QemuDriver> {
        let qemu = qemu.into();
        let root = root.into();
        tokio::fs::create_dir_all(&root).await?;
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(&qemu)
                .arg("--version")
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .map_err(|_| runtime_err("--version", "no answer within 10s"))??;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("unknown")
            .to_owned();
        Ok(QemuDriver {
            qemu,
            version,
            root,
            accel: Arc::default(),
            probe_timeout,
            vms: Arc::default(),
            stopping: Arc::default(),
        })
    }

    /// The accelerator in use and why; `None` until the first VM probed it.
    pub fn accel(&self) -> Option<AccelProbe> {
        self.accel.get().cloned()
    }

    /// The accelerator, probing it with `kernel` and `initrd` if nobody did yet.
    pub async fn accel_for(&self, kernel: &Path, initrd: &Path) -> Accel {
        self.accel
            .get_or_init(|| async {
                let p = crate::probe_accel(&self.qemu, kernel, initrd, self.probe_timeout).await;
                tracing::info!(accel = p.accel.as_str(), detail = %p.detail, "VM accelerator probed");
                p
            })
            .await
            .accel
    }

    /// QEMU's version (`"7.2.22"`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The runtime files of VM `id`.
    pub fn paths(&self, id: &str) -> VmPaths {
        VmPaths {
            dir: self.root.join(id),
        }
    }

    /// The serial console's unix socket of VM `id` (one client at a time).
    pub fn console_socket(&self, id: &str) -> PathBuf {
        self.paths(id).console()
    }

    /// Everything the serial console of VM `id` printed (kept across stops).
    pub fn console_log(&self, id: &str) -> PathBuf {
        self.paths(id).console_log()
    }

    /// The machine config VM `id` runs with.
    pub async fn vm_config(&self, id: &str) -> Result<VmConfig> {
        match self.get(id).await? {
            Some(h) => Ok(h.config.clone()),
            None => Err(DriverError::NotRunning),
        }
    }

    /// The QEMU run state of VM `id` (`running`, `paused`, `inmigrate`, `postmigrate`).
    pub async fn run_state(&self, id: &str) -> Result<String> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        Ok(h.qmp.query_status().await?)
    }

    /// The monitor connection of VM `id`.
    pub async fn qmp(&self, id: &str) -> Result<Arc<Qmp>> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        Ok(h.qmp.clone())
    }

    /// The handle of a running VM: the cached one while it lives, else a re-attach through
    /// the pid file and the QMP socket. `None` when it does not run.
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Arc<VmHandle>>> {
        let cached = lock(&self.vms).get(id).cloned();
        if let Some(h) = cached {
            if h.live() {
                return Ok(Some(h));
            }
            lock(&self.vms).remove(id);
        }
        let paths = self.paths(id);
        let Some(pid) = vm::running_pid(&paths) else {
            return Ok(None);
        };
        let config: VmConfig = serde_json::from_slice(&tokio::fs::read(paths.config()).await?)
            .map_err(|e| runtime_err("attach", format!("{}: {e}", paths.config().display())))?;
        let qmp = Qmp::connect(&paths.qmp(), CONNECT_TIMEOUT).await?;
        tracing::info!(id, pid, "re-attached to a running VM");
        let h = Arc::new(VmHandle {
            pid,
            paths,
            config,
            qmp: Arc::new(qmp),
            agent: tokio::sync::Mutex::new(None),
        });
        lock(&self.vms).insert(id.to_owned(), h.clone());
        Ok(Some(h))
    }

    /// Starts QEMU for `config` as VM `id` in `mode`.
    pub(crate) async fn launch(&self, id: &str, config: &VmConfig, mode: StartMode) -> Result<u32> {
        let here = self.accel_for(&config.kernel, &config.initrd).await;
        if config.accel != here {
            return Err(DriverError::Invalid(format!(
                "VM {id} needs accelerator {}, this host uses {}",
                config.accel.as_str(),
                here.as_str()
            )));
        }
        let paths = self.paths(id);
        paths.check()?;
        if self.get(id).await?.is_some() {
            return Err(DriverError::AlreadyRunning);
        }
        tokio::fs::create_dir_all(&paths.dir).await?;
        paths.clean();
        let json =
            serde_json::to_vec_pretty(config).map_err(|e| DriverError::Invalid(e.to_string()))?;
        tokio::fs::write(paths.config(), json).await?;
        let args = vm::qemu_args_for(config, &paths, mode);
        let child = tokio::process::Command::new(&self.qemu)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        // With -daemonize the first process exits once QEMU is set up (or failed to be).
        let out = tokio::time::timeout(LAUNCH_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| runtime_err("start", format!("no answer within {LAUNCH_TIMEOUT:?}")))??;
        // What QEMU said while starting is the instance's `qemu.log` (`lxc info --show-log`).
        if let Err(e) = tokio::fs::write(paths.qemu_log(), &out.stderr).await {
            tracing::warn!(id, error = %e, "QEMU's start-up output not logged");
        }
        if !out.status.success() {
            paths.clean();
            return Err(runtime_err(
                "start",
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        let pid = vm::running_pid(&paths)
            .ok_or_else(|| runtime_err("start", "QEMU exited right after starting"))?;
        let qmp = match Qmp::connect(&paths.qmp(), CONNECT_TIMEOUT).await {
            Ok(q) => q,
            Err(e) => {
                vm::kill(pid);
                paths.clean();
                return Err(e.into());
            }
        };
        tracing::info!(
            id,
            pid,
            ?mode,
            accel = config.accel.as_str(),
            memory_mib = config.memory_mib,
            "QEMU started"
        );
        let h = Arc::new(VmHandle {
            pid,
            paths,
            config: config.clone(),
            qmp: Arc::new(qmp),
            agent: tokio::sync::Mutex::new(None),
        });
        lock(&self.vms).insert(id.to_owned(), h);
        Ok(pid)
    }

    /// The agent connection of VM `id`, connecting (and waiting up to `timeout` for the
    /// agent to answer) when there is none yet.
    pub async fn agent(&self, id: &str, timeout: Duration) -> Result<Arc<Agent>> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        let mut slot = h.agent.lock().await;
        if let Some(a) = slot.as_ref().filter(|a| !a.is_closed()) {
            return Ok(a.clone());
        }
        *slot = None;
        let agent = Arc::new(Agent::connect(&h.paths.agent(), timeout).await?);
        *slot = Some(agent.clone());
        Ok(agent)
    }

    /// Kills the QEMU of VM `id` if a clean stop is waiting for its guest (LXD: a force
    /// stop interrupts a pending shutdown); whether there was such a stop. The stop that
    /// waited then ends at once, as killed.
    pub async fn interrupt_stop(&self, id: &str) -> bool {
        if !lock(&self.stopping).contains_key(id) {
            return false;
        }
        let Ok(Some(h)) = self.get(id).await else {
            return false;
        };
        if let Some(flag) = lock(&self.stopping).get_mut(id) {
            *flag = true;
            tracing::info!(
                id,
                pid = h.pid,
                "force stop: killing QEMU during a clean stop"
            );
            vm::kill(h.pid);
            return true;
        }
        false
    }

    /// Ends QEMU at once: `quit`, then SIGKILL if it lingers. Forgets the VM.
    pub(crate) async fn kill_vm(&self, id: &str, h: &VmHandle) {
        if let Err(e) = h.qmp.quit().await {
            tracing::warn!(id, error = %e, "QMP quit failed; killing QEMU");
        }
        if !vm::wait_exit(h.pid, QUIT_GRACE).await {
            vm::kill(h.pid);
            vm::wait_exit(h.pid, QUIT_GRACE).await;
        }
        self.forget(id, h);
    }

    fn forget(&self, id: &str, h: &VmHandle) {
        let mut vms = lock(&self.vms);
        if vms.get(id).is_some_and(|x| x.pid == h.pid) {
            vms.remove(id);
        }
        drop(vms);
        h.paths.clean();
    }
}

impl QemuDriver {
    /// The accelerator for a VM of `spec`: probed with its kernel when not known yet (a
    /// volume without one gets TCG here and fails its config check with a clear error).
    pub(crate) async fn spec_accel(&self, spec: &InstanceSpec) -> Accel {
        let (kernel, initrd) = (
            spec.rootfs.join(vm::KERNEL_FILE),
            spec.rootfs.join(vm::INITRD_FILE),
        );
        if let Some(a) = self.accel.get() {
            return a.accel;
        }
        if kernel.is_file() && initrd.is_file() {
            self.accel_for(&kernel, &initrd).await
        } else {
            Accel::Tcg
        }
    }
}

/// The script the agent runs for `spec`: environment, working directory, then `exec argv`.
pub fn exec_script(spec: &ExecSpec) -> Result<String> {
    if spec.command.is_empty() {
        return Err(DriverError::Invalid("exec: empty command".into()));
    }
    if spec.uid != 0 || spec.gid != 0 {
        return Err(DriverError::Invalid(
            "exec in a VM runs as root only (user/group not supported by the agent)".into(),
        ));
    }
    let mut s = String::new();
    for kv in &spec.env {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(DriverError::Invalid(format!(
                "exec: bad environment {kv:?}"
            )));
        };
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(DriverError::Invalid(format!(
                "exec: bad environment name {k:?}"
            )));
        }
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    let cwd = if spec.cwd.is_empty() {
        "/root"
    } else {
        &spec.cwd
    };
    s.push_str(&format!("cd {} 2>/dev/null || cd /\n", shell_quote(cwd)));
    s.push_str("exec");
    for a in &spec.command {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s.push('\n');
    Ok(s)
}

/// A command running in a VM through the agent.
#[derive(Debug)]
pub struct QemuExec {
    control: AgentControl,
    done: Option<tokio::task::JoinHandle<Result<i32>>>,
}

#[async_trait::async_trait]
impl ExecProcess for QemuExec {
    /// Cancel-safe (the daemon interrupts a wait to deliver a signal, then waits again):
    /// the task is polled in place and let go only once it has ended.
    async fn wait(&mut self) -> Result<i32> {
        let Some(done) = self.done.as_mut() else {
            return Err(DriverError::Invalid("exec: already waited for".into()));
        };
        let result = done.await;
        self.done = None;
        result.map_err(|e| runtime_err("exec", format!("exec task: {e}")))?
    }

    fn signal(&self, signal: i32) -> Result<()> {
        self.control.signal(signal);
        Ok(())
    }
}

#[async_trait::async_trait]
impl InstanceDriver for QemuDriver {
    fn describe(&self) -> String {
        match self.accel.get() {
            Some(a) => format!("qemu {} ({})", self.version, a.accel.as_str()),
            None => format!("qemu {} (accelerator probed on the first VM)", self.version),
        }
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<u32> {
        let config = VmConfig::from_instance(
            &spec.name,
            &spec.rootfs,
            &spec.config,
            self.spec_accel(spec).await,
        )?;
        self.launch(&spec.id, &config, StartMode::Boot).await
    }

    /// `signal` is not used: a VM is asked to stop with the ACPI power button
    /// (`system_powerdown`, see [`shutdown`](Self::shutdown)); after `timeout`, or at once
    /// with `force`, QEMU quits.
    async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
        force: bool,
    ) -> Result<StopOutcome> {
        if !force {
            match self.shutdown(id, signal, timeout).await {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {
                    tracing::warn!(id, ?timeout, "VM ignored the power button; quitting QEMU")
                }
                Err(e) => tracing::warn!(id, error = %e, "clean stop failed; quitting QEMU"),
            }
        }
        let Some(h) = self.get(id).await? else {
            self.paths(id).clean();
            return Ok(StopOutcome::WasStopped);
        };
        self.kill_vm(id, &h).await;
        Ok(StopOutcome::Killed)
    }

    /// The power button (a paused guest is resumed first: it would never see it), then up
    /// to `timeout` for QEMU to exit; left running after it.
    async fn shutdown(
        &self,
        id: &str,
        _signal: i32,
        timeout: Duration,
    ) -> Result<Option<StopOutcome>> {
        let Some(h) = self.get(id).await? else {
            self.paths(id).clean();
            return Ok(Some(StopOutcome::WasStopped));
        };
        if h.qmp.query_status().await.is_ok_and(|s| s == PAUSED) {
            tracing::info!(id, "resuming a frozen VM to stop it");
            h.qmp.cont().await?;
        }
        let exited = match h.qmp.system_powerdown().await {
            Ok(()) => {
                lock(&self.stopping).insert(id.to_owned(), false);
                let exited = vm::wait_exit(h.pid, timeout).await;
                let interrupted = lock(&self.stopping).remove(id).unwrap_or(false);
                if exited && interrupted {
                    self.forget(id, &h);
                    return Ok(Some(StopOutcome::Killed));
                }
                exited
            }
            Err(QmpError::Disconnected) => vm::wait_exit(h.pid, QUIT_GRACE).await,
            Err(e) => return Err(e.into()),
        };
        if !exited {
            tracing::info!(id, ?timeout, "VM ignored the power button; left running");
            return Ok(None);
        }
        tracing::info!(id, "VM stopped cleanly (ACPI power button)");
        self.forget(id, &h);
        Ok(Some(StopOutcome::Clean))
    }

    /// QMP `stop`: the vCPUs halt, the guest's memory stays.
    async fn freeze(&self, id: &str) -> Result<()> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        Ok(h.qmp.stop().await?)
    }

    /// QMP `cont`, only from the `paused` run state (never on a VM that waits for or has
    /// sent a migration).
    async fn unfreeze(&self, id: &str) -> Result<()> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        if h.qmp.query_status().await? == PAUSED {
            h.qmp.cont().await?;
        }
        Ok(())
    }

    async fn frozen(&self, id: &str) -> Result<bool> {
        match self.get(id).await? {
            Some(h) => Ok(h.qmp.query_status().await? == PAUSED),
            None => Ok(false),
        }
    }

    async fn state(&self, id: &str) -> Result<RuntimeStatus> {
        Ok(match self.get(id).await? {
            Some(h) => RuntimeStatus::Running { pid: h.pid },
            None => RuntimeStatus::Stopped,
        })
    }

    async fn usage(&self, id: &str) -> Result<Usage> {
        let Some(h) = self.get(id).await? else {
            return Ok(Usage::default());
        };
        let (rss, cpu) = vm::process_usage(h.pid);
        Ok(Usage {
            memory: rss,
            memory_peak: rss,
            cpu_ns: cpu,
            processes: 0,
        })
    }

    async fn update_limits(&self, id: &str, config: &BTreeMap<String, String>) -> Result<()> {
        let Some(h) = self.get(id).await? else {
            return Ok(());
        };
        let want = VmConfig {
            memory_mib: match config.get("limits.memory") {
                Some(v) if !v.trim().is_empty() => vm::parse_memory_mib(v.trim())?,
                _ => vm::DEFAULT_MEMORY_MIB,
            },
            cpus: match config.get("limits.cpu") {
                Some(v) if !v.trim().is_empty() => vm::parse_cpu_count(v.trim())?,
                _ => 1,
            },
            ..h.config.clone()
        };
        if want.memory_mib != h.config.memory_mib || want.cpus != h.config.cpus {
            return Err(DriverError::Invalid(
                "limits.memory and limits.cpu of a running VM change only on its next start".into(),
            ));
        }
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        stdio: ExecStdio,
    ) -> Result<Box<dyn ExecProcess>> {
        let script = exec_script(spec)?;
        let agent = self.agent(id, AGENT_TIMEOUT).await?;
        let mut exec = agent.spawn(&script)?;
        let control = exec.control();
        let mut stdin = exec_reader(stdio.stdin);
        let mut stdout = exec_writer(stdio.stdout);
        let mut stderr = exec_writer(stdio.stderr);
        let feed = {
            let control = control.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match stdin.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => control.write_stdin(&buf[..n]),
                    }
                }
                control.close_stdin();
            })
        };
        let done = tokio::spawn(async move {
            // Keeps the agent connection open while the command runs.
            let _agent = agent;
            let result = loop {
                match exec.next().await {
                    Some(AgentEvent::Stdout(b)) => {
                        let _ = stdout.write_all(&b).await;
                    }
                    Some(AgentEvent::Stderr(b)) => {
                        let _ = stderr.write_all(&b).await;
                    }
                    Some(AgentEvent::Exit(code)) => break Ok(code),
                    None => break Err(runtime_err("exec", "the VM agent went away")),
                }
            };
            let _ = stdout.flush().await;
            let _ = stderr.flush().await;
            feed.abort();
            result
        });
        Ok(Box::new(QemuExec {
            control,
            done: Some(done),
        }))
    }
}

/// Whether an exec's stream `file` can be polled by the runtime: a pipe, a socket or a
/// terminal (not a regular file or `/dev/null`), which is then made non-blocking.
fn make_polled(file: &std::fs::File) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let pollable = file.metadata().is_ok_and(|m| {
        let t = m.file_type();
        t.is_fifo() || t.is_socket() || (t.is_char_device() && rustix::termios::isatty(file))
    });
    pollable && rustix::io::ioctl_fionbio(file, true).is_ok()
}

/// The host side of one of an exec's streams. A pipe or a pty is polled by the runtime
/// (`polled`), so that dropping the task using it closes it at once: a read parked in the
/// blocking pool kept an interactive session's pty slave open after the command had ended,
/// and the session never saw the end of its output. Anything else goes through the
/// blocking pool (`blocking`), where it never waits for long; `gone` if polling fails.
fn exec_stream<T: ?Sized>(
    fd: std::os::fd::OwnedFd,
    polled: impl FnOnce(std::fs::File) -> std::io::Result<Box<T>>,
    blocking: impl FnOnce(tokio::fs::File) -> Box<T>,
    gone: impl FnOnce() -> Box<T>,
) -> Box<T> {
    let file = std::fs::File::from(fd);
    if !make_polled(&file) {
        return blocking(tokio::fs::File::from_std(file));
    }
    polled(file).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "exec stream not polled; it ends at once");
        gone()
    })
}

type ExecReader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type ExecWriter = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// The host side of an exec's stdin (see [`exec_stream`]).
fn exec_reader(fd: std::os::fd::OwnedFd) -> ExecReader {
    exec_stream(
        fd,
        |f| Ok(Box::new(tokio::net::unix::pipe::Receiver::from_file_unchecked(f)?) as ExecReader),
        |f| Box::new(f),
        || Box::new(tokio::io::empty()),
    )
}

/// The host side of an exec's stdout or stderr (see [`exec_stream`]).
fn exec_writer(fd: std::os::fd::OwnedFd) -> ExecWriter {
    exec_stream(
        fd,
        |f| Ok(Box::new(tokio::net::unix::pipe::Sender::from_file_unchecked(f)?) as ExecWriter),
        |f| Box::new(f),
        || Box::new(tokio::io::sink()),
    )
}

/// Whether `path` is a usable QEMU binary (exists and is executable).
pub fn qemu_available(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `qemu-system-x86_64` on `PATH`.
pub fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| qemu_available(p))
}

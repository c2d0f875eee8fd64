//! A wrapper over the command line that runc and crun share.
//!
//! Every call passes `--root <dir>`, so daemons and tests on one machine each see only
//! their own containers, and every call has a deadline (the child is killed when it passes).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::str::FromStr;
use std::time::Duration;

use drivers::{DriverError, Result};
use serde::Deserialize;
use tokio::process::Command;

use crate::namespace::{HYBRID_CGROUP2, hybrid_cgroup2_mounted};

/// Default deadline of one runtime call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Which OCI runtime binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuntimeKind {
    /// crun: about 3x faster to start here; needs [`Isolation`] on hybrid cgroups.
    Crun,
    /// runc.
    Runc,
}

impl RuntimeKind {
    /// The binary name, `"crun"` or `"runc"`.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Crun => "crun",
            RuntimeKind::Runc => "runc",
        }
    }

    /// The other runtime (the fallback).
    pub fn other(self) -> RuntimeKind {
        match self {
            RuntimeKind::Crun => RuntimeKind::Runc,
            RuntimeKind::Runc => RuntimeKind::Crun,
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "crun" => Ok(RuntimeKind::Crun),
            "runc" => Ok(RuntimeKind::Runc),
            other => Err(format!(
                "unknown oci runtime {other:?} (expected crun or runc)"
            )),
        }
    }
}

/// How runtime processes get the mount namespace they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Run the binary directly: the caller's mount namespace is right (runc anywhere;
    /// crun when [`crate::prepare_mount_namespace`] ran or the host is not hybrid). This is
    /// the daemon's path.
    Direct,
    /// Run crun as `unshare -m --propagation private sh -c 'umount -l
    /// /sys/fs/cgroup/unified; exec crun …'`: a fresh private namespace per call with the
    /// same pure-v1 view. For processes that could not unshare themselves (multithreaded
    /// test harnesses). Costs about 4 ms per call (a `sh` and an `unshare` exec).
    UnshareWrapper,
}

impl Isolation {
    /// The isolation `kind` needs in this process's current mount namespace.
    pub fn detect(kind: RuntimeKind) -> Isolation {
        if kind == RuntimeKind::Crun && hybrid_cgroup2_mounted() {
            Isolation::UnshareWrapper
        } else {
            Isolation::Direct
        }
    }
}

/// What `<runtime> state` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// PID 1 on the host (0 or absent once stopped).
    #[serde(default)]
    pub pid: i64,
}

/// Options of `<runtime> exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecArgs<'a> {
    /// Argument vector.
    pub command: &'a [String],
    /// `KEY=VALUE` pairs.
    pub env: &'a [String],
    /// Working directory in the container.
    pub cwd: &'a str,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Where the runtime writes the host pid of the command (`--pid-file`).
    pub pid_file: Option<&'a Path>,
}

/// The first executable `name` on `PATH`, found once so that no call of the runtime searches
/// `PATH` again (a failed `execve` per entry before it); `name` itself when there is none,
/// so that the error names what was looked for.
fn find_on_path(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(name))
                .find(|p| {
                    std::fs::metadata(p)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Seals a memfd must carry for runc and crun to take it as their own protected copy:
/// no write, no resize, no change of the seals.
const SEALS: rustix::fs::SealFlags = rustix::fs::SealFlags::SEAL
    .union(rustix::fs::SealFlags::SHRINK)
    .union(rustix::fs::SealFlags::GROW)
    .union(rustix::fs::SealFlags::WRITE);

/// A copy of the runtime binary in a sealed memfd, executed as `/proc/self/fd/<n>`.
///
/// runc and crun guard against a container overwriting the host's runtime binary through
/// `/proc/self/exe` (CVE-2019-5736): unless the running binary is already a copy nobody can
/// write, every call makes one — here a file in `/tmp` bind-mounted read-only over
/// `/proc/self/exe`, then a second exec of the whole binary — which costs about 1.2 ms of a
/// call's 2.5 ms (a `state` call, timed here). A memfd with all write seals is such a copy
/// (runc's `memfd-bind` tool rests on the same check), so with it each call does only its
/// own work, and the protection is the same. Made once per daemon; the descriptor stays
/// open (close-on-exec: a runtime process sees it only while its `execve` opens it).
#[derive(Debug)]
struct SealedBinary {
    /// The memfd, open as long as the runtime: `path` names it.
    _fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

impl SealedBinary {
    /// Copies `binary` into a new memfd and seals it.
    fn copy_of(binary: &Path) -> std::io::Result<SealedBinary> {
        use rustix::fs::{MemfdFlags, fcntl_add_seals, fcntl_get_seals, memfd_create};
        use std::os::fd::AsRawFd;
        let name = binary
            .file_name()
            .map_or_else(|| "runtime".into(), |n| n.to_string_lossy());
        let fd = memfd_create(
            format!("drover-{name}").as_str(),
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        let mut file = std::fs::File::from(fd);
        std::io::copy(&mut std::fs::File::open(binary)?, &mut file)?;
        let fd = std::os::fd::OwnedFd::from(file);
        fcntl_add_seals(&fd, SEALS)?;
        if !fcntl_get_seals(&fd)?.contains(SEALS) {
            return Err(std::io::Error::other("the memfd did not keep its seals"));
        }
        let path = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        Ok(SealedBinary { _fd: fd, path })
    }
}

/// One runtime binary bound to one state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    kind: RuntimeKind,
    binary: PathBuf,
    root: PathBuf,
    isolation: Isolation,
    timeout: Duration,
    /// The sealed copy calls execute instead of `binary`, when [`Runtime::sealed`] made one.
    sealed: Option<std::sync::Arc<SealedBinary>>,
}

impl Runtime {
    /// A runtime of `kind` (found on `PATH` now) keeping its state under `root`, with the
    /// isolation this process needs ([`Isolation::detect`]).
    pub fn new(kind: RuntimeKind, root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            kind,
            binary: find_on_path(kind.name()),
            root: root.into(),
            isolation: Isolation::detect(kind),
            timeout: DEFAULT_TIMEOUT,
            sealed: None,
        }
    }

    /// Runs the binary from a sealed in-memory copy made now (see [`SealedBinary`]): each
    /// call then skips the runtime's own copy of itself, about 1.2 ms here. The copy is
    /// checked with `--version` through it; when it cannot be made or does not run (no
    /// memfd, executable memfds forbidden, [`Isolation::UnshareWrapper`], whose `sh` would
    /// not inherit the descriptor), the runtime stays as it was and the log says why. An
    /// upgrade of the binary on disk is seen by the next daemon start.
    pub async fn sealed(mut self) -> Runtime {
        if self.isolation != Isolation::Direct {
            return self;
        }
        let copy = match SealedBinary::copy_of(&self.binary) {
            Ok(copy) => std::sync::Arc::new(copy),
            Err(e) => {
                tracing::info!(runtime = %self.kind, error = %e, "runtime binary not sealed in memory");
                return self;
            }
        };
        let stock = self.clone();
        self.sealed = Some(copy);
        match self.version().await {
            Ok(_) => self,
            Err(e) => {
                tracing::info!(runtime = %self.kind, error = %e, "sealed runtime binary does not run");
                stock
            }
        }
    }

    /// Whether calls run a sealed in-memory copy of the binary ([`Runtime::sealed`]).
    pub fn is_sealed(&self) -> bool {
        self.sealed.is_some()
    }

    /// What calls execute: the sealed copy (`/proc/self/fd/<n>`), else the binary.
    pub fn program(&self) -> &Path {
        self.sealed.as_ref().map_or(&self.binary, |s| &s.path)
    }

    /// Uses `binary` instead of the name looked up on `PATH`.
    #[must_use]
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Runtime {
        self.binary = binary.into();
        self.sealed = None;
        self
    }

    /// Overrides the deadline of each call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Runtime {
        self.timeout = timeout;
        self
    }

    /// Overrides the detected isolation.
    #[must_use]
    pub fn with_isolation(mut self, isolation: Isolation) -> Runtime {
        self.isolation = isolation;
        self
    }

    /// Which runtime.
    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How calls are isolated.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether the runtime has any state for `id` (one `stat`, no process).
    pub fn knows(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    /// A command for `<runtime> --root <root> <args>`, stdin from /dev/null, wrapped per
    /// [`Isolation`].
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = match self.isolation {
            Isolation::Direct => Command::new(self.program()),
            Isolation::UnshareWrapper => {
                let mut c = Command::new("unshare");
                c.args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(format!(
                        "umount -l {HYBRID_CGROUP2} 2>/dev/null; exec \"$0\" \"$@\""
                    ))
                    .arg(&self.binary);
                c
            }
        };
        cmd.arg("--root").arg(&self.root).args(args);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    fn error(&self, verb: &str, stderr: impl Into<String>) -> DriverError {
        DriverError::Runtime {
            runtime: self.kind.name().to_string(),
            verb: verb.to_string(),
            stderr: stderr.into(),
        }
    }

    /// Runs `cmd` to completion within the deadline, capturing its output.
    async fn output(&self, verb: &str, mut cmd: Command) -> Result<Output> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd
            .spawn()
            .map_err(|e| self.error(verb, format!("cannot run {}: {e}", self.binary.display())))?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(out) => Ok(out?),
            Err(_) => Err(self.error(verb, format!("timed out after {:?}", self.timeout))),
        }
    }

    /// Runs `<runtime> <args>` and fails unless it exits with 0.
    async fn call(&self, verb: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>> {
        let mut all: Vec<&std::ffi::OsStr> = vec![verb.as_ref()];
        all.extend_from_slice(args);
        let out = self.output(verb, self.command(all)).await?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(self.error(verb, failure_text(&out)))
        }
    }

    /// `<runtime> --version`, first line (`"crun version 1.8.1"`).
    pub async fn version(&self) -> Result<String> {
        let mut cmd = Command::new(self.program());
        cmd.arg("--version").stdin(Stdio::null()).kill_on_drop(true);
        let out = self.output("--version", cmd).await?;
        if !out.status.success() {
            return Err(self.error("--version", failure_text(&out)));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or_default().trim().to_string())
    }

    /// Creates and starts `id` from `bundle` in one call (`run --detach`), writing PID 1's
    /// pid to `pid_file`. PID 1 (and the runtime) write to `log`, read from /dev/null.
    /// On failure the error carries what was appended to `log` by this call.
    pub async fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Result<()> {
        self.with_log("run", log, |rt| {
            rt.command([
                "run".as_ref(),
                "--detach".as_ref(),
                "--bundle".as_ref(),
                bundle.as_os_str(),
                "--pid-file".as_ref(),
                pid_file.as_os_str(),
                id.as_ref(),
            ])
        })
        .await
    }

    /// `create --bundle <bundle> --pid-file <pid_file> <id>`, stdio as in
    /// [`Runtime::run_detached`].
    pub async fn create(&self, id: &str, bundle: &Path, pid_file: &Path, log: &Path) -> Result<()> {
        self.with_log("create", log, |rt| {
            rt.command([
                "create".as_ref(),
                "--bundle".as_ref(),
                bundle.as_os_str(),
                "--pid-file".as_ref(),
                pid_file.as_os_str(),
                id.as_ref(),
            ])
        })
        .await
    }

    /// Runs a command whose stdout/stderr go to the file `log` (never to pipes: PID 1
    /// inherits them and would hold a pipe open forever).
    async fn with_log(
        &self,
        verb: &str,
        log: &Path,
        make: impl FnOnce(&Runtime) -> Command,
    ) -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let offset = file.metadata()?.len();
        let mut cmd = make(self);
        cmd.stdout(file.try_clone()?).stderr(file);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.error(verb, format!("cannot run {}: {e}", self.binary.display())))?;
        let status = match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(status) => status?,
            Err(_) => return Err(self.error(verb, format!("timed out after {:?}", self.timeout))),
        };
        if status.success() {
            return Ok(());
        }
        let text = std::fs::read(log)
            .ok()
            .and_then(|b| b.get(usize::try_from(offset).ok()?..).map(<[u8]>::to_vec))
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| status.to_string());
        Err(self.error(verb, text))
    }

    /// `start <id>`.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.call("start", &[id.as_ref()]).await.map(drop)
    }

    /// `state <id>`; `Ok(None)` when the runtime has no such container.
    pub async fn state(&self, id: &str) -> Result<Option<ContainerState>> {
        if !self.knows(id) {
            return Ok(None);
        }
        match self.call("state", &[id.as_ref()]).await {
            Ok(json) => serde_json::from_slice(&json)
                .map(Some)
                .map_err(|e| self.error("state", format!("unparsable state: {e}"))),
            // Deleted between the check and the call.
            Err(_) if !self.knows(id) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `update --resources <file> <id>`: applies new cgroup limits to a running container.
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let json = serde_json::to_vec(resources)
            .map_err(|e| DriverError::Invalid(format!("resources: {e}")))?;
        let file =
            std::env::temp_dir().join(format!("drover-update-{}-{id}.json", std::process::id()));
        tokio::fs::write(&file, json).await?;
        let res = self
            .call(
                "update",
                &["--resources".as_ref(), file.as_os_str(), id.as_ref()],
            )
            .await
            .map(drop);
        let _ = tokio::fs::remove_file(&file).await;
        res
    }

    /// `pause <id>`: freezes every process of the container (its cgroup freezer).
    pub async fn pause(&self, id: &str) -> Result<()> {
        self.call("pause", &[id.as_ref()]).await.map(drop)
    }

    /// `resume <id>`: thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<()> {
        self.call("resume", &[id.as_ref()]).await.map(drop)
    }

    /// `kill <id> <signal>` (signal as a number; both runtimes accept that).
    pub async fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let sig = signal.to_string();
        self.call("kill", &[id.as_ref(), sig.as_ref()])
            .await
            .map(drop)
    }

    /// `delete [--force] <id>`; succeeds when the container is unknown.
    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        if !self.knows(id) {
            return Ok(());
        }
        let res = if force {
            self.call("delete", &["--force".as_ref(), id.as_ref()])
                .await
        } else {
            self.call("delete", &[id.as_ref()]).await
        };
        match res {
            Err(_) if !self.knows(id) => Ok(()),
            other => other.map(drop),
        }
    }

    /// A command for `exec` of `args` in `id` without a tty; the caller sets stdio and
    /// spawns it. The runtime stays in the foreground, forwards the signals it receives to
    /// the command and exits with its status.
    pub fn exec_command(&self, id: &str, args: &ExecArgs<'_>) -> Command {
        let mut argv: Vec<String> = vec!["exec".into()];
        if !args.cwd.is_empty() {
            argv.push("--cwd".into());
            argv.push(args.cwd.into());
        }
        for e in args.env {
            argv.push("--env".into());
            argv.push(e.clone());
        }
        argv.push("--user".into());
        argv.push(format!("{}:{}", args.uid, args.gid));
        if let Some(pid_file) = args.pid_file {
            argv.push("--pid-file".into());
            argv.push(pid_file.display().to_string());
        }
        argv.push(id.into());
        argv.extend(args.command.iter().cloned());
        let mut cmd = self.command(argv);
        cmd.kill_on_drop(false);
        cmd
    }
}

/// The useful part of a failed call's output: stderr, else stdout, else the status.
fn failure_text(out: &Output) -> String {
    let pick = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    let err = pick(&out.stderr);
    if !err.is_empty() {
        return err;
    }
    let o = pick(&out.stdout);
    if !o.is_empty() {
        return o;
    }
    out.status.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!("crun".parse::<RuntimeKind>().unwrap(), RuntimeKind::Crun);
        assert_eq!(RuntimeKind::Crun.other(), RuntimeKind::Runc);
        assert!("youki".parse::<RuntimeKind>().is_err());
        assert_eq!(Isolation::detect(RuntimeKind::Runc), Isolation::Direct);
    }

    #[test]
    fn exec_command_line() {
        let rt = Runtime::new(RuntimeKind::Runc, "/run/x").with_isolation(Isolation::Direct);
        let cmd = rt.exec_command(
            "c1",
            &ExecArgs {
                command: &["cat".into(), "/etc/hostname".into()],
                env: &["A=1".into()],
                cwd: "/root",
                uid: 1000,
                gid: 100,
                pid_file: None,
            },
        );
        let args: Vec<_> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/run/x",
                "exec",
                "--cwd",
                "/root",
                "--env",
                "A=1",
                "--user",
                "1000:100",
                "c1",
                "cat",
                "/etc/hostname"
            ]
        );
    }

    #[test]
    fn wrapper_command_line() {
        let rt = Runtime::new(RuntimeKind::Crun, "/r")
            .with_binary("crun")
            .with_isolation(Isolation::UnshareWrapper);
        let cmd = rt.command(["state", "c1"]);
        assert_eq!(cmd.as_std().get_program(), "unshare");
        let args: Vec<_> = cmd
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&args[..5], ["-m", "--propagation", "private", "sh", "-c"]);
        assert_eq!(&args[6..], ["crun", "--root", "/r", "state", "c1"]);
    }
}

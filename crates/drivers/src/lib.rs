//! Instance driver traits: what the daemon asks of a container (or, later, VM) runtime.
//!
//! The daemon owns the DB and the decisions; a driver only turns "run this root filesystem
//! as instance X" into processes, and answers what it is doing. Drivers hold no state the
//! daemon cannot rebuild: after a daemon restart, [`InstanceDriver::state`] on every known
//! instance re-attaches to what still runs.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of a driver call.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The runtime binary failed; `stderr` is what it printed.
    #[error("{runtime} {verb} failed: {stderr}")]
    Runtime {
        /// `crun` or `runc`.
        runtime: String,
        /// `create`, `start`, `kill`, ...
        verb: String,
        /// What the runtime printed.
        stderr: String,
    },
    /// The instance is not known to the runtime.
    #[error("instance is not running")]
    NotRunning,
    /// The instance is already running.
    #[error("instance is already running")]
    AlreadyRunning,
    /// Bad input (an unparsable limit, a bad signal name).
    #[error("{0}")]
    Invalid(String),
    /// I/O around the runtime (bundle files, pipes).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result of a driver call.
pub type Result<T> = std::result::Result<T, DriverError>;

/// Everything a driver needs to start an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    /// Runtime id, unique on this member (the daemon uses `<project>_<name>`).
    pub id: String,
    /// Instance name; also the hostname.
    pub name: String,
    /// The root filesystem directory (on the instance's volume).
    pub rootfs: PathBuf,
    /// Directory the driver may use for this instance's runtime files (bundle, logs).
    pub run_dir: PathBuf,
    /// Expanded config of the instance (`limits.memory`, `limits.cpu`, ...).
    pub config: BTreeMap<String, String>,
    /// Command run as PID 1 (`["/sbin/init"]`).
    pub init: Vec<String>,
    /// Environment of PID 1.
    pub env: Vec<String>,
    /// Host paths bind-mounted into the instance (LXD's `disk` devices with a `source`).
    pub mounts: Vec<BindMount>,
}

/// A host path shown inside an instance (an LXD `disk` device with a host `source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host file or directory (absolute).
    pub source: PathBuf,
    /// Where it appears inside the instance (absolute; made when missing).
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What the runtime says about an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeStatus {
    /// PID 1 runs.
    Running {
        /// PID 1 on the host.
        pid: u32,
    },
    /// Nothing runs (never started, exited, or deleted).
    Stopped,
}

/// Usage figures of a running instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory: i64,
    /// Peak memory, bytes.
    pub memory_peak: i64,
    /// CPU time, nanoseconds.
    pub cpu_ns: i64,
    /// Number of processes.
    pub processes: i64,
}

/// How a stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// PID 1 exited on the stop signal within the timeout.
    Clean,
    /// The timeout passed (or `force` was asked): it was killed.
    Killed,
    /// It was not running.
    WasStopped,
}

/// A command to run inside a running instance.
#[derive(Debug, Clone, Default)]
pub struct ExecSpec {
    /// Argument vector.
    pub command: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// Working directory inside the instance ("" = `/root` or `/`).
    pub cwd: String,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Standard streams for [`InstanceDriver::exec`]: the caller makes them (pipes, or the same
/// pty slave three times for an interactive session) and keeps the other ends.
#[derive(Debug)]
pub struct ExecStdio {
    /// stdin of the command.
    pub stdin: OwnedFd,
    /// stdout of the command.
    pub stdout: OwnedFd,
    /// stderr of the command.
    pub stderr: OwnedFd,
}

/// A running exec: wait for it, or signal it.
#[async_trait::async_trait]
pub trait ExecProcess: Send + std::fmt::Debug {
    /// Waits for the command to exit and returns its exit code (128 + signal when killed).
    async fn wait(&mut self) -> Result<i32>;
    /// Sends `signal` to the command.
    fn signal(&self, signal: i32) -> Result<()>;
}

/// A runtime for instances of one type.
///
/// # Correctness
///
/// Every call is idempotent with respect to the runtime's real state: `stop` of a stopped
/// instance returns [`StopOutcome::WasStopped`], `delete` of an unknown one succeeds. No call
/// blocks the async executor; every wait has a deadline.
#[async_trait::async_trait]
pub trait InstanceDriver: Send + Sync + std::fmt::Debug {
    /// The runtime's name and version (`"crun 1.8.1"`).
    fn describe(&self) -> String;

    /// Starts PID 1 of the instance and returns once it runs.
    async fn start(&self, spec: &InstanceSpec) -> Result<u32>;

    /// Stops the instance: `signal` to PID 1, wait up to `timeout` for it to exit, then kill.
    /// With `force`, kill at once. Cleans up the runtime's state either way. A frozen
    /// instance is unfrozen first (a frozen init can neither catch the signal nor die).
    async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
        force: bool,
    ) -> Result<StopOutcome>;

    /// A clean stop that gives up instead of killing: `signal` to PID 1 (a VM: the power
    /// button), then up to `timeout` for it to exit. `Ok(None)` when it still runs then; it
    /// is left running, as LXD leaves an instance whose stop with a timeout failed. The
    /// default kills like [`stop`](Self::stop), for a driver that cannot give up.
    async fn shutdown(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<Option<StopOutcome>> {
        self.stop(id, signal, timeout, false).await.map(Some)
    }

    /// What runs now.
    async fn state(&self, id: &str) -> Result<RuntimeStatus>;

    /// Usage of a running instance (zeros when unknown).
    async fn usage(&self, id: &str) -> Result<Usage>;

    /// Applies the `limits.*` of `config` to a running instance now (what changing them on a
    /// running instance does in LXD). A limit absent from `config` is lifted.
    async fn update_limits(&self, id: &str, config: &BTreeMap<String, String>) -> Result<()>;

    /// Runs a command inside a running instance with the given stdio.
    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        stdio: ExecStdio,
    ) -> Result<Box<dyn ExecProcess>>;

    /// Freezes every process of the running instance (LXD's `freeze`, `lxc pause`): they
    /// stay in memory but get no CPU until [`InstanceDriver::unfreeze`]. Freezing a frozen
    /// instance succeeds. A driver that cannot answers [`DriverError::Invalid`].
    async fn freeze(&self, id: &str) -> Result<()> {
        let _ = id;
        Err(DriverError::Invalid(
            "this runtime cannot freeze instances".into(),
        ))
    }

    /// Lets the processes of a frozen instance run again. Unfreezing a running instance that
    /// is not frozen succeeds. A driver that cannot answers [`DriverError::Invalid`].
    async fn unfreeze(&self, id: &str) -> Result<()> {
        let _ = id;
        Err(DriverError::Invalid(
            "this runtime cannot unfreeze instances".into(),
        ))
    }

    /// Whether the running instance is frozen, as the runtime says (`false` when it does not
    /// run). What a daemon asks when it re-attaches after a restart.
    async fn frozen(&self, id: &str) -> Result<bool> {
        let _ = id;
        Ok(false)
    }

    /// Mounts `mount` into the running instance now (LXD's disk hotplug). A driver that
    /// cannot answers [`DriverError::Invalid`] and changes nothing.
    async fn attach_mount(&self, id: &str, mount: &BindMount) -> Result<()> {
        let _ = (id, mount);
        Err(DriverError::Invalid(
            "this runtime cannot add disks to a running instance".into(),
        ))
    }

    /// Unmounts what is mounted at `target` inside the running instance now. A driver that
    /// cannot answers [`DriverError::Invalid`] and changes nothing.
    async fn detach_mount(&self, id: &str, target: &str) -> Result<()> {
        let _ = (id, target);
        Err(DriverError::Invalid(
            "this runtime cannot remove disks from a running instance".into(),
        ))
    }
}

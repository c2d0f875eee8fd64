//! A command running in an instance through `<runtime> exec`.

use std::os::unix::process::ExitStatusExt;

use drivers::{DriverError, ExecProcess, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::process::Child;

/// The `<runtime> exec` process of one command.
///
/// The runtime stays in the foreground for the command's lifetime, forwards the signals it
/// receives to it (so [`ExecProcess::signal`] signals the runtime process) and exits with the
/// command's status, `128 + N` when the command was killed by signal N. Dropping an
/// `OciExec` does not stop the command; tokio reaps the runtime process when it exits.
#[derive(Debug)]
pub struct OciExec {
    child: Child,
    pid: Option<i32>,
    runtime: &'static str,
    exit: Option<i32>,
    /// Where the runtime wrote the command's own host pid: SIGKILL (which the runtime
    /// cannot forward) goes there.
    pid_file: Option<PathBuf>,
}

static PID_FILES: AtomicU64 = AtomicU64::new(0);

/// A fresh path for an exec's `--pid-file`.
pub(crate) fn pid_file_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "drover-exec-{}-{}.pid",
        std::process::id(),
        PID_FILES.fetch_add(1, Ordering::Relaxed)
    ))
}

impl OciExec {
    /// Wraps a spawned `<runtime> exec`.
    pub fn new(child: Child, runtime: &'static str) -> OciExec {
        let pid = child.id().and_then(|p| i32::try_from(p).ok());
        OciExec {
            child,
            pid,
            runtime,
            exit: None,
            pid_file: None,
        }
    }

    /// Records the `--pid-file` the runtime was given; removed when the command ends.
    pub fn with_pid_file(mut self, path: PathBuf) -> OciExec {
        self.pid_file = Some(path);
        self
    }

    /// The command's own host pid, once the runtime wrote it.
    fn command_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_file.as_ref()?).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for OciExec {
    fn drop(&mut self) {
        if let Some(path) = &self.pid_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[async_trait::async_trait]
impl ExecProcess for OciExec {
    async fn wait(&mut self) -> Result<i32> {
        if let Some(code) = self.exit {
            return Ok(code);
        }
        let status = self.child.wait().await?;
        let code = match (status.code(), status.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => {
                return Err(DriverError::Runtime {
                    runtime: self.runtime.to_string(),
                    verb: "exec".into(),
                    stderr: format!("unexpected exit status {status}"),
                });
            }
        };
        self.exit = Some(code);
        Ok(code)
    }

    fn signal(&self, signal: i32) -> Result<()> {
        let sig = Signal::try_from(signal)
            .map_err(|_| DriverError::Invalid(format!("invalid signal {signal}")))?;
        // The runtime forwards what it can catch; SIGKILL and SIGSTOP it cannot, so they go
        // straight to the command when its pid is known.
        let direct = matches!(sig, Signal::SIGKILL | Signal::SIGSTOP)
            .then(|| self.command_pid())
            .flatten();
        let pid = match (self.exit, self.pid) {
            (None, Some(pid)) => direct.unwrap_or(pid),
            _ => return Err(DriverError::NotRunning),
        };
        kill(Pid::from_raw(pid), sig).map_err(|e| match e {
            nix::errno::Errno::ESRCH => DriverError::NotRunning,
            e => DriverError::Io(e.into()),
        })
    }
}

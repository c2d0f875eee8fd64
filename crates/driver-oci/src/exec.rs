//! A command running in an instance through `<runtime> exec`.

use std::os::unix::process::ExitStatusExt;

use drivers::{DriverError, ExecProcess, Result};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
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
        let pid = match (self.exit, self.pid) {
            (None, Some(pid)) => pid,
            _ => return Err(DriverError::NotRunning),
        };
        kill(Pid::from_raw(pid), sig).map_err(|e| match e {
            nix::errno::Errno::ESRCH => DriverError::NotRunning,
            e => DriverError::Io(e.into()),
        })
    }
}

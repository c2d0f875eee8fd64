//! Watching a host process by `/proc/<pid>/stat`, without spawning anything.
//!
//! A stopped container's PID 1 stays a zombie until its parent (the host's init, or a
//! subreaper) reaps it, and the runtimes count a zombie as stopped; so does this.

use std::time::{Duration, Instant};

/// A process identified by pid and start time, so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidWatch {
    pid: i32,
    start_time: u64,
}

/// State letter and start time (field 22) of `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some((state, start_time))
}

impl PidWatch {
    /// Starts watching `pid`; `None` when it does not run (or is a zombie already).
    pub fn new(pid: i32) -> Option<PidWatch> {
        match stat(pid)? {
            (state, _) if is_dead(state) => None,
            (_, start_time) => Some(PidWatch { pid, start_time }),
        }
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process still runs (not exited, not a zombie, pid not reused).
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((state, st)) if st == self.start_time && !is_dead(state))
    }

    /// Sends `signal` to the process through a pidfd, so that it reaches this process and no
    /// other that reused its pid. `Ok(true)`: sent; `Ok(false)`: the process is gone (exited
    /// or a zombie) and nothing was sent.
    ///
    /// # Errors
    ///
    /// When no pidfd can carry it: a signal outside the named set (real-time signals), a
    /// kernel without pidfds. Nothing was sent then; the caller may use another way.
    pub fn signal(&self, signal: i32) -> std::io::Result<bool> {
        use rustix::io::Errno;
        use rustix::process::{PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
        let sig = Signal::from_named_raw(signal).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("signal {signal} cannot be sent through a pidfd"),
            )
        })?;
        let Some(pid) = rustix::process::Pid::from_raw(self.pid) else {
            return Ok(false);
        };
        let fd = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(fd) => fd,
            Err(Errno::SRCH) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        // The pid may have been reused before the open: the fd is the watched process's only
        // if that process still lives now.
        if !self.alive() {
            return Ok(false);
        }
        match pidfd_send_signal(&fd, sig) {
            Ok(()) => Ok(true),
            Err(Errno::SRCH) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits until the process exits or `timeout` passes; returns whether it exited.
    ///
    /// Woken by the kernel through a pidfd the moment the process exits (a clean stop of a
    /// busybox container takes a few ms, and a polling interval would add to it); where no
    /// pidfd can be had, polls at 1 ms, growing to 5 ms, and to 20 ms after the first second.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        if !self.alive() {
            return true;
        }
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid)
            && let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK)
        {
            // The pid may have been reused between the check above and the open: the fd
            // is ours only if the watched process still lives now.
            if !self.alive() {
                return true;
            }
            // Deprecated because a generic `T: AsRawFd` could close or swap its fd while
            // registered; an `OwnedFd` owned by the `AsyncFd` cannot, which is exactly the
            // promise the unsafe replacement (`register_with_interest`) asks for.
            #[allow(deprecated)]
            if let Ok(afd) =
                tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)
            {
                return match tokio::time::timeout(timeout, afd.readable()).await {
                    Ok(Ok(_)) => true,
                    _ => !self.alive(),
                };
            }
        }
        self.poll_exit(timeout).await
    }

    /// [`PidWatch::wait_exit`] by polling `/proc`.
    async fn poll_exit(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        let mut interval = Duration::from_millis(1);
        loop {
            if !self.alive() {
                return true;
            }
            let elapsed = start.elapsed();
            if elapsed >= timeout {
                return false;
            }
            tokio::time::sleep(interval.min(timeout - elapsed)).await;
            let cap = if elapsed < Duration::from_secs(1) {
                5
            } else {
                20
            };
            interval = (interval + Duration::from_millis(1)).min(Duration::from_millis(cap));
        }
    }
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn sees_a_child_exit_and_signals_it_by_pidfd() {
        let me = PidWatch::new(i32::try_from(std::process::id()).unwrap()).unwrap();
        assert!(me.alive());
        let mut child = tokio::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let w = PidWatch::new(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
        assert!(!w.wait_exit(Duration::from_millis(20)).await);
        assert!(w.signal(libc::SIGKILL).unwrap());
        // Before the wait below reaps it, the child is a zombie: already counted as exited.
        assert!(w.wait_exit(Duration::from_secs(10)).await);
        child.wait().await.unwrap();
        assert!(!w.alive());
        // Gone: nothing is sent, to it or to a process that took its pid.
        assert!(!w.signal(libc::SIGKILL).unwrap());
    }
}

//! Whether an exec's command exists inside a running container, and what LXD answers when
//! it does not: exit status 127 `Command not found`, or 126 `Command not executable`
//! (LXD 5.0.2 turns these two exit statuses of any command into a failed operation that
//! still carries `metadata.return`).
//!
//! The command is resolved as the container's own `execvp` would: an absolute path as is,
//! a bare name through the exec's `PATH`, every path walked inside the container's root
//! (`openat2` with `RESOLVE_IN_ROOT` on `/proc/<pid>/root`, so its absolute symlinks stay in
//! it).

use std::os::fd::OwnedFd;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// Exit status of a command that was not found.
pub const NOT_FOUND: i32 = 127;

/// Exit status of a command that is not executable.
pub const NOT_EXECUTABLE: i32 = 126;

/// LXD's error for exit status `code` of an exec, when it is one that fails the operation.
pub fn failure(code: i32) -> Option<&'static str> {
    match code {
        NOT_FOUND => Some("Command not found"),
        NOT_EXECUTABLE => Some("Command not executable"),
        _ => None,
    }
}

/// [`NOT_FOUND`] or [`NOT_EXECUTABLE`] when `command` cannot run in the container whose
/// PID 1 is `pid` with `env`'s `PATH` and working directory `cwd`; `None` when it can, or
/// when that cannot be told (the runtime then answers). Blocking.
pub fn check(pid: u32, command: &str, env: &[String], cwd: &str) -> Option<i32> {
    let root = rustix::fs::open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let candidates: Vec<String> = if command.starts_with('/') {
        vec![command.to_string()]
    } else if command.contains('/') {
        vec![format!("{}/{command}", cwd.trim_end_matches('/'))]
    } else {
        env.iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or_default()
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{}/{command}", dir.trim_end_matches('/')))
            .collect()
    };
    let mut not_executable = false;
    for path in &candidates {
        match executable(&root, path) {
            Some(true) => return None,
            Some(false) => not_executable = true,
            None => {}
        }
    }
    Some(if not_executable {
        NOT_EXECUTABLE
    } else {
        NOT_FOUND
    })
}

/// `Some(true)` for an executable regular file at `path` under `root`, `Some(false)` for
/// something else there, `None` for nothing.
fn executable(root: &OwnedFd, path: &str) -> Option<bool> {
    let fd = rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
    Some(regular && st.st_mode & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxd_fails_two_exit_statuses() {
        assert_eq!(failure(127), Some("Command not found"));
        assert_eq!(failure(126), Some("Command not executable"));
        assert_eq!(failure(0), None);
        assert_eq!(failure(1), None);
    }

    #[test]
    fn commands_are_resolved_in_a_root() {
        // This process's own root stands in for a container's.
        let pid = std::process::id();
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert_eq!(check(pid, "sh", &env, "/"), None);
        assert_eq!(check(pid, "/bin/sh", &env, "/"), None);
        assert_eq!(check(pid, "drover-no-such-command", &env, "/"), Some(127));
        assert_eq!(check(pid, "/etc/passwd", &env, "/"), Some(126));
        assert_eq!(check(pid, "/etc", &env, "/"), Some(126));
    }
}

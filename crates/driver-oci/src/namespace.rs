//! The private mount namespace crun needs on hybrid-cgroup hosts.
//!
//! crun 1.8.1 refuses to run (`cgroups in hybrid mode not supported, drop all controllers
//! from cgroupv2`) while the cgroup2 mount at `/sys/fs/cgroup/unified` is visible and has
//! controllers. The daemon therefore moves itself, once, into a private mount namespace
//! without that mount ([`prepare_mount_namespace`]); every runtime process it spawns then
//! inherits a pure cgroup-v1 view. Every crun call for a container (create, start, state,
//! kill, delete, exec) must see the same view, which holds for all calls from that daemon and
//! for calls wrapped by [`crate::Isolation::UnshareWrapper`]. The host's mounts are not
//! changed.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

/// Where hybrid hosts mount cgroup2 next to the v1 controllers.
pub const HYBRID_CGROUP2: &str = "/sys/fs/cgroup/unified";

/// Moves the calling process into a private mount namespace without
/// [`HYBRID_CGROUP2`].
///
/// Call it at the very start of the daemon's `main`, while the process is still
/// single-threaded (before the tokio runtime starts): in a multithreaded process
/// `unshare(CLONE_NEWNS)` would move only the calling thread, so this refuses to run there.
/// It does `unshare(CLONE_NEWNS)`, makes `/`
/// recursively private (so nothing propagates back to the host), and lazily unmounts
/// [`HYBRID_CGROUP2`]. Returns `Ok(false)` without doing anything when the mount is not
/// there (pure v1 or pure v2 hosts), `Ok(true)` when it changed the namespace.
///
/// # Errors
///
/// The failing system call, or "multithreaded"; the process then still runs in the host's namespace, and
/// [`crate::Isolation::detect`] picks the wrapper for crun calls.
pub fn prepare_mount_namespace() -> std::io::Result<bool> {
    if !hybrid_cgroup2_mounted() {
        return Ok(false);
    }
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads > 1 {
        return Err(std::io::Error::other(format!(
            "cannot move a multithreaded process ({threads} threads) into a mount namespace"
        )));
    }
    unshare(CloneFlags::CLONE_NEWNS).map_err(std::io::Error::from)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(std::io::Error::from)?;
    umount2(HYBRID_CGROUP2, MntFlags::MNT_DETACH).map_err(std::io::Error::from)?;
    tracing::info!(
        path = HYBRID_CGROUP2,
        "moved into a private mount namespace without the hybrid cgroup2 mount"
    );
    Ok(true)
}

/// Whether [`HYBRID_CGROUP2`] is a mount point in the calling thread's mount namespace.
pub fn hybrid_cgroup2_mounted() -> bool {
    match std::fs::read_to_string("/proc/thread-self/mountinfo") {
        Ok(info) => mountinfo_has(&info, Path::new(HYBRID_CGROUP2)),
        Err(_) => false,
    }
}

/// Whether `mountinfo` (the text of `/proc/<pid>/mountinfo`) lists a mount at `path`.
fn mountinfo_has(mountinfo: &str, path: &Path) -> bool {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| Path::new(mp) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mount_points() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert!(mountinfo_has(info, Path::new(HYBRID_CGROUP2)));
        assert!(!mountinfo_has(&info[..70], Path::new(HYBRID_CGROUP2)));
    }

    #[test]
    fn applies_or_refuses_cleanly() {
        // Under a multithreaded test harness unshare must fail without half-applying; on a
        // single-threaded one it may succeed, which only affects this test process.
        let had = hybrid_cgroup2_mounted();
        match prepare_mount_namespace() {
            Ok(true) => assert!(had && !hybrid_cgroup2_mounted()),
            Ok(false) => assert!(!had),
            Err(e) => assert!(had && hybrid_cgroup2_mounted(), "unexpected error {e}"),
        }
    }
}

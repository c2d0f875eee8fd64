//! Host paths mounted into, and out of, a running container (LXD's disk hotplug).
//!
//! The host path is cloned into a detached mount tree (`open_tree`) in the daemon's mount
//! namespace; a short-lived thread then leaves the daemon's filesystem context
//! (`unshare(CLONE_FS)`), enters the container's mount namespace through
//! `/proc/<pid>/ns/mnt`, makes the mount point (resolved inside the container's root, so a
//! symlink in the container never leads out of it) and attaches the tree there
//! (`move_mount`). The thread ends right after, so no other work ever runs in the
//! container's namespace. Detaching unmounts the target the same way.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use drivers::{BindMount, DriverError, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

/// The mount namespace of the process `pid`.
fn mount_namespace(pid: i32) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/mnt");
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|e| DriverError::Invalid(format!("open {path}: {e}")))
}

/// Runs `work` on a new thread inside the mount namespace `ns` and returns its result.
fn in_namespace<T: Send + 'static>(
    ns: OwnedFd,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let worker = std::thread::spawn(move || {
        unshare(CloneFlags::CLONE_FS)
            .map_err(|e| DriverError::Invalid(format!("leave the daemon's fs context: {e}")))?;
        setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(|e| {
            DriverError::Invalid(format!("enter the instance's mount namespace: {e}"))
        })?;
        work()
    });
    worker
        .join()
        .map_err(|_| DriverError::Invalid("the mount thread panicked".into()))?
}

/// Makes the mount point `target` (a directory when `dir`, else an empty file) with its
/// parents, in the current root.
fn make_mount_point(target: &Path, dir: bool) -> std::io::Result<()> {
    if dir {
        return std::fs::create_dir_all(target);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(target)
        .map(drop)
}

/// Mounts `m.source` at `m.target` inside the running container whose PID 1 is `pid`.
///
/// # Errors
///
/// [`DriverError::Invalid`] when the source is missing, the target is not absolute, or a
/// mount call fails; nothing is left mounted then.
pub fn attach(pid: i32, m: &BindMount) -> Result<()> {
    if !m.target.starts_with('/') {
        return Err(DriverError::Invalid(format!(
            "mount target {:?} is not an absolute path",
            m.target
        )));
    }
    let meta = std::fs::metadata(&m.source)
        .map_err(|e| DriverError::Invalid(format!("source {}: {e}", m.source.display())))?;
    let tree = open_tree(
        CWD,
        &m.source,
        // One mount, not the filesystems below it (LXD's default `recursive=false`, as at
        // start): the read-only remount below then covers everything the container sees.
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| DriverError::Invalid(format!("clone {}: {e}", m.source.display())))?;
    let ns = mount_namespace(pid)?;
    let (target, readonly, dir) = (m.target.clone(), m.readonly, meta.is_dir());
    in_namespace(ns, move || {
        let at = Path::new(&target);
        make_mount_point(at, dir)
            .map_err(|e| DriverError::Invalid(format!("make mount point {target}: {e}")))?;
        move_mount(
            tree.as_fd(),
            "",
            CWD,
            at,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
        .map_err(|e| DriverError::Invalid(format!("mount at {target}: {e}")))?;
        if readonly {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            if let Err(e) = mount(None::<&str>, at, None::<&str>, flags, None::<&str>) {
                let _ = umount2(at, MntFlags::MNT_DETACH);
                return Err(DriverError::Invalid(format!(
                    "make {target} read-only: {e}"
                )));
            }
        }
        Ok(())
    })
}

/// Unmounts `target` inside the running container whose PID 1 is `pid` (lazily, as LXD
/// does: a process still using it keeps it until it lets go). Nothing mounted there is
/// not an error.
///
/// # Errors
///
/// [`DriverError::Invalid`] when the namespace cannot be entered or the unmount fails.
pub fn detach(pid: i32, target: &str) -> Result<()> {
    let ns = mount_namespace(pid)?;
    let target = target.to_string();
    in_namespace(ns, move || {
        match umount2(target.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(DriverError::Invalid(format!("unmount {target}: {e}"))),
        }
    })
}

//! The built-in busybox image, built once and shared by the test processes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use crate::prereq::{target_dir, workspace_root};

/// A fixed creation date, so every build yields the same bytes and fingerprint.
const SOURCE_DATE_EPOCH: &str = "1700000000";

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The unified busybox image tarball (`images/busybox/build.sh`), under
/// `<target>/drover-e2e/`.
///
/// Built at most once per test process; test processes share one file through a lock, and
/// rebuild it only when `build.sh` or `/bin/busybox` is newer. This blocks: call it from
/// `spawn_blocking` in async code.
///
/// # Panics
///
/// When the build fails (for instance without busybox-static).
pub fn busybox_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(build_shared).clone()
}

fn build_shared() -> PathBuf {
    let script = workspace_root().join("images/busybox/build.sh");
    let dir = target_dir().join("drover-e2e");
    std::fs::create_dir_all(&dir).expect("create the e2e image dir under target/");
    let lock_file = std::fs::File::create(dir.join("busybox.lock")).expect("create the lock");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the e2e image dir");
    let out = dir.join("busybox.tar.gz");
    let fresh = match mtime(&out) {
        Some(built) => [script.as_path(), Path::new("/bin/busybox")]
            .iter()
            .all(|src| mtime(src).is_some_and(|m| m <= built)),
        None => false,
    };
    if fresh {
        return out;
    }
    let tmp = dir.join(format!("busybox.{}.tar.gz", std::process::id()));
    let res = Command::new(&script)
        .arg(&tmp)
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .output()
        .expect("run images/busybox/build.sh");
    assert!(
        res.status.success(),
        "images/busybox/build.sh failed ({}): {}",
        res.status,
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the built image in place");
    out
}

//! Virtual machines in tests: whether QEMU is there, the busybox-vm image (built once and
//! shared by the test processes, like the busybox image), importing it, a VM's create
//! request, and killing the QEMUs a failed test leaves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};

use crate::Member;
use crate::prereq::{target_dir, workspace_root};

/// Whether `qemu-system-x86_64` is on `PATH`.
pub fn qemu_installed() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The unified busybox-vm image tarball (`images/busybox-vm/build.sh --unified`), under
/// `<target>/drover-e2e/`, rebuilt only when a file of `images/busybox-vm/` is newer. This
/// blocks: call it from `spawn_blocking` in async code.
///
/// # Panics
///
/// When the build fails (without the Debian kernel package or busybox-static).
pub fn busybox_vm_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(build_shared).clone()
}

fn build_shared() -> PathBuf {
    let src = workspace_root().join("images/busybox-vm");
    let dir = target_dir().join("drover-e2e");
    std::fs::create_dir_all(&dir).expect("create the e2e image dir under target/");
    let lock_file = std::fs::File::create(dir.join("busybox-vm.lock")).expect("create the lock");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the e2e image dir");
    let out = dir.join("busybox-vm.tar.gz");
    let fresh = mtime(&out).is_some_and(|built| {
        std::fs::read_dir(&src)
            .map(|entries| {
                entries
                    .flatten()
                    .all(|e| mtime(&e.path()).is_some_and(|m| m <= built))
            })
            .unwrap_or(false)
    });
    if fresh {
        return out;
    }
    let tmp = dir.join(format!("busybox-vm.{}.tar.gz", std::process::id()));
    let res = Command::new("sh")
        .arg(src.join("build.sh"))
        .arg("--unified")
        .arg(&tmp)
        .output()
        .expect("run images/busybox-vm/build.sh");
    assert!(
        res.status.success(),
        "images/busybox-vm/build.sh failed ({}): {}",
        res.status,
        String::from_utf8_lossy(&res.stderr)
    );
    std::fs::rename(&tmp, &out).expect("move the built image in place");
    out
}

/// Imports the busybox-vm image into `m` with alias `busybox-vm`; its fingerprint.
///
/// # Panics
///
/// When the build, the upload or the alias fails.
pub async fn import_busybox_vm(m: &Member) -> String {
    let path = tokio::task::spawn_blocking(busybox_vm_image)
        .await
        .expect("build the busybox-vm image");
    m.import_image(path, "busybox-vm").await
}

/// The create request of VM `name` from image alias `busybox-vm` with `limits.memory`
/// `memory`, its root disk on `pool`, started.
pub fn vm_request(name: &str, memory: &str, pool: &str) -> api::InstancesPost {
    api::InstancesPost {
        name: name.into(),
        kind: "virtual-machine".into(),
        source: api::instances::InstanceSource {
            kind: "image".into(),
            alias: "busybox-vm".into(),
            ..Default::default()
        },
        config: [("limits.memory".to_string(), memory.to_string())].into(),
        devices: [(
            "root".to_string(),
            [
                ("type".to_string(), "disk".to_string()),
                ("path".to_string(), "/".to_string()),
                ("pool".to_string(), pool.to_string()),
            ]
            .into(),
        )]
        .into(),
        start: true,
        ..Default::default()
    }
}

/// Kills, when dropped, every QEMU under the `vms/` of the given daemons' state dirs, so a
/// failed test leaves no VM behind.
#[derive(Debug)]
pub struct KillVms(pub Vec<PathBuf>);

impl KillVms {
    /// For the members `ms`.
    pub fn of(ms: &[Member]) -> Self {
        Self(ms.iter().map(|m| m.state_dir().join("vms")).collect())
    }
}

impl Drop for KillVms {
    fn drop(&mut self) {
        for root in &self.0 {
            let Ok(dirs) = std::fs::read_dir(root) else {
                continue;
            };
            for d in dirs.flatten() {
                if let Ok(pid) = std::fs::read_to_string(d.path().join("qemu.pid")) {
                    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                }
            }
        }
    }
}

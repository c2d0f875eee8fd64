//! Shared set-up of the QEMU integration tests: the busybox-vm image (built once per change
//! of its sources), instance volumes, drivers under TCG.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drivers::InstanceSpec;
use drover_driver_qemu::{AccelProbe, QemuDriver, find_qemu, install_image};

/// The qemu binary, or None after printing why the test is skipped.
pub fn qemu_or_skip(test: &str) -> Option<PathBuf> {
    match find_qemu() {
        Some(q) => Some(q),
        None => {
            eprintln!(
                "SKIPPED {test}: qemu-system-x86_64 is not installed (scripts/install-deps.sh installs it)"
            );
            None
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The built image directory (metadata.tar.gz + rootfs.img), built on first use; cached
/// under the target directory, keyed by the builder's sources.
pub fn image() -> PathBuf {
    let src = repo_root().join("images/busybox-vm");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in ["build.sh", "init", "agent"] {
        std::fs::read(src.join(f))
            .expect("image sources")
            .hash(&mut h);
    }
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = base.join(format!("busybox-vm-{:016x}", h.finish()));
    if dir.join("rootfs.img").is_file() {
        return dir;
    }
    let tmp = base.join(format!("busybox-vm-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = std::process::Command::new("sh")
        .arg(src.join("build.sh"))
        .arg(&tmp)
        .output()
        .expect("run build.sh");
    assert!(
        out.status.success(),
        "images/busybox-vm/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test process may have won the race: either copy is good.
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(dir.join("rootfs.img").is_file());
    dir
}

/// A fresh instance volume from the image.
pub fn volume(dir: &Path) -> PathBuf {
    let img = image();
    let vol = dir.join("volume");
    install_image(&img.join("metadata.tar.gz"), &img.join("rootfs.img"), &vol)
        .expect("install image");
    vol
}

/// A driver under TCG with runtime files in `root`.
pub async fn driver(qemu: &Path, root: &Path) -> QemuDriver {
    QemuDriver::new(qemu, root, AccelProbe::tcg("tests run under TCG"))
        .await
        .expect("driver")
}

/// The spec of VM `name` on `volume` with `memory`.
pub fn spec(name: &str, volume: &Path, memory: &str) -> InstanceSpec {
    let mut config = BTreeMap::new();
    config.insert("limits.memory".to_owned(), memory.to_owned());
    InstanceSpec {
        id: format!("default_{name}"),
        name: name.to_owned(),
        rootfs: volume.to_owned(),
        run_dir: volume.join("run"),
        config,
        init: vec![],
        env: vec![],
        mounts: vec![],
    }
}

/// Waits until `path` contains `needle`, at most `timeout`; returns the contents.
pub async fn wait_for_text(path: &Path, needle: &str, timeout: Duration) -> String {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{needle:?} not in {} within {timeout:?}; it has:\n{text}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `COUNT n` numbers in a console log, in order.
pub fn counts(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("COUNT "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

/// Kills, when dropped (also when a test panics), every QEMU whose runtime files are under
/// the given roots, so a failed test leaves no VM behind.
pub struct KillOnDrop(pub Vec<PathBuf>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for root in &self.0 {
            let Ok(dirs) = std::fs::read_dir(root) else {
                continue;
            };
            for d in dirs.flatten() {
                let paths = drover_driver_qemu::VmPaths { dir: d.path() };
                if let Some(pid) = drover_driver_qemu::vm::running_pid(&paths) {
                    eprintln!("killing leftover QEMU {pid} of {}", d.path().display());
                    drover_driver_qemu::vm::kill(pid);
                }
            }
        }
    }
}

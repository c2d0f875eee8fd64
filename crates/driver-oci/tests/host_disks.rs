//! Host-path disks (LXD's `disk` devices with a `source`) in real containers on crun and
//! runc: what a read-only one lets the container write.
//!
//! Needs root, `/bin/busybox` and the runtimes named by `DROVER_TEST_RUNTIMES` (default
//! `crun,runc`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TRAPPING_INIT, World, exec, init_tracing, runtime_under_test, start_ready};
use drivers::{BindMount, InstanceDriver};
use drover_driver_oci::RuntimeKind;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// A host directory with another filesystem (a tmpfs) mounted below it, unmounted on drop.
struct SourceWithSubmount {
    sub: std::path::PathBuf,
}

impl SourceWithSubmount {
    fn new(source: &Path) -> Self {
        let sub = source.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(source.join("top"), "top").unwrap();
        mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        std::fs::write(sub.join("below"), "below").unwrap();
        Self { sub }
    }
}

impl Drop for SourceWithSubmount {
    fn drop(&mut self) {
        let _ = umount2(&self.sub, MntFlags::MNT_DETACH);
    }
}

/// What does this test do?
/// - a host directory holds a file and, below it, another filesystem (a tmpfs)
/// - a container gets it read-only at start (`/mnt/boot`) and, running, hotplugged
///   (`/mnt/hot`), as `readonly=true` disk devices
/// - nothing can be written through either: not at the top, not below it (LXD mounts a
///   disk without `recursive=true` as one bind mount, so the tmpfs is not shown either)
async fn readonly_disk_is_readonly_all_the_way_down(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let source = world.dir.path().join("host-data");
    let _held = SourceWithSubmount::new(&source);
    let mut spec = world.instance("ro", TRAPPING_INIT, &[]);
    let disk = |target: &str| BindMount {
        source: source.clone(),
        target: target.into(),
        readonly: true,
    };
    spec.mounts = vec![disk("/mnt/boot")];

    tracing::info!("--- start with a read-only host disk, hotplug another");
    start_ready(&driver, &spec).await;
    driver
        .attach_mount(&spec.id, &disk("/mnt/hot"))
        .await
        .unwrap();

    for at in ["/mnt/boot", "/mnt/hot"] {
        tracing::info!(at, "--- the disk reads, and refuses every write");
        let r = exec(&driver, &spec.id, &["cat", &format!("{at}/top")]).await;
        assert_eq!((r.code, r.stdout.as_str()), (0, "top"), "{r:?}");
        for file in ["top", "new", "sub/below", "sub/new"] {
            let path = format!("{at}/{file}");
            let r = exec(
                &driver,
                &spec.id,
                &["sh", "-c", &format!("echo x >> {path}")],
            )
            .await;
            assert_ne!(r.code, 0, "{path} is writable in a read-only disk: {r:?}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(source.join("sub/below")).unwrap(),
        "below"
    );

    driver
        .stop(&spec.id, libc::SIGTERM, Duration::from_secs(10), false)
        .await
        .unwrap();
}

mod crun {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readonly_disk_is_readonly_all_the_way_down() {
        super::readonly_disk_is_readonly_all_the_way_down(drover_driver_oci::RuntimeKind::Crun)
            .await;
    }
}

mod runc {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readonly_disk_is_readonly_all_the_way_down() {
        super::readonly_disk_is_readonly_all_the_way_down(drover_driver_oci::RuntimeKind::Runc)
            .await;
    }
}

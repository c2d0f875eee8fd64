//! The `dir` storage pool.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use drover_storage::pool::{DirPool, PoolError};

use common::entries;

/// What does this test do?
/// - creates an empty volume (`source: none`), renames it, and deletes it twice
/// - refuses duplicate and invalid names
/// - a failed creation from an image without rootfs leaves nothing behind
#[test]
fn empty_volume_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    let containers = dir.path().join("pool/containers");
    assert_eq!(fs::metadata(&containers).unwrap().mode() & 0o777, 0o711);

    tracing::info!("--- create an empty volume");
    let vol = pool.create_empty_volume("e1").unwrap();
    assert_eq!(vol, containers.join("e1"));
    assert!(pool.rootfs_path("e1").is_dir());
    assert_eq!(fs::read_dir(pool.rootfs_path("e1")).unwrap().count(), 0);
    let e = pool.create_empty_volume("e1").unwrap_err();
    assert!(matches!(e, PoolError::AlreadyExists(_)), "{e}");

    tracing::info!("--- invalid names");
    for bad in ["", ".", "..", "a/b", ".tmp-x"] {
        let e = pool.create_empty_volume(bad).unwrap_err();
        assert!(matches!(e, PoolError::InvalidName(_)), "{bad}: {e}");
    }

    tracing::info!("--- rename");
    pool.create_empty_volume("e2").unwrap();
    let e = pool.rename_volume("e1", "e2").unwrap_err();
    assert!(matches!(e, PoolError::AlreadyExists(_)), "{e}");
    pool.rename_volume("e1", "e3").unwrap();
    assert!(!pool.volume_exists("e1") && pool.volume_exists("e3"));
    let e = pool.rename_volume("e1", "e4").unwrap_err();
    assert!(matches!(e, PoolError::NotFound(_)), "{e}");

    tracing::info!("--- a failed creation leaves nothing");
    let e = pool
        .create_volume_from_image("c1", &dir.path().join("no-such-image"))
        .unwrap_err();
    assert!(matches!(e, PoolError::NoImageRootfs(_)), "{e}");
    assert!(!pool.volume_exists("c1"));

    tracing::info!("--- delete, idempotently");
    pool.delete_volume("e2").unwrap();
    pool.delete_volume("e3").unwrap();
    pool.delete_volume("e3").unwrap();
    assert!(entries(&containers).is_empty());
    assert!(matches!(
        pool.volume_size("e3"),
        Err(PoolError::NotFound(_))
    ));
}

/// What does this test do?
/// - copies an image rootfs with a hard link, a symlink, a setuid file and a non-root owner
/// - checks the copy preserves them and is independent of the image
/// - a leftover temp directory is removed when the pool is reopened
#[test]
fn volume_from_image_preserves_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let rootfs = image.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::write(rootfs.join("bin/tool"), b"tool").unwrap();
    fs::hard_link(rootfs.join("bin/tool"), rootfs.join("bin/tool2")).unwrap();
    std::os::unix::fs::symlink("/bin/tool", rootfs.join("bin/ln")).unwrap();
    fs::set_permissions(
        rootfs.join("bin/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::chown(rootfs.join("bin"), Some(1000), Some(1001)).unwrap();

    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    pool.create_volume_from_image("c1", &image).unwrap();
    let root = pool.rootfs_path("c1");
    let tool = fs::metadata(root.join("bin/tool")).unwrap();
    assert_eq!(tool.mode() & 0o7777, 0o4755);
    assert_eq!(
        tool.ino(),
        fs::metadata(root.join("bin/tool2")).unwrap().ino()
    );
    assert_ne!(
        tool.ino(),
        fs::metadata(rootfs.join("bin/tool")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(root.join("bin/ln")).unwrap().to_str(),
        Some("/bin/tool")
    );
    let bin = fs::metadata(root.join("bin")).unwrap();
    assert_eq!((bin.uid(), bin.gid()), (1000, 1001));

    fs::write(root.join("bin/tool"), b"changed").unwrap();
    assert_eq!(fs::read(rootfs.join("bin/tool")).unwrap(), b"tool");

    fs::create_dir_all(dir.path().join("pool/containers/.tmp-c2-1-1/rootfs")).unwrap();
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    assert_eq!(
        entries(&dir.path().join("pool/containers")),
        vec!["c1".to_owned()]
    );
    assert!(pool.volume_size("c1").unwrap() > 0);
    let usage = pool.usage().unwrap();
    assert!(usage.total > 0 && usage.used <= usage.total && usage.available <= usage.total);
}

//! Copying a volume within a pool: `lxc copy c1 c2` on one member.
#![allow(clippy::unwrap_used)]

mod tree;

use std::fs;

use drover_storage::pool::{DirPool, PoolError};
use tree::{Unmount, assert_same, image};

/// What does this test do?
/// - a layered volume with own changes (a new file, a deletion) is copied: the copy looks
///   exactly like the source, stays on the same base and has its own upper layer
/// - a write in the copy does not reach the source, nor the other way round
/// - a plain (shared-fs style) volume is copied whole
/// - copying onto an existing volume or from a missing one fails and leaves nothing
#[test]
fn a_copied_volume_looks_like_its_source_and_lives_its_own_life() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    let _unmount = Unmount(vec![pool.clone()]);

    tracing::info!("--- a layered volume with own changes, copied");
    let root1 = pool.create_volume_on_image("c1", "fp1", &img).unwrap();
    let rootfs1 = root1.join("rootfs");
    fs::write(rootfs1.join("etc/added"), "mine\n").unwrap();
    fs::remove_file(rootfs1.join("etc/deep/er/conf")).unwrap();
    pool.copy_volume("c1", "c2").unwrap();
    let rootfs2 = pool.mount_rootfs("c2").unwrap();
    assert_same(&rootfs1, &rootfs2);
    assert_eq!(pool.volume_base("c2").unwrap().as_deref(), Some("fp1"));
    assert!(pool.volume_path("c2").join("upper/etc/added").is_file());

    tracing::info!("--- each lives its own life");
    fs::write(rootfs2.join("etc/added"), "theirs\n").unwrap();
    fs::write(rootfs1.join("etc/only-c1"), "x").unwrap();
    assert_eq!(
        fs::read_to_string(rootfs1.join("etc/added")).unwrap(),
        "mine\n"
    );
    assert!(!rootfs2.join("etc/only-c1").exists());

    tracing::info!("--- a plain volume is copied whole");
    let plain = pool.create_volume_from_image("p1", &img).unwrap();
    pool.copy_volume("p1", "p2").unwrap();
    assert_eq!(pool.volume_base("p2").unwrap(), None);
    assert_same(
        &plain.join("rootfs"),
        &pool.volume_path("p2").join("rootfs"),
    );

    tracing::info!("--- refusals leave nothing");
    assert!(matches!(
        pool.copy_volume("c1", "p1"),
        Err(PoolError::AlreadyExists(_))
    ));
    assert!(matches!(
        pool.copy_volume("nosuch", "c3"),
        Err(PoolError::NotFound(_))
    ));
    assert!(!pool.volume_exists("c3"));
    let left: Vec<String> = fs::read_dir(pool.source().join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["c1", "c2", "p1", "p2"]);
}

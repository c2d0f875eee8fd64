//! Volumes layered on an image base (overlayfs): what the instance sees, what a move sends.
#![allow(clippy::unwrap_used)]

mod tree;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use drover_storage::pool::{DirPool, PoolError};
use drover_storage::transfer::{receive, send_full};
use tree::{Unmount, assert_same, image, snapshot, write_random};

/// What does this test do?
/// - layers two volumes on one image: each rootfs looks exactly like the image
/// - writes through one instance (a hard-linked file, a deletion, a replaced directory, a
///   chmod) change neither the base nor the other instance
/// - the own changes are whiteouts, opaque dirs and copied-up files in `upper/`
/// - the base outlives its last volume and goes when pruned; a retired (deleted, files not
///   yet removed) volume no longer exists and does not hold its base
#[test]
fn layered_volume_looks_like_a_copy_and_never_writes_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    let _unmount = Unmount(vec![pool.clone()]);

    tracing::info!("--- two volumes on one image");
    pool.create_volume_on_image("c1", "fp1", &img).unwrap();
    pool.create_volume_on_image("c2", "fp1", &img).unwrap();
    assert!(pool.has_base("fp1"));
    assert_eq!(pool.volume_base("c1").unwrap().as_deref(), Some("fp1"));
    let r1 = pool.mount_rootfs("c1").unwrap();
    let r2 = pool.mount_rootfs("c2").unwrap();
    assert_same(&img.join("rootfs"), &r1);
    assert_same(&img.join("rootfs"), &r2);
    let e = pool.create_volume_on_image("c1", "fp1", &img).unwrap_err();
    assert!(matches!(e, PoolError::AlreadyExists(_)), "{e}");

    tracing::info!("--- the instance changes its files");
    let base_before = snapshot(&pool.base_path("fp1").join("rootfs"));
    fs::write(r1.join("bin/busybox"), b"patched in place").unwrap();
    fs::remove_file(r1.join("etc/f010")).unwrap();
    fs::remove_dir_all(r1.join("etc/deep")).unwrap();
    fs::create_dir(r1.join("etc/deep")).unwrap();
    fs::write(r1.join("etc/deep/new"), b"n").unwrap();
    fs::set_permissions(
        r1.join("etc/f011"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_eq!(
        fs::read(r1.join("bin/busybox")).unwrap(),
        b"patched in place"
    );

    tracing::info!("--- neither the base nor the other instance changed");
    assert_eq!(snapshot(&pool.base_path("fp1").join("rootfs")), base_before);
    assert_same(&img.join("rootfs"), &r2);

    tracing::info!("--- own changes are in upper/");
    let upper = pool.volume_path("c1").join("upper");
    let wh = fs::symlink_metadata(upper.join("etc/f010")).unwrap();
    assert_eq!((wh.mode() & 0o170000, wh.rdev()), (0o020000, 0), "whiteout");
    assert_eq!(
        xattr::get(upper.join("etc/deep"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(pool.volume_size("c1").unwrap() < 1 << 20);

    tracing::info!("--- rename remounts under the new name");
    pool.rename_volume("c2", "c3").unwrap();
    assert_same(&img.join("rootfs"), &pool.mount_rootfs("c3").unwrap());

    tracing::info!("--- the base outlives its last volume, until pruned");
    pool.delete_volume("c1").unwrap();
    assert!(!pool.prune_base("fp1").unwrap(), "c3 still uses it");
    assert!(pool.has_base("fp1"));
    let retired = pool.retire_volume("c3").unwrap().unwrap();
    assert!(!pool.volume_exists("c3"));
    assert!(pool.has_base("fp1"));
    assert_eq!(
        pool.prune_bases(|fp| fp == "fp1").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        pool.prune_bases(|_| false).unwrap(),
        vec!["fp1".to_string()]
    );
    assert!(!pool.has_base("fp1"));
    retired.remove().unwrap();
    assert!(pool.retire_volume("c3").unwrap().is_none());
}

/// What does this test do?
/// - an instance with 1 MiB of own changes moves by sending its volume directory: the
///   stream carries ≈ 1 MiB, not the image
/// - on a target pool without the base the received volume cannot be mounted (NoBase);
///   once the base is there, the merged view equals the source's exactly
/// - a full export (base merged) of the same volume is still possible and exact
#[test]
fn moving_a_layered_volume_sends_only_its_own_changes() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    write_random(&img.join("rootfs/big-image-file"), 4 << 20);
    let src = DirPool::new(dir.path().join("src")).unwrap();
    let dst = DirPool::new(dir.path().join("dst")).unwrap();
    let _unmount = Unmount(vec![src.clone(), dst.clone()]);
    src.create_volume_on_image("c1", "fp1", &img).unwrap();
    let root = src.mount_rootfs("c1").unwrap();
    write_random(&root.join("own-1mib"), 1 << 20);
    fs::remove_file(root.join("etc/f020")).unwrap();

    tracing::info!("--- send the volume directory into the target's staging");
    let staging = dst.stage("c1").unwrap();
    let mut stream = Vec::new();
    let sent = send_full(&src.volume_path("c1"), &mut stream).unwrap();
    assert!(
        sent.bytes >= 1 << 20 && sent.bytes < (1 << 20) + 64 * 1024,
        "{}",
        sent.bytes
    );
    assert!(
        (stream.len() as u64) < (1 << 20) + 64 * 1024,
        "{}",
        stream.len()
    );
    receive(&staging, stream.as_slice()).unwrap();
    dst.commit("c1").unwrap();

    tracing::info!("--- without the base the volume cannot be used");
    let e = dst.mount_rootfs("c1").unwrap_err();
    assert!(matches!(e, PoolError::NoBase(ref fp) if fp == "fp1"), "{e}");

    tracing::info!("--- with it, the instance sees exactly what it saw on the source");
    dst.ensure_base("fp1", &img).unwrap();
    let moved = dst.mount_rootfs("c1").unwrap();
    assert_same(&root, &moved);

    tracing::info!("--- a full export merges the base");
    let export = dir.path().join("export");
    fs::create_dir(&export).unwrap();
    let mut full = Vec::new();
    let sent = send_full(&moved, &mut full).unwrap();
    assert!(sent.bytes > 5 << 20);
    receive(&export, full.as_slice()).unwrap();
    assert_same(&root, &export);
}

/// What does this test do?
/// - creating a layered volume is faster than today's full copy of the same image
///   (medians of 9 interleaved runs; the image has ~320 entries like busybox)
#[test]
fn creation_is_faster_than_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    pool.ensure_base("fp1", &img).unwrap();
    let _unmount = Unmount(vec![pool.clone()]);
    let (mut layered, mut copied) = (Vec::new(), Vec::new());
    for i in 0..9 {
        let t = Instant::now();
        pool.create_volume_on_image(&format!("l{i}"), "fp1", &img)
            .unwrap();
        layered.push(t.elapsed());
        let t = Instant::now();
        pool.create_volume_from_image(&format!("c{i}"), &img)
            .unwrap();
        copied.push(t.elapsed());
    }
    layered.sort();
    copied.sort();
    eprintln!(
        "create: layered median {:?}, full copy median {:?}",
        layered[4], copied[4]
    );
    assert!(layered[4] < copied[4], "{layered:?} vs {copied:?}");
    for i in 0..9 {
        pool.delete_volume(&format!("l{i}")).unwrap();
        pool.delete_volume(&format!("c{i}")).unwrap();
    }
    assert!(pool.prune_base("fp1").unwrap());
    assert!(!pool.has_base("fp1"));
}

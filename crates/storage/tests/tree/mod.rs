//! Trees of real files for the transfer and overlay tests, and exact comparison of two.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use drover_storage::pool::DirPool;
use nix::sys::stat::{Mode, SFlag, mknod};
use sha2::{Digest, Sha256};

/// Everything observable about one entry; two trees are "the same" when their maps are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desc {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// mtime; not compared for symlinks' parents of changes… compared for all.
    mtime: (i64, i64),
    size: u64,
    sha256: String,
    link: String,
    rdev: u64,
    xattrs: Vec<(String, Vec<u8>)>,
    /// The first path (in sorted order) of the same inode, for multiply-linked files.
    inode_group: String,
}

/// Describes every entry under `root` (the root itself as "").
pub fn snapshot(root: &Path) -> BTreeMap<String, Desc> {
    let mut out = BTreeMap::new();
    let mut first_of_inode: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut all = Vec::new();
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let m = fs::symlink_metadata(&abs).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&abs).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        all.push((rel, m));
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (rel, m) in all {
        let abs = root.join(&rel);
        let key = rel.to_string_lossy().into_owned();
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let sha256 = if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = fs::File::open(&abs).unwrap();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            hex::encode(h.finalize())
        } else {
            String::new()
        };
        let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(&abs)
            .unwrap()
            .map(|n| {
                let v = xattr::get(&abs, &n).unwrap().unwrap_or_default();
                (n.to_string_lossy().into_owned(), v)
            })
            .collect();
        xattrs.sort();
        let inode_group = if !ft.is_dir() && m.nlink() > 1 {
            first_of_inode.entry(m.ino()).or_insert(key.clone()).clone()
        } else {
            String::new()
        };
        out.insert(
            key,
            Desc {
                kind,
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                size: if ft.is_dir() { 0 } else { m.size() },
                sha256,
                link: if ft.is_symlink() {
                    fs::read_link(&abs).unwrap().to_string_lossy().into_owned()
                } else {
                    String::new()
                },
                rdev: m.rdev(),
                xattrs,
                inode_group,
            },
        );
    }
    out
}

pub fn assert_same(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    assert_eq!(sa.len(), sb.len(), "entry counts differ");
    for (k, v) in &sa {
        assert_eq!(Some(v), sb.get(k), "entry {k:?} differs");
    }
}

/// Random bytes (from the kernel: a debug-build generator would be slow).
pub fn write_random(path: &Path, len: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut r = fs::File::open("/dev/urandom").unwrap().take(len);
    std::io::copy(&mut r, &mut f).unwrap();
}

pub fn set_mtime(path: &Path, s: i64, ns: i64) {
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &nix::sys::time::TimeSpec::new(s, ns),
        &nix::sys::time::TimeSpec::new(s, ns),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// A tree with one of everything a container rootfs or an overlay upper dir holds.
pub fn build_tree(root: &Path, big: u64) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc/deep/er")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::create_dir_all(root.join("opaque/kept")).unwrap();
    fs::write(root.join("bin/busybox"), b"#!/bin/sh\necho hi\n").unwrap();
    for name in ["ls", "sh", "cat"] {
        fs::hard_link(root.join("bin/busybox"), root.join("bin").join(name)).unwrap();
    }
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
    symlink("busybox", root.join("bin/vi")).unwrap();
    symlink("/no/such/target", root.join("bin/dangling")).unwrap();
    fs::write(root.join("etc/empty"), b"").unwrap();
    fs::write(root.join("etc/deep/er/conf"), b"a=1\n").unwrap();
    for i in 0..300 {
        fs::write(
            root.join("etc").join(format!("f{i:03}")),
            format!("file {i}\n").repeat(i),
        )
        .unwrap();
    }
    std::os::unix::fs::chown(root.join("etc/deep"), Some(1000), Some(1001)).unwrap();
    std::os::unix::fs::lchown(root.join("bin/vi"), Some(1002), Some(1003)).unwrap();
    fs::set_permissions(root.join("etc/deep/er"), fs::Permissions::from_mode(0o1777)).unwrap();
    mknod(
        &root.join("dev/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    mknod(
        &root.join("dev/loop9"),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(7, 9),
    )
    .unwrap();
    mknod(
        &root.join("dev/fifo"),
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o640),
        0,
    )
    .unwrap();
    // An overlayfs whiteout and an opaque directory.
    mknod(&root.join("etc/whiteout"), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    xattr::set(root.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(root.join("etc/empty"), "user.note", b"hello").unwrap();
    xattr::set(root.join("etc/empty"), "trusted.big", &[7u8; 3000]).unwrap();
    if big > 0 {
        write_random(&root.join("big.bin"), big);
    }
    set_mtime(&root.join("etc/f001"), 1_000_000_000, 123_456_789);
    set_mtime(&root.join("bin/vi"), 1_100_000_000, 5);
    set_mtime(&root.join("etc/deep"), 1_200_000_000, 0);
    set_mtime(root, 1_300_000_000, 0);
}

/// Unmounts every volume of its pools when dropped, also when a test panics, so no mount
/// outlives the test's temp dir.
pub struct Unmount(pub Vec<DirPool>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for pool in &self.0 {
            let Ok(rd) = fs::read_dir(pool.source().join("containers")) else {
                continue;
            };
            for e in rd.flatten() {
                let _ = pool.unmount_rootfs(&e.file_name().to_string_lossy());
            }
        }
    }
}

/// An unpacked image directory (`<dir>/img/rootfs`) with one of everything an image has.
pub fn image(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("img");
    build_tree(&img.join("rootfs"), 0);
    // A lower layer's char 0:0 is a whiteout and trusted.overlay.* its own metadata, which
    // overlayfs hides; images have neither.
    fs::remove_file(img.join("rootfs/etc/whiteout")).unwrap();
    xattr::remove(img.join("rootfs/opaque"), "trusted.overlay.opaque").unwrap();
    img
}

//! Image import from real busybox tarballs built by `images/busybox/build.sh`, and from
//! crafted bad inputs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use drover_storage::DirPool;
use drover_storage::image::{ImageError, ImageStore, ImportOptions};
use drover_storage::template::{InstanceMeta, TemplateContext, TemplateTrigger, apply_templates};

use common::{METADATA, TarBuilder, entries};

fn ctx(name: &str) -> TemplateContext {
    TemplateContext {
        instance: InstanceMeta {
            name: name.into(),
            architecture: "x86_64".into(),
            ..InstanceMeta::default()
        },
        ..TemplateContext::default()
    }
}

fn check_busybox_rootfs(rootfs: &Path) {
    let bb = fs::metadata(rootfs.join("bin/busybox")).unwrap();
    assert!(
        bb.is_file() && bb.mode() & 0o111 != 0,
        "bin/busybox is executable"
    );
    assert_eq!((bb.uid(), bb.gid()), (0, 0));
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(rootfs.join("usr/bin/env")).unwrap(),
        Path::new("/bin/busybox")
    );
    let init = fs::symlink_metadata(rootfs.join("sbin/init")).unwrap();
    assert!(
        init.is_file() && init.mode() & 0o111 != 0,
        "sbin/init is an executable script"
    );
    assert_eq!(
        fs::metadata(rootfs.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(rootfs.join("root")).unwrap().mode() & 0o7777,
        0o700
    );
}

/// What does this test do?
/// - builds the busybox image as unified and as split tarballs
/// - imports both; each fingerprint equals an independent SHA-256 of the file(s)
/// - checks metadata, templates, the unpacked rootfs and the on-disk layout
/// - creates a volume from the image, applies `create` templates for `c1`, checks
///   `/etc/hostname` and `/etc/hosts`, then deletes the volume and both images
#[test]
fn busybox_unified_and_split_import_story() {
    let dir = tempfile::tempdir().unwrap();
    let build = dir.path().join("build");
    fs::create_dir(&build).unwrap();
    let store = ImageStore::new(dir.path().join("images")).unwrap();
    let pool = DirPool::new(dir.path().join("pool")).unwrap();

    tracing::info!("--- build the unified and split images");
    let unified = common::build_unified(&build);
    let (meta, rootfs) = common::build_split(&build);

    tracing::info!("--- import the unified image");
    let opts = ImportOptions {
        expected_fingerprint: Some(common::sha256(&[&unified]).to_uppercase()),
        filename: Some("busybox.tar.gz".into()),
    };
    let u = store.import_unified(&unified, &opts).unwrap();
    assert_eq!(u.fingerprint, common::sha256(&[&unified]));
    assert_eq!(u.size, fs::metadata(&unified).unwrap().len());
    assert_eq!(u.filename, "busybox.tar.gz");
    assert_eq!(u.architecture, "x86_64");
    assert_eq!(u.kind, "container");
    assert!(!u.split);
    assert!(u.creation_date > 1_600_000_000);
    assert_eq!(u.properties["os"], "busybox");
    assert_eq!(u.properties["name"], "busybox");
    assert!(u.properties["release"].starts_with('v'));
    assert_eq!(
        u.properties["description"],
        "drover busybox (Debian busybox-static)"
    );
    let hostname = &u.templates["/etc/hostname"];
    assert_eq!(hostname.template, "hostname.tpl");
    assert_eq!(
        hostname.when,
        vec![TemplateTrigger::Create, TemplateTrigger::Copy]
    );
    assert!(u.templates.contains_key("/etc/hosts"));
    assert!(unified.exists(), "the upload file is left to the caller");
    let unpacked = store.unpacked_dir(&u.fingerprint);
    check_busybox_rootfs(&unpacked.join("rootfs"));
    assert!(unpacked.join("metadata.yaml").is_file());
    assert!(unpacked.join("templates/hosts.tpl").is_file());

    tracing::info!("--- import the split image");
    let s = store
        .import_split(&meta, &rootfs, &ImportOptions::default())
        .unwrap();
    assert_eq!(s.fingerprint, common::sha256(&[&meta, &rootfs]));
    assert_ne!(s.fingerprint, u.fingerprint);
    assert!(s.split);
    assert_eq!(
        s.size,
        fs::metadata(&meta).unwrap().len() + fs::metadata(&rootfs).unwrap().len()
    );
    assert_eq!(s.templates, u.templates);
    check_busybox_rootfs(&store.unpacked_dir(&s.fingerprint).join("rootfs"));
    let root_mode = fs::metadata(store.unpacked_dir(&s.fingerprint).join("rootfs"))
        .unwrap()
        .mode();
    assert_eq!(
        root_mode & 0o7777,
        0o755,
        "the rootfs tarball's ./ entry sets the mode"
    );

    tracing::info!("--- the layout is LXD's and get/list read it back");
    let mut expected = vec![
        u.fingerprint.clone(),
        format!("{}.unpacked", u.fingerprint),
        s.fingerprint.clone(),
        format!("{}.rootfs", s.fingerprint),
        format!("{}.unpacked", s.fingerprint),
    ];
    expected.sort();
    assert_eq!(entries(store.dir()), expected);
    let mut listed = vec![u.fingerprint.clone(), s.fingerprint.clone()];
    listed.sort();
    assert_eq!(store.list().unwrap(), listed);
    let again = store.get(&s.fingerprint).unwrap();
    assert_eq!((again.size, again.split), (s.size, true));
    assert_eq!(again.properties, s.properties);
    let reopened = ImageStore::new(store.dir()).unwrap();
    assert_eq!(
        reopened.list().unwrap(),
        listed,
        "reopening keeps complete images"
    );

    tracing::info!("--- importing the same image again is refused");
    let e = store
        .import_unified(&unified, &ImportOptions::default())
        .unwrap_err();
    assert!(matches!(e, ImageError::AlreadyExists(_)), "{e}");

    tracing::info!("--- create volume c1 and apply the create templates");
    let vol = pool.create_volume_from_image("c1", &unpacked).unwrap();
    assert_eq!(vol, pool.volume_path("c1"));
    let root = pool.rootfs_path("c1");
    check_busybox_rootfs(&root);
    apply_templates(
        &unpacked,
        &u.templates,
        &root,
        TemplateTrigger::Create,
        &ctx("c1"),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "c1\n"
    );
    let hosts = fs::read_to_string(root.join("etc/hosts")).unwrap();
    assert!(hosts.contains("127.0.0.1 localhost\n"), "{hosts}");
    assert!(hosts.contains("127.0.1.1 c1\n"), "{hosts}");
    assert!(pool.volume_size("c1").unwrap() > 1_000_000);
    let image_hostname = unpacked.join("rootfs/etc/hostname");
    assert_eq!(fs::read_to_string(image_hostname).unwrap(), "busybox\n");

    tracing::info!("--- delete the volume and the images");
    pool.delete_volume("c1").unwrap();
    assert!(!pool.volume_exists("c1"));
    store.delete(&u.fingerprint).unwrap();
    store.delete(&s.fingerprint).unwrap();
    store.delete(&s.fingerprint).unwrap();
    assert!(entries(store.dir()).is_empty());
    assert!(store.list().unwrap().is_empty());
}

/// Imports `bytes` as a unified image into a fresh store; returns the error and checks the
/// store directory is empty afterwards.
fn import_fails(bytes: &[u8], opts: &ImportOptions) -> ImageError {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path().join("images")).unwrap();
    let upload = dir.path().join("upload");
    fs::write(&upload, bytes).unwrap();
    let e = store.import_unified(&upload, opts).unwrap_err();
    assert!(entries(store.dir()).is_empty(), "nothing left after: {e}");
    assert!(upload.exists());
    e
}

fn unified_with(metadata: &str) -> TarBuilder {
    TarBuilder::new()
        .file("metadata.yaml", 0o644, metadata.as_bytes())
        .dir("rootfs", 0o755)
        .file("rootfs/hello", 0o644, b"hi")
}

/// What does this test do?
/// - feeds malformed uploads to the importer, one per kind of mistake
/// - each gives its typed error with a lowercase message and leaves the store empty
#[test]
fn bad_inputs_are_typed_errors_and_leave_nothing_behind() {
    let none = ImportOptions::default();

    tracing::info!("--- random bytes");
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let e = import_fails(&random, &none);
    assert!(matches!(e, ImageError::NotATarball { .. }), "{e}");
    assert!(e.to_string().contains("is not a tarball"), "{e}");

    tracing::info!("--- gzip'd garbage");
    let mut gz = vec![0x1f, 0x8b];
    gz.extend_from_slice(&random);
    let e = import_fails(&gz, &none);
    assert!(matches!(e, ImageError::CorruptTarball { .. }), "{e}");

    tracing::info!("--- squashfs and bzip2");
    let e = import_fails(b"hsqs\0\0\0\0 squash", &none);
    assert!(matches!(e, ImageError::Squashfs { .. }), "{e}");
    let e = import_fails(b"BZh91AY&SY", &none);
    assert!(
        matches!(
            e,
            ImageError::UnsupportedCompression {
                compression: "bzip2",
                ..
            }
        ),
        "{e}"
    );

    tracing::info!("--- a tarball without metadata.yaml");
    let tar = TarBuilder::new()
        .dir("rootfs", 0o755)
        .file("rootfs/a", 0o644, b"a")
        .tar_gz();
    let e = import_fails(&tar, &none);
    assert!(matches!(e, ImageError::NoMetadata), "{e}");
    assert_eq!(e.to_string(), "image has no metadata.yaml");

    tracing::info!("--- bad yaml, no architecture, unknown architecture, no rootfs");
    let e = import_fails(&unified_with("architecture: [unclosed\n").tar_gz(), &none);
    assert!(matches!(e, ImageError::BadMetadata(_)), "{e}");
    let e = import_fails(&unified_with("creation_date: 1\n").tar_gz(), &none);
    assert!(matches!(e, ImageError::MissingArchitecture), "{e}");
    let e = import_fails(&unified_with("architecture: vax\n").tar_gz(), &none);
    assert!(matches!(e, ImageError::UnknownArchitecture(_)), "{e}");
    let tar = TarBuilder::new()
        .file("metadata.yaml", 0o644, METADATA.as_bytes())
        .tar();
    let e = import_fails(&tar, &none);
    assert!(matches!(e, ImageError::NoRootfs), "{e}");

    tracing::info!("--- fingerprint mismatch");
    let good = unified_with(METADATA).tar_gz();
    let wrong = ImportOptions {
        expected_fingerprint: Some("0".repeat(64)),
        filename: None,
    };
    let e = import_fails(&good, &wrong);
    assert!(matches!(e, ImageError::FingerprintMismatch { .. }), "{e}");
    assert!(
        e.to_string()
            .starts_with("fingerprint mismatch: expected 000"),
        "{e}"
    );

    tracing::info!("--- path traversal");
    let evil = unified_with(METADATA)
        .file("rootfs/../../evil", 0o644, b"x")
        .tar_gz();
    let e = import_fails(&evil, &none);
    assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
    let evil = unified_with(METADATA)
        .link(
            tar::EntryType::Link,
            "rootfs/passwd",
            "../../../../etc/passwd",
        )
        .tar_gz();
    let e = import_fails(&evil, &none);
    assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
    // A symlinked directory pointing out, then a file written through it.
    let evil = unified_with(METADATA)
        .link(tar::EntryType::Symlink, "rootfs/out", "/tmp")
        .file("rootfs/out/drover-evil", 0o644, b"x")
        .tar_gz();
    let e = import_fails(&evil, &none);
    assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
    assert!(!Path::new("/tmp/drover-evil").exists());
}

/// What does this test do?
/// - imports plain-tar and xz unified images with device nodes, a FIFO, hard links, a
///   setuid file, an absolute symlink and a `./`-prefixed layout
/// - checks each kind of entry is recreated faithfully
#[test]
fn plain_and_xz_tarballs_keep_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::new(dir.path().join("images")).unwrap();
    let tar = TarBuilder::new()
        .file("./metadata.yaml", 0o644, METADATA.as_bytes())
        .dir("./rootfs", 0o755)
        .dir("./rootfs/dev", 0o755)
        .node(tar::EntryType::Char, "./rootfs/dev/null", 0o666, 1, 3)
        .node(tar::EntryType::Block, "./rootfs/dev/loop9", 0o660, 7, 9)
        .node(tar::EntryType::Fifo, "./rootfs/dev/fifo", 0o600, 0, 0)
        .dir("./rootfs/bin", 0o555)
        .file("./rootfs/bin/su", 0o4755, b"#!/bin/sh\n")
        .link(tar::EntryType::Link, "./rootfs/bin/su2", "rootfs/bin/su")
        .link(tar::EntryType::Symlink, "./rootfs/bin/abs", "/etc/passwd")
        .tar();

    tracing::info!("--- plain tar");
    let plain = dir.path().join("plain.tar");
    fs::write(&plain, &tar).unwrap();
    let img = store
        .import_unified(&plain, &ImportOptions::default())
        .unwrap();
    assert_eq!(img.architecture, "x86_64", "amd64 is normalised");
    assert_eq!(
        img.properties["release"], "12",
        "numeric yaml values become strings"
    );
    let root = store.unpacked_dir(&img.fingerprint).join("rootfs");
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = fs::symlink_metadata(root.join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert!(
        fs::symlink_metadata(root.join("dev/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    let su = fs::metadata(root.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    assert_eq!(su.ino(), fs::metadata(root.join("bin/su2")).unwrap().ino());
    assert_eq!(
        fs::read_link(root.join("bin/abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::metadata(root.join("bin")).unwrap().mode() & 0o7777,
        0o555
    );

    tracing::info!("--- the same tarball xz-compressed");
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    std::io::Write::write_all(&mut xz, &tar).unwrap();
    let xz_path = dir.path().join("image.tar.xz");
    fs::write(&xz_path, xz.finish().unwrap()).unwrap();
    let img2 = store
        .import_unified(&xz_path, &ImportOptions::default())
        .unwrap();
    assert_ne!(img2.fingerprint, img.fingerprint);
    let root2 = store.unpacked_dir(&img2.fingerprint).join("rootfs");
    assert!(
        fs::symlink_metadata(root2.join("dev/null"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(img2.templates, BTreeMap::new());
}

/// What does this test do?
/// - leaves a work directory and an orphaned image file behind, as a crash would
/// - reopening the store removes both
#[test]
fn reopening_the_store_removes_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let store = ImageStore::new(&path).unwrap();
    fs::create_dir_all(path.join(".tmp-abc/rootfs")).unwrap();
    fs::write(path.join("a".repeat(64)), b"orphan").unwrap();
    fs::write(path.join("notes.txt"), b"kept").unwrap();
    drop(store);
    let _store = ImageStore::new(&path).unwrap();
    assert_eq!(entries(&path), vec!["notes.txt".to_owned()]);
}

//! Helpers shared by the storage integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// `images/busybox/build.sh` at the repository root.
pub fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/busybox/build.sh")
}

/// Builds the unified busybox image into `dir`.
pub fn build_unified(dir: &Path) -> PathBuf {
    let out = dir.join("busybox.tar.gz");
    run(Command::new(build_script()).arg(&out));
    out
}

/// Builds the split busybox image into `dir`: (metadata tarball, rootfs tarball).
pub fn build_split(dir: &Path) -> (PathBuf, PathBuf) {
    let meta = dir.join("meta.tar.gz");
    let rootfs = dir.join("rootfs.tar.gz");
    run(Command::new(build_script())
        .arg("--split")
        .arg(&meta)
        .arg(&rootfs));
    (meta, rootfs)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run build.sh");
    assert!(
        out.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SHA-256 of the files' concatenated bytes, computed independently of the store.
pub fn sha256(files: &[&Path]) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update(std::fs::read(f).unwrap());
    }
    hex::encode(h.finalize())
}

/// Names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// An in-memory tarball builder for crafted (also malicious) inputs.
#[derive(Default)]
pub struct TarBuilder {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        Self {
            builder: Some(tar::Builder::new(Vec::new())),
        }
    }

    fn b(&mut self) -> &mut tar::Builder<Vec<u8>> {
        self.builder.as_mut().unwrap()
    }

    /// A regular file.
    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = header(tar::EntryType::Regular, mode);
        h.set_size(data.len() as u64);
        set_raw_path(&mut h, path);
        self.b().append(&h, data).unwrap();
        self
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = header(tar::EntryType::Directory, mode);
        set_raw_path(&mut h, path);
        self.b().append(&h, std::io::empty()).unwrap();
        self
    }

    /// A symlink or hard link.
    pub fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
        let mut h = header(kind, 0o777);
        h.set_link_name(target).unwrap_or_else(|_| {
            let raw = &mut h.as_old_mut().linkname;
            raw[..target.len()].copy_from_slice(target.as_bytes());
        });
        set_raw_path(&mut h, path);
        self.b().append(&h, std::io::empty()).unwrap();
        self
    }

    /// A character device, block device or FIFO.
    pub fn node(
        mut self,
        kind: tar::EntryType,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Self {
        let mut h = header(kind, mode);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        set_raw_path(&mut h, path);
        self.b().append(&h, std::io::empty()).unwrap();
        self
    }

    /// The finished plain tarball.
    pub fn tar(mut self) -> Vec<u8> {
        self.builder.take().unwrap().into_inner().unwrap()
    }

    /// The finished tarball, gzip'd.
    pub fn tar_gz(self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&self.tar()).unwrap();
        gz.finish().unwrap()
    }
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

/// Writes the name field directly, so `..` and absolute paths can be crafted.
fn set_raw_path(h: &mut tar::Header, path: &str) {
    let name = &mut h.as_old_mut().name;
    name.fill(0);
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
}

/// A minimal valid `metadata.yaml`.
pub const METADATA: &str =
    "architecture: amd64\ncreation_date: 1700000000\nproperties:\n  os: test\n  release: 12\n";

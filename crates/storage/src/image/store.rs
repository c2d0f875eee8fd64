//! The on-disk image store.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::error::ImageError;
use super::imported::ImportedImage;
use super::metadata::ImageMetadata;
use super::unpack::unpack;

/// Prefix of in-progress (or abandoned) work directories inside the store.
const TMP_PREFIX: &str = ".tmp-";
/// Suffix of the unpacked form of an image.
const UNPACKED: &str = ".unpacked";
/// Suffix of the rootfs file of a split image.
const ROOTFS: &str = ".rootfs";

/// Distinguishes temp directories of concurrent imports in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What the client said about an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The fingerprint the client expects (`X-LXD-fingerprint`); the import fails with
    /// [`ImageError::FingerprintMismatch`] when the data hashes differently.
    pub expected_fingerprint: Option<String>,
    /// The name it was uploaded as (`X-LXD-filename`).
    pub filename: Option<String>,
}

/// A directory of LXD-format images, laid out like LXD's `images/`:
///
/// ```text
/// <dir>/<fingerprint>            the image file (unified) or metadata file (split)
/// <dir>/<fingerprint>.rootfs     the rootfs file of a split image
/// <dir>/<fingerprint>.unpacked/  metadata.yaml, templates/, rootfs/ — unpacked once
/// <dir>/.tmp-*                   work in progress; removed by ImageStore::new
/// ```
///
/// # Correctness
///
/// An image exists exactly when `<fingerprint>.unpacked/` exists: an import renames it into
/// place as its last step, and a delete removes it first. A failed import leaves nothing
/// behind. Imports of the same fingerprint may race: one wins, the others get
/// [`ImageError::AlreadyExists`]. All methods are blocking.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens (creating, mode `0700`) the store at `dir` and removes leftovers of
    /// interrupted imports and deletes.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(ImageError::io("create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(ImageError::io("chmod", &dir))?;
        let store = Self { dir };
        store.remove_leftovers()?;
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<fingerprint>`: the image file, or the metadata file of a split image.
    pub fn image_file(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(fingerprint)
    }

    /// `<dir>/<fingerprint>.rootfs`: the rootfs file of a split image.
    pub fn rootfs_file(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{fingerprint}{ROOTFS}"))
    }

    /// `<dir>/<fingerprint>.unpacked`: holds `metadata.yaml`, `templates/` and `rootfs/`.
    pub fn unpacked_dir(&self, fingerprint: &str) -> PathBuf {
        self.dir.join(format!("{fingerprint}{UNPACKED}"))
    }

    /// Whether the image is stored (complete).
    pub fn contains(&self, fingerprint: &str) -> bool {
        valid_fingerprint(fingerprint).is_ok() && self.unpacked_dir(fingerprint).is_dir()
    }

    /// Imports a unified image: one tarball (gzip, xz or plain) holding `metadata.yaml`,
    /// `rootfs/` and optionally `templates/`.
    ///
    /// `path` is left in place: the store hard-links it (or copies it across filesystems),
    /// so the caller removes its upload file afterwards.
    pub fn import_unified(
        &self,
        path: &Path,
        opts: &ImportOptions,
    ) -> Result<ImportedImage, ImageError> {
        self.import(&[path], opts)
    }

    /// Imports a split image: a metadata tarball (`metadata.yaml`, `templates/`) and a rootfs
    /// tarball (the root filesystem at its top level). Squashfs rootfs files are refused with
    /// [`ImageError::Squashfs`]. Both files are left in place, as for
    /// [`Self::import_unified`].
    pub fn import_split(
        &self,
        metadata: &Path,
        rootfs: &Path,
        opts: &ImportOptions,
    ) -> Result<ImportedImage, ImageError> {
        self.import(&[metadata, rootfs], opts)
    }

    fn import(&self, files: &[&Path], opts: &ImportOptions) -> Result<ImportedImage, ImageError> {
        let (fingerprint, size) = fingerprint_files(files)?;
        if let Some(expected) = &opts.expected_fingerprint
            && !expected.eq_ignore_ascii_case(&fingerprint)
        {
            return Err(ImageError::FingerprintMismatch {
                expected: expected.clone(),
                actual: fingerprint,
            });
        }
        if self.contains(&fingerprint) {
            return Err(ImageError::AlreadyExists(fingerprint));
        }
        let split = files.len() == 2;
        tracing::info!(fingerprint = %fingerprint, size, split, "importing image");

        let tmp = TempDir::new(&self.dir, &fingerprint)?;
        unpack(files[0], tmp.path())?;
        let meta_path = tmp.path().join("metadata.yaml");
        if !meta_path.is_file() {
            return Err(ImageError::NoMetadata);
        }
        let bytes = fs::read(&meta_path).map_err(ImageError::io("read", &meta_path))?;
        let meta = ImageMetadata::parse(&bytes)?;
        let rootfs_dir = tmp.path().join("rootfs");
        if split {
            if fs::symlink_metadata(&rootfs_dir).is_ok() {
                fs::remove_dir_all(&rootfs_dir).map_err(ImageError::io("remove", &rootfs_dir))?;
            }
            unpack(files[1], &rootfs_dir)?;
        } else if !rootfs_dir.is_dir() {
            return Err(ImageError::NoRootfs);
        }

        let mut placed = Vec::new();
        let result = (|| {
            let targets = [
                self.image_file(&fingerprint),
                self.rootfs_file(&fingerprint),
            ];
            for (src, dst) in files.iter().zip(targets) {
                link_or_copy(src, &dst).map_err(|e| match e.kind() {
                    io::ErrorKind::AlreadyExists => ImageError::AlreadyExists(fingerprint.clone()),
                    _ => ImageError::Io {
                        op: "store",
                        path: dst.clone(),
                        source: e,
                    },
                })?;
                placed.push(dst);
            }
            let unpacked = self.unpacked_dir(&fingerprint);
            fs::rename(tmp.path(), &unpacked).map_err(ImageError::io("rename", &unpacked))
        })();
        if let Err(e) = result {
            for p in placed {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        tmp.disarm();

        Ok(ImportedImage {
            fingerprint,
            filename: opts.filename.clone().unwrap_or_default(),
            size,
            architecture: meta.architecture,
            creation_date: meta.creation_date,
            properties: meta.properties,
            templates: meta.templates,
            kind: "container".to_owned(),
            split,
        })
    }

    /// Reads back a stored image (after a restart). The upload file name is not kept by the
    /// store, so `filename` is `""`.
    pub fn get(&self, fingerprint: &str) -> Result<ImportedImage, ImageError> {
        valid_fingerprint(fingerprint)?;
        if !self.contains(fingerprint) {
            return Err(ImageError::NotFound(fingerprint.to_owned()));
        }
        let meta_path = self.unpacked_dir(fingerprint).join("metadata.yaml");
        let bytes = fs::read(&meta_path).map_err(ImageError::io("read", &meta_path))?;
        let meta = ImageMetadata::parse(&bytes)?;
        let mut size = 0;
        let mut split = false;
        for (i, f) in [self.image_file(fingerprint), self.rootfs_file(fingerprint)]
            .iter()
            .enumerate()
        {
            match fs::metadata(f) {
                Ok(m) => {
                    size += m.len();
                    split |= i == 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("stat", f)(e)),
            }
        }
        Ok(ImportedImage {
            fingerprint: fingerprint.to_owned(),
            filename: String::new(),
            size,
            architecture: meta.architecture,
            creation_date: meta.creation_date,
            properties: meta.properties,
            templates: meta.templates,
            kind: "container".to_owned(),
            split,
        })
    }

    /// Fingerprints of all stored images, sorted.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let mut out: Vec<String> = self
            .entries()?
            .into_iter()
            .filter_map(|name| name.strip_suffix(UNPACKED).map(str::to_owned))
            .filter(|fp| valid_fingerprint(fp).is_ok())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Removes an image: its unpacked directory first (so it stops existing at once), then
    /// its files. Removing an absent image succeeds. Instances created from it are
    /// unaffected (their volumes are copies).
    pub fn delete(&self, fingerprint: &str) -> Result<(), ImageError> {
        valid_fingerprint(fingerprint)?;
        let unpacked = self.unpacked_dir(fingerprint);
        if unpacked.exists() {
            let doomed = self.dir.join(tmp_name(fingerprint));
            fs::rename(&unpacked, &doomed).map_err(ImageError::io("rename", &unpacked))?;
            fs::remove_dir_all(&doomed).map_err(ImageError::io("remove", &doomed))?;
        }
        for f in [self.image_file(fingerprint), self.rootfs_file(fingerprint)] {
            match fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", &f)(e)),
            }
        }
        tracing::info!(fingerprint, "image deleted");
        Ok(())
    }

    fn entries(&self) -> Result<Vec<String>, ImageError> {
        let rd = fs::read_dir(&self.dir).map_err(ImageError::io("read", &self.dir))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(ImageError::io("read", &self.dir))?;
            if let Ok(name) = e.file_name().into_string() {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Removes `.tmp-*` work directories and image files whose unpacked directory is
    /// missing (an import or delete that was interrupted).
    fn remove_leftovers(&self) -> Result<(), ImageError> {
        for name in self.entries()? {
            let path = self.dir.join(&name);
            let orphan = {
                let fp = name.strip_suffix(ROOTFS).unwrap_or(&name);
                valid_fingerprint(fp).is_ok() && !self.unpacked_dir(fp).is_dir()
            };
            if name.starts_with(TMP_PREFIX) {
                tracing::warn!(path = %path.display(), "removing leftover image work directory");
                remove_any(&path).map_err(ImageError::io("remove", &path))?;
            } else if orphan {
                tracing::warn!(path = %path.display(), "removing orphaned image file");
                remove_any(&path).map_err(ImageError::io("remove", &path))?;
            }
        }
        Ok(())
    }
}

/// LXD's fingerprint of image files: SHA-256 over their bytes in order (metadata then
/// rootfs for a split image), as lowercase hex, with their total size.
pub fn fingerprint_files(files: &[&Path]) -> Result<(String, u64), ImageError> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = fs::File::open(path).map_err(ImageError::io("open", path))?;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ImageError::io("read", path)(e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
        }
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Checks that `fp` is a full fingerprint (64 lowercase hex digits), so it is safe to use
/// as a file name.
pub fn valid_fingerprint(fp: &str) -> Result<(), ImageError> {
    if fp.len() == 64 && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ImageError::InvalidFingerprint(fp.to_owned()))
    }
}

fn tmp_name(fingerprint: &str) -> String {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TMP_PREFIX}{fingerprint}-{}-{n}", std::process::id())
}

/// Hard-links `src` to `dst`, or copies it when that is impossible; never overwrites.
fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            let mut from = fs::File::open(src)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dst)?;
            let copied = io::copy(&mut from, &mut to).and_then(|_| to.sync_all());
            if copied.is_err() {
                let _ = fs::remove_file(dst);
            }
            copied
        }
    }
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A work directory removed on drop unless disarmed.
struct TempDir {
    path: PathBuf,
    armed: bool,
}

impl TempDir {
    fn new(store: &Path, fingerprint: &str) -> Result<Self, ImageError> {
        let path = store.join(tmp_name(fingerprint));
        fs::create_dir(&path).map_err(ImageError::io("create", &path))?;
        Ok(Self { path, armed: true })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed
            && let Err(e) = remove_any(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove image work directory");
        }
    }
}

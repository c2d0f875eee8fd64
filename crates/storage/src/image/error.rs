//! Errors of image import and the image store.

use std::path::PathBuf;

/// Why an image could not be imported, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file is neither a tarball nor a compressed tarball drover can read.
    #[error("{path} is not a tarball")]
    NotATarball {
        /// The offending file.
        path: PathBuf,
    },
    /// A compressed tarball whose compression drover does not read (bzip2, zstd, lzma).
    #[error("{path} uses unsupported {compression} compression")]
    UnsupportedCompression {
        /// The offending file.
        path: PathBuf,
        /// `"bzip2"`, `"zstd"`, `"lzma"`.
        compression: &'static str,
    },
    /// A squashfs rootfs (LXD's other split format).
    #[error("{path} is a squashfs image: only tarball rootfs images are supported")]
    Squashfs {
        /// The offending file.
        path: PathBuf,
    },
    /// The tarball is truncated or malformed.
    #[error("corrupt tarball {path}")]
    CorruptTarball {
        /// The offending file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing an entry of the tarball failed (disk full, permissions, …).
    #[error("extract {entry:?} from {path}")]
    Extract {
        /// The tarball.
        path: PathBuf,
        /// The entry being written.
        entry: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An entry would land outside the extraction directory.
    #[error("unsafe path {entry:?} in {path}")]
    UnsafePath {
        /// The tarball.
        path: PathBuf,
        /// The entry's path (or link target).
        entry: String,
    },
    /// The image has no top-level `metadata.yaml`.
    #[error("image has no metadata.yaml")]
    NoMetadata,
    /// A unified image without a `rootfs/` directory.
    #[error("image has no rootfs directory")]
    NoRootfs,
    /// `metadata.yaml` is not valid YAML of the expected shape.
    #[error("bad metadata.yaml")]
    BadMetadata(#[source] serde_yaml_ng::Error),
    /// `metadata.yaml` lacks `architecture`.
    #[error("metadata.yaml has no architecture")]
    MissingArchitecture,
    /// `metadata.yaml` names an architecture drover does not know.
    #[error("unknown architecture {0:?}")]
    UnknownArchitecture(String),
    /// The client's expected fingerprint differs from the data's.
    #[error("fingerprint mismatch: expected {expected}, got {actual}")]
    FingerprintMismatch {
        /// What the client announced (`X-LXD-fingerprint`).
        expected: String,
        /// SHA-256 of the received data.
        actual: String,
    },
    /// A fingerprint that is not 64 lowercase hex digits.
    #[error("invalid fingerprint {0:?}")]
    InvalidFingerprint(String),
    /// An image with this fingerprint is already stored.
    #[error("image {0} already exists")]
    AlreadyExists(String),
    /// No image with this fingerprint is stored.
    #[error("image {0} not found")]
    NotFound(String),
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`"create"`, `"rename"`).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// An [`ImageError::Io`] builder for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

//! Errors of storage pools.

use std::path::PathBuf;

/// Why a volume operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// A volume name that is empty, starts with `.`, or contains `/` or NUL.
    #[error("invalid volume name {0:?}")]
    InvalidName(String),
    /// The volume exists already.
    #[error("volume {0} already exists")]
    AlreadyExists(String),
    /// The volume does not exist.
    #[error("volume {0} not found")]
    NotFound(String),
    /// The image directory has no `rootfs/`.
    #[error("image directory {0} has no rootfs")]
    NoImageRootfs(PathBuf),
    /// The volume is layered on an image whose base this pool does not have (yet).
    #[error("image base {0} is not in this pool")]
    NoBase(String),
    /// `cp` failed.
    #[error("copy {from} to {to} failed: {stderr}")]
    Copy {
        /// Source.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
        /// What `cp` said (or its exit status).
        stderr: String,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl PoolError {
    /// A [`PoolError::Io`] builder for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

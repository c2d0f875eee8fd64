//! Errors of the replication storage.

use std::path::PathBuf;

/// What can go wrong opening or using the Raft storage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Raft log's SQLite file failed.
    #[error("raft log database")]
    LogDb(#[from] rusqlite::Error),
    /// The cluster DB failed.
    #[error("cluster database")]
    Db(#[from] db::Error),
    /// A Raft value (entry, vote, log id, membership, snapshot meta) could not be
    /// (de)serialized.
    #[error("raft value encoding")]
    Json(#[from] serde_json::Error),
    /// A file operation failed.
    #[error("file {path:?}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The Raft log file was written by a newer drover.
    #[error("raft log schema {found} is newer than this drover ({supported})")]
    LogSchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// The log store's thread is gone (it panicked or the store was closed).
    #[error("raft log thread stopped")]
    LogThreadGone,
    /// A blocking task panicked or was cancelled.
    #[error("blocking storage task failed")]
    Blocking(#[from] tokio::task::JoinError),
    /// A snapshot is malformed or disagrees with its metadata.
    #[error("invalid snapshot: {0}")]
    BadSnapshot(String),
    /// The Raft settings are inconsistent.
    #[error("invalid raft settings: {0}")]
    Config(String),
    /// The Raft node could not start.
    #[error("raft node failed to start: {0}")]
    Start(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Result of this crate's calls.
pub type Result<T> = std::result::Result<T, Error>;

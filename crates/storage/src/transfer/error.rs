//! Errors of volume transfers.

use std::path::PathBuf;

/// Why sending or receiving a volume stream failed.
///
/// After any of these on the receiving side, the destination directory holds a partial tree:
/// remove it (see [`crate::DirPool::discard`]); it never passes for a complete volume.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// A filesystem operation on the sending or receiving tree failed (disk full, permission…).
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
    /// Reading from or writing to the byte stream failed (link broken, peer gone).
    #[error("transfer stream {0}")]
    Stream(&'static str, #[source] std::io::Error),
    /// The stream ended before its end record: the sender died or the link broke.
    #[error("transfer stream ended early after {entries} entries")]
    Truncated {
        /// Entries fully received before the end.
        entries: u64,
    },
    /// The stream is not a drover transfer stream of a version this build reads.
    #[error("not a drover transfer stream (bad magic or version)")]
    BadMagic,
    /// A record could not be decoded.
    #[error("corrupt transfer stream after {entries} entries: {what}")]
    Corrupt {
        /// Entries fully received before the bad record.
        entries: u64,
        /// What was wrong.
        what: String,
    },
    /// A file's content does not match the checksum the sender computed.
    #[error("checksum mismatch for {path:?}")]
    FileChecksum {
        /// The file's path inside the volume.
        path: String,
    },
    /// The stream's framing does not match the sender's whole-stream checksum.
    #[error("whole-stream checksum mismatch")]
    StreamChecksum,
    /// The end record's counts differ from what was received.
    #[error(
        "stream end record says {expected_entries} entries and {expected_bytes} bytes, received {entries} and {bytes}"
    )]
    CountMismatch {
        /// Entries the sender sent.
        expected_entries: u64,
        /// File bytes the sender sent.
        expected_bytes: u64,
        /// Entries received.
        entries: u64,
        /// File bytes received.
        bytes: u64,
    },
    /// A path in the stream would land outside the destination (absolute, `..`, through a
    /// symlink) or a hard link points at something not received.
    #[error("unsafe path {0:?} in transfer stream")]
    UnsafePath(String),
    /// The sending side changed a file while it was read (its size shrank under us).
    #[error("{0} changed size while being sent")]
    Changed(PathBuf),
    /// The blocking transfer task panicked or was cancelled.
    #[error("transfer task failed: {0}")]
    Task(String),
}

impl TransferError {
    /// A [`TransferError::Io`] builder for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io { op, path, source }
    }
}

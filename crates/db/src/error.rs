//! Errors of the DB layer.

/// What can go wrong reading or writing the DB.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A JSON column could not be (de)serialized.
    #[error("database json column: {0}")]
    Json(#[from] serde_json::Error),
    /// The row a command refers to does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A row with this key already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The DB was written by a newer drover.
    #[error("database schema {found} is newer than this drover ({supported})")]
    SchemaTooNew {
        /// Schema version in the file.
        found: i64,
        /// Newest version this binary knows.
        supported: i64,
    },
    /// The data rule the command out (an expired join token).
    #[error("{0}")]
    Refused(String),
    /// A stored value is invalid (an unknown member state).
    #[error("invalid stored value: {0}")]
    Corrupt(String),
}

impl Error {
    /// Whether this failure follows from the command and the DB content alone, so every
    /// member applying the same command to the same state fails the same way.
    ///
    /// `false` means the environment failed (disk full, I/O error, locked or corrupt file,
    /// out of memory): the outcome could differ on another member, so a replicated state
    /// machine must stop rather than record it as the command's result.
    pub fn is_deterministic(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => !matches!(
                f.code,
                C::DiskFull
                    | C::SystemIoFailure
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::OutOfMemory
                    | C::CannotOpen
                    | C::FileLockingProtocolFailed
                    | C::ReadOnly
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::OperationInterrupted
                    | C::PermissionDenied
                    | C::InternalMalfunction
                    | C::NoLargeFileSupport
            ),
            Error::Sqlite(_) | Error::Json(_) | Error::NotFound(_) | Error::Exists(_) => true,
            Error::Corrupt(_) | Error::Refused(_) => true,
            Error::SchemaTooNew { .. } => false,
        }
    }
}

/// Result of DB calls.
pub type Result<T> = std::result::Result<T, Error>;

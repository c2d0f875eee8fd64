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
    /// A stored value is invalid (an unknown member state).
    #[error("invalid stored value: {0}")]
    Corrupt(String),
}

/// Result of DB calls.
pub type Result<T> = std::result::Result<T, Error>;

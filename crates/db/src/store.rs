//! The single writer over the SQLite file.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use crate::{Command, Result, apply, schema};

/// The DB handle: one connection, one writer at a time.
///
/// # Correctness
///
/// All writes go through [`Store::execute`], which applies one [`Command`] in one
/// transaction. Reads see only committed state.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) the DB at `path` and applies pending schema updates.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::update(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// An in-memory DB (tests).
    pub fn in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::update(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Applies `cmd` in one transaction.
    pub fn execute(&self, cmd: &Command) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        apply(&tx, cmd)?;
        tx.commit()?;
        Ok(())
    }

    /// Runs a read-only query.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

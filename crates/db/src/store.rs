//! The single writer over the SQLite file.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::raft_state::{self, RaftState};
use crate::{Command, Error, Result, apply, schema};

/// The DB handle: one connection, one writer at a time.
///
/// # Correctness
///
/// All writes go through [`Store::apply_entries`] (a batch of replicated commands plus their
/// log position, in one transaction), [`Store::restore_from`] (the whole content at once)
/// or, in tests and tools only, [`Store::execute`] (one [`Command`] in one transaction).
/// Reads see only committed state.
///
/// Every committed write that may change more than instance rows also moves the store's
/// [`Store::config_generation`] on, before the writer lock is released.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    generation: AtomicU64,
}

/// How many compiled statements the connection keeps.
const STATEMENT_CACHE: usize = 64;

impl Store {
    /// Opens (creating if needed) the DB at `path` and applies pending schema updates.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        // This connection is the file's only user, so it takes SQLite's file locks once and
        // keeps them, and, set before WAL is entered, keeps the WAL index in its own memory
        // instead of a shared `-shm` file. Otherwise every statement outside a transaction
        // is a read transaction of its own, locked and unlocked with `fcntl` calls: 17 of
        // them for the reads of one instance start (that read: 135 -> 112 us here).
        // Another process opening the file meanwhile gets "database is locked".
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Room for every cached statement of the request and apply paths (rusqlite keeps 16
        // by default, least recently used out first).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        schema::update(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            generation: AtomicU64::new(0),
        })
    }

    /// An in-memory DB (tests).
    pub fn in_memory() -> Result<Self> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::update(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            generation: AtomicU64::new(0),
        })
    }

    /// A number that changes whenever a committed write may have changed anything but
    /// instance rows (members, profiles, pools, the schema, ...): what was read of those
    /// at one generation still holds while it is current. It never goes back.
    ///
    /// # Correctness
    ///
    /// Writers move it on while they still hold the writer lock, after their commit, so
    /// that a reader holding that lock ([`Store::read`]) sees the generation its reads
    /// belong to; a reader outside the lock who reads it before its data reads data at
    /// least that new.
    pub fn config_generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Moves [`Store::config_generation`] on (the caller holds the writer lock and has
    /// committed).
    fn changed_config(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies `cmd` in one transaction, outside any replicated log.
    ///
    /// For tests and offline tools only. A running member never calls it: once its Raft
    /// node is open, only the state machine writes (through [`Store::apply_entries`]), so
    /// that every member applies the same commands at the same log positions.
    pub fn execute(&self, cmd: &Command) -> Result<()> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        apply(&tx, cmd)?;
        tx.commit()?;
        if !cmd.changes_instances_only() {
            self.changed_config();
        }
        Ok(())
    }

    /// Applies a batch of replicated log entries and records `state`, all in one transaction.
    ///
    /// Each item is one entry: `Some(cmd)` for an entry carrying a command, `None` for one
    /// that only moves the log position (blank, membership). The result has one outcome per
    /// item, in order.
    ///
    /// # Correctness
    ///
    /// - A command that fails deterministically ([`Error::is_deterministic`]) is rolled back
    ///   alone (a savepoint per command) and its error becomes its outcome; the entries
    ///   after it still apply. Every member therefore records the same outcome and reaches
    ///   the same content.
    /// - A failure of the environment (I/O, disk full, ...) or of the commit returns `Err`
    ///   and leaves the DB as it was before the call: neither the commands nor `state` are
    ///   recorded.
    /// - `state` is the caller's opaque description of the log position after the last
    ///   item; it becomes visible exactly when the commands' effects do.
    pub fn apply_entries<'a>(
        &self,
        entries: impl IntoIterator<Item = Option<&'a Command>>,
        state: &RaftState,
    ) -> Result<Vec<Result<()>>> {
        self.apply_entries_to(&mut self.lock(), entries, state)
    }

    /// [`Store::apply_entries`] if no one holds the connection now; `None` (nothing
    /// applied) when a read or another write does, for a caller that would rather wait
    /// elsewhere than block its thread.
    pub fn try_apply_entries<'a>(
        &self,
        entries: impl IntoIterator<Item = Option<&'a Command>>,
        state: &RaftState,
    ) -> Option<Result<Vec<Result<()>>>> {
        let mut conn = self.try_lock()?;
        Some(self.apply_entries_to(&mut conn, entries, state))
    }

    fn apply_entries_to<'a>(
        &self,
        conn: &mut Connection,
        entries: impl IntoIterator<Item = Option<&'a Command>>,
        state: &RaftState,
    ) -> Result<Vec<Result<()>>> {
        let tx = conn.transaction()?;
        let mut outcomes = Vec::new();
        let mut config = false;
        for entry in entries {
            let Some(cmd) = entry else {
                outcomes.push(Ok(()));
                continue;
            };
            config |= !cmd.changes_instances_only();
            // `apply` takes the transaction itself, so the per-command savepoint is plain SQL
            // (statements compiled once: every replicated write runs them).
            tx.prepare_cached("SAVEPOINT command")?.execute([])?;
            match apply(&tx, cmd) {
                Ok(()) => {
                    tx.prepare_cached("RELEASE command")?.execute([])?;
                    outcomes.push(Ok(()));
                }
                Err(e) if e.is_deterministic() => {
                    tx.execute_batch("ROLLBACK TO command; RELEASE command")?;
                    outcomes.push(Err(e));
                }
                // Dropping `tx` rolls the whole batch back.
                Err(e) => return Err(e),
            }
        }
        raft_state::set(&tx, state)?;
        tx.commit()?;
        if config {
            self.changed_config();
        }
        Ok(outcomes)
    }

    /// Writes a consistent, compacted copy of the whole DB to `path` (which must not exist)
    /// and returns the log position that copy holds.
    ///
    /// # Correctness
    ///
    /// The copy and the returned state are taken under the writer lock, so they describe
    /// the same instant. The copy is not synced: callers that keep it sync it themselves.
    pub fn backup_to(&self, path: &Path) -> Result<RaftState> {
        let target = path
            .to_str()
            .ok_or_else(|| Error::Corrupt(format!("non-UTF-8 backup path {path:?}")))?;
        let conn = self.lock();
        conn.execute("VACUUM INTO ?1", [target])?;
        raft_state::get(&conn)
    }

    /// Reads the log position recorded in the DB copy at `path`, without changing it.
    ///
    /// Fails with [`Error::SchemaTooNew`] if the copy was written by a newer drover, which
    /// [`Store::restore_from`] would refuse too.
    pub fn inspect(path: &Path) -> Result<RaftState> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        check_schema(&conn)?;
        let has_state: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'raft_state'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match has_state {
            Some(_) => raft_state::get(&conn),
            None => Ok(RaftState::default()),
        }
    }

    /// Replaces the whole content of this DB with the DB copy at `path` (made by
    /// [`Store::backup_to`], possibly on another member), then brings its schema up to date.
    /// Returns the log position the new content holds.
    ///
    /// # Correctness
    ///
    /// The copy is transferred in one step of SQLite's backup API, that is one write
    /// transaction on this DB: a crash part-way leaves the old content, never a mix. A copy
    /// from a newer schema is refused before anything changes.
    pub fn restore_from(&self, path: &Path) -> Result<RaftState> {
        let src = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        check_schema(&src)?;
        let mut conn = self.lock();
        {
            let backup = Backup::new(&src, &mut conn)?;
            match backup.step(-1)? {
                StepResult::Done => {}
                other => {
                    return Err(Error::Corrupt(format!(
                        "restore from {path:?} stopped early: {other:?}"
                    )));
                }
            }
        }
        let updated = schema::update(&mut conn);
        // Replaced content, whatever became of the schema update.
        self.changed_config();
        updated?;
        raft_state::get(&conn)
    }

    /// Runs a read-only query.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.lock();
        f(&conn)
    }

    /// Runs a read-only query if no one holds the connection now; `None` (nothing run)
    /// when a write or another read does, for a caller that would rather wait elsewhere
    /// than block its thread.
    pub fn try_read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Option<Result<T>> {
        let conn = self.try_lock()?;
        Some(f(&conn))
    }

    /// The connection if no one holds it now.
    fn try_lock(&self) -> Option<std::sync::MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(conn),
            // Safe to reuse, as in `lock`.
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls
        // back on drop), so a poisoned lock is safe to reuse.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Refuses a DB whose schema is newer than this binary's.
fn check_schema(conn: &Connection) -> Result<()> {
    let found: i64 = conn
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema", [], |r| {
            r.get(0)
        })
        .optional()?
        .unwrap_or(0);
    if found > schema::LATEST {
        return Err(Error::SchemaTooNew {
            found,
            supported: schema::LATEST,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(c: &Connection) -> Result<i64> {
        Ok(c.query_row("SELECT COUNT(*) FROM schema", [], |r| r.get(0))?)
    }

    #[test]
    fn try_apply_entries_applies_when_the_connection_is_free_and_not_while_it_is_held() {
        let store = Store::in_memory().expect("store");
        let at = |n: &str| RaftState {
            last_applied: Some(n.to_string()),
            last_membership: None,
        };
        let held = store
            .read(|_| Ok(store.try_apply_entries([None], &at("1")).is_none()))
            .expect("outer read");
        assert!(held, "nothing is applied while the connection is held");
        assert_eq!(
            store.read(raft_state::get).expect("state"),
            RaftState::default()
        );
        let outcomes = store
            .try_apply_entries([None], &at("2"))
            .expect("free")
            .expect("applied");
        assert_eq!(outcomes.len(), 1);
        assert_eq!(store.read(raft_state::get).expect("state"), at("2"));
    }

    #[test]
    fn try_read_runs_when_the_connection_is_free_and_not_while_it_is_held() {
        let store = Store::in_memory().expect("store");
        let free = store.try_read(count).expect("free").expect("query");
        assert!(free > 0);
        let mut ran = false;
        let inner = store
            .read(|_| {
                Ok(store.try_read(|c| {
                    ran = true;
                    count(c)
                }))
            })
            .expect("outer read");
        assert!(inner.is_none());
        assert!(!ran);
        assert_eq!(
            store.try_read(count).expect("free again").expect("query"),
            free
        );
    }
}

//! The Raft log, in its own SQLite file, written by one dedicated thread.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::{Error, Result, TypeConfig};

/// The conventional name of the log file in a member's state directory.
pub const LOG_FILE: &str = "raft-log.db";

/// Version of the log file's layout, kept in `PRAGMA user_version`.
const LOG_SCHEMA: i64 = 1;

const SCHEMA_1: &str = r#"
CREATE TABLE entries (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    entry TEXT NOT NULL
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// How many of the newest entries [`Tail`] keeps in memory.
const TAIL_ENTRIES: usize = 512;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The handle to the thread that owns the log file's connection. Jobs run one at a time in
/// the order they were submitted.
#[derive(Debug, Clone)]
struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    async fn spawn(path: PathBuf) -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("raft-log".into())
            .spawn(move || {
                let mut conn = match open_db(&thread_path) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Ends when every handle (store and readers) is dropped.
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(Error::io(path))?;
        ready_rx.await.map_err(|_| Error::LogThreadGone)??;
        Ok(Self { jobs })
    }

    /// Queues `job` without waiting for it.
    fn submit(&self, job: Job) -> Result<()> {
        self.jobs.send(job).map_err(|_| Error::LogThreadGone)
    }

    /// Runs `f` on the log thread and waits for its result.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }))?;
        rx.await.map_err(|_| Error::LogThreadGone)?
    }
}

fn open_db(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    // The log thread's connection is the file's only user: file locks taken once, the WAL
    // index in its own memory (as for the cluster DB, see `db::Store::open`).
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit is synced to disk before it returns, which is what lets a commit's
    // return stand for "persisted" in the Raft contracts below.
    conn.pragma_update(None, "synchronous", "FULL")?;
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > LOG_SCHEMA {
        return Err(Error::LogSchemaTooNew {
            found,
            supported: LOG_SCHEMA,
        });
    }
    if found < 1 {
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA_1)?;
        tx.pragma_update(None, "user_version", LOG_SCHEMA)?;
        tx.commit()?;
    }
    Ok(conn)
}

/// Runs `write` with `synchronous=OFF`: its commit is not synced by itself, only by the
/// next synced one. `synchronous=FULL` is back when this returns, or the process aborts
/// (a connection left unsynced must not acknowledge any append).
fn unsynced(conn: &mut Connection, write: impl FnOnce(&Connection) -> Result<()>) -> Result<()> {
    conn.pragma_update(None, "synchronous", "OFF")?;
    let outcome = write(conn);
    if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
        tracing::error!(error = %e, "cannot make the raft log synchronous again");
        std::process::abort();
    }
    outcome
}

fn get_meta<T: DeserializeOwned>(conn: &Connection, key: &str) -> Result<Option<T>> {
    let text: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
}

fn set_meta<T: Serialize>(conn: &Connection, key: &str, value: &T) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, serde_json::to_string(value)?],
    )?;
    Ok(())
}

/// `[start, end)` of a range of log indexes, clamped to what SQLite's integers hold.
fn index_bounds(range: &impl RangeBounds<u64>) -> (u64, u64) {
    let max = i64::MAX as u64;
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => max,
    };
    (start.min(max), end.min(max))
}

fn read_entries(conn: &Connection, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>> {
    let mut stmt =
        conn.prepare_cached("SELECT entry FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
    let rows = stmt.query_map(params![start, end], |r| r.get::<_, String>(0))?;
    rows.map(|text| Ok(serde_json::from_str(&text?)?)).collect()
}

fn write_entries(conn: &mut Connection, entries: &[Entry<TypeConfig>]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO entries (idx, term, entry) VALUES (?1, ?2, ?3)",
        )?;
        for entry in entries {
            stmt.execute(params![
                entry.log_id.index,
                entry.log_id.leader_id.term,
                serde_json::to_string(entry)?
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn log_state(conn: &mut Connection) -> Result<LogState<TypeConfig>> {
    let tx = conn.transaction()?;
    let last_purged: Option<LogId<u64>> = get_meta(&tx, LAST_PURGED)?;
    let last: Option<String> = tx
        .query_row(
            "SELECT entry FROM entries ORDER BY idx DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let last_log_id = match last {
        Some(text) => Some(serde_json::from_str::<Entry<TypeConfig>>(&text)?.log_id),
        None => last_purged,
    };
    Ok(LogState {
        last_purged_log_id: last_purged,
        last_log_id,
    })
}

fn storage_error(
    make: fn(AnyError) -> StorageIOError<u64>,
) -> impl FnOnce(Error) -> StorageError<u64> {
    move |e| make(AnyError::new(&e)).into()
}

/// The newest entries of the log, in memory: reading what was just appended (the entries
/// of every commit, which openraft reads back before it applies them, and what the leader
/// sends its followers) then waits neither for the log thread nor for the jobs queued on it
/// (the commit index's write comes first), and parses no JSON.
///
/// # Correctness
///
/// - `entries` is always a suffix of the log as readers must see it: consecutive indexes,
///   the last one the log's last entry. openraft appends right after the last entry (after
///   a `truncate` where the log conflicts), so an append extends the suffix; one that did
///   not follow on would leave a gap, and empties the tail instead.
/// - Every change is made here before its job is queued on the log thread, so a read that
///   the tail serves never sees less than one the thread would serve after the change.
/// - A range that starts before the tail's first entry is read from the file.
#[derive(Debug, Default)]
struct Tail {
    entries: VecDeque<Entry<TypeConfig>>,
}

impl Tail {
    fn append(&mut self, new: &[Entry<TypeConfig>]) {
        let Some(first) = new.first() else {
            return;
        };
        let follows = self
            .entries
            .back()
            .is_none_or(|last| last.log_id.index.checked_add(1) == Some(first.log_id.index));
        if !follows {
            self.entries.clear();
        }
        self.entries.extend(new.iter().cloned());
        let excess = self.entries.len().saturating_sub(TAIL_ENTRIES);
        self.entries.drain(..excess);
    }

    /// Drops the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self.entries.back().is_some_and(|e| e.log_id.index >= index) {
            self.entries.pop_back();
        }
    }

    /// Drops the entries up to `index`, included.
    fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.log_id.index <= index)
        {
            self.entries.pop_front();
        }
    }

    /// The log's entries in `[start, end)`, when the tail holds all of them.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry<TypeConfig>>> {
        let first = self.entries.front()?.log_id.index;
        let skip = usize::try_from(start.checked_sub(first)?).ok()?;
        let take = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
        Some(self.entries.iter().skip(skip).take(take).cloned().collect())
    }
}

/// [`Tail`], shared by the store and its readers.
type SharedTail = Arc<Mutex<Tail>>;

fn lock_tail(tail: &SharedTail) -> std::sync::MutexGuard<'_, Tail> {
    // Each change to the tail is a few pushes and pops that cannot leave it half-made in
    // a way that matters: a poisoned lock is still a suffix of the log.
    tail.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The Raft log store: entries, vote, committed log id and purge point in one SQLite file.
///
/// # Correctness
///
/// - One thread owns the connection and runs every read and write in submission order, so
///   writes are serialized (openraft's rule), and a read submitted after a write sees it.
/// - Every write commits with `synchronous=FULL`: `save_vote`, `truncate`, `purge` and
///   `save_committed` return only after the commit is on disk; `append` queues the write
///   and reports it through the callback only after its commit returned.
/// - `append` may return before the entries are on disk; they are still readable by any
///   read submitted afterwards (same queue), as openraft requires.
/// - No hole: `truncate` removes a suffix, `purge` a prefix (recording the purge point
///   first, in the same transaction).
#[derive(Debug, Clone)]
pub struct LogStore {
    worker: Worker,
    tail: SharedTail,
}

impl LogStore {
    /// Opens (creating if needed) the log file at `path` (conventionally
    /// `<state dir>/`[`LOG_FILE`]) and starts its thread.
    pub async fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            worker: Worker::spawn(path.to_path_buf()).await?,
            tail: SharedTail::default(),
        })
    }
}

/// A reader of the log, for openraft's replication tasks. Shares the store's thread and
/// [`Tail`].
#[derive(Debug, Clone)]
pub struct LogReader {
    worker: Worker,
    tail: SharedTail,
}

async fn try_get(
    worker: &Worker,
    tail: &SharedTail,
    range: impl RangeBounds<u64>,
) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
    let (start, end) = index_bounds(&range);
    if let Some(entries) = lock_tail(tail).get(start, end) {
        return Ok(entries);
    }
    worker
        .call(move |conn| read_entries(conn, start, end))
        .await
        .map_err(storage_error(StorageIOError::read_logs))
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        try_get(&self.worker, &self.tail, range).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> std::result::Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        try_get(&self.worker, &self.tail, range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(
        &mut self,
    ) -> std::result::Result<LogState<TypeConfig>, StorageError<u64>> {
        self.worker
            .call(log_state)
            .await
            .map_err(storage_error(StorageIOError::read_logs))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            worker: self.worker.clone(),
            tail: self.tail.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> std::result::Result<(), StorageError<u64>> {
        let vote = *vote;
        self.worker
            .call(move |conn| set_meta(conn, VOTE, &vote))
            .await
            .map_err(storage_error(StorageIOError::write_vote))
    }

    async fn read_vote(&mut self) -> std::result::Result<Option<Vote<u64>>, StorageError<u64>> {
        self.worker
            .call(|conn| get_meta(conn, VOTE))
            .await
            .map_err(storage_error(StorageIOError::read_vote))
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> std::result::Result<(), StorageError<u64>> {
        self.worker
            .submit(Box::new(move |conn| {
                let outcome = unsynced(conn, |conn| set_meta(conn, COMMITTED, &committed));
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "recording the raft committed id failed");
                }
            }))
            .map_err(storage_error(StorageIOError::write))
    }

    async fn read_committed(
        &mut self,
    ) -> std::result::Result<Option<LogId<u64>>, StorageError<u64>> {
        self.worker
            .call(|conn| Ok(get_meta::<Option<LogId<u64>>>(conn, COMMITTED)?.flatten()))
            .await
            .map_err(storage_error(StorageIOError::read))
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> std::result::Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        lock_tail(&self.tail).append(&entries);
        self.worker
            .submit(Box::new(move |conn| {
                let outcome = write_entries(conn, &entries);
                if let Err(e) = &outcome {
                    tracing::error!(error = %e, "appending to the raft log failed");
                }
                callback.log_io_completed(outcome.map_err(std::io::Error::other));
            }))
            .map_err(storage_error(StorageIOError::write_logs))
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> std::result::Result<(), StorageError<u64>> {
        lock_tail(&self.tail).truncate(log_id.index);
        self.worker
            .call(move |conn| {
                conn.execute("DELETE FROM entries WHERE idx >= ?1", params![log_id.index])?;
                Ok(())
            })
            .await
            .map_err(storage_error(StorageIOError::write_logs))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> std::result::Result<(), StorageError<u64>> {
        lock_tail(&self.tail).purge(log_id.index);
        self.worker
            .call(move |conn| {
                let tx = conn.transaction()?;
                set_meta(&tx, LAST_PURGED, &log_id)?;
                tx.execute("DELETE FROM entries WHERE idx <= ?1", params![log_id.index])?;
                tx.commit()?;
                Ok(())
            })
            .await
            .map_err(storage_error(StorageIOError::write_logs))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn entries(range: std::ops::Range<u64>) -> Vec<Entry<TypeConfig>> {
        range.map(entry).collect()
    }

    fn indexes(found: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<u64>> {
        found.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn the_tail_serves_ranges_it_holds_and_no_range_starting_before_it() {
        let mut tail = Tail::default();
        assert_eq!(indexes(tail.get(0, 10)), None, "empty: read the file");
        tail.append(&entries(5..8));
        tail.append(&entries(8..10));
        assert_eq!(indexes(tail.get(6, 9)), Some(vec![6, 7, 8]));
        // Past the last entry: only what the log has, as the file would answer.
        assert_eq!(indexes(tail.get(8, 20)), Some(vec![8, 9]));
        assert_eq!(indexes(tail.get(12, 20)), Some(vec![]));
        assert_eq!(indexes(tail.get(4, 9)), None, "4 is not in the tail");
    }

    #[test]
    fn truncate_and_purge_cut_the_tail_as_they_cut_the_log() {
        let mut tail = Tail::default();
        tail.append(&entries(1..10));
        tail.truncate(7);
        assert_eq!(indexes(tail.get(1, 100)), Some(vec![1, 2, 3, 4, 5, 6]));
        tail.append(&entries(7..9));
        tail.purge(3);
        assert_eq!(indexes(tail.get(4, 100)), Some(vec![4, 5, 6, 7, 8]));
        assert_eq!(indexes(tail.get(3, 100)), None, "purged: the file answers");
    }

    #[test]
    fn an_append_that_leaves_a_gap_empties_the_tail_first() {
        let mut tail = Tail::default();
        tail.append(&entries(1..4));
        tail.append(&entries(10..12));
        assert_eq!(indexes(tail.get(1, 100)), None);
        assert_eq!(indexes(tail.get(10, 100)), Some(vec![10, 11]));
    }

    #[test]
    fn the_tail_keeps_only_the_newest_entries() {
        let mut tail = Tail::default();
        let count = u64::try_from(TAIL_ENTRIES).expect("small") + 10;
        tail.append(&entries(1..count + 1));
        assert_eq!(indexes(tail.get(10, 11)), None, "dropped from the front");
        assert_eq!(indexes(tail.get(11, 12)), Some(vec![11]));
        assert_eq!(indexes(tail.get(count, count + 1)), Some(vec![count]));
    }
}

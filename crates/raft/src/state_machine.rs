//! The state machine: committed entries applied to the cluster DB, and its snapshots.

use std::fs;
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use db::RaftState;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};

use crate::snapshot_file::{Meta, SnapshotDir};
use crate::{Applied, Error, Result, TypeConfig};

type Membership = StoredMembership<u64, BasicNode>;

/// Encodes the log position for the DB's `raft_state` table.
fn encode(last_applied: Option<&LogId<u64>>, membership: &Membership) -> Result<RaftState> {
    Ok(RaftState {
        last_applied: last_applied.map(serde_json::to_string).transpose()?,
        last_membership: Some(serde_json::to_string(membership)?),
    })
}

/// Decodes the log position recorded in the DB.
fn decode(state: &RaftState) -> Result<(Option<LogId<u64>>, Membership)> {
    let last_applied = state
        .last_applied
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?;
    let membership = state
        .last_membership
        .as_deref()
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or_default();
    Ok((last_applied, membership))
}

/// Replaces the DB content with the DB file bytes `db_bytes`, through a staging copy.
fn restore_bytes(db: &db::Store, dir: &SnapshotDir, db_bytes: &[u8]) -> Result<RaftState> {
    let incoming = dir.incoming_copy();
    fs::write(&incoming, db_bytes).map_err(Error::io(&incoming))?;
    let restored = db.restore_from(&incoming);
    let _ = fs::remove_file(&incoming);
    Ok(restored?)
}

/// A snapshot id unique to this build: the last log id it covers plus the build time.
///
/// The time only tells two builds at the same log position apart (openraft keys a transfer
/// in progress by this id); it never reaches the DB.
fn snapshot_id(last_applied: Option<&LogId<u64>>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    match last_applied {
        Some(id) => format!(
            "{}-{}-{}-{nanos:x}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("none-{nanos:x}"),
    }
}

/// Where snapshots live, shared by the state machine and its builders.
#[derive(Debug, Clone)]
struct Snapshots {
    db: Arc<db::Store>,
    dir: SnapshotDir,
    /// Serializes builds and installs, which openraft may run on different tasks.
    lock: Arc<Mutex<()>>,
}

impl Snapshots {
    fn build(&self) -> Result<Snapshot<TypeConfig>> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let copy = self.dir.build_copy();
        let _ = fs::remove_file(&copy);
        let state = self.db.backup_to(&copy)?;
        let bytes = fs::read(&copy).map_err(Error::io(&copy));
        let _ = fs::remove_file(&copy);
        let bytes = bytes?;
        let (last_applied, last_membership) = decode(&state)?;
        let meta = SnapshotMeta {
            snapshot_id: snapshot_id(last_applied.as_ref()),
            last_log_id: last_applied,
            last_membership,
        };
        self.dir.save(&meta, &bytes)?;
        tracing::info!(snapshot = %meta, bytes = bytes.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }

    fn install(&self, meta: &Meta, bytes: &[u8]) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let incoming = self.dir.incoming_copy();
        fs::write(&incoming, bytes).map_err(Error::io(&incoming))?;
        let state = db::Store::inspect(&incoming);
        let _ = fs::remove_file(&incoming);
        let (last_applied, membership) = decode(&state?)?;
        if last_applied != meta.last_log_id || membership != meta.last_membership {
            return Err(Error::BadSnapshot(format!(
                "content is at {last_applied:?} with {membership}, metadata says {meta}"
            )));
        }
        // The snapshot is durable before the DB changes: a crash in between is finished by
        // `StateMachine::open`, which restores from it.
        self.dir.save(meta, bytes)?;
        restore_bytes(&self.db, &self.dir, bytes)?;
        tracing::info!(snapshot = %meta, "snapshot installed");
        Ok(())
    }

    fn current(&self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.dir.load()?.map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// The Raft state machine over the cluster DB.
///
/// # Correctness
///
/// - A batch of entries is applied in one DB transaction together with the new last-applied
///   log id and last membership ([`db::Store::apply_entries`]): after a crash the DB holds
///   either all of a batch and its position or none of it, so openraft re-applies exactly
///   what is missing.
/// - Blank and membership entries change only the recorded position.
/// - A command that fails deterministically answers [`Applied::Rejected`] and the batch goes
///   on; an environmental failure fails `apply`, which stops the Raft node.
/// - A snapshot is a consistent copy of the whole DB (its position included). Installing one
///   replaces the DB content in one SQLite transaction, after the snapshot is saved as the
///   current one; [`StateMachine::open`] completes an install a crash interrupted.
/// - All DB and file work runs in `spawn_blocking`.
///
/// Everything else in the daemon may read the same [`db::Store`], but once Raft runs only
/// this state machine may write to it.
#[derive(Debug)]
pub struct StateMachine {
    snapshots: Snapshots,
    last_applied: Option<LogId<u64>>,
    last_membership: Membership,
}

impl StateMachine {
    /// Opens the state machine over `db`, keeping snapshots in `snapshot_dir` (created if
    /// needed).
    ///
    /// If the current snapshot is ahead of the DB (a crash interrupted its install), the DB
    /// is restored from it first.
    pub async fn open(db: Arc<db::Store>, snapshot_dir: &Path) -> Result<Self> {
        let snapshot_dir = snapshot_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let dir = SnapshotDir::open(&snapshot_dir)?;
            let mut state = db.read(db::raft_state::get)?;
            let (mut last_applied, _) = decode(&state)?;
            if let Some((meta, bytes)) = dir.load()?
                && meta.last_log_id > last_applied
            {
                tracing::warn!(
                    snapshot = %meta,
                    "the cluster DB is behind the current snapshot, restoring it"
                );
                state = restore_bytes(&db, &dir, &bytes)?;
                (last_applied, _) = decode(&state)?;
            }
            let (_, last_membership) = decode(&state)?;
            Ok(Self {
                snapshots: Snapshots {
                    db,
                    dir,
                    lock: Arc::new(Mutex::new(())),
                },
                last_applied,
                last_membership,
            })
        })
        .await?
    }

    /// The id of the last entry applied.
    pub fn last_applied(&self) -> Option<LogId<u64>> {
        self.last_applied
    }
}

/// Builds a snapshot of the state machine's DB; see [`StateMachine`].
#[derive(Debug)]
pub struct SnapshotBuilder {
    snapshots: Snapshots,
}

fn sm_error(make: fn(AnyError) -> StorageIOError<u64>) -> impl FnOnce(Error) -> StorageError<u64> {
    move |e| make(AnyError::new(&e)).into()
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(
        &mut self,
    ) -> std::result::Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let snapshots = self.snapshots.clone();
        let built = tokio::task::spawn_blocking(move || snapshots.build()).await;
        built
            .map_err(Error::from)
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)).into())
    }
}

/// The most DB items an apply runs on the state machine's own task (see its use).
const INLINE_APPLY_ITEMS: usize = 16;

/// The DB items of `entries`: one per command, one without a command for an entry that
/// carries none (blank, membership), as [`db::Store::apply_entries`] takes them.
fn items(entries: &[Entry<TypeConfig>]) -> impl Iterator<Item = Option<&db::Command>> {
    entries.iter().flat_map(|e| match &e.payload {
        EntryPayload::Normal(proposal) if !proposal.commands().is_empty() => {
            proposal.commands().iter().map(Some).collect()
        }
        _ => vec![None],
    })
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> std::result::Result<(Option<LogId<u64>>, Membership), StorageError<u64>> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> std::result::Result<Vec<Vec<Applied>>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let Some(last) = entries.last().map(|e| e.log_id) else {
            return Ok(Vec::new());
        };
        let mut membership = self.last_membership.clone();
        for e in &entries {
            if let EntryPayload::Membership(m) = &e.payload {
                membership = StoredMembership::new(Some(e.log_id), m.clone());
            }
        }
        let to_storage = |e: Error| -> StorageError<u64> {
            StorageIOError::apply(last, AnyError::new(&e)).into()
        };
        let state = encode(Some(&last), &membership).map_err(to_storage)?;
        let db = self.snapshots.db.clone();
        // One DB item per command, so a batched entry applies exactly as its commands would
        // one per entry; an entry without any (blank, membership) is one item without one.
        let commands: Vec<usize> = entries
            .iter()
            .map(|e| match &e.payload {
                EntryPayload::Normal(proposal) => proposal.commands().len(),
                EntryPayload::Blank | EntryPayload::Membership(_) => 0,
            })
            .collect();
        // A few commands (a write or a small batch) are applied right here when the DB is
        // free: the hand-off to a blocking thread and back cost two thread wake-ups on
        // every write. The commit does not fsync (`synchronous=NORMAL`; the Raft log is the
        // durable copy), except in the WAL checkpoint SQLite runs after every ~1000 written
        // pages. More (a member catching up) go to a blocking thread, as does any batch
        // while the DB is busy, so that this task never holds its worker long.
        let few = commands.iter().map(|&n| n.max(1)).sum::<usize>() <= INLINE_APPLY_ITEMS;
        let inline = few.then(|| db.try_apply_entries(items(&entries), &state));
        let applied = match inline.flatten() {
            Some(applied) => applied,
            None => tokio::task::spawn_blocking(move || db.apply_entries(items(&entries), &state))
                .await
                .map_err(|e| to_storage(e.into()))?,
        };
        let outcomes = applied.map_err(|e| to_storage(e.into()))?;
        self.last_applied = Some(last);
        self.last_membership = membership;
        let mut outcomes = outcomes.into_iter();
        Ok(commands
            .into_iter()
            .map(|n| {
                let items: Vec<_> = outcomes.by_ref().take(n.max(1)).collect();
                if n == 0 {
                    return Vec::new();
                }
                items
                    .into_iter()
                    .map(|outcome| {
                        if let Err(e) = &outcome {
                            tracing::debug!(log = %last, error = %e, "command rejected");
                        }
                        Applied::from_db(outcome)
                    })
                    .collect()
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError<u64>> {
        let snapshots = self.snapshots.clone();
        let owned_meta = meta.clone();
        let installed =
            tokio::task::spawn_blocking(move || snapshots.install(&owned_meta, snapshot.get_ref()))
                .await;
        installed
            .map_err(Error::from)
            .and_then(|r| r)
            .map_err(|e| {
                StorageIOError::write_snapshot(Some(meta.signature()), AnyError::new(&e))
            })?;
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> std::result::Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || snapshots.current())
            .await
            .map_err(Error::from)
            .and_then(|r| r)
            .map_err(sm_error(|e| StorageIOError::read_snapshot(None, e)))
    }
}

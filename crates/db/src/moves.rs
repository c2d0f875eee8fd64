//! The `moves` table: the journal of instance moves between members.
//!
//! One row per move, written before anything changes and updated as each step completes,
//! so that whichever member restarts mid-move knows what to undo or finish. The ownership
//! switch ([`crate::Command::SwitchMoveOwner`]) changes the instance's `member` and the
//! move's step in one transaction: it is the single moment a move takes effect.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Where a move stands. Steps only go forward; [`MoveStep::Switched`] splits a move in two:
/// before it the instance belongs to the source (a crash undoes the move), from it on to
/// the target (a crash finishes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MoveStep {
    /// Journaled; nothing changed yet.
    Started,
    /// The volume was copied to the target's staging area while the instance ran.
    Precopied,
    /// The instance is stopped on the source.
    Stopped,
    /// The target holds a verified, complete copy (or, on shared storage, needs none).
    Synced,
    /// A live move armed the hand-over (journaled while the guest still runs on the
    /// source): once the source QEMU's migration has completed, the target resumes the VM
    /// before the switch. From here a move is undone only after the target answered that
    /// it never resumed the VM; otherwise it goes forward.
    Handover,
    /// The target owns the instance.
    Switched,
    /// The instance is started on the target (or was to stay stopped).
    TargetStarted,
    /// Finished: the source copy is gone.
    Done,
    /// Fenced before the switch (the source gave up, or the target restarted and dropped
    /// what it had received): the switch can no longer happen; the source still has to
    /// put the instance back in its power state.
    Aborted,
    /// Undone before the switch: the instance is whole on the source again.
    Failed,
}

impl MoveStep {
    /// The stored name (`"pre-copied"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Precopied => "precopied",
            Self::Stopped => "stopped",
            Self::Synced => "synced",
            Self::Handover => "handover",
            Self::Switched => "switched",
            Self::TargetStarted => "target-started",
            Self::Done => "done",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "started" => Self::Started,
            "precopied" => Self::Precopied,
            "stopped" => Self::Stopped,
            "synced" => Self::Synced,
            "handover" => Self::Handover,
            "switched" => Self::Switched,
            "target-started" => Self::TargetStarted,
            "done" => Self::Done,
            "aborted" => Self::Aborted,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the move has ended (done or undone).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }

    /// Whether the target owns the instance at this step.
    pub fn is_switched(self) -> bool {
        matches!(self, Self::Switched | Self::TargetStarted | Self::Done)
    }
}

/// One move as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveRecord {
    /// Move id (a UUID, chosen by the proposer).
    pub id: String,
    /// Project of the instance.
    pub project: String,
    /// Instance name.
    pub instance: String,
    /// The member that held the instance when the move began.
    pub source: String,
    /// The member it moves to.
    pub target: String,
    /// The storage pool of its root disk.
    pub pool: String,
    /// Whether data is copied (`true`: a member-local pool such as `dir`) or only the
    /// ownership changes (`false`: shared storage).
    pub copy_data: bool,
    /// Whether the instance ran when the move began (it runs on the target afterwards).
    pub was_running: bool,
    /// Where the move stands.
    pub step: MoveStep,
    /// Why the move failed (`""` unless [`MoveStep::Failed`]).
    pub error: String,
    /// RFC 3339, stamped by the proposer.
    pub created_at: String,
    /// RFC 3339 of the last step change.
    pub updated_at: String,
}

const COLUMNS: &str = "id, project, instance, source, target, pool, copy_data, was_running, step, error, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(MoveRecord, String)> {
    Ok((
        MoveRecord {
            id: r.get(0)?,
            project: r.get(1)?,
            instance: r.get(2)?,
            source: r.get(3)?,
            target: r.get(4)?,
            pool: r.get(5)?,
            copy_data: r.get(6)?,
            was_running: r.get(7)?,
            step: MoveStep::Started,
            error: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
        },
        r.get(8)?,
    ))
}

fn finish(raw: (MoveRecord, String)) -> Result<MoveRecord> {
    let (mut rec, step) = raw;
    rec.step = MoveStep::parse(&step).ok_or_else(|| Error::Corrupt(format!("move step {step}")))?;
    Ok(rec)
}

/// The move `id`, if journaled.
pub fn get(conn: &Connection, id: &str) -> Result<Option<MoveRecord>> {
    let raw = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM moves WHERE id = ?1"),
            params![id],
            from_row,
        )
        .optional()?;
    raw.map(finish).transpose()
}

/// Moves not finished (neither done nor failed), oldest first.
pub fn unfinished(conn: &Connection) -> Result<Vec<MoveRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM moves WHERE step NOT IN ('done', 'failed') ORDER BY created_at, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The unfinished move of instance `name` in `project`, if any.
pub fn unfinished_of(conn: &Connection, project: &str, name: &str) -> Result<Option<MoveRecord>> {
    Ok(unfinished(conn)?
        .into_iter()
        .find(|m| m.project == project && m.instance == name))
}

/// All moves, newest first.
pub fn list(conn: &Connection) -> Result<Vec<MoveRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM moves ORDER BY created_at DESC, id"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// Journals a new move. Refused when the instance is missing, is not on `source`, or
/// already has an unfinished move; an id already journaled is refused as existing.
pub(crate) fn insert(conn: &Connection, rec: &MoveRecord) -> Result<()> {
    let member: Option<String> = conn
        .query_row(
            "SELECT member FROM instances WHERE project = ?1 AND name = ?2",
            params![rec.project, rec.instance],
            |r| r.get(0),
        )
        .optional()?;
    match member {
        None => return Err(Error::NotFound(format!("instance {:?}", rec.instance))),
        Some(m) if m != rec.source => {
            return Err(Error::Refused(format!(
                "instance {:?} is on member {m:?}, not {:?}",
                rec.instance, rec.source
            )));
        }
        Some(_) => {}
    }
    if get(conn, &rec.id)?.is_some() {
        return Err(Error::Exists(format!("move {:?}", rec.id)));
    }
    if let Some(other) = unfinished_of(conn, &rec.project, &rec.instance)? {
        return Err(Error::Refused(format!(
            "instance {:?} is already moving to {:?}",
            rec.instance, other.target
        )));
    }
    conn.execute(
        &format!(
            "INSERT INTO moves ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            rec.id,
            rec.project,
            rec.instance,
            rec.source,
            rec.target,
            rec.pool,
            rec.copy_data,
            rec.was_running,
            rec.step.as_str(),
            rec.error,
            rec.created_at,
            rec.updated_at,
        ],
    )?;
    Ok(())
}

/// Records that move `id` reached `step`.
///
/// Refused: any change of a final move; the switch (its own command); [`MoveStep::Aborted`]
/// or [`MoveStep::Failed`] once switched; from [`MoveStep::Aborted`] anything but
/// [`MoveStep::Failed`]; a forward step that is not after the current one or on the wrong
/// side of the switch. Recording the current step again is a no-op.
pub(crate) fn set_step(
    conn: &Connection,
    id: &str,
    step: MoveStep,
    error: &str,
    now: &str,
) -> Result<()> {
    let rec = get(conn, id)?.ok_or_else(|| Error::NotFound(format!("move {id:?}")))?;
    if rec.step == step {
        return Ok(());
    }
    let refuse = |why: &str| {
        Err(Error::Refused(format!(
            "move {id:?} is at step {}, cannot go to {}: {why}",
            rec.step.as_str(),
            step.as_str()
        )))
    };
    if rec.step.is_final() {
        return refuse("it has ended");
    }
    match step {
        MoveStep::Switched => return refuse("the switch has its own command"),
        MoveStep::Aborted | MoveStep::Failed if rec.step.is_switched() => {
            return refuse("the instance belongs to the target already");
        }
        MoveStep::Aborted | MoveStep::Failed => {}
        _ if rec.step == MoveStep::Aborted => return refuse("the move was aborted"),
        _ if step < rec.step => return refuse("steps only go forward"),
        _ if step.is_switched() != rec.step.is_switched() => {
            return refuse("wrong side of the ownership switch");
        }
        _ => {}
    }
    conn.execute(
        "UPDATE moves SET step = ?2, error = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, step.as_str(), error, now],
    )?;
    Ok(())
}

/// Hands the instance of move `id` to its target: sets the instance's `member` and the
/// move's step to [`MoveStep::Switched`] together. Refused unless the move is unfinished,
/// not switched yet, and the instance is still on the move's source.
pub(crate) fn switch_owner(conn: &Connection, id: &str, now: &str) -> Result<()> {
    let rec = get(conn, id)?.ok_or_else(|| Error::NotFound(format!("move {id:?}")))?;
    if rec.step.is_switched() {
        return Ok(());
    }
    if rec.step.is_final() || rec.step == MoveStep::Aborted {
        return Err(Error::Refused(format!(
            "move {id:?} was aborted before the switch"
        )));
    }
    let n = conn.execute(
        "UPDATE instances SET member = ?3 WHERE project = ?1 AND name = ?2 AND member = ?4",
        params![rec.project, rec.instance, rec.target, rec.source],
    )?;
    if n == 0 {
        return Err(Error::Refused(format!(
            "instance {:?} is no longer on member {:?}",
            rec.instance, rec.source
        )));
    }
    crate::volumes::move_instance(conn, &rec.project, &rec.instance, &rec.target)?;
    conn.execute(
        "UPDATE moves SET step = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, MoveStep::Switched.as_str(), now],
    )?;
    Ok(())
}

//! The `evacuations` table: the journal of a member's evacuation or restore.
//!
//! One row per instance of the plan, written with the member's new state in one command
//! ([`crate::Command::BeginEvacuation`]) before anything is done, and updated as each
//! instance's step completes. A coordinator that restarts (or a new leader) finds the
//! unfinished rows and carries on. Rows of an evacuation stay after it ends: the restore
//! reads where the evacuation put each instance; a restore's rows go when it finishes.

use api::MemberState;
use api::evacuation::{PlanAction, PlanEntry, PlanStep};
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Which of the two jobs a plan belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvacuationKind {
    /// Taking the member out.
    Evacuate,
    /// Bringing it back.
    Restore,
}

impl EvacuationKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evacuate => "evacuate",
            Self::Restore => "restore",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "evacuate" => Some(Self::Evacuate),
            "restore" => Some(Self::Restore),
            _ => None,
        }
    }
}

/// One row: an instance of a member's plan and how far it has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvacuationRow {
    /// The member evacuated or restored.
    pub member: String,
    /// Evacuate or restore.
    pub kind: EvacuationKind,
    /// The operation that runs it (`""` once none does).
    pub operation: String,
    /// The instance's entry of the plan.
    pub entry: PlanEntry,
}

const COLUMNS: &str = "member, kind, operation, project, instance, action, source, target, reason, step, was_running, bytes, error";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(EvacuationRow, String, String, String)> {
    Ok((
        EvacuationRow {
            member: r.get(0)?,
            kind: EvacuationKind::Evacuate,
            operation: r.get(2)?,
            entry: PlanEntry {
                project: r.get(3)?,
                instance: r.get(4)?,
                action: None,
                source: r.get(6)?,
                target: r.get(7)?,
                reason: r.get(8)?,
                step: PlanStep::Planned,
                was_running: r.get(10)?,
                bytes: r.get::<_, i64>(11)?.try_into().unwrap_or(0),
                error: r.get(12)?,
            },
        },
        r.get(1)?,
        r.get(5)?,
        r.get(9)?,
    ))
}

fn finish(raw: (EvacuationRow, String, String, String)) -> Result<EvacuationRow> {
    let (mut row, kind, action, step) = raw;
    row.kind = EvacuationKind::parse(&kind)
        .ok_or_else(|| Error::Corrupt(format!("evacuation kind {kind:?}")))?;
    row.entry.action = Some(
        serde_json::from_value::<PlanAction>(serde_json::Value::String(action.clone()))
            .map_err(|_| Error::Corrupt(format!("evacuation action {action:?}")))?,
    );
    row.entry.step = PlanStep::parse(&step)
        .ok_or_else(|| Error::Corrupt(format!("evacuation step {step:?}")))?;
    Ok(row)
}

/// The plan of `member`, by project and instance name.
pub fn list_for_member(conn: &Connection, member: &str) -> Result<Vec<EvacuationRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM evacuations WHERE member = ?1 ORDER BY project, instance"
    ))?;
    let rows = stmt.query_map(params![member], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// Every row of every member, by member, project and name.
pub fn list(conn: &Connection) -> Result<Vec<EvacuationRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM evacuations ORDER BY member, project, instance"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The member and kind of a job in progress — a member evacuating or restoring — other
/// than `except`, if any.
pub fn in_progress(conn: &Connection, except: &str) -> Result<Option<(String, EvacuationKind)>> {
    for m in crate::members::list(conn)? {
        if m.name == except {
            continue;
        }
        match m.state {
            MemberState::Evacuating if has_unfinished(conn, &m.name)? => {
                return Ok(Some((m.name, EvacuationKind::Evacuate)));
            }
            MemberState::Restoring if has_unfinished(conn, &m.name)? => {
                return Ok(Some((m.name, EvacuationKind::Restore)));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Whether `member`'s job is not finished yet: its plan has rows not done, or an operation
/// still owns it (every step is recorded but the member's final state is not yet, as when
/// the coordinator died right before writing it).
pub fn has_unfinished(conn: &Connection, member: &str) -> Result<bool> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM evacuations
         WHERE member = ?1 AND (step NOT IN ('done', 'failed') OR operation != '')",
        params![member],
        |r| r.get(0),
    )?;
    Ok(n > 0)
}

/// Whether `member` may start an evacuation or restore now, by the DB alone: refused with
/// LXD's message ([`Error::Refused`]) when it is already in that state or another one is
/// in progress. [`crate::Command::BeginEvacuation`] checks the same when applied.
pub fn check_begin(conn: &Connection, member: &str, kind: EvacuationKind) -> Result<()> {
    let rec = crate::members::get(conn, member)?
        .ok_or_else(|| Error::NotFound(format!("member {member:?}")))?;
    match (kind, rec.state) {
        // A member whose evacuation is under way is evacuated as far as a second request
        // can tell (LXD 5.0.2 marks it evacuated when it starts): two plans of one member
        // must not run at once. One left evacuating by a failed run can go again.
        (EvacuationKind::Evacuate, MemberState::Evacuated) => {
            return Err(Error::Refused("Cluster member is already evacuated".into()));
        }
        (EvacuationKind::Evacuate, MemberState::Evacuating) if has_unfinished(conn, member)? => {
            return Err(Error::Refused("Cluster member is already evacuated".into()));
        }
        (EvacuationKind::Restore, MemberState::Restoring) if has_unfinished(conn, member)? => {
            return Err(Error::Refused(format!(
                "Cannot restore {member:?} while a restore operation is in progress"
            )));
        }
        (EvacuationKind::Restore, MemberState::Created) => {
            return Err(Error::Refused("Cluster member is already restored".into()));
        }
        (EvacuationKind::Evacuate, MemberState::Restoring) if has_unfinished(conn, member)? => {
            return Err(Error::Refused(format!(
                "Cannot evacuate {member:?} while a restore operation is in progress"
            )));
        }
        (EvacuationKind::Restore, MemberState::Evacuating) if has_unfinished(conn, member)? => {
            return Err(Error::Refused(format!(
                "Cannot restore {member:?} while an evacuate operation is in progress"
            )));
        }
        (_, MemberState::Pending) => {
            return Err(Error::Refused("Cluster member is still joining".into()));
        }
        _ => {}
    }
    if let Some((other, other_kind)) = in_progress(conn, member)? {
        return Err(Error::Refused(match (kind, other_kind) {
            (EvacuationKind::Evacuate, EvacuationKind::Evacuate) => format!(
                "Cannot evacuate {member:?} while another cluster member evacuation is in progress"
            ),
            (EvacuationKind::Evacuate, EvacuationKind::Restore) => {
                format!("Cannot evacuate {member:?} while a restore operation is in progress")
            }
            (EvacuationKind::Restore, EvacuationKind::Evacuate) => {
                format!("Cannot restore {member:?} while an evacuate operation is in progress")
            }
            (EvacuationKind::Restore, EvacuationKind::Restore) => format!(
                "Cannot restore {member:?} while another cluster member restore ({other:?}) is in progress"
            ),
        }));
    }
    Ok(())
}

/// Applies [`crate::Command::BeginEvacuation`].
pub(crate) fn begin(
    conn: &Connection,
    member: &str,
    kind: EvacuationKind,
    operation: &str,
    entries: &[PlanEntry],
) -> Result<()> {
    check_begin(conn, member, kind)?;
    // Evacuating again after a partial evacuation: what the first run stopped in place is
    // stopped now, but its last power state must stay what it was before it.
    let again =
        crate::members::get(conn, member)?.is_some_and(|m| m.state == MemberState::Evacuating);
    conn.execute("DELETE FROM evacuations WHERE member = ?1", params![member])?;
    for e in entries {
        insert(conn, member, kind, operation, e)?;
        if kind == EvacuationKind::Evacuate {
            record_instance(conn, member, e, again)?;
        }
    }
    let state = match kind {
        EvacuationKind::Evacuate => MemberState::Evacuating,
        EvacuationKind::Restore => MemberState::Restoring,
    };
    conn.execute(
        "UPDATE members SET state = ?2 WHERE name = ?1",
        params![member, state.as_i64()],
    )?;
    Ok(())
}

/// Inserts the row of entry `e`; `false` (nothing changed) when the instance has one.
fn insert(
    conn: &Connection,
    member: &str,
    kind: EvacuationKind,
    operation: &str,
    e: &PlanEntry,
) -> Result<bool> {
    let action = e.action.map_or("none", PlanAction::as_str);
    let n = conn.execute(
        &format!(
            "INSERT OR IGNORE INTO evacuations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            member,
            kind.as_str(),
            operation,
            e.project,
            e.instance,
            action,
            e.source,
            e.target,
            e.reason,
            e.step.as_str(),
            e.was_running,
            i64::try_from(e.bytes).unwrap_or(i64::MAX),
            e.error
        ],
    )?;
    Ok(n > 0)
}

/// Applies [`crate::Command::AddEvacuationEntries`].
pub(crate) fn add(
    conn: &Connection,
    member: &str,
    operation: &str,
    entries: &[PlanEntry],
) -> Result<()> {
    let state = crate::members::get(conn, member)?.map(|m| m.state);
    if state != Some(MemberState::Evacuating) {
        return Err(Error::Refused(format!(
            "Cluster member {member:?} is not evacuating"
        )));
    }
    for e in entries {
        if insert(conn, member, EvacuationKind::Evacuate, operation, e)? {
            record_instance(conn, member, e, false)?;
        }
    }
    Ok(())
}

/// Records on an instance about to be evacuated its last power state (unless this is a
/// second run and it is stopped: the first run may have stopped it) and, when it moves and
/// has none yet, the member it came from.
fn record_instance(conn: &Connection, member: &str, e: &PlanEntry, again: bool) -> Result<()> {
    let Some(mut rec) = crate::instances::get(conn, &e.project, &e.instance)? else {
        return Ok(());
    };
    if e.was_running || !again {
        let power = if e.was_running { "RUNNING" } else { "STOPPED" };
        rec.config
            .insert("volatile.last_state.power".into(), power.into());
    }
    if e.action.is_some_and(PlanAction::moves)
        && rec
            .config
            .get("volatile.evacuate.origin")
            .is_none_or(String::is_empty)
    {
        rec.config
            .insert("volatile.evacuate.origin".into(), member.into());
    }
    conn.execute(
        "UPDATE instances SET config = ?3 WHERE project = ?1 AND name = ?2",
        params![e.project, e.instance, serde_json::to_string(&rec.config)?],
    )?;
    Ok(())
}

/// Applies [`crate::Command::SetEvacuationStep`].
pub(crate) fn set_step(
    conn: &Connection,
    member: &str,
    project: &str,
    instance: &str,
    step: PlanStep,
    bytes: u64,
    error: &str,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE evacuations SET step = ?4, bytes = MAX(bytes, ?5), error = ?6
         WHERE member = ?1 AND project = ?2 AND instance = ?3",
        params![
            member,
            project,
            instance,
            step.as_str(),
            i64::try_from(bytes).unwrap_or(i64::MAX),
            error
        ],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "evacuation step of instance {instance:?}"
        )));
    }
    if step != PlanStep::Planned {
        forward_placement(conn, member, project, instance)?;
    }
    Ok(())
}

/// An instance that an earlier evacuation of another member (its
/// `volatile.evacuate.origin`) put on `member`, and that the evacuation of `member` has
/// now moved on (it is owned by the row's target): the earlier journal follows it, so
/// restoring its origin brings it home instead of taking it for one moved by hand.
fn forward_placement(conn: &Connection, member: &str, project: &str, instance: &str) -> Result<()> {
    let moved_to: Option<(String, String, String)> = conn
        .query_row(
            "SELECT kind, action, target FROM evacuations
             WHERE member = ?1 AND project = ?2 AND instance = ?3",
            params![member, project, instance],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok();
    let Some((kind, action, target)) = moved_to else {
        return Ok(());
    };
    let moves = serde_json::from_value::<PlanAction>(serde_json::Value::String(action))
        .is_ok_and(PlanAction::moves);
    if kind != EvacuationKind::Evacuate.as_str() || !moves || target.is_empty() {
        return Ok(());
    }
    let Some(rec) = crate::instances::get(conn, project, instance)? else {
        return Ok(());
    };
    if rec.member != target {
        return Ok(());
    }
    let origin = rec
        .config
        .get("volatile.evacuate.origin")
        .map_or("", String::as_str);
    if origin.is_empty() || origin == member {
        return Ok(());
    }
    conn.execute(
        "UPDATE evacuations SET target = ?4
         WHERE member = ?1 AND kind = 'evacuate' AND project = ?2 AND instance = ?3 AND target = ?5",
        params![origin, project, instance, target, member],
    )?;
    Ok(())
}

/// Applies [`crate::Command::ReplanEvacuationEntry`]: the row's new action, target and
/// reason; an instance that now stays loses the origin its first plan gave it.
pub(crate) fn replan(
    conn: &Connection,
    member: &str,
    project: &str,
    instance: &str,
    action: PlanAction,
    target: &str,
    reason: &str,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE evacuations SET action = ?4, target = ?5, reason = ?6
         WHERE member = ?1 AND project = ?2 AND instance = ?3",
        params![member, project, instance, action.as_str(), target, reason],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!(
            "evacuation step of instance {instance:?}"
        )));
    }
    if !action.moves()
        && let Some(mut rec) = crate::instances::get(conn, project, instance)?
        && rec
            .config
            .get("volatile.evacuate.origin")
            .map(String::as_str)
            == Some(member)
    {
        rec.config.remove("volatile.evacuate.origin");
        conn.execute(
            "UPDATE instances SET config = ?3 WHERE project = ?1 AND name = ?2",
            params![project, instance, serde_json::to_string(&rec.config)?],
        )?;
    }
    Ok(())
}

/// Applies [`crate::Command::FinishEvacuation`].
pub(crate) fn finish_job(
    conn: &Connection,
    member: &str,
    kind: EvacuationKind,
    state: MemberState,
) -> Result<()> {
    let n = conn.execute(
        "UPDATE members SET state = ?2 WHERE name = ?1",
        params![member, state.as_i64()],
    )?;
    if n == 0 {
        return Err(Error::NotFound(format!("member {member:?}")));
    }
    if kind == EvacuationKind::Restore && state == MemberState::Created {
        conn.execute("DELETE FROM evacuations WHERE member = ?1", params![member])?;
    } else {
        conn.execute(
            "UPDATE evacuations SET operation = '' WHERE member = ?1",
            params![member],
        )?;
    }
    Ok(())
}

//! Resolving the moves a previous run of this daemon left unfinished.
//!
//! On start-up each member reads the unfinished moves it takes part in from the journal:
//!
//! | role | step | what it does |
//! |---|---|---|
//! | source | hand-over armed (a live move) | the VM resumed on the target ([`super::live::settle`]): switches and finishes; else as below |
//! | source | before the switch (or aborted) | fences the switch out, has the target discard what it holds, starts the instance again if it ran, journals the failure |
//! | source | switched | has the target take over (start it if it ran), deletes its own copy, journals done |
//! | target | hand-over armed (a live move) | it resumed the VM: switches and takes it over; else as below, under the instance lock |
//! | target | before the switch | fences the switch out (what it received is gone with its restart), discards the volume it may have put in place |
//! | target | aborted | discards what it holds |
//! | target | switched | starts the instance if it ran |
//!
//! Both sides fence with [`db::moves::MoveStep::Aborted`]: whichever of the abort and the
//! switch commits first wins, so a half-done move is either undone or finished, never both.

use std::time::Duration;

use db::moves::{MoveRecord, MoveStep};

use super::checks::Plan;
use super::execute::Fence;
use super::execute::{Undo, fence, finish, undo};
use super::internal::{MoveQuery, discard_local, finish_local};
use super::live::Handed;
use super::progress::Reporter;
use crate::error::ApiResult;
use crate::state::Daemon;

/// How often resolving is retried while a peer or the leader is unreachable.
const RETRY: Duration = Duration::from_secs(3);
/// How many rounds are tried before leaving the rest to the next start.
const ROUNDS: u32 = 100;

/// Resolves, in the background, every unfinished move this member takes part in.
pub fn spawn(d: &Daemon) {
    let d = d.clone();
    tokio::spawn(async move {
        if let Err(e) = super::live_target::sweep_failed(&d).await {
            tracing::warn!(error = %e.message, "leftovers of failed moves not swept");
        }
        for round in 0..ROUNDS {
            match resolve_all(&d).await {
                Ok(0) => return,
                Ok(left) => {
                    tracing::info!(left, round, "unfinished moves remain; retrying");
                }
                Err(e) => tracing::warn!(error = %e.message, "cannot read unfinished moves yet"),
            }
            tokio::time::sleep(RETRY).await;
        }
        tracing::warn!("unfinished moves left for the next start");
    });
}

/// Resolves, in the background, move `id` of which this member is the source and which
/// it could not see to its end: the target did not confirm the switch (it died right
/// then), or the move's first journal write failed with an unknown outcome. Retried while
/// the target or the leader is unreachable; what is left after [`ROUNDS`] waits for the
/// next start.
pub fn spawn_one(d: &Daemon, id: String) {
    let d = d.clone();
    tokio::spawn(async move {
        for _ in 0..ROUNDS {
            // Whether the move exists at all is known once this member has caught up.
            let known = d.replicator().ensure_linearizable().await;
            let key = id.clone();
            let outcome = match d.read(move |c| db::moves::get(c, &key)).await {
                Ok(Some(m)) if !m.step.is_final() && m.source == d.member() => {
                    as_source(&d, &m).await
                }
                Ok(Some(_)) => return,
                Ok(None) if known.is_ok() => return,
                Ok(None) => Err(crate::error::ApiError::internal("no leader to ask yet")),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(true) => {
                    tracing::info!(move_id = %id, "unfinished move resolved");
                    return;
                }
                Ok(false) => return,
                Err(e) => {
                    tracing::info!(move_id = %id, error = %e.message, "unfinished move not resolved yet");
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        tracing::warn!(move_id = %id, "unfinished move left for the next start");
    });
}

/// One round: returns how many moves are still unresolved.
async fn resolve_all(d: &Daemon) -> ApiResult<usize> {
    let me = d.member();
    let moves = d.read(db::moves::unfinished).await?;
    let mut left = 0;
    for m in moves {
        let outcome = if m.source == me {
            as_source(d, &m).await
        } else if m.target == me {
            as_target(d, &m).await
        } else {
            continue;
        };
        match outcome {
            Ok(true) => {
                tracing::info!(move_id = %m.id, instance = %m.instance, "unfinished move resolved")
            }
            Ok(false) => {}
            Err(e) => {
                left += 1;
                tracing::warn!(move_id = %m.id, error = %e.message, "unfinished move not resolved yet");
            }
        }
    }
    Ok(left)
}

/// Resolves move `m` of which this member is the source; `Ok(true)` once resolved.
async fn as_source(d: &Daemon, m: &MoveRecord) -> ApiResult<bool> {
    let Some(rec) = ({
        let (p, n) = (m.project.clone(), m.instance.clone());
        d.read(move |c| db::instances::get(c, &p, &n)).await?
    }) else {
        super::execute::journal(d, &m.id, MoveStep::Failed, "the instance is gone").await?;
        return Ok(true);
    };
    let plan = Plan {
        id: m.id.clone(),
        rec,
        source: m.source.clone(),
        target: m.target.clone(),
        pool: m.pool.clone(),
        copy_data: m.copy_data,
        was_running: m.was_running,
        start_after: m.was_running,
        autostart: false,
    };
    let lock = d.instance_lock(&plan.volume());
    let _guard = lock.lock().await;
    let mut rep = Reporter::new(&plan.rec.name, None);
    if m.step.is_switched() {
        finish(d, &plan, &mut rep).await?;
        return Ok(true);
    }
    if m.step == MoveStep::Handover {
        // A live move: the target may run the VM already.
        match super::live::settle(d, &plan).await {
            Handed::Resumed => {
                d.write(db::Command::SwitchMoveOwner {
                    id: m.id.clone(),
                    now: ops::now_rfc3339(),
                })
                .await?;
                finish(d, &plan, &mut rep).await?;
                return Ok(true);
            }
            Handed::NotResumed(why) => {
                tracing::info!(move_id = %m.id, %why, "the VM never ran on the target: undoing the move");
            }
            Handed::Unknown(why) => return Err(crate::error::ApiError::internal(why)),
        }
    }
    match undo(d, &plan, true, "interrupted: the source member restarted").await {
        Undo::Undone => Ok(true),
        Undo::Switched => finish(d, &plan, &mut rep).await.map(|_| true),
        Undo::Unknown(why) => Err(crate::error::ApiError::internal(why)),
    }
}

/// Resolves what this member (the target) holds of move `m`; `Ok(true)` once resolved.
async fn as_target(d: &Daemon, m: &MoveRecord) -> ApiResult<bool> {
    let q = MoveQuery {
        project: m.project.clone(),
        instance: m.instance.clone(),
        pool: m.pool.clone(),
        copy: m.copy_data,
        start: m.was_running,
        image: String::new(),
    };
    if m.step.is_switched() {
        finish_local(d, &q).await?;
        return Ok(true);
    }
    if m.step == MoveStep::Handover {
        return super::live_target::recover_handover(d, m, &q).await;
    }
    if m.step != MoveStep::Aborted {
        match fence(d, &m.id, "interrupted: the target member restarted").await {
            Fence::Held => {}
            Fence::Switched => {
                finish_local(d, &q).await?;
                return Ok(true);
            }
            Fence::Unknown(why) => return Err(crate::error::ApiError::internal(why)),
        }
    }
    discard_local(d, &m.id, &q).await?;
    // The source journals the end once the instance runs there again.
    Ok(false)
}

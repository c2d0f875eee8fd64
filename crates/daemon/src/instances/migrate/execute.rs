//! Carrying out a checked move on the source member, step by journaled step, and undoing
//! it when a step before the ownership switch fails.

use std::time::{Duration, Instant};

use db::moves::{MoveRecord, MoveStep};

use super::checks::Plan;
use super::progress::{MoveStage, Reporter};
use super::{MoveOptions, MoveReport, internal, is_running};
use crate::cluster::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::instances::lifecycle::{StopWait, start_instance, stop_instance};
use crate::state::Daemon;

/// How long the fence (journaling an abort) is retried before the move is left for the
/// next start-up to resolve.
const FENCE_DEADLINE: Duration = Duration::from_secs(30);

/// Reads the instance again once its lock is held: what was checked may have changed
/// while waiting for it. Refuses when the instance left the source meanwhile; records
/// whether it runs now.
pub(super) async fn reload(d: &Daemon, plan: &mut Plan) -> ApiResult<()> {
    let current = crate::instances::load(d, &plan.rec.project, &plan.rec.name).await?;
    if current.member != plan.source {
        return Err(ApiError::conflict(format!(
            "Instance {:?} moved to cluster member {:?} meanwhile",
            plan.rec.name, current.member
        )));
    }
    plan.rec = current;
    plan.was_running = is_running(d, &plan.rec.project, &plan.rec.name);
    Ok(())
}

/// Runs `plan` under the instance lock.
pub(super) async fn run(d: &Daemon, mut plan: Plan, opts: &MoveOptions) -> ApiResult<MoveReport> {
    let started = Instant::now();
    let lock = d.instance_lock(&plan.volume());
    let _guard = lock.lock().await;
    reload(d, &mut plan).await?;
    if plan.was_running && opts.live {
        return Err(ApiError::bad_request(
            "Unable to perform container live migration. CRIU isn't installed: move it stopped with --stateless",
        ));
    }
    plan.start_after = plan.was_running || opts.start || plan.autostart;

    let record = plan.started_record();
    if let Err(e) = d.write(db::Command::CreateMove(record)).await {
        // The write may still commit (the leader died with it): then the move is in the
        // journal and nothing here would resolve it. Resolve it in the background once
        // the cluster knows.
        super::recover::spawn_one(d, plan.id.clone());
        return Err(e);
    }
    tracing::info!(
        move_id = %plan.id, instance = %plan.rec.name, target = %plan.target,
        copy = plan.copy_data, running = plan.was_running, "move started"
    );
    let mut rep = Reporter::new(&plan.rec.name, opts.progress.clone());
    let mut ctx = Ctx {
        switch_proposed: false,
        stopped_at: None,
    };
    match forward(d, &plan, &mut rep, &mut ctx).await {
        Ok(running) => {
            let downtime = match (ctx.stopped_at, rep.running_at(), running) {
                (Some(stop), Some(start), true) => Some(millis(start.duration_since(stop))),
                _ => None,
            };
            let report = MoveReport::from_plan(&plan, &rep, running, downtime, started);
            tracing::info!(move_id = %plan.id, ?report, "move done");
            Ok(report)
        }
        Err(Failure::AfterSwitch(e)) => {
            tracing::warn!(move_id = %plan.id, error = %e.message, "move switched but not finished");
            // The target owns it now; it is started there and the copy here goes once
            // the target answers again.
            super::recover::spawn_one(d, plan.id.clone());
            Err(e)
        }
        Err(Failure::BeforeSwitch(e)) => {
            rep.stage(MoveStage::Rollback);
            tracing::warn!(move_id = %plan.id, error = %e.message, "move failed: rolling back");
            undo_or_finish(d, &plan, ctx.switch_proposed, e, &mut rep)
                .await
                .map(|running| MoveReport::from_plan(&plan, &rep, running, None, started))
        }
    }
}

/// After move `plan` failed with `e` before its switch (`switch_proposed`: the switch may
/// have committed unseen): undoes it and fails with `e`, or, when the switch had committed
/// after all, finishes it and returns whether the instance runs on the target. Whatever is
/// left unresolved (the target did not answer, the undo's outcome is unknown) goes to the
/// background recovery.
pub(super) async fn undo_or_finish(
    d: &Daemon,
    plan: &Plan,
    switch_proposed: bool,
    e: ApiError,
    rep: &mut Reporter,
) -> ApiResult<bool> {
    match undo(d, plan, switch_proposed, &e.message).await {
        Undo::Undone => Err(e),
        Undo::Switched => finish(d, plan, rep)
            .await
            .inspect_err(|_| super::recover::spawn_one(d, plan.id.clone())),
        Undo::Unknown(why) => {
            super::recover::spawn_one(d, plan.id.clone());
            Err(ApiError::internal(format!(
                "{}; the move could not be undone yet ({why}): it is resolved in the background",
                e.message
            )))
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the steps learn along the way.
struct Ctx {
    /// The switch was proposed: a failure may hide a switch that committed.
    switch_proposed: bool,
    /// When the instance stopped on the source.
    stopped_at: Option<Instant>,
}

/// A failed step, by which side of the switch it happened on.
enum Failure {
    BeforeSwitch(ApiError),
    AfterSwitch(ApiError),
}

/// Journals that the move reached `step`.
pub(super) async fn journal(d: &Daemon, id: &str, step: MoveStep, error: &str) -> ApiResult<()> {
    d.write(db::Command::SetMoveStep {
        id: id.to_string(),
        step,
        error: error.to_string(),
        now: ops::now_rfc3339(),
    })
    .await
}

/// The steps up to and past the switch; returns whether the instance runs on the target.
async fn forward(
    d: &Daemon,
    plan: &Plan,
    rep: &mut Reporter,
    ctx: &mut Ctx,
) -> Result<bool, Failure> {
    let before = Failure::BeforeSwitch;
    let peer = Peer::connect(d, &plan.target).await.map_err(before)?;
    let mut base = None;
    let src = if plan.copy_data {
        let pool = crate::volumes::pool(d, &plan.pool).await.map_err(before)?;
        Some(pool.volume_path(&plan.volume()))
    } else {
        None
    };
    let precopy = plan.was_running && src.is_some() && worth_precopy(d, plan).await;
    if let Some(src) = src.as_ref().filter(|_| precopy) {
        internal::prepare(&peer, plan).await.map_err(before)?;
        rep.stage(MoveStage::Precopy);
        internal::send_volume(&peer, plan, src.clone(), &mut base, rep)
            .await
            .map_err(before)?;
    }
    // Recovery treats every step before the switch alike, so the only record written on
    // the way to the switch is the pre-copy's (it tells how far a long move got), and it
    // is written while the instance stops. The stop and the sync go unrecorded: two Raft
    // writes less inside the downtime. Without a pre-copy, the one data pass makes the
    // target's staging directory itself.
    let beside_stop = async {
        if precopy {
            journal(d, &plan.id, MoveStep::Precopied, "").await
        } else {
            Ok(())
        }
    };
    if plan.was_running {
        rep.stage(MoveStage::Stopping);
        let stop = async {
            stop_instance(d, &plan.rec, StopWait::HostShutdownTimeout, false).await?;
            Ok::<_, ApiError>(Instant::now())
        };
        let (beside, stopped) = tokio::join!(beside_stop, stop);
        ctx.stopped_at = Some(stopped.map_err(before)?);
        beside.map_err(before)?;
    } else {
        beside_stop.await.map_err(before)?;
    }
    if let Some(src) = src {
        rep.stage(MoveStage::Sync);
        internal::send_last_pass(&peer, plan, src, &mut base, rep)
            .await
            .map_err(before)?;
    }

    rep.stage(MoveStage::Switch);
    ctx.switch_proposed = true;
    // The target is asked to take over while the switch is proposed: it starts the
    // instance once its own DB shows the switch (and gives up once the move is aborted),
    // so no round trip between members separates the switch from the start.
    let early = {
        let (peer, plan) = (peer.clone(), plan.clone());
        tokio::spawn(async move { internal::finish(&peer, &plan).await })
    };
    let switched = d
        .write(db::Command::SwitchMoveOwner {
            id: plan.id.clone(),
            now: ops::now_rfc3339(),
        })
        .await;
    if let Err(e) = switched {
        early.abort();
        return Err(before(e));
    }
    tracing::info!(move_id = %plan.id, instance = %plan.rec.name, target = %plan.target, "ownership switched");
    if plan.start_after {
        rep.stage(MoveStage::Starting);
    }
    let started = match early.await {
        Ok(Ok(running)) => Ok(running),
        // Asked before the switch, the target may have given up waiting for it: ask again.
        Ok(Err(e)) => {
            tracing::info!(move_id = %plan.id, error = %e.message, "target asked again to take over");
            internal::finish(&peer, plan).await
        }
        // The task died: whether the target took over is not known (503: unconfirmed,
        // left to recovery).
        Err(e) => Err(ApiError::unavailable(format!(
            "asking the target to take over: {e}"
        ))),
    };
    took_over(d, plan, rep, started)
        .await
        .map_err(Failure::AfterSwitch)
}

/// Own changes up to this size are sent in one pass after the stop: a pre-copy costs a
/// round trip, a sync and a journal write (tens of ms under load) to keep out of the
/// downtime what one pass sends in a few ms (≈ 4 ms per MiB here, `drover-bench move`).
const PRECOPY_MIN_BYTES: u64 = 4 << 20;

/// Whether the volume of `plan` holds enough of its own data for a pre-copy to pay off;
/// when its size cannot be read, it does (the safe choice for the downtime).
async fn worth_precopy(d: &Daemon, plan: &Plan) -> bool {
    let Ok(pool) = crate::volumes::pool(d, &plan.pool).await else {
        return true;
    };
    let volume = plan.volume();
    tokio::task::spawn_blocking(move || pool.volume_size_exceeds(&volume, PRECOPY_MIN_BYTES))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(true)
}

/// After the switch: the target starts the instance (if it is to run) once its DB shows
/// the switch, then the source copy goes and the move is done. Returns whether it runs.
///
/// The source copy is deleted only after the target confirmed it sees itself as the owner,
/// so a target that lost what it received can never leave the instance without data.
pub(super) async fn finish(d: &Daemon, plan: &Plan, rep: &mut Reporter) -> ApiResult<bool> {
    let peer = Peer::connect(d, &plan.target).await?;
    // A stopped instance stays stopped: its move never says it is starting.
    if plan.start_after {
        rep.stage(MoveStage::Starting);
    }
    let started = internal::finish(&peer, plan).await;
    took_over(d, plan, rep, started).await
}

/// [`finish`] once the target answered the request to take over with `started`.
async fn took_over(
    d: &Daemon,
    plan: &Plan,
    rep: &mut Reporter,
    started: ApiResult<bool>,
) -> ApiResult<bool> {
    let running = match started {
        Ok(running) => {
            if running {
                rep.running_on_target();
            }
            running
        }
        Err(e) if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
            return Err(ApiError {
                status: e.status,
                message: format!(
                    "Instance {:?} now belongs to {:?}, which did not confirm it: {}",
                    plan.rec.name, plan.target, e.message
                ),
            });
        }
        Err(e) => {
            // The target has the instance but could not start it: the move itself holds.
            tracing::warn!(move_id = %plan.id, error = %e.message, "instance did not start on the target");
            cleanup_source(d, plan, rep).await?;
            journal(d, &plan.id, MoveStep::Done, &e.message).await?;
            return Err(ApiError::internal(format!(
                "Instance {:?} moved to {:?} but did not start there: {}",
                plan.rec.name, plan.target, e.message
            )));
        }
    };
    // The target confirmed: the source copy goes, then the record says the move is done.
    // Nothing in between is journaled (recovery finishes any switched move alike): one
    // Raft write from the switch to the answer.
    cleanup_source(d, plan, rep).await?;
    journal(d, &plan.id, MoveStep::Done, "").await?;
    d.bus.lifecycle(
        "instance-migrated",
        crate::instances::url(&plan.rec.name),
        &plan.rec.project,
        Some(serde_json::json!({"source": plan.source, "target": plan.target})),
    );
    Ok(running)
}

/// Deletes what the source keeps of a moved instance: its volume (member-local pools
/// only) and its runtime files.
pub(super) async fn cleanup_source(d: &Daemon, plan: &Plan, rep: &mut Reporter) -> ApiResult<()> {
    rep.stage(MoveStage::Cleanup);
    let id = plan.volume();
    // The source QEMU of a live move, paused since the VM runs on the target.
    super::live_target::discard_vm(d, &id).await;
    if let Err(e) = d.driver.state(&id).await {
        tracing::warn!(instance = %plan.rec.name, error = %e, "runtime leftovers not cleaned");
    }
    if plan.copy_data {
        // The volume leaves at once (unmounted, renamed); its files are freed in the
        // background: a GiB takes hundreds of ms to free, and the move is done without
        // them. A daemon that dies first frees them at its next start.
        if let Some(files) = crate::volumes::retire(d, &plan.pool, &plan.rec).await? {
            let name = plan.rec.name.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = files.remove() {
                    tracing::warn!(instance = %name, error = %e, "files of the moved volume not freed");
                }
            });
        }
    }
    let run_dir = d.paths.run.join(&id);
    if let Err(e) = tokio::fs::remove_dir_all(&run_dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(instance = %plan.rec.name, error = %e, "runtime files not removed");
    }
    Ok(())
}

/// How an undo ended.
pub(super) enum Undo {
    /// The instance is whole on the source, in its power state; the move is failed.
    Undone,
    /// The switch had committed: the move must be finished instead.
    Switched,
    /// The journal could not be written: nobody can tell yet whether the switch holds.
    Unknown(String),
}

/// Undoes a move before its switch: fences the switch out (when it may have been proposed),
/// discards the target's staging, starts the instance again if it ran, and journals the
/// failure with `cause`.
pub(super) async fn undo(d: &Daemon, plan: &Plan, switch_proposed: bool, cause: &str) -> Undo {
    if switch_proposed || plan.copy_data {
        match fence(d, &plan.id, cause).await {
            Fence::Held => {}
            Fence::Switched => return Undo::Switched,
            Fence::Unknown(why) => return Undo::Unknown(why),
        }
    }
    // Also on shared storage: a live move leaves a paused QEMU on the target.
    match Peer::connect(d, &plan.target).await {
        Ok(peer) => {
            if let Err(e) = internal::discard(&peer, plan).await {
                // The target removes staging of aborted moves when it next starts.
                tracing::warn!(move_id = %plan.id, error = %e.message, "target staging not discarded");
            }
        }
        Err(e) => {
            tracing::warn!(move_id = %plan.id, error = %e.message, "target unreachable for discard");
        }
    }
    super::live::resume_source(d, plan).await;
    if plan.was_running && !is_running(d, &plan.rec.project, &plan.rec.name) {
        match crate::instances::load(d, &plan.rec.project, &plan.rec.name).await {
            Ok(rec) => {
                if let Err(e) = start_instance(d, &rec).await {
                    tracing::warn!(instance = %plan.rec.name, error = %e.message, "restart on the source failed");
                }
            }
            Err(e) => {
                tracing::warn!(instance = %plan.rec.name, error = %e.message, "instance not found to restart")
            }
        }
    }
    if let Err(e) = journal(d, &plan.id, MoveStep::Failed, cause).await {
        tracing::warn!(move_id = %plan.id, error = %e.message, "failed move not journaled");
    }
    Undo::Undone
}

/// The outcome of fencing a switch out.
pub(super) enum Fence {
    /// The move is aborted: no switch can commit any more.
    Held,
    /// The switch committed first.
    Switched,
    /// Neither could be established.
    Unknown(String),
}

/// Journals [`MoveStep::Aborted`] so that a switch still in flight can never commit; learns
/// which of the two won when the write is refused.
pub(super) async fn fence(d: &Daemon, id: &str, cause: &str) -> Fence {
    let deadline = Instant::now() + FENCE_DEADLINE;
    loop {
        let written = journal(d, id, MoveStep::Aborted, cause).await;
        let owned = id.to_string();
        let now = d.read(move |c| db::moves::get(c, &owned)).await;
        match (written, now) {
            (_, Ok(Some(rec))) if rec.step.is_switched() => return Fence::Switched,
            (Ok(()), _) => return Fence::Held,
            (_, Ok(Some(rec))) if matches!(rec.step, MoveStep::Aborted | MoveStep::Failed) => {
                return Fence::Held;
            }
            (Err(e), _) if Instant::now() >= deadline => return Fence::Unknown(e.message),
            (Err(e), _) => {
                tracing::warn!(move_id = %id, error = %e.message, "abort not journaled yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// The report of move `rec`, journaled already: its outcome when it ended.
pub(super) async fn outcome_of(d: &Daemon, rec: MoveRecord) -> ApiResult<MoveReport> {
    match rec.step {
        MoveStep::Done => {
            let running = crate::instances::load(d, &rec.project, &rec.instance)
                .await
                .map(|r| {
                    r.config
                        .get("volatile.last_state.power")
                        .map(String::as_str)
                        == Some("RUNNING")
                })
                .unwrap_or(false);
            Ok(MoveReport {
                id: rec.id,
                instance: rec.instance,
                source: rec.source,
                target: rec.target,
                copied_data: rec.copy_data,
                bytes_sent: 0,
                running,
                downtime_ms: None,
                qemu_downtime_ms: None,
                handover_ms: None,
                total_ms: 0,
                stages: Vec::new(),
            })
        }
        MoveStep::Failed => Err(ApiError::internal(format!(
            "Move {} failed: {}",
            rec.id, rec.error
        ))),
        _ => Err(ApiError::conflict(format!(
            "Move {} is still in progress (step {})",
            rec.id,
            rec.step.as_str()
        ))),
    }
}

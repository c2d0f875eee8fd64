//! Running a journaled plan: every instance's step, in parallel within limits, each
//! recorded in the journal when done; then the member's final state.
//!
//! # Correctness
//!
//! - Every step is idempotent, so running a row again after a crash is safe: a stop of a
//!   stopped instance does nothing, a move uses a move id derived from the journal (the
//!   move service returns the outcome of a finished move instead of moving again) and an
//!   instance already on its target is done.
//! - One instance failing does not stop the others: its row records the failure.
//! - The member becomes `evacuated` only when every row is done and nothing runs on it;
//!   otherwise it stays `evacuating` and the operation fails with a per-instance report.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::MemberState;
use api::evacuation::{PLAN_KEY, PROGRESS_KEY, PlanAction, PlanEntry, PlanStep, TIMELINE_KEY};
use db::evacuations::EvacuationKind;
use tokio::sync::Semaphore;

use super::Limits;
use crate::error::{ApiError, ApiResult};
use crate::instances::migrate::StageTime;
use crate::state::{Daemon, lock};

/// How long a move back, run by another member, may take.
const MOVE_BACK_TIMEOUT: Duration = Duration::from_secs(600);

/// The operation's metadata: LXD's last progress line, the plan table and the timeline.
#[derive(Debug)]
struct Progress {
    op: ops::OpHandle,
    line: Mutex<String>,
    entries: Mutex<Vec<PlanEntry>>,
    /// Per instance (project, name), in the order first stamped: when it reached what.
    timeline: Mutex<Vec<(String, String, Vec<StageTime>)>>,
}

impl Progress {
    fn publish(&self) {
        self.op.set_metadata(self.metadata());
    }

    fn say(&self, line: String) {
        *lock(&self.line) = line;
        self.publish();
    }

    fn update(&self, project: &str, instance: &str, f: impl FnOnce(&mut PlanEntry)) {
        if let Some(e) = lock(&self.entries)
            .iter_mut()
            .find(|e| e.project == project && e.instance == instance)
        {
            f(e);
        }
        self.publish();
    }

    /// Adds `stages` to the instance's timeline (published with the next update).
    fn stamp(&self, project: &str, instance: &str, stages: impl IntoIterator<Item = StageTime>) {
        let mut timeline = lock(&self.timeline);
        let pos = match timeline
            .iter()
            .position(|(p, i, _)| p == project && i == instance)
        {
            Some(pos) => pos,
            None => {
                timeline.push((project.to_string(), instance.to_string(), Vec::new()));
                timeline.len() - 1
            }
        };
        timeline[pos].2.extend(stages);
    }

    fn metadata(&self) -> serde_json::Value {
        let mut meta = serde_json::Map::new();
        let line = lock(&self.line).clone();
        if !line.is_empty() {
            meta.insert(PROGRESS_KEY.into(), line.into());
        }
        meta.insert(
            PLAN_KEY.into(),
            serde_json::to_value(lock(&self.entries).clone()).unwrap_or_default(),
        );
        let timeline: Vec<serde_json::Value> = lock(&self.timeline)
            .iter()
            .map(|(project, instance, stages)| {
                serde_json::json!({"project": project, "instance": instance, "stages": stages})
            })
            .collect();
        meta.insert(TIMELINE_KEY.into(), timeline.into());
        serde_json::Value::Object(meta)
    }
}

/// Runs the journaled plan of `member` to its end and finishes operation `op`.
pub async fn run(
    d: &Daemon,
    member: &str,
    kind: EvacuationKind,
    op: ops::OpHandle,
    limits: Limits,
) {
    // This member's DB must show the journal just written through the leader.
    if let Err(e) = d.replicator().ensure_linearizable().await {
        return op.fail(format!("Failed to read the evacuation journal: {e}"));
    }
    let m = member.to_string();
    let rows = match d
        .read(move |c| db::evacuations::list_for_member(c, &m))
        .await
    {
        Ok(rows) => rows,
        Err(e) => return op.fail(e.message),
    };
    let progress = Arc::new(Progress {
        op,
        line: Mutex::new(String::new()),
        entries: Mutex::new(rows.iter().map(|r| r.entry.clone()).collect()),
        timeline: Mutex::new(Vec::new()),
    });
    progress.publish();
    tracing::info!(member = %member, kind = kind.as_str(), instances = rows.len(), "evacuation executing");

    let concerned = Arc::new(Semaphore::new(limits.parallel));
    let mut others: HashMap<String, Arc<Semaphore>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for row in rows {
        if row.entry.step.is_final() {
            continue;
        }
        let entry = row.entry;
        let other = match kind {
            EvacuationKind::Evacuate => entry.target.clone(),
            EvacuationKind::Restore => entry.source.clone(),
        };
        let other = (!other.is_empty() && entry.action.is_some_and(PlanAction::moves)).then(|| {
            others
                .entry(other)
                .or_insert_with(|| Arc::new(Semaphore::new(limits.per_member)))
                .clone()
        });
        let (d, member, progress, concerned) = (
            d.clone(),
            member.to_string(),
            progress.clone(),
            concerned.clone(),
        );
        let operation = row.operation.clone();
        tasks.spawn(async move {
            // The other member's slot first: a task holding one of this member's slots
            // while it waits for a busy member would keep work for idle members waiting
            // (measured: half the slots idle in an evacuation to two members).
            let _other = match other {
                Some(s) => s.acquire_owned().await.ok(),
                None => None,
            };
            let _slot = concerned.acquire_owned().await;
            let (project, instance) = (entry.project.clone(), entry.instance.clone());
            progress.stamp(&project, &instance, [StageTime::now("begin")]);
            let outcome = step(&d, &member, &entry, &operation, &progress).await;
            progress.stamp(&project, &instance, [StageTime::now("end")]);
            let (step, error) = match outcome {
                Ok(()) => (PlanStep::Done, String::new()),
                Err(e) => {
                    tracing::warn!(instance = %instance, error = %e.message, "evacuation step failed");
                    (PlanStep::Failed, e.message)
                }
            };
            let bytes = lock(&progress.entries)
                .iter()
                .find(|e| e.project == project && e.instance == instance)
                .map_or(0, |e| e.bytes);
            let recorded = d
                .write(db::Command::SetEvacuationStep {
                    member: member.clone(),
                    project: project.clone(),
                    instance: instance.clone(),
                    step,
                    bytes,
                    error: error.clone(),
                })
                .await;
            if let Err(e) = recorded {
                tracing::warn!(instance = %instance, error = %e.message, "evacuation step not recorded");
            }
            progress.update(&project, &instance, |e| {
                e.step = step;
                e.error = error;
            });
        });
    }
    while tasks.join_next().await.is_some() {}
    super::crash::steps_done(d, kind);
    finish(d, member, kind, progress).await;
}

/// One instance's work.
async fn step(
    d: &Daemon,
    member: &str,
    entry: &PlanEntry,
    operation: &str,
    progress: &Arc<Progress>,
) -> ApiResult<()> {
    let (project, name) = (entry.project.as_str(), entry.instance.as_str());
    let action = entry.action.unwrap_or(PlanAction::None);
    match action {
        // A restore leaves an instance moved by hand since the evacuation where it is: it
        // is no longer away from this member, so a later restore leaves it alone too.
        PlanAction::None if entry.source != member => forget_origin(d, member, project, name).await,
        PlanAction::None => Ok(()),
        PlanAction::Stop | PlanAction::ForceStop => {
            progress.stamp(project, name, [StageTime::now("stopping")]);
            progress.say(format!("Stopping {name:?} in project {project:?}"));
            crate::instances::stop_for_evacuation(d, project, name, action == PlanAction::ForceStop)
                .await
        }
        PlanAction::Start => {
            progress.stamp(project, name, [StageTime::now("starting")]);
            progress.say(format!("Starting {name:?} in project {project:?}"));
            crate::instances::start_for_restore(d, project, name).await?;
            progress.stamp(project, name, [StageTime::now("running")]);
            Ok(())
        }
        PlanAction::Migrate | PlanAction::LiveMigrate => {
            progress.say(format!(
                "Migrating {name:?} in project {project:?} to {:?}",
                entry.target
            ));
            move_away(d, member, entry, operation, progress).await
        }
        PlanAction::MoveBack => {
            progress.say(format!(
                "Migrating {name:?} in project {project:?} from {:?}",
                entry.source
            ));
            move_back(d, member, entry, progress).await?;
            // One that was stopped where it went (that member was evacuated in turn, say)
            // but ran before: a move keeps it stopped, so it is started here.
            if entry.was_running {
                progress.say(format!("Starting {name:?} in project {project:?}"));
                crate::instances::start_for_restore(d, project, name).await?;
            }
            clear_origin(d, project, name).await
        }
    }
}

/// Pause before a move is tried again on a target that answers.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How long a member that does not answer `GET /1.0` within it counts as unreachable.
const REACH_DEADLINE: Duration = Duration::from_secs(3);

/// Moves an instance of this member to its planned target. When a move fails and the
/// instance is still whole here, it is tried again (up to [`MOVE_ATTEMPTS`] moves): a
/// target that does not answer is left out and the instance planned again without it (no
/// target left: it is stopped in place); a failure elsewhere (a Raft leader change, say)
/// is retried after a pause. When the move switched ownership but the target did not
/// confirm it (it died right then), the instance has left this member: the step is done,
/// and the move's recovery finishes it in the background once the target is back.
async fn move_away(
    d: &Daemon,
    member: &str,
    entry: &PlanEntry,
    operation: &str,
    progress: &Arc<Progress>,
) -> ApiResult<()> {
    let (project, name) = (entry.project.as_str(), entry.instance.as_str());
    let mut current = entry.clone();
    let mut unreachable = BTreeSet::new();
    let mut attempt = 1;
    loop {
        let failed = match migrate(d, &current, operation, progress).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let now = settled_location(d, project, name).await?;
        if now != member {
            return left_unconfirmed(d, project, name, &now, &failed).await;
        }
        if attempt >= MOVE_ATTEMPTS {
            return Err(failed);
        }
        attempt += 1;
        if reachable(d, &current.target).await {
            tokio::time::sleep(RETRY_PAUSE).await;
        } else {
            unreachable.insert(current.target.clone());
        }
        tracing::warn!(instance = %name, target = %current.target, error = %failed.message, "move failed: planning again");
        match replan(d, member, entry, &unreachable, progress, failed).await? {
            Some(again) => {
                progress.say(format!(
                    "Migrating {name:?} in project {project:?} to {:?}",
                    again.target
                ));
                current = again;
            }
            None => {
                progress.say(format!("Stopping {name:?} in project {project:?}"));
                return crate::instances::stop_for_evacuation(d, project, name, false).await;
            }
        }
    }
}

/// Whether `member` answers `GET /1.0` within [`REACH_DEADLINE`].
async fn reachable(d: &Daemon, member: &str) -> bool {
    match super::super::peer::Peer::connect(d, member).await {
        Ok(peer) => peer
            .request_within(reqwest::Method::GET, "/1.0", None, REACH_DEADLINE)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// How many times [`settled_location`] asks while the cluster has no leader.
const LOCATION_TRIES: u32 = 30;

/// [`location`], asked again while the cluster elects a leader (a move that failed
/// because the leader died is followed by a moment without one).
async fn settled_location(d: &Daemon, project: &str, name: &str) -> ApiResult<String> {
    let mut tries = 1;
    loop {
        match location(d, project, name).await {
            Err(e) if tries < LOCATION_TRIES && e.status != axum::http::StatusCode::NOT_FOUND => {
                tracing::info!(instance = %name, error = %e.message, "where the instance is: asking again");
                tries += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            other => return other,
        }
    }
}

/// The move of `name` switched its ownership to `now` but did not end (`failed` says
/// why): the instance has left this member. Its move is finished in the background (start
/// on `now` if it ran, delete the copy here) once `now` answers.
async fn left_unconfirmed(
    d: &Daemon,
    project: &str,
    name: &str,
    now: &str,
    failed: &ApiError,
) -> ApiResult<()> {
    let (p, n) = (project.to_string(), name.to_string());
    // The move service finishes it in the background (recover::spawn_one).
    if let Some(m) = d.read(move |c| db::moves::unfinished_of(c, &p, &n)).await? {
        tracing::warn!(instance = %name, member = %now, move_id = %m.id, error = %failed.message, "moved but not confirmed: finished in the background");
    }
    Ok(())
}

/// Plans `entry`'s instance again without the members in `unreachable` after a move
/// failed (`failed` says why): the new entry when it moves, `None` when it is to stop in
/// place.
async fn replan(
    d: &Daemon,
    member: &str,
    entry: &PlanEntry,
    unreachable: &BTreeSet<String>,
    progress: &Arc<Progress>,
    failed: ApiError,
) -> ApiResult<Option<PlanEntry>> {
    let mut online = super::online_members(d).await?;
    online.retain(|m| !unreachable.contains(m));
    let mut snap = super::snapshot::take(d, online).await?;
    snap.instances
        .retain(|i| i.member != member || (i.project == entry.project && i.name == entry.instance));
    let decisions = cluster::plan_evacuation(&snap, member, api::evacuation::EvacuateMode::Auto);
    let Some(decision) = decisions.into_iter().next() else {
        return Err(failed);
    };
    let mut again = decision.entry();
    // An instance the first move undid runs again on this member: stop it if it stays.
    again.was_running = entry.was_running;
    again.reason = format!(
        "{} (after {:?} failed: {})",
        again.reason, entry.target, failed.message
    );
    // Journaled before it is carried out: a resumed job, and the restore, go by it.
    d.write(db::Command::ReplanEvacuationEntry {
        member: member.to_string(),
        project: entry.project.clone(),
        instance: entry.instance.clone(),
        action: again.action.unwrap_or(PlanAction::None),
        target: again.target.clone(),
        reason: again.reason.clone(),
    })
    .await?;
    progress.update(&entry.project, &entry.instance, |e| {
        e.action = again.action;
        e.target = again.target.clone();
        e.reason = again.reason.clone();
    });
    Ok(match again.action {
        Some(PlanAction::Migrate | PlanAction::LiveMigrate) => Some(again),
        _ => None,
    })
}

/// Where instance `name` of `project` is now, by what the cluster has committed.
async fn location(d: &Daemon, project: &str, name: &str) -> ApiResult<String> {
    d.replicator().ensure_linearizable().await?;
    let (p, n) = (project.to_string(), name.to_string());
    d.read(move |c| db::instances::get(c, &p, &n))
        .await?
        .map(|r| r.member)
        .ok_or_else(|| ApiError::not_found("Instance not found"))
}

/// Moves an instance of this member to its planned target (a no-op when already there),
/// with a move id derived from the journal so that a step run again after a crash gets the
/// outcome of the move already made.
async fn migrate(
    d: &Daemon,
    entry: &PlanEntry,
    operation: &str,
    progress: &Arc<Progress>,
) -> ApiResult<()> {
    use crate::instances::migrate::progress::MoveStage;
    use crate::instances::migrate::{MoveOptions, move_instance};
    let (project, name) = (entry.project.as_str(), entry.instance.as_str());
    if location(d, project, name).await? == entry.target {
        return Ok(());
    }
    let (p, n, reporter) = (project.to_string(), name.to_string(), progress.clone());
    let on_progress = move |m: &crate::instances::migrate::MoveProgress| {
        if m.stage == MoveStage::Starting {
            reporter.say(format!("Starting {n:?} in project {p:?}"));
        }
        let bytes = m.bytes_sent;
        reporter.update(&p, &n, |e| e.bytes = e.bytes.max(bytes));
    };
    let id = pick_move_id(d, operation, project, name).await?;
    if location(d, project, name).await? == entry.target {
        return Ok(());
    }
    // A stopped instance starts on its target when it has boot.autostart=true, or when it
    // ran when the plan was made: a crash of this member in the middle of its move leaves
    // it stopped here (the undo cannot start it on a member being evacuated).
    let rec = crate::instances::load(d, project, name).await?;
    let profiles = crate::instances::load_profiles(d, project, &rec.profiles).await?;
    let config = crate::instances::expand_config(&rec.config, &profiles);
    let autostart = config.get("boot.autostart").map(String::as_str) == Some("true");
    let opts = MoveOptions {
        target: entry.target.clone(),
        live: entry.action == Some(PlanAction::LiveMigrate),
        id: Some(id),
        start: autostart || entry.was_running,
        keep_stopped: false,
        progress: Some(Arc::new(on_progress)),
    };
    let report = move_instance(d, project, name, opts).await?;
    progress.stamp(project, name, report.stages);
    Ok(())
}

/// How many moves of one instance one evacuation tries before giving up on it.
const MOVE_ATTEMPTS: u32 = 3;
/// How long a step waits for an unfinished move of its instance (one a restarted member
/// is still undoing or finishing) to be resolved.
const UNFINISHED_MOVE_WAIT: Duration = Duration::from_secs(120);

/// The move id to use for this step: the first of the instance's evacuation move ids that
/// has not failed. An unfinished move of the instance (being resolved after a restart) is
/// waited for first; a finished one is asked again (the move service returns its outcome);
/// one that was undone is retried under the next id.
async fn pick_move_id(d: &Daemon, operation: &str, project: &str, name: &str) -> ApiResult<String> {
    wait_unfinished_move(d, project, name).await?;
    for attempt in 0..MOVE_ATTEMPTS {
        let id = move_id(operation, project, name, attempt);
        let id2 = id.clone();
        match d.read(move |c| db::moves::get(c, &id2)).await? {
            Some(m)
                if matches!(
                    m.step,
                    db::moves::MoveStep::Failed | db::moves::MoveStep::Aborted
                ) => {}
            _ => return Ok(id),
        }
    }
    Err(ApiError::internal(format!(
        "moving {name:?} failed {MOVE_ATTEMPTS} times"
    )))
}

/// Waits (up to [`UNFINISHED_MOVE_WAIT`]) until instance `name` of `project` has no
/// unfinished move: one a member that restarted (or whose peer did) is still undoing or
/// finishing.
async fn wait_unfinished_move(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    let deadline = tokio::time::Instant::now() + UNFINISHED_MOVE_WAIT;
    loop {
        let (p, n) = (project.to_string(), name.to_string());
        let busy = d.read(move |c| db::moves::unfinished_of(c, &p, &n)).await?;
        match busy {
            Some(m) if tokio::time::Instant::now() < deadline => {
                tracing::info!(instance = %name, move_id = %m.id, "waiting for an unfinished move");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(m) => {
                return Err(ApiError::conflict(format!(
                    "Instance {name:?} is still moving to cluster member {:?}",
                    m.target
                )));
            }
            None => return Ok(()),
        }
    }
}

/// The id of attempt `attempt` to move an instance in an evacuation: a UUID derived from
/// the journal (operation, project, instance), the same every time the step runs.
fn move_id(operation: &str, project: &str, name: &str, attempt: u32) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!(
        "evacuate\n{operation}\n{project}\n{name}\n{attempt}"
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Asks the member that holds an evacuated instance to move it back here.
async fn move_back(
    d: &Daemon,
    member: &str,
    entry: &PlanEntry,
    progress: &Progress,
) -> ApiResult<()> {
    let (project, name) = (entry.project.as_str(), entry.instance.as_str());
    // A move back cut by a crash of this member is undone or finished first.
    wait_unfinished_move(d, project, name).await?;
    let now = location(d, project, name).await?;
    if now == member {
        return Ok(());
    }
    let peer = super::super::peer::Peer::connect(d, &now).await?;
    let live = comes_home_live(d, project, name).await?;
    let body = serde_json::json!({"name": name, "migration": true, "live": live});
    let path = format!("/1.0/instances/{name}?project={project}&target={member}");
    let op = peer
        .request(reqwest::Method::POST, &path, Some(&body))
        .await?
        .into_operation()?;
    let done = peer.wait_operation(&op.id, MOVE_BACK_TIMEOUT).await?;
    match done.status {
        api::OperationStatus::Success => {
            // The move's report says when it reached each stage on the other member.
            let stages = done
                .metadata
                .as_ref()
                .and_then(|m| m.get("stages"))
                .and_then(|s| serde_json::from_value::<Vec<StageTime>>(s.clone()).ok())
                .unwrap_or_default();
            progress.stamp(project, name, stages);
            Ok(())
        }
        api::OperationStatus::Failure | api::OperationStatus::Cancelled => {
            Err(ApiError::internal(done.err))
        }
        _ => Err(ApiError::internal(format!(
            "moving {name:?} back from {now:?} did not finish within {}s",
            MOVE_BACK_TIMEOUT.as_secs()
        ))),
    }
}

/// Whether instance `name` moves home live: a VM does, the way an evacuation moved it away
/// (`auto` or `live-migrate`), unless its `cluster.evacuate` (own or from a profile) is
/// `migrate`: then it left stopped and comes home stopped too, started again on arrival. A
/// container cannot move live. (A stopped VM moves stopped whatever is asked.)
async fn comes_home_live(d: &Daemon, project: &str, name: &str) -> ApiResult<bool> {
    let rec = crate::instances::load(d, project, name).await?;
    if rec.kind != "virtual-machine" {
        return Ok(false);
    }
    let profiles = crate::instances::load_profiles(d, project, &rec.profiles)
        .await
        .unwrap_or_default();
    let config = crate::instances::expand_config(&rec.config, &profiles);
    let mode = config.get(cluster::EVACUATE_KEY).map_or("", String::as_str);
    Ok(api::evacuation::EvacuateMode::parse(mode) != Some(api::evacuation::EvacuateMode::Migrate))
}

/// Forgets where an instance was evacuated from, once it is home.
async fn clear_origin(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    d.write(db::Command::PatchInstanceConfig {
        project: project.to_string(),
        name: name.to_string(),
        changes: [(cluster::ORIGIN_KEY.to_string(), None)].into(),
        last_used_at: None,
    })
    .await
}

/// Clears the `volatile.evacuate.origin` of instance `name` when it is `member` (an instance
/// deleted meanwhile has none left to clear).
async fn forget_origin(d: &Daemon, member: &str, project: &str, name: &str) -> ApiResult<()> {
    let rec = match crate::instances::load(d, project, name).await {
        Ok(rec) => rec,
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => return Ok(()),
        Err(e) => return Err(e),
    };
    if rec.config.get(cluster::ORIGIN_KEY).map(String::as_str) != Some(member) {
        return Ok(());
    }
    clear_origin(d, project, name).await
}

/// Sets the member's final state, publishes the lifecycle event and ends the operation
/// with the per-instance report.
async fn finish(d: &Daemon, member: &str, kind: EvacuationKind, progress: Arc<Progress>) {
    let entries = lock(&progress.entries).clone();
    let failed: Vec<&PlanEntry> = entries
        .iter()
        .filter(|e| e.step == PlanStep::Failed)
        .collect();
    let running_left = if kind == EvacuationKind::Evacuate {
        still_running_here(d).await
    } else {
        Vec::new()
    };
    let complete = failed.is_empty() && running_left.is_empty();
    let state = match (kind, complete) {
        (EvacuationKind::Evacuate, true) => MemberState::Evacuated,
        (EvacuationKind::Evacuate, false) => MemberState::Evacuating,
        (EvacuationKind::Restore, true) => MemberState::Created,
        // Online only once the restore has finished: run it again (or with skip).
        (EvacuationKind::Restore, false) => MemberState::Restoring,
    };
    let recorded = d
        .write(db::Command::FinishEvacuation {
            member: member.to_string(),
            kind,
            state,
        })
        .await;
    let metadata = progress.metadata();
    let Ok(progress) = Arc::try_unwrap(progress) else {
        tracing::error!(member = %member, "evacuation progress still shared at the end");
        return;
    };
    let op = progress.op;
    if let Err(e) = recorded {
        return op.fail(format!(
            "Failed to record the member's state: {}",
            e.message
        ));
    }
    if complete {
        let action = match kind {
            EvacuationKind::Evacuate => "cluster-member-evacuated",
            EvacuationKind::Restore => "cluster-member-restored",
        };
        d.bus.lifecycle(
            action,
            format!("/1.0/cluster/members/{member}"),
            "default",
            None,
        );
        tracing::info!(member = %member, kind = kind.as_str(), "evacuation finished");
        return op.succeed(Some(metadata));
    }
    let mut report: Vec<String> = failed
        .iter()
        .map(|e| format!("{:?}: {}", e.instance, e.error))
        .collect();
    report.extend(running_left.iter().map(|n| format!("{n:?}: still running")));
    op.set_metadata(metadata);
    let what = match kind {
        EvacuationKind::Evacuate => "evacuate",
        EvacuationKind::Restore => "restore",
    };
    op.fail(format!(
        "Failed to {what} {} instance(s): {}",
        report.len(),
        report.join("; ")
    ));
}

/// Instances on this member that still run.
async fn still_running_here(d: &Daemon) -> Vec<String> {
    let member = d.member();
    let Ok(instances) = d
        .read(move |c| db::instances::list_on_member(c, &member))
        .await
    else {
        return Vec::new();
    };
    instances
        .into_iter()
        .filter(|r| {
            crate::instances::runtime_status(d, &crate::instances::runtime_id(&r.project, &r.name))
                == api::InstanceStatus::Running
        })
        .map(|r| r.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_is_published_per_instance_in_order() {
        let reg = ops::Registry::new(ops::EventBus::new("none"));
        let op = reg.create(
            api::OperationClass::Task,
            "Evacuating cluster member",
            Default::default(),
            None,
        );
        let id = op.id().to_string();
        let entry = |name: &str| PlanEntry {
            project: "default".into(),
            instance: name.into(),
            action: Some(PlanAction::Migrate),
            source: "m2".into(),
            target: "m1".into(),
            reason: String::new(),
            step: PlanStep::Planned,
            was_running: true,
            bytes: 0,
            error: String::new(),
        };
        let progress = Progress {
            op,
            line: Mutex::new(String::new()),
            entries: Mutex::new(vec![entry("c1"), entry("c2")]),
            timeline: Mutex::new(Vec::new()),
        };
        let at = |stage: &str, at_us: u64| StageTime {
            stage: stage.into(),
            at_us,
        };
        progress.stamp("default", "c2", [at("begin", 1)]);
        progress.stamp("default", "c1", [at("begin", 2)]);
        progress.stamp("default", "c2", [at("stopping", 3), at("running", 4)]);
        progress.say("Stopping \"c2\" in project \"default\"".into());

        let meta = reg.get(&id).and_then(|o| o.metadata).unwrap_or_default();
        let timeline = &meta[TIMELINE_KEY];
        assert_eq!(timeline[0]["instance"], "c2");
        let stages: Vec<&str> = timeline[0]["stages"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["stage"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(stages, ["begin", "stopping", "running"]);
        assert_eq!(timeline[0]["stages"][2]["at_us"], 4);
        assert_eq!(timeline[1]["instance"], "c1");
        assert_eq!(meta[PLAN_KEY].as_array().map(Vec::len), Some(2));
        assert_eq!(meta[PROGRESS_KEY], "Stopping \"c2\" in project \"default\"");
    }
}

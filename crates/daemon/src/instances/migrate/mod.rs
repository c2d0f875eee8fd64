//! Moving an instance from the member that holds it to another member, cold.
//!
//! [`move_instance`] is the whole move, runnable on the member that holds the instance
//! (the source); `POST /1.0/instances/{name}?target=m3` with `migration: true` runs it as an
//! operation ([`start_move`]). The move is journaled in the replicated `moves` table
//! before anything changes, and again at the pre-copy (when there is one), at the switch
//! and at its end (recovery treats every step on one side of the switch alike):
//!
//! - shared storage (`shared-fs`): stop → switch ownership → start on the target. No data
//!   is read.
//! - member-local storage (`dir`): pre-copy the volume to a staging directory on the target
//!   while the instance still runs → stop (`boot.host_shutdown_timeout`, then kill) → send
//!   what changed since the pre-copy → the target verifies and puts the volume in place →
//!   switch ownership → start on the target → delete the source copy.
//!
//! The switch ([`db::Command::SwitchMoveOwner`]) changes the instance's `member` and the
//! move's step in one replicated command: the single moment a move takes effect.
//!
//! # Correctness
//!
//! - Nothing changes before every refusal has been checked ([`checks`]).
//! - Any failure before the switch undoes the move: staging on the target is discarded,
//!   the instance is whole on the source and started again if it was running, and the
//!   move is journaled as failed with its cause.
//! - A daemon that dies mid-move finds the move in the journal on its next start
//!   ([`recover`]): before the switch it undoes it, after the switch it finishes it.
//! - Data reaches the target only over the mTLS member link ([`internal`]), whose routes
//!   admit members only.

mod checks;
mod execute;
pub mod internal;
mod live;
mod live_target;
pub mod progress;
pub mod recover;

use std::sync::Arc;
use std::time::Duration;

use api::instances::InstancePost;
use api::{InstanceStatus, OperationClass};

pub use progress::{MoveProgress, StageTime};

use super::{runtime_id, url};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// A callback told of each change of a move's progress.
pub type ProgressFn = Arc<dyn Fn(&MoveProgress) + Send + Sync>;

/// How to move an instance.
#[derive(Clone, Default)]
pub struct MoveOptions {
    /// The member to move to (`"m3"`).
    pub target: String,
    /// Move while running (LXD's `live`). Containers cannot here (no CRIU): a running
    /// container with `live` is refused. Ignored for a stopped instance.
    pub live: bool,
    /// The move id: a retry with the id of a move that already finished returns its
    /// outcome instead of moving again. A new UUID when `None`.
    pub id: Option<String>,
    /// Start the instance on the target even if it was stopped. A running instance, or a
    /// stopped one with `boot.autostart=true`, runs on the target afterwards anyway.
    pub start: bool,
    /// A stopped instance stays stopped on the target whatever its `boot.autostart` (a
    /// copy on its way to the member it was made for: LXD leaves a copy stopped).
    pub keep_stopped: bool,
    /// Told of every progress change.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for MoveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoveOptions")
            .field("target", &self.target)
            .field("live", &self.live)
            .field("id", &self.id)
            .field("start", &self.start)
            .field("keep_stopped", &self.keep_stopped)
            .finish_non_exhaustive()
    }
}

/// What a finished move did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoveReport {
    /// The move id (journal row).
    pub id: String,
    /// Instance name.
    pub instance: String,
    /// The member it came from.
    pub source: String,
    /// The member it is on now.
    pub target: String,
    /// Whether the volume's data was copied (`false` on shared storage).
    pub copied_data: bool,
    /// Bytes sent over the member link (both passes).
    pub bytes_sent: u64,
    /// Whether the instance runs on the target.
    pub running: bool,
    /// From the stop on the source to the start on the target, when it ran (ms). For a
    /// live move: how long the guest was paused, `qemu_downtime_ms` + `handover_ms`.
    pub downtime_ms: Option<u64>,
    /// A live move: QEMU's own downtime (the final stop-and-copy, as the source QEMU
    /// measured it), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qemu_downtime_ms: Option<u64>,
    /// A live move: from the source seeing its QEMU complete the migration to the target
    /// confirming the guest runs again (the hand-over), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover_ms: Option<u64>,
    /// The whole move (ms).
    pub total_ms: u64,
    /// When the move entered each stage (empty for a move that ended before this run).
    pub stages: Vec<StageTime>,
}

impl MoveReport {
    /// The report of the move `plan` that began at `started`, as `rep` saw it.
    fn from_plan(
        plan: &checks::Plan,
        rep: &progress::Reporter,
        running: bool,
        downtime_ms: Option<u64>,
        started: std::time::Instant,
    ) -> MoveReport {
        MoveReport {
            id: plan.id.clone(),
            instance: plan.rec.name.clone(),
            source: plan.source.clone(),
            target: plan.target.clone(),
            copied_data: plan.copy_data,
            bytes_sent: rep.bytes_sent(),
            running,
            downtime_ms,
            qemu_downtime_ms: None,
            handover_ms: None,
            total_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            stages: rep.timeline(),
        }
    }
}

/// `?target=` of `POST /1.0/instances/{name}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TargetQuery {
    /// The member to move to.
    #[serde(default)]
    pub target: Option<String>,
    /// Set by a member taking over a copy it asked for ([`start_move_with`]);
    /// honoured only on a request a member forwarded.
    #[serde(default)]
    pub transit: Option<String>,
}

/// `POST /1.0/instances/{name}` with `migration: true`: validates everything, then runs
/// [`move_instance`] as a `Migrating instance` operation whose metadata carries the
/// progress.
///
/// # Errors
///
/// Every refusal of [`move_instance`] that can be known before anything changes, at once
/// and synchronously (400/403/404/409/503 as fits), with nothing changed.
pub async fn start_move(
    d: &Daemon,
    project: &str,
    name: &str,
    req: &InstancePost,
    target: Option<&str>,
) -> ApiResult<api::Operation> {
    start_move_with(d, project, name, req, target, false).await
}

/// [`start_move`]; with `keep_stopped`, a stopped instance stays stopped on the target
/// whatever its `boot.autostart` (a copy moved to the member that asked for it,
/// [`crate::instances::create_in_transit`]: LXD leaves a copy stopped).
///
/// # Errors
///
/// As [`start_move`].
pub async fn start_move_with(
    d: &Daemon,
    project: &str,
    name: &str,
    req: &InstancePost,
    target: Option<&str>,
    keep_stopped: bool,
) -> ApiResult<api::Operation> {
    let target = target.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::bad_request("Moving an instance needs a target cluster member (?target=<member>)")
    })?;
    if req.target.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ApiError::bad_request(
            "Push migration to another server is not supported; move within the cluster with ?target=",
        ));
    }
    if !req.pool.is_empty() {
        return Err(ApiError::bad_request(
            "Moving an instance to another storage pool is not supported",
        ));
    }
    if !req.project.is_empty() && req.project != project {
        return Err(ApiError::bad_request(
            "Moving an instance to another project is not supported",
        ));
    }
    if !req.name.is_empty() && req.name != name {
        return Err(ApiError::bad_request(
            "An instance cannot be renamed while it moves: rename it first",
        ));
    }
    let opts = MoveOptions {
        target: target.to_string(),
        live: req.live,
        keep_stopped,
        ..MoveOptions::default()
    };
    let plan = checks::check(d, project, name, &opts).await?;
    let resources = [
        (
            "containers".to_string(),
            vec![format!("/1.0/containers/{name}")],
        ),
        ("instances".to_string(), vec![url(name)]),
    ]
    .into();
    let op = d
        .ops
        .create(OperationClass::Task, "Migrating instance", resources, None);
    let record = op.record();
    let op = Arc::new(op);
    let reporter = op.clone();
    let opts = MoveOptions {
        progress: Some(Arc::new(move |p: &MoveProgress| {
            reporter.set_metadata(p.metadata());
        })),
        ..opts
    };
    let d = d.clone();
    tokio::spawn(async move {
        let outcome = if live::is_live(&plan, &opts) {
            live::run(&d, plan, &opts).await
        } else {
            execute::run(&d, plan, &opts).await
        };
        // The progress callback holds the other reference to the operation.
        drop(opts);
        let Ok(op) = Arc::try_unwrap(op) else {
            tracing::warn!("move operation still shared when finishing");
            return;
        };
        match outcome {
            Ok(report) => op.succeed(serde_json::to_value(&report).ok()),
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

/// Moves instance `name` of `project` from this member to `opts.target`, and returns once
/// it is done (the instance is on the target, running if it ran or `opts.start`) or undone
/// (the instance is whole on this member, in the power state it had).
///
/// Run it on the member that holds the instance. Idempotent per move id: called again with
/// the id of a finished move, it returns that move's outcome.
///
/// # Errors
///
/// A refusal (nothing changed) or the cause of the failure (the move was undone).
pub async fn move_instance(
    d: &Daemon,
    project: &str,
    name: &str,
    opts: MoveOptions,
) -> ApiResult<MoveReport> {
    if let Some(id) = &opts.id {
        let id2 = id.clone();
        if let Some(done) = d.read(move |c| db::moves::get(c, &id2)).await? {
            return execute::outcome_of(d, done).await;
        }
    }
    let plan = checks::check(d, project, name, &opts).await?;
    if live::is_live(&plan, &opts) {
        live::run(d, plan, &opts).await
    } else {
        execute::run(d, plan, &opts).await
    }
}

/// Whether instance `name` of `project` runs on this member.
fn is_running(d: &Daemon, project: &str, name: &str) -> bool {
    super::runtime_status(d, &runtime_id(project, name)) == InstanceStatus::Running
}

/// How long a member waits for its own DB to show a change another member committed
/// (replication lag), before giving up.
const CATCH_UP: Duration = Duration::from_secs(15);

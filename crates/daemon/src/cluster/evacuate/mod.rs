//! Evacuating and restoring a cluster member: `POST /1.0/cluster/members/{name}/state`.
//!
//! The member concerned coordinates its own evacuation or restore (a request arriving
//! elsewhere is forwarded to it), as LXD does: the operation's `location` is that member.
//! [`change_state`] validates everything before anything changes (action, mode, the
//! member), then runs the job as an operation:
//!
//! 1. refusals by the DB alone, with LXD's messages (already evacuated / restored, another
//!    evacuation or restore in progress) and the quorum check unless `force`;
//! 2. a plan from a snapshot of the DB ([`cluster::plan_evacuation`] /
//!    [`cluster::plan_restore`]); `dry_run` stops here and returns it;
//! 3. [`db::Command::BeginEvacuation`]: the plan journaled, the member's new state and the
//!    instances' `volatile.*` in one replicated write (which re-checks the refusals, so
//!    two members cannot both start);
//! 4. (evacuate) creates and moves in that were under way when the member became
//!    `evacuating` are waited for, and their instances added to the journal;
//! 5. [`execute`]: every instance's step, in parallel within limits, each recorded when
//!    done; the member's final state; the lifecycle event.
//!
//! A member that restarts in the middle finds its journal ([`resume`]) and carries on.

pub mod crash;
pub mod execute;
pub mod record;
mod settle;
pub(crate) mod snapshot;

use std::collections::BTreeSet;

use api::evacuation::{EvacuateMode, MemberStatePost, PLAN_KEY};
use api::{MemberState, OperationClass};
use db::evacuations::EvacuationKind;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Cluster config key: instances an evacuation or restore handles at once on the member
/// concerned (default [`DEFAULT_PARALLEL`]).
pub const PARALLEL: &str = "cluster.evacuate.parallel";
/// Cluster config key: instances moved at once onto (evacuate) or from (restore) any one
/// other member (default [`DEFAULT_PARALLEL_PER_TARGET`]).
pub const PARALLEL_PER_TARGET: &str = "cluster.evacuate.parallel_per_target";
/// Default of [`PARALLEL`]. Chosen with `drover-bench evacuate --sweep` (bench/README.md):
/// on two cores 8/4 shortens a 30-instance evacuation by 15–35 % but adds 60–100 ms of
/// downtime to every running instance; 16/8 is no faster.
pub const DEFAULT_PARALLEL: u64 = 4;
/// Default of [`PARALLEL_PER_TARGET`] (see [`DEFAULT_PARALLEL`]).
pub const DEFAULT_PARALLEL_PER_TARGET: u64 = 2;

/// What a request asks for, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Evacuate in this mode (`auto`: each instance's `cluster.evacuate`).
    Evacuate(EvacuateMode),
    /// Restore; with `skip`, only the state changes.
    Restore {
        /// `mode: "skip"`.
        skip: bool,
    },
}

impl Request {
    /// Parses action and mode; LXD's 400 for an unknown one.
    pub fn parse(req: &MemberStatePost) -> ApiResult<Self> {
        match req.action.as_str() {
            "evacuate" => EvacuateMode::parse(&req.mode)
                .map(Self::Evacuate)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("Unknown evacuation mode {:?}", req.mode))
                }),
            "restore" => match req.mode.as_str() {
                "" => Ok(Self::Restore { skip: false }),
                "skip" => Ok(Self::Restore { skip: true }),
                other => Err(ApiError::bad_request(format!(
                    "Unknown restore mode {other:?}"
                ))),
            },
            other => Err(ApiError::bad_request(format!("Unknown action {other:?}"))),
        }
    }

    fn kind(self) -> EvacuationKind {
        match self {
            Self::Evacuate(_) => EvacuationKind::Evacuate,
            Self::Restore { .. } => EvacuationKind::Restore,
        }
    }
}

/// LXD's operation description.
pub fn description(kind: EvacuationKind) -> &'static str {
    match kind {
        EvacuationKind::Evacuate => "Evacuating cluster member",
        EvacuationKind::Restore => "Restoring cluster member",
    }
}

/// Parallelism limits of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Instances handled at once on the member concerned.
    pub parallel: usize,
    /// Instances moved at once onto or from any one other member.
    pub per_member: usize,
}

async fn limits(d: &Daemon, req: &MemberStatePost) -> ApiResult<Limits> {
    let config = d.read(db::config::all).await?;
    let get = |key: &str, default: u64| {
        config
            .get(key)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(default)
    };
    let pick = |asked: u32, key: &str, default: u64| {
        let n = if asked > 0 {
            u64::from(asked)
        } else {
            get(key, default)
        };
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    };
    Ok(Limits {
        parallel: pick(req.parallel, PARALLEL, DEFAULT_PARALLEL),
        per_member: pick(
            req.parallel_per_target,
            PARALLEL_PER_TARGET,
            DEFAULT_PARALLEL_PER_TARGET,
        ),
    })
}

/// `POST /1.0/cluster/members/{name}/state`: validates, then evacuates or restores as an
/// operation on member `name` (forwarding the request there when it is another member;
/// `forwarded` requests are never forwarded again).
///
/// # Errors
///
/// 400 for an unknown action or mode; 404 for an unknown member (any member when not
/// clustered, as LXD answers);
/// the member's own answer when forwarded. Refusals that depend on the cluster's state
/// (already evacuated, another evacuation in progress, quorum) fail the operation with
/// LXD's message, as LXD does, and change nothing.
pub async fn change_state(
    d: &Daemon,
    name: &str,
    req: MemberStatePost,
    forwarded: bool,
) -> ApiResult<api::Operation> {
    let request = Request::parse(&req)?;
    if !d.cluster.is_clustered() {
        // LXD 5.0.2's answer on a standalone server: it has no member of any name.
        return Err(ApiError::not_found("Cluster member not found"));
    }
    let n = name.to_string();
    if d.read(move |c| db::members::get(c, &n)).await?.is_none() {
        return Err(ApiError::not_found("Cluster member not found"));
    }
    if name != d.member() {
        if forwarded {
            return Err(ApiError::bad_request(format!(
                "Cluster member {name:?} must coordinate its own evacuation"
            )));
        }
        return forward(d, name, &req).await;
    }
    let limits = limits(d, &req).await?;
    let op = d.ops.create(
        OperationClass::Task,
        description(request.kind()),
        Default::default(),
        None,
    );
    let record = op.record();
    let (d, name) = (d.clone(), name.to_string());
    tokio::spawn(async move {
        match prepare(&d, &name, request, &req, op.id()).await {
            Ok(Prepared::DryRun(entries)) => {
                op.succeed(Some(serde_json::json!({ PLAN_KEY: entries })));
            }
            Ok(Prepared::Begun) => {
                if let Request::Evacuate(mode) = request
                    && let Err(e) = settle::settle(&d, &name, mode, op.id()).await
                {
                    tracing::warn!(error = %e.message, "instances that landed while planning not added");
                }
                execute::run(&d, &name, request.kind(), op, limits).await;
            }
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

/// Hands the request to member `name` and returns the operation it runs.
async fn forward(d: &Daemon, name: &str, req: &MemberStatePost) -> ApiResult<api::Operation> {
    let peer = super::peer::Peer::connect(d, name).await?;
    let body = serde_json::to_value(req)
        .map_err(|e| ApiError::internal(format!("encode request: {e}")))?;
    let path = format!("/1.0/cluster/members/{name}/state");
    // The operation runs there: its end must reach this member's clients.
    super::forward::wait_relayed(name).await;
    let op = peer
        .request(reqwest::Method::POST, &path, Some(&body))
        .await?
        .into_operation()?;
    d.cluster.remote_ops.insert(&op.id, name);
    Ok(op)
}

/// What [`prepare`] got to.
enum Prepared {
    /// The plan of a dry run; nothing changed.
    DryRun(Vec<api::evacuation::PlanEntry>),
    /// The plan is journaled and the member's state changed.
    Begun,
}

/// Checks, plans and (unless a dry run) journals the plan.
async fn prepare(
    d: &Daemon,
    name: &str,
    request: Request,
    req: &MemberStatePost,
    operation: &str,
) -> ApiResult<Prepared> {
    let kind = request.kind();
    // Plan from what the cluster has committed, not from a lagging copy.
    d.replicator().ensure_linearizable().await?;
    let n = name.to_string();
    d.read(move |c| db::evacuations::check_begin(c, &n, kind))
        .await?;
    let online = online_members(d).await?;
    if kind == EvacuationKind::Evacuate && !req.force {
        check_quorum(d, name, &online).await?;
    }
    let snap = snapshot::take(d, online).await?;
    let decisions = match request {
        Request::Evacuate(mode) => cluster::plan_evacuation(&snap, name, mode),
        Request::Restore { skip: true } => Vec::new(),
        Request::Restore { skip: false } => {
            let placed = snapshot::placed(d, name).await?;
            cluster::plan_restore(&snap, name, &placed)
        }
    };
    let entries = snapshot::entries(&decisions);
    if req.dry_run {
        return Ok(Prepared::DryRun(entries));
    }
    if kind == EvacuationKind::Evacuate {
        forget_stale_origins(d, &snap, name).await?;
    }
    d.write(db::Command::BeginEvacuation {
        member: name.to_string(),
        kind,
        operation: operation.to_string(),
        entries,
    })
    .await?;
    tracing::info!(member = %name, kind = kind.as_str(), op = %operation, "evacuation journaled");
    crash::journaled(d, kind);
    match kind {
        EvacuationKind::Evacuate => hand_over(d, name).await,
        EvacuationKind::Restore => d.replicator().set_electable(true),
    }
    Ok(Prepared::Begun)
}

/// Clears the `volatile.evacuate.origin` of every instance on `member` that names a member
/// no instance is away from any more: one removed from the cluster since (evacuated, then
/// removed for good) or one back in service (restored with `skip`, which keeps origins).
/// An evacuation records the origin only when there is none (an instance moved on by a
/// second evacuation still goes home to the first member, which is still evacuated), so
/// such an instance would keep the stale origin through the evacuation of `member`, and
/// the restore of `member` would leave it where it went.
async fn forget_stale_origins(d: &Daemon, snap: &cluster::Snapshot, member: &str) -> ApiResult<()> {
    let away: BTreeSet<String> = d
        .read(db::members::list)
        .await?
        .into_iter()
        .filter(|m| m.state != MemberState::Created)
        .map(|m| m.name)
        .collect();
    for inst in snap.instances.iter().filter(|i| i.member == member) {
        let origin = inst.config_value(cluster::ORIGIN_KEY);
        if origin.is_empty() || away.contains(origin) {
            continue;
        }
        tracing::info!(instance = %inst.name, origin, "forgetting a stale evacuation origin");
        d.write(db::Command::PatchInstanceConfig {
            project: inst.project.clone(),
            name: inst.name.clone(),
            changes: [(cluster::ORIGIN_KEY.to_string(), None)].into(),
            last_used_at: None,
        })
        .await?;
    }
    Ok(())
}

/// How long an evacuated leader waits for another voter to take over.
const HANDOVER: std::time::Duration = std::time::Duration::from_secs(10);

/// A member under maintenance does not lead the cluster: when it leads, another voter
/// takes over, and it no longer stands for election until it is restored (or restarts
/// while not evacuated) — unless no other voter could lead (see
/// [`another_voter_can_lead`]). Best effort: the evacuation goes on either way.
async fn hand_over(d: &Daemon, name: &str) {
    let replicator = d.replicator();
    match another_voter_can_lead(d, name).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e.message, "raft leadership not handed over");
            return;
        }
    }
    match replicator.hand_over_leadership(HANDOVER).await {
        Ok(Some(leader)) => tracing::info!(leader, "raft leadership handed over"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "raft leadership not handed over"),
    }
}

/// The members that answer heartbeats (by this member's view of the cluster).
pub(crate) async fn online_members(d: &Daemon) -> ApiResult<BTreeSet<String>> {
    Ok(super::members::list(d, false)
        .await?
        .into_iter()
        .filter(|m| m.status != "Offline")
        .map(|m| m.server_name)
        .collect())
}

/// Refuses to evacuate a voter when the other voters online would not be a majority of
/// the voters (LXD's `Insufficient online voters to maintain quorum`).
///
/// Only a cluster of [`QUORUM_CHECK_VOTERS`] voters or more can keep a majority without
/// one of them; with one or two, no member could ever be evacuated (and LXD 5.0.2's
/// `lxc` cannot send `force`), so they evacuate as LXD 5.0.2 lets them.
async fn check_quorum(d: &Daemon, name: &str, online: &BTreeSet<String>) -> ApiResult<()> {
    let members = d.read(db::members::list).await?;
    let metrics = d.replicator().metrics();
    let voter_names: Vec<String> = members
        .iter()
        .filter(|m| {
            u64::try_from(m.id)
                .ok()
                .and_then(|id| metrics.members.get(&id))
                .is_some_and(|r| r.voter)
        })
        .map(|m| m.name.clone())
        .collect();
    if voter_names.len() < QUORUM_CHECK_VOTERS || !voter_names.iter().any(|v| v == name) {
        return Ok(());
    }
    let others_online = voter_names
        .iter()
        .filter(|v| *v != name && online.contains(*v))
        .count();
    if others_online < voter_names.len() / 2 + 1 {
        return Err(ApiError::bad_request(
            "Insufficient online voters to maintain quorum",
        ));
    }
    Ok(())
}

/// Whether a voter other than `name` is not under maintenance, so that it can lead
/// while `name` stands aside. When none can (a one-member cluster, or every member
/// evacuated), `name` keeps standing for election: a cluster must keep a leader.
async fn another_voter_can_lead(d: &Daemon, name: &str) -> ApiResult<bool> {
    let members = d.read(db::members::list).await?;
    let metrics = d.replicator().metrics();
    Ok(members.iter().any(|m| {
        m.name != name
            && m.state.accepts_instances()
            && u64::try_from(m.id)
                .ok()
                .and_then(|id| metrics.members.get(&id))
                .is_some_and(|r| r.voter)
    }))
}

/// The fewest voters for which [`check_quorum`] applies.
const QUORUM_CHECK_VOTERS: usize = 3;

/// How long a restarted member waits for a Raft leader before resuming its journal.
const RESUME_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// After this daemon starts, in the background: once the cluster has a leader, carries on
/// an evacuation or restore of this member that was under way when it stopped.
pub fn spawn_resume(d: &Daemon) {
    let d = d.clone();
    tokio::spawn(async move {
        if !d.cluster.is_clustered() {
            return;
        }
        if let Err(e) = d.replicator().wait_leader(RESUME_LEADER_WAIT).await {
            tracing::warn!(error = %e, "no leader: the evacuation journal is not resumed");
            return;
        }
        if let Err(e) = resume(&d).await {
            tracing::warn!(error = %e.message, "the evacuation journal could not be resumed");
        }
    });
}

/// Carries on an evacuation or restore of this member that was under way when it stopped
/// (it is evacuating or restoring and its journal has unfinished rows).
pub async fn resume(d: &Daemon) -> ApiResult<()> {
    if !d.cluster.is_clustered() {
        return Ok(());
    }
    let name = d.member();
    let n = name.clone();
    let (member, unfinished, rows) = d
        .read(move |c| {
            Ok((
                db::members::get(c, &n)?,
                db::evacuations::has_unfinished(c, &n)?,
                db::evacuations::list_for_member(c, &n)?,
            ))
        })
        .await?;
    let state = member.map(|m| m.state);
    if matches!(
        state,
        Some(MemberState::Evacuated | MemberState::Evacuating)
    ) && another_voter_can_lead(d, &name).await?
    {
        d.replicator().set_electable(false);
    }
    // An empty plan has no rows to say it is unfinished: the member's state does.
    let unfinished = unfinished || rows.is_empty();
    let kind = match state {
        Some(MemberState::Evacuating) if unfinished => EvacuationKind::Evacuate,
        Some(MemberState::Restoring) if unfinished => EvacuationKind::Restore,
        _ => return Ok(()),
    };
    let limits = limits(d, &MemberStatePost::default()).await?;
    // The journal names the operation clients wait on: carry on under the same id.
    let op = match rows.iter().find(|r| !r.operation.is_empty()) {
        Some(r) if d.ops.get(&r.operation).is_none() => d.ops.create_with_id(
            r.operation.clone(),
            OperationClass::Task,
            description(kind),
            Default::default(),
            None,
        ),
        _ => d.ops.create(
            OperationClass::Task,
            description(kind),
            Default::default(),
            None,
        ),
    };
    tracing::info!(member = %name, kind = kind.as_str(), op = %op.id(), "resuming from the journal");
    let d = d.clone();
    tokio::spawn(async move {
        if kind == EvacuationKind::Evacuate
            && let Err(e) = settle::settle(&d, &name, EvacuateMode::Auto, op.id()).await
        {
            tracing::warn!(error = %e.message, "instances that landed while planning not added");
        }
        execute::run(&d, &name, kind, op, limits).await;
    });
    Ok(())
}

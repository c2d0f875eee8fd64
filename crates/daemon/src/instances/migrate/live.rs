//! Live moves of running virtual machines: the guest keeps running while its memory (and,
//! on a member-local pool, its disk) goes to the target, then pauses for the final
//! stop-and-copy (QEMU's downtime, tens of ms) and resumes on the target.
//!
//! On the source, step by journaled step:
//!
//! 1. `dir` pool only: the volume (kernel, initrd, disk) is copied to the target with the
//!    cold moves' transfer while the VM runs, and put in place there (journal:
//!    `precopied`). Its disk image is only a same-size file to write into: step 3 rewrites
//!    every block of it.
//! 2. The target starts a paused QEMU with the same machine (memory, vCPUs, accelerator,
//!    CPU model, kernel command line) on its copy of the volume, waiting for the stream on
//!    a unix socket of its own (`/internal/moves/{id}/live/prepare`, see [`live_target`]).
//! 3. The source QEMU migrates to a unix socket of this daemon, which pipes the stream into
//!    a `PUT /internal/moves/{id}/live/stream` over the mTLS member link; the target
//!    daemon pipes it into its QEMU. Bandwidth uncapped, `downtime-limit` 50 ms,
//!    auto-converge, a convergence deadline. On a `dir` pool the disk travels in the same
//!    stream (QEMU 7.2's block migration: a bulk pass while the guest runs, then the blocks
//!    it dirtied, converging together with RAM), so the target's disk is exact when the
//!    stream ends; on `shared-fs` only memory and device state move. The target answers
//!    once its QEMU has loaded everything.
//! 4. Both QEMUs are paused now. The ownership switch commits ([`db::Command::SwitchMoveOwner`]),
//!    then the target resumes its QEMU, the source QEMU is ended and (on `dir`) the source
//!    copy of the volume deleted (`target-started`, `done`).
//!
//! # Correctness
//!
//! - The guest runs in exactly one place: the target QEMU stays paused (`-S`, and
//!   `late-block-activate` so it does not even take the disk's lock) until the switch has
//!   committed; before the switch only the source may resume it.
//! - Any failure before the switch (the target or its daemon dies, the link breaks, no
//!   convergence in time) cancels the migration, ends the target QEMU and removes what the
//!   target holds, resumes the source QEMU if it paused, and journals the move failed with
//!   its cause: the VM keeps running on the source.
//! - A daemon that dies mid-move: its QEMU lives on (QEMU daemonizes); the broken stream
//!   fails the migration, which resumes the source guest by itself; [`super::recover`]
//!   undoes or finishes the move from the journal as for cold moves, and a target that
//!   restarts after the source gave up removes what it holds ([`live_target::sweep_failed`]).
//!
//! [`live_target`]: super::live_target
//! [`live_target::sweep_failed`]: super::live_target::sweep_failed

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use db::moves::{MoveRecord, MoveStep};
use driver_qemu::{MigrationParams, MigrationProgress, VmConfig};
use tokio::io::AsyncReadExt;

use super::checks::Plan;
use super::execute::{Undo, finish, journal, undo};
use super::live_target::{Arrived, PrepareLive};
use super::progress::{MoveStage, Reporter};
use super::{MoveOptions, MoveReport, internal};
use crate::cluster::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// How long the source QEMU may take to connect to this daemon's socket after `migrate`.
const ACCEPT: Duration = Duration::from_secs(30);
/// How long the target may take to start its QEMU.
const PREPARE_DEADLINE: Duration = Duration::from_secs(60);
/// What the stream request may take beyond the migration's own deadline (the target loads
/// the end of the stream, then answers).
const ARRIVAL_MARGIN: Duration = Duration::from_secs(90);
/// Pieces of the stream read from QEMU at a time.
const CHUNK: usize = 256 * 1024;

/// Whether a move of `plan` with `opts` is a live one: a running VM with `live`.
pub(super) fn is_live(plan: &Plan, opts: &MoveOptions) -> bool {
    opts.live && plan.was_running && plan.rec.kind == "virtual-machine"
}

/// A failed step, by which side of the switch it happened on.
enum Failure {
    Before(ApiError),
    After(ApiError),
}

/// What the steps learn along the way.
#[derive(Default)]
struct Ctx {
    /// The switch was proposed: a failure may hide a switch that committed.
    switch_proposed: bool,
    /// QEMU's own downtime (ms) and when the source saw the migration complete.
    completed: Option<(u64, Instant)>,
}

/// Runs the live move `plan` under the instance lock; a VM that stopped meanwhile moves
/// cold instead.
pub(super) async fn run(d: &Daemon, mut plan: Plan, opts: &MoveOptions) -> ApiResult<MoveReport> {
    let started = Instant::now();
    let vms = d.vms.clone().ok_or_else(|| {
        ApiError::bad_request("Live migration needs QEMU on this member: it is unavailable")
    })?;
    let lock = d.instance_lock(&plan.volume());
    let guard = lock.lock().await;
    super::execute::reload(d, &mut plan).await?;
    if !plan.was_running {
        drop(guard);
        return super::execute::run(d, plan, opts).await;
    }
    plan.start_after = true;
    let runtime = plan.volume();
    let config = vms
        .vm_config(&runtime)
        .await
        .map_err(|e| ApiError::internal(format!("The VM's machine is unknown here: {e}")))?;
    let record = MoveRecord {
        id: plan.id.clone(),
        project: plan.rec.project.clone(),
        instance: plan.rec.name.clone(),
        source: plan.source.clone(),
        target: plan.target.clone(),
        pool: plan.pool.clone(),
        copy_data: plan.copy_data,
        was_running: true,
        step: MoveStep::Started,
        error: String::new(),
        created_at: ops::now_rfc3339(),
        updated_at: ops::now_rfc3339(),
    };
    d.write(db::Command::CreateMove(record)).await?;
    tracing::info!(
        move_id = %plan.id, instance = %plan.rec.name, target = %plan.target,
        copy = plan.copy_data, "live move started"
    );
    let mut rep = Reporter::new(&plan.rec.name, opts.progress.clone());
    let mut ctx = Ctx::default();
    let outcome = forward(d, &vms, &plan, &config, &mut rep, &mut ctx).await;
    let report = |rep: &Reporter, ctx: &Ctx, running: bool| {
        let downtime = match (ctx.completed, rep.running_at(), running) {
            (Some((qemu_ms, done)), Some(at), true) => {
                Some(qemu_ms + millis(at.saturating_duration_since(done)))
            }
            _ => None,
        };
        MoveReport {
            id: plan.id.clone(),
            instance: plan.rec.name.clone(),
            source: plan.source.clone(),
            target: plan.target.clone(),
            copied_data: plan.copy_data,
            bytes_sent: rep.bytes_sent(),
            running,
            downtime_ms: downtime,
            total_ms: millis(started.elapsed()),
            stages: rep.timeline(),
        }
    };
    match outcome {
        Ok(running) => {
            let r = report(&rep, &ctx, running);
            tracing::info!(move_id = %plan.id, report = ?r, "live move done");
            Ok(r)
        }
        Err(Failure::After(e)) => {
            tracing::warn!(move_id = %plan.id, error = %e.message, "live move switched but not finished");
            Err(e)
        }
        Err(Failure::Before(e)) => {
            rep.stage(MoveStage::Rollback);
            tracing::warn!(move_id = %plan.id, error = %e.message, "live move failed: rolling back");
            cancel_outgoing(&vms, &runtime).await;
            match undo(d, &plan, ctx.switch_proposed, &e.message).await {
                Undo::Undone => Err(e),
                Undo::Switched => {
                    let running = finish(d, &plan, &mut rep).await?;
                    Ok(report(&rep, &ctx, running))
                }
                Undo::Unknown(why) => Err(ApiError::internal(format!(
                    "{}; the move could not be undone yet ({why}): the next start of this member resolves it",
                    e.message
                ))),
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The steps up to and past the switch; returns whether the VM runs on the target.
async fn forward(
    d: &Daemon,
    vms: &driver_qemu::QemuDriver,
    plan: &Plan,
    config: &VmConfig,
    rep: &mut Reporter,
    ctx: &mut Ctx,
) -> Result<bool, Failure> {
    let before = Failure::Before;
    let peer = Peer::connect(d, &plan.target).await.map_err(before)?;
    if plan.copy_data {
        let pool = crate::volumes::pool(d, &plan.pool).await.map_err(before)?;
        let src = pool.volume_path(&plan.volume());
        internal::prepare(&peer, plan).await.map_err(before)?;
        rep.stage(MoveStage::Precopy);
        let mut base = None;
        let sent = internal::send_volume(&peer, plan, src, &mut base, rep)
            .await
            .map_err(before)?;
        internal::commit(&peer, plan, &sent).await.map_err(before)?;
        journal(d, &plan.id, MoveStep::Precopied, "")
            .await
            .map_err(before)?;
    }
    rep.stage(MoveStage::Sync);
    let body = serde_json::to_value(PrepareLive {
        config: config.clone(),
    })
    .map_err(|e| before(ApiError::internal(e.to_string())))?;
    peer.request_within(
        reqwest::Method::POST,
        &internal::path(plan, "live/prepare"),
        Some(&body),
        PREPARE_DEADLINE,
    )
    .await
    .map_err(before)?;
    let (qemu_downtime, arrived) = migrate(vms, &peer, plan, rep).await.map_err(before)?;
    ctx.completed = Some((qemu_downtime, Instant::now()));
    tracing::info!(move_id = %plan.id, status = %arrived.status, bytes = arrived.bytes, "VM arrived on the target");
    // Both QEMUs are paused from here until the target resumes: no journal write before
    // the switch (recovery treats every step before it alike), the switch itself records
    // that the VM arrived.
    rep.stage(MoveStage::Switch);
    ctx.switch_proposed = true;
    d.write(db::Command::SwitchMoveOwner {
        id: plan.id.clone(),
        now: ops::now_rfc3339(),
    })
    .await
    .map_err(before)?;
    tracing::info!(move_id = %plan.id, instance = %plan.rec.name, target = %plan.target, "ownership switched");
    finish(d, plan, rep).await.map_err(Failure::After)
}

/// Sends the running VM through the member link; returns QEMU's downtime (ms) and what the
/// target says it loaded. The source QEMU is left paused (`postmigrate`) on success; on
/// failure it runs again (QEMU resumes a guest whose migration failed).
async fn migrate(
    vms: &driver_qemu::QemuDriver,
    peer: &Peer,
    plan: &Plan,
    rep: &mut Reporter,
) -> ApiResult<(u64, Arrived)> {
    let runtime = plan.volume();
    let socket = vms.paths(&runtime).migrate_out();
    let _ = tokio::fs::remove_file(&socket).await;
    let listener = tokio::net::UnixListener::bind(&socket)
        .map_err(|e| ApiError::internal(format!("listen on {}: {e}", socket.display())))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let pump = tokio::spawn(pump(listener, tx));
    let body = reqwest::Body::wrap_stream(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let params = MigrationParams {
        block: plan.copy_data,
        ..MigrationParams::default()
    };
    let request = peer
        .client()
        .put(peer.url(&internal::path(plan, "live/stream")))
        .header(crate::cluster::peer::FORWARDED_HEADER, "1")
        .timeout(params.deadline + ARRIVAL_MARGIN)
        .body(body)
        .send();
    let answer = async {
        let resp = request.await.map_err(|e| link_broken(peer, &e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| link_broken(peer, &e))?;
        decode_arrived(peer, status, &bytes)
    };
    let uri = format!("unix:{}", socket.display());
    let sent = vms.migrate_out(&runtime, &uri, &params, |p: &MigrationProgress| {
        rep.sent(p.transferred + p.disk_transferred);
    });
    let (sent, arrived) = tokio::join!(sent, answer);
    pump.abort();
    let _ = tokio::fs::remove_file(&socket).await;
    match (sent, arrived) {
        (Ok(stats), Ok(arrived)) => {
            tracing::info!(
                instance = %plan.rec.name, total_ms = stats.total_ms, downtime_ms = stats.downtime_ms,
                mib = stats.transferred >> 20, "migration sent"
            );
            Ok((stats.downtime_ms, arrived))
        }
        // The target's cause comes first: it says why the stream stopped.
        (_, Err(e)) => Err(ApiError::internal(format!(
            "Live migration to {} failed: {}",
            plan.target, e.message
        ))),
        (Err(e), Ok(_)) => Err(ApiError::internal(format!(
            "Live migration to {} failed: {e}",
            plan.target
        ))),
    }
}

/// Reads what the source QEMU sends into `tx`, until QEMU closes the connection or the
/// request body is dropped (then the QEMU's connection closes, failing its migration).
async fn pump(
    listener: tokio::net::UnixListener,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let mut conn = match tokio::time::timeout(ACCEPT, listener.accept()).await {
        Ok(Ok((conn, _))) => conn,
        Ok(Err(e)) => {
            let _ = tx.send(Err(e)).await;
            return;
        }
        Err(_) => {
            let _ = tx
                .send(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "QEMU did not connect to send the migration",
                )))
                .await;
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(CHUNK);
    loop {
        buf.reserve(CHUNK);
        match conn.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => {
                if tx.send(Ok(buf.split().freeze())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

fn link_broken(peer: &Peer, e: &reqwest::Error) -> ApiError {
    let mut s = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    ApiError::internal(format!(
        "the link to cluster member {} broke: {s}",
        peer.name()
    ))
}

fn decode_arrived(peer: &Peer, status: reqwest::StatusCode, bytes: &[u8]) -> ApiResult<Arrived> {
    let env: api::Response<serde_json::Value> = serde_json::from_slice(bytes).map_err(|_| {
        ApiError::internal(format!(
            "cluster member {} answered {status}: {}",
            peer.name(),
            String::from_utf8_lossy(bytes).trim()
        ))
    })?;
    match env.kind {
        api::ResponseType::Sync => serde_json::from_value(env.metadata)
            .map_err(|e| ApiError::internal(format!("unexpected answer to the stream: {e}"))),
        _ => Err(ApiError::internal(format!(
            "cluster member {}: {}",
            peer.name(),
            env.error
        ))),
    }
}

/// Cancels an outgoing migration of `runtime` that may still be in flight (a failure on
/// our side of the link): the source QEMU then resumes the guest.
async fn cancel_outgoing(vms: &driver_qemu::QemuDriver, runtime: &str) {
    let Ok(qmp) = vms.qmp(runtime).await else {
        return;
    };
    let active = match qmp.query_migrate().await {
        Ok(q) => matches!(
            q["status"].as_str(),
            Some("setup" | "active" | "device" | "pre-switchover")
        ),
        Err(_) => false,
    };
    if !active {
        return;
    }
    if let Err(e) = qmp.migrate_cancel().await {
        tracing::warn!(runtime, error = %e, "migrate_cancel failed");
    }
    // Cancelling ends once QEMU has put the guest back as it was.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match qmp.query_migrate().await {
            Ok(q)
                if matches!(
                    q["status"].as_str(),
                    Some("cancelled" | "failed" | "completed")
                ) =>
            {
                return;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
}

/// Makes the VM of `plan` run on this member again after an undone live move: its QEMU
/// paused at the end of a migration (or by an interrupted one) resumes. Nothing to do for a
/// container, a stopped VM or one that runs.
pub(super) async fn resume_source(d: &Daemon, plan: &Plan) {
    let Some(vms) = d.vms.as_ref() else {
        return;
    };
    let runtime = plan.volume();
    if vms.vm_config(&runtime).await.is_err() {
        return;
    }
    cancel_outgoing(vms, &runtime).await;
    match vms.resume(&runtime).await {
        Ok(true) => tracing::info!(instance = %plan.rec.name, "VM resumed on the source"),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(instance = %plan.rec.name, error = %e, "VM not resumed on the source")
        }
    }
}

//! Live moves of running virtual machines: the guest keeps running while its memory (and,
//! on a member-local pool, its disk) goes to the target, then pauses for the final
//! stop-and-copy (QEMU's downtime, tens of ms) and resumes on the target.
//!
//! On the source, step by journaled step:
//!
//! 1. `dir` pool only: the volume (kernel, initrd, disk) is copied to the target with the
//!    cold moves' transfer while the VM runs, and put in place there. Its disk image is
//!    only a same-size file to write into: step 3 rewrites every block of it.
//! 2. The target starts a paused QEMU with the same machine (memory, vCPUs, accelerator,
//!    CPU model, kernel command line) on its copy of the volume, waiting for the stream on
//!    a unix socket of its own (`/internal/moves/{id}/live/prepare`, see [`live_target`]);
//!    meanwhile the hand-over is armed in the journal ([`MoveStep::Handover`]).
//! 3. The source QEMU migrates to a unix socket of this daemon, which pipes the stream into
//!    a `PUT /internal/moves/{id}/live/stream` over the mTLS member link; the target
//!    daemon pipes it into its QEMU. Bandwidth uncapped, `downtime-limit` 50 ms,
//!    auto-converge, a convergence deadline. On a `dir` pool the disk travels in the same
//!    stream (QEMU 7.2's block migration: a bulk pass while the guest runs, then the blocks
//!    it dirtied, converging together with RAM), so the target's disk is exact when the
//!    stream ends; on `shared-fs` only memory and device state move.
//! 4. The hand-over: as soon as the source QEMU reports `completed` (it is paused for good
//!    then: QEMU resumes a source only when its migration fails), the source asks the
//!    target to resume (`/internal/moves/{id}/live/resume`); the target resumes its QEMU
//!    once it has loaded the whole stream. The guest's pause is QEMU's downtime plus this
//!    one round trip: no Raft write inside it.
//! 5. Then the ownership switch commits ([`db::Command::SwitchMoveOwner`]), the target
//!    records the VM as running, the source QEMU is ended and (on `dir`) the source copy of
//!    the volume deleted (`done`).
//!
//! # Correctness
//!
//! - The guest runs in exactly one place. The target QEMU stays paused (`-S`, and
//!   `late-block-activate` so it does not even take the disk's lock) until the source,
//!   whose QEMU completed, asks it to resume. Once that was asked, the source copy is stale
//!   (on `shared-fs` both use the same disk) and is resumed only after the target answered
//!   that it never resumed the VM, having ended its QEMU first ([`Handed::NotResumed`]).
//!   Without an answer the VM stays paused on the source until one comes.
//! - Any failure before the resume was asked (the target or its daemon dies, the link
//!   breaks, no convergence in time) cancels the migration, ends the target QEMU and
//!   removes what the target holds, resumes the source QEMU if it paused, and journals the
//!   move failed with its cause: the VM keeps running on the source.
//! - Once the target resumed the VM, the move only goes forward: a failed switch is retried
//!   ([`super::recover::spawn_one`]).
//! - A daemon that dies mid-move: its QEMU lives on (QEMU daemonizes). A source restarting
//!   at [`MoveStep::Handover`] ([`settle`]) undoes the move when its QEMU runs (the
//!   migration did not complete, so the target was never asked), and otherwise asks the
//!   target, which says whether it resumed (a marker written before `cont` remembers it
//!   across restarts and QEMU deaths). A target restarting there goes forward itself when
//!   it resumed the VM, and otherwise fences the move and discards its QEMU under the
//!   instance lock ([`live_target::recover_handover`]). A target whose resumed VM died
//!   afterwards starts it again from the target's disk once it owns it (as after a crash of
//!   the host): never from the stale memory of the source.
//!
//! [`live_target`]: super::live_target
//! [`live_target::recover_handover`]: super::live_target::recover_handover

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use db::moves::MoveStep;
use driver_qemu::{MigrationParams, MigrationProgress, VmConfig};
use tokio::io::AsyncReadExt;

use super::checks::Plan;
use super::execute::{finish, journal};
use super::live_target::{Arrived, PrepareLive, Resumed};
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
/// Pieces of the stream queued for the link at most.
const STREAM_QUEUE: usize = 4;

/// Whether a move of `plan` with `opts` is a live one: a running VM with `live`.
pub(super) fn is_live(plan: &Plan, opts: &MoveOptions) -> bool {
    opts.live && plan.was_running && plan.rec.kind == "virtual-machine"
}

/// A failed step, by where it leaves the VM.
enum Failure {
    /// Before the target resumed the VM: the move is undone.
    Before(ApiError),
    /// The target resumed the VM: the move goes forward, in the background if need be.
    After(ApiError),
    /// The target did not say whether it resumed the VM: nobody resumes it until it does.
    Unresolved(ApiError),
}

/// What the steps learn along the way.
#[derive(Default)]
struct Ctx {
    /// QEMU's own downtime (ms) and when the source saw the migration complete.
    completed: Option<(u64, Instant)>,
    /// When the target confirmed the VM runs there.
    resumed_at: Option<Instant>,
}

/// How the hand-over of a live move ended.
pub(super) enum Handed {
    /// The VM runs on the target, or ran there: the move goes forward.
    Resumed,
    /// The target never resumed the VM and holds no QEMU of it any more: the source may.
    NotResumed(String),
    /// No answer (yet): nobody may resume the VM.
    Unknown(String),
}

/// How long the source keeps asking a target that does not answer whether it resumed the
/// VM before leaving the question to [`super::recover`]; the VM stays paused meanwhile.
const HANDOVER_RETRY: Duration = Duration::from_secs(30);
/// What one such question may take (the target may still be loading the end of the stream).
const RESUME_DEADLINE: Duration = Duration::from_secs(90);

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
    let record = plan.started_record();
    d.write(db::Command::CreateMove(record)).await?;
    tracing::info!(
        move_id = %plan.id, instance = %plan.rec.name, target = %plan.target,
        copy = plan.copy_data, "live move started"
    );
    let mut rep = Reporter::new(&plan.rec.name, opts.progress.clone());
    let mut ctx = Ctx::default();
    let outcome = forward(d, &vms, &plan, &config, &mut rep, &mut ctx).await;
    let report = |rep: &Reporter, ctx: &Ctx, running: bool| {
        let mut r = MoveReport::from_plan(&plan, rep, running, None, started);
        if let (Some((qemu_ms, done)), Some(at), true) = (ctx.completed, ctx.resumed_at, running) {
            let handover = millis(at.saturating_duration_since(done));
            r.downtime_ms = Some(qemu_ms + handover);
            r.qemu_downtime_ms = Some(qemu_ms);
            r.handover_ms = Some(handover);
        }
        r
    };
    match outcome {
        Ok(running) => {
            let r = report(&rep, &ctx, running);
            tracing::info!(move_id = %plan.id, report = ?r, "live move done");
            Ok(r)
        }
        Err(Failure::After(e)) => {
            tracing::warn!(move_id = %plan.id, error = %e.message, "live move handed over but not finished");
            super::recover::spawn_one(d, plan.id.clone());
            Err(e)
        }
        Err(Failure::Unresolved(e)) => {
            tracing::warn!(move_id = %plan.id, error = %e.message, "live move: the hand-over is not resolved");
            super::recover::spawn_one(d, plan.id.clone());
            Err(ApiError::internal(format!(
                "{}; the VM stays paused until the target answers: the move is resolved then",
                e.message
            )))
        }
        Err(Failure::Before(e)) => {
            rep.stage(MoveStage::Rollback);
            tracing::warn!(move_id = %plan.id, error = %e.message, "live move failed: rolling back");
            cancel_outgoing(&vms, &runtime).await;
            super::execute::undo_or_finish(d, &plan, true, e, &mut rep)
                .await
                .map(|running| report(&rep, &ctx, running))
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
    }
    rep.stage(MoveStage::Sync);
    let body = serde_json::to_value(PrepareLive {
        config: config.clone(),
    })
    .map_err(|e| before(ApiError::internal(e.to_string())))?;
    // The hand-over is armed while the target starts its QEMU: from here recovery asks the
    // target before it resumes the source ([`settle`]).
    let prepare_path = internal::path(plan, "live/prepare");
    // A second request beside the prepare leaves two connections to the target open (the
    // member link is HTTP/1.1): the stream takes one, and the hand-over's request finds the
    // other idle instead of making one (a TLS handshake) inside the guest's pause.
    let (prepared, armed, _) = tokio::join!(
        peer.request_within(
            reqwest::Method::POST,
            &prepare_path,
            Some(&body),
            PREPARE_DEADLINE,
        ),
        journal(d, &plan.id, MoveStep::Handover, ""),
        peer.request(reqwest::Method::GET, "/1.0", None)
    );
    prepared.map_err(before)?;
    armed.map_err(before)?;
    let (qemu_downtime, handover) = match migrate(vms, &peer, plan, rep).await {
        Migrated::Failed(e) => return Err(before(e)),
        Migrated::Completed {
            qemu_downtime_ms,
            at,
            handed,
            answered_at,
        } => {
            ctx.completed = Some((qemu_downtime_ms, at));
            match handed {
                Handed::Resumed => {
                    ctx.resumed_at = Some(answered_at);
                    (qemu_downtime_ms, answered_at.saturating_duration_since(at))
                }
                Handed::NotResumed(why) => {
                    return Err(before(ApiError::internal(format!(
                        "Live migration to {} failed: the target did not resume the VM: {why}",
                        plan.target
                    ))));
                }
                Handed::Unknown(why) => {
                    return Err(Failure::Unresolved(ApiError::internal(format!(
                        "Live migration to {}: the target did not say whether the VM runs there: {why}",
                        plan.target
                    ))));
                }
            }
        }
    };
    tracing::info!(
        move_id = %plan.id, qemu_downtime_ms = qemu_downtime,
        handover_us = u64::try_from(handover.as_micros()).unwrap_or(u64::MAX),
        "VM runs on the target"
    );
    crate::cluster::evacuate::crash::at(d, "live-resumed");
    rep.stage(MoveStage::Switch);
    d.write(db::Command::SwitchMoveOwner {
        id: plan.id.clone(),
        now: ops::now_rfc3339(),
    })
    .await
    .map_err(Failure::After)?;
    tracing::info!(move_id = %plan.id, instance = %plan.rec.name, target = %plan.target, "ownership switched");
    finish(d, plan, rep).await.map_err(Failure::After)
}

/// What the migration came to.
enum Migrated {
    /// The source QEMU did not complete it: it runs the guest again, the target was never
    /// asked to resume it.
    Failed(ApiError),
    /// It completed: QEMU's downtime (ms), when the source saw it complete, how the
    /// hand-over ended and when its answer came.
    Completed {
        qemu_downtime_ms: u64,
        at: Instant,
        handed: Handed,
        answered_at: Instant,
    },
}

/// Sends the running VM through the member link and, as soon as the source QEMU completed,
/// hands it over to the target ([`hand_over`]).
async fn migrate(
    vms: &driver_qemu::QemuDriver,
    peer: &Peer,
    plan: &Plan,
    rep: &mut Reporter,
) -> Migrated {
    let runtime = plan.volume();
    let socket = vms.paths(&runtime).migrate_out();
    let _ = tokio::fs::remove_file(&socket).await;
    let listener = match tokio::net::UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            return Migrated::Failed(ApiError::internal(format!(
                "listen on {}: {e}",
                socket.display()
            )));
        }
    };
    // Little buffered between QEMU and the link: what is in flight when the source QEMU
    // completes still has to reach the target before it can resume (inside the pause).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(STREAM_QUEUE);
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
    let sent = async {
        let stats = vms
            .migrate_out(&runtime, &uri, &params, |p: &MigrationProgress| {
                rep.sent(p.transferred + p.disk_transferred);
            })
            .await?;
        // The source QEMU completed: it never runs the guest again by itself.
        let at = Instant::now();
        let handed = hand_over(peer, plan).await;
        Ok::<_, drivers::DriverError>((stats, at, handed, Instant::now()))
    };
    let (sent, arrived) = tokio::join!(sent, answer);
    pump.abort();
    let _ = tokio::fs::remove_file(&socket).await;
    match (sent, arrived) {
        (Ok((stats, at, handed, answered_at)), arrived) => {
            tracing::info!(
                instance = %plan.rec.name, total_ms = stats.total_ms, downtime_ms = stats.downtime_ms,
                mib = stats.transferred >> 20, "migration sent"
            );
            match &arrived {
                Ok(a) => {
                    tracing::info!(move_id = %plan.id, status = %a.status, bytes = a.bytes, "VM arrived on the target")
                }
                Err(e) => {
                    tracing::warn!(move_id = %plan.id, error = %e.message, "the stream's answer failed")
                }
            }
            let handed = match (handed, arrived) {
                (Handed::NotResumed(why), Err(e)) => {
                    Handed::NotResumed(format!("{why} ({})", e.message))
                }
                (h, _) => h,
            };
            Migrated::Completed {
                qemu_downtime_ms: stats.downtime_ms,
                at,
                handed,
                answered_at,
            }
        }
        // The target's cause comes first: it says why the stream stopped.
        (Err(_), Err(e)) => Migrated::Failed(ApiError::internal(format!(
            "Live migration to {} failed: {}",
            plan.target, e.message
        ))),
        (Err(e), Ok(_)) => Migrated::Failed(ApiError::internal(format!(
            "Live migration to {} failed: {e}",
            plan.target
        ))),
    }
}

/// Asks the target to resume the VM whose migration the source QEMU completed, again while
/// it does not answer (for [`HANDOVER_RETRY`]).
async fn hand_over(peer: &Peer, plan: &Plan) -> Handed {
    let end = Instant::now() + HANDOVER_RETRY;
    loop {
        match ask_resume(peer, plan).await {
            Handed::Unknown(why) if Instant::now() < end => {
                tracing::warn!(move_id = %plan.id, error = %why, "no answer to the resume yet; asking again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            h => return h,
        }
    }
}

/// One `POST /internal/moves/{id}/live/resume`.
async fn ask_resume(peer: &Peer, plan: &Plan) -> Handed {
    let answer = peer
        .request_within(
            reqwest::Method::POST,
            &internal::path(plan, "live/resume"),
            None,
            RESUME_DEADLINE,
        )
        .await
        .and_then(|r| r.into_sync::<Resumed>());
    match answer {
        Ok(r) if r.resumed => Handed::Resumed,
        Ok(r) => Handed::NotResumed(r.why),
        Err(e) => Handed::Unknown(e.message),
    }
}

/// Who runs the VM of live move `plan`, which armed the hand-over, after a failure or a
/// restart of this member (the source): a source QEMU that runs again did not complete
/// its migration, so the target was never asked to resume; otherwise only the target
/// can tell, and is asked (it resumes a VM that arrived whole, which then goes forward).
pub(super) async fn settle(d: &Daemon, plan: &Plan) -> Handed {
    if let Some(vms) = d.vms.as_ref() {
        let runtime = plan.volume();
        cancel_outgoing(vms, &runtime).await;
        if vms.run_state(&runtime).await.is_ok_and(|s| s == "running") {
            return Handed::NotResumed("the migration did not complete".into());
        }
    }
    match Peer::connect(d, &plan.target).await {
        Ok(peer) => ask_resume(&peer, plan).await,
        Err(e) => Handed::Unknown(e.message),
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
/// container, a stopped VM or one that runs, nor for a VM its user froze (`lxc pause`),
/// which stays frozen.
pub(super) async fn resume_source(d: &Daemon, plan: &Plan) {
    let Some(vms) = d.vms.as_ref() else {
        return;
    };
    if crate::instances::is_frozen(d, &plan.rec.project, &plan.rec.name) {
        return;
    }
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

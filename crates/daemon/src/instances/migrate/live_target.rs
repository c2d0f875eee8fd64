//! The target's side of a live move of a running VM: member-only routes under
//! `/internal/moves/{id}/live/`, and what the target does with the QEMU it started for a
//! move when the move finishes or is undone.
//!
//! | route | what the target does |
//! |---|---|
//! | `POST /internal/moves/{id}/live/prepare` | starts a paused QEMU for the source's machine (body: its `VmConfig`) on its own copy of the volume, waiting for the stream on a local unix socket |
//! | `PUT  /internal/moves/{id}/live/stream` | pipes the request body (QEMU's migration stream, sent by the source's daemon) into that socket; answers once QEMU has loaded all of it |
//! | `POST /internal/moves/{id}/live/resume` | the hand-over: once the source QEMU completed, resumes the arrived VM here; answers whether the VM ran here |
//!
//! The QEMU ends never see the network: each talks to a unix socket of its own daemon, and
//! the daemons carry the stream over their mTLS member link. The target QEMU stays paused
//! (`-S`, images activated only at `cont`) until the source, having seen its own QEMU
//! complete the migration (it never runs the guest again then), asks for the resume;
//! [`resume_local`] leaves a marker in the VM's runtime directory before `cont`, so that
//! whoever asks later (the source again, or this member's recovery) learns that the VM may
//! have run here, even when it has died since. A "not resumed" answer is final: the QEMU is
//! ended first. [`adopt`] records the VM as the instance's runtime once the ownership switch
//! committed.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use driver_qemu::VmConfig;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::internal::{MoveQuery, check_id, check_takes};
use crate::error::{ApiError, ApiResult};
use crate::instances::runtime_id;
use crate::routes::sync;
use crate::state::{Daemon, lock};

/// How long the target QEMU may take to load the end of the stream once it has all arrived.
const ARRIVAL: Duration = Duration::from_secs(60);
/// How long the target waits for its QEMU's incoming socket to appear.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// The body of `POST /internal/moves/{id}/live/prepare`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareLive {
    /// The machine the VM runs with on the source; the target runs the same one with its
    /// own paths to the volume's files.
    pub config: VmConfig,
}

/// What the target answers once the whole stream has arrived.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Arrived {
    /// QEMU's run state (`paused`: waiting for the switch).
    pub status: String,
    /// Bytes of migration stream received.
    pub bytes: u64,
}

fn vms(d: &Daemon) -> ApiResult<&driver_qemu::QemuDriver> {
    d.vms.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "Cluster member {:?} cannot run virtual machines (QEMU is unavailable)",
            d.member()
        ))
    })
}

/// `POST /internal/moves/{id}/live/prepare`.
pub(super) async fn prepare_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
    axum::Json(body): axum::Json<PrepareLive>,
) -> ApiResult<Response> {
    check_id(&id)?;
    check_takes(&d, &q.project, &q.instance).await?;
    let vms = vms(&d)?;
    let (p, n, me) = (q.project.clone(), q.instance.clone(), d.member());
    let owner = d
        .read(move |c| db::instances::get(c, &p, &n))
        .await?
        .map(|r| r.member);
    if owner.as_deref() == Some(me.as_str()) {
        return Err(ApiError::conflict(format!(
            "Instance {:?} already belongs to {me:?}",
            q.instance
        )));
    }
    let runtime = q.volume();
    // A QEMU left by an earlier attempt of a VM this member does not own is stale.
    discard_vm(&d, &runtime).await;
    let pool = crate::volumes::pool(&d, &q.pool).await?;
    let volume = runtime.clone();
    let rootfs = tokio::task::spawn_blocking(move || pool.mount_rootfs(&volume))
        .await?
        .map_err(|e| ApiError::internal(format!("Failed to mount the instance's rootfs: {e}")))?;
    let config = VmConfig {
        kernel: rootfs.join(driver_qemu::vm::KERNEL_FILE),
        initrd: rootfs.join(driver_qemu::vm::INITRD_FILE),
        disk: rootfs.join(driver_qemu::vm::DISK_FILE),
        ..body.config
    };
    for (what, path) in [
        ("root disk", &config.disk),
        ("kernel", &config.kernel),
        ("initrd", &config.initrd),
    ] {
        if !path.is_file() {
            return Err(ApiError::internal(format!(
                "The VM's {what} is missing on {me:?}: {}",
                path.display()
            )));
        }
    }
    vms.prepare_incoming_paused(&runtime, &config)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to start the target QEMU: {e}")))?;
    let listen = async {
        let qmp = vms.qmp(&runtime).await?;
        // Images are taken (locked, written) only at `cont`, after the switch: until then
        // the source may resume on a shared disk.
        qmp.migrate_set_capabilities(&[("late-block-activate", true)])
            .await?;
        let uri = format!("unix:{}", vms.paths(&runtime).migrate_in().display());
        vms.accept_migration(&runtime, &uri).await
    };
    if let Err(e) = listen.await {
        discard_vm(&d, &runtime).await;
        return Err(ApiError::internal(format!(
            "The target QEMU does not accept the migration: {e}"
        )));
    }
    tracing::info!(move_id = %id, instance = %q.instance, "target QEMU waiting for the migration");
    Ok(sync(serde_json::json!({})))
}

/// `PUT /internal/moves/{id}/live/stream`: the migration stream, into the waiting QEMU.
pub(super) async fn stream_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
    body: Body,
) -> ApiResult<Response> {
    check_id(&id)?;
    let vms = vms(&d)?;
    let runtime = q.volume();
    let socket = vms.paths(&runtime).migrate_in();
    let deadline = tokio::time::Instant::now() + SOCKET_WAIT;
    let mut conn = loop {
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(c) => break c,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(ApiError::internal(format!(
                    "The target QEMU of move {id} does not listen: {e}"
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut bytes = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::internal(format!("The migration stream broke on the way: {e}"))
        })?;
        bytes += chunk.len() as u64;
        conn.write_all(&chunk).await.map_err(|e| {
            ApiError::internal(format!("The target QEMU stopped reading the stream: {e}"))
        })?;
    }
    let _ = conn.shutdown().await;
    let status = vms
        .wait_arrived(&runtime, ARRIVAL)
        .await
        .map_err(|e| ApiError::internal(format!("The migration did not arrive whole: {e}")))?;
    tracing::info!(move_id = %id, instance = %q.instance, bytes, %status, "migration arrived");
    Ok(sync(Arrived { status, bytes }))
}

/// What the target answers to `POST /internal/moves/{id}/live/resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resumed {
    /// Whether the VM runs here, or ran (it may have died since). `false` is final: this
    /// member holds no QEMU of the move any more and never resumed one.
    pub resumed: bool,
    /// Why it did not resume.
    #[serde(default)]
    pub why: String,
}

impl Resumed {
    fn yes() -> Resumed {
        Resumed {
            resumed: true,
            why: String::new(),
        }
    }

    fn not(why: impl Into<String>) -> Resumed {
        Resumed {
            resumed: false,
            why: why.into(),
        }
    }
}

/// The file that says the VM of move `id` was resumed on this member (in the VM's runtime
/// directory, which goes with its QEMU).
fn resumed_marker(vms: &driver_qemu::QemuDriver, runtime: &str, id: &str) -> std::path::PathBuf {
    vms.paths(runtime).dir.join(format!("resumed-by-move-{id}"))
}

/// Whether this member resumed the VM of move `id` (see [`resume_local`]).
pub(super) fn was_resumed(d: &Daemon, runtime: &str, id: &str) -> bool {
    d.vms
        .as_ref()
        .is_some_and(|v| resumed_marker(v, runtime, id).exists())
}

/// `POST /internal/moves/{id}/live/resume`.
pub(super) async fn resume_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
) -> ApiResult<Response> {
    check_id(&id)?;
    // In a task of its own: a source that goes away mid-request must not cut the resume
    // in half (marker written, `cont` not sent).
    let answer = tokio::spawn(async move { resume_local(&d, &id, &q).await })
        .await
        .map_err(|e| ApiError::internal(format!("resuming the VM: {e}")))?;
    Ok(sync(answer))
}

/// The hand-over of live move `id` on the target: resumes the VM once its QEMU has loaded
/// the whole stream. The source asks only once its own QEMU completed the migration (it
/// then never runs the guest again unless told that it did not resume here), and asks
/// again after a lost answer or a restart: a VM resumed before is reported as such.
///
/// Under the instance lock, as this member's recovery ([`recover_handover`]): either the
/// marker is on disk and the VM resumes, or the QEMU is ended, the marker taken back and
/// the answer says it never ran here.
pub(super) async fn resume_local(d: &Daemon, id: &str, q: &MoveQuery) -> Resumed {
    let Some(vms) = d.vms.as_ref() else {
        return Resumed::not("QEMU is unavailable on this member");
    };
    let runtime = q.volume();
    let lock = d.instance_lock(&runtime);
    let _guard = lock.lock().await;
    let marker = resumed_marker(vms, &runtime, id);
    if marker.exists() {
        // An earlier request resumed it (its answer was lost, or this member restarted
        // between the marker and `cont`, perhaps while QEMU still loaded the stream): it
        // runs, or ran and died.
        if let Err(e) = vms.wait_arrived(&runtime, ARRIVAL).await {
            tracing::warn!(move_id = %id, error = %e, "the VM resumed before did not arrive whole");
        }
        if let Err(e) = vms.resume(&runtime).await {
            tracing::warn!(move_id = %id, error = %e, "the VM resumed before does not run now");
        }
        return Resumed::yes();
    }
    if vms.vm_config(&runtime).await.is_err() {
        return Resumed::not(format!("no QEMU of the move runs on {:?}", d.member()));
    }
    let asked = std::time::Instant::now();
    // The marker goes to disk while QEMU loads the end of the stream: its sync then costs
    // the guest's pause nothing. Written before the outcome is known, it is taken back
    // before any "not resumed" answer; one left by a crash in between errs on the safe
    // side (the VM counts as run here, and is started from its disk if it did not).
    let (arrived, recorded) = tokio::join!(
        vms.wait_arrived(&runtime, ARRIVAL),
        write_synced(marker.clone(), id.to_string())
    );
    let refused = match (&arrived, recorded) {
        (Ok(status), Ok(())) if status == "paused" || status == "running" => None,
        (Ok(status), Ok(())) => Some(format!("the target QEMU is {status} after the migration")),
        (Err(e), _) => Some(format!("the migration did not arrive whole: {e}")),
        (Ok(_), Err(e)) => Some(format!("the resume could not be recorded: {e}")),
    };
    if let Some(why) = refused {
        discard_vm(d, &runtime).await;
        if let Err(e) = tokio::fs::remove_file(&marker).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(move_id = %id, error = %e, "resume marker of a refused resume not removed");
        }
        return Resumed::not(why);
    }
    let arrived_after = asked.elapsed();
    let status = arrived.unwrap_or_default();
    // The agent's port is connected before the guest runs again, as on the source (where
    // the daemon was connected): the guest never sees it closed. Only once the whole
    // stream is loaded: a connection makes QEMU's virtio-serial write to the guest's
    // memory, which must not happen while that memory is still arriving.
    if let Err(e) = vms.attach_agent(&runtime).await {
        tracing::warn!(instance = %q.instance, error = %e, "agent port not attached before resuming");
    }
    if status == "paused"
        && let Err(e) = vms.resume(&runtime).await
    {
        // `cont` may have reached QEMU: the VM counts as run here.
        tracing::warn!(move_id = %id, error = %e, "resuming the arrived VM failed");
    }
    // Listed as running from here: the ownership switch that follows moves the record to
    // this member, and a list between the two would show the VM stopped. Its exit is
    // watched once this member owns it (`adopt`).
    if let Ok(drivers::RuntimeStatus::Running { pid }) = d.driver.state(&runtime).await {
        crate::instances::lifecycle::show_running(d, &runtime, pid);
    }
    crate::cluster::evacuate::crash::at(d, "live-target-resumed");
    tracing::info!(
        move_id = %id, instance = %q.instance,
        arrival_wait_us = u64::try_from(arrived_after.as_micros()).unwrap_or(u64::MAX),
        resume_us = u64::try_from(asked.elapsed().saturating_sub(arrived_after).as_micros()).unwrap_or(u64::MAX),
        "VM resumed on the target"
    );
    Resumed::yes()
}

/// Writes `contents` to `path` and syncs the file and its directory: the marker must
/// outlive a crash of the whole host, or a target that ran the guest could be taken for
/// one that never did.
async fn write_synced(path: std::path::PathBuf, contents: String) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// This member's recovery of live move `m` at the hand-over step, as its target: a VM it
/// resumed makes the move go forward (the switch, then [`super::internal::finish_local`]
/// adopts it, or starts it again from its disk when it died); otherwise the move is
/// fenced and what this member holds discarded, under the instance lock so that no resume
/// slips in between. Returns whether the move is resolved here.
pub(super) async fn recover_handover(
    d: &Daemon,
    m: &db::moves::MoveRecord,
    q: &MoveQuery,
) -> ApiResult<bool> {
    use super::execute::{Fence, fence};
    let runtime = q.volume();
    let ran = {
        let lock = d.instance_lock(&runtime);
        let _guard = lock.lock().await;
        if was_resumed(d, &runtime, &m.id) {
            true
        } else {
            match fence(d, &m.id, "interrupted: the target member restarted").await {
                Fence::Held => {
                    super::internal::discard_local(d, &m.id, q).await?;
                    // The source journals the end once the VM runs there again.
                    return Ok(false);
                }
                Fence::Switched => false,
                Fence::Unknown(why) => return Err(ApiError::internal(why)),
            }
        }
    };
    if ran {
        d.write(db::Command::SwitchMoveOwner {
            id: m.id.clone(),
            now: ops::now_rfc3339(),
        })
        .await?;
        tracing::info!(move_id = %m.id, instance = %m.instance, "the VM ran here: ownership switched by the target");
    }
    super::internal::finish_local(d, q).await.map(|_| true)
}

/// Once this member owns the VM: resumes the QEMU a live move left paused here and records
/// it as the instance's runtime. Does nothing when no QEMU of it runs here.
pub(super) async fn adopt(d: &Daemon, q: &MoveQuery) -> ApiResult<()> {
    let Some(vms) = d.vms.as_ref() else {
        return Ok(());
    };
    let runtime = q.volume();
    let Ok(config) = vms.vm_config(&runtime).await else {
        return Ok(());
    };
    if let Err(e) = vms.attach_agent(&runtime).await {
        tracing::warn!(instance = %q.instance, error = %e, "agent port not attached before resuming");
    }
    vms.resume(&runtime)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to resume the VM on the target: {e}")))?;
    // Recorded and watched even when the resume already shows it running (a second
    // watch of the same PID 1, from a repeated adoption, finds nothing to do).
    let rec = crate::instances::load(d, &q.project, &q.instance).await?;
    if let drivers::RuntimeStatus::Running { pid } = d.driver.state(&runtime).await? {
        crate::instances::lifecycle::record_running(d, &rec, pid);
    }
    tracing::info!(instance = %q.instance, memory_mib = config.memory_mib, "VM runs on its new member");
    Ok(())
}

/// Ends a QEMU of `runtime` on this member that is not this member's to run (the target of
/// an undone move, or the source once the VM runs elsewhere), and removes its runtime files.
pub(super) async fn discard_vm(d: &Daemon, runtime: &str) {
    let Some(vms) = d.vms.as_ref() else {
        return;
    };
    // Its exit is no stop of the instance: the exit watcher must not record one.
    lock(&d.running).remove(runtime);
    if let Err(e) = vms.discard(runtime).await {
        tracing::warn!(runtime, error = %e, "QEMU not ended");
        return;
    }
    let dir = vms.paths(runtime).dir;
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(runtime, error = %e, "VM runtime files not removed");
    }
}

/// At start-up: what this member holds of live moves to it that failed while it was away
/// (the source undid them without reaching it): their QEMU, runtime files and volume, for
/// instances it does not own and that are not moving now.
pub(super) async fn sweep_failed(d: &Daemon) -> ApiResult<()> {
    let me = d.member();
    d.replicator().ensure_linearizable().await?;
    let moves = d.read(db::moves::list).await?;
    let mut seen = std::collections::BTreeSet::new();
    for m in moves {
        if m.target != me || m.step != db::moves::MoveStep::Failed {
            continue;
        }
        if !seen.insert((m.project.clone(), m.instance.clone())) {
            continue;
        }
        let (p, n) = (m.project.clone(), m.instance.clone());
        let (owner, moving) = d
            .read(move |c| {
                Ok((
                    db::instances::get(c, &p, &n)?.map(|r| r.member),
                    db::moves::unfinished_of(c, &p, &n)?.is_some(),
                ))
            })
            .await?;
        if owner.as_deref() == Some(me.as_str()) || moving {
            continue;
        }
        let runtime = runtime_id(&m.project, &m.instance);
        let has_vm = d
            .vms
            .as_ref()
            .is_some_and(|v| v.paths(&runtime).dir.exists());
        if has_vm {
            discard_vm(d, &runtime).await;
        }
        if !m.copy_data {
            continue;
        }
        let Ok(pool) = crate::volumes::pool(d, &m.pool).await else {
            continue;
        };
        let volume = runtime.clone();
        let removed = tokio::task::spawn_blocking(move || {
            if !pool.volume_exists(&volume) {
                return Ok(false);
            }
            let _ = pool.unmount_rootfs(&volume);
            pool.discard(&volume)?;
            pool.delete_volume(&volume).map(|()| true)
        })
        .await?;
        match removed {
            Ok(true) => {
                tracing::info!(move_id = %m.id, instance = %m.instance, "removed what a failed move left here")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(move_id = %m.id, error = %e, "leftover of a failed move not removed")
            }
        }
    }
    Ok(())
}

//! The target's side of a move: member-only routes under `/internal/moves/`, and the
//! source's calls to them.
//!
//! | route | what the target does |
//! |---|---|
//! | `GET  /internal/moves/check` | answers whether it can take the instance; changes nothing |
//! | `POST /internal/moves/{id}/prepare` | makes an empty staging directory on its pool, starts getting the image base |
//! | `PUT  /internal/moves/{id}/data` | receives a transfer stream (full or delta) into staging |
//! | `POST /internal/moves/{id}/commit` | checks what it holds against the sender's counts, has the image base, syncs, puts the volume in place |
//! | `POST /internal/moves/{id}/discard` | removes staging, and the volume it put in place unless the move switched |
//! | `POST /internal/moves/{id}/finish` | waits until its DB shows it owns the instance, starts it if asked |
//!
//! Every route admits only requests whose client certificate is a cluster member's.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::checks::Plan;
use super::progress::Reporter;
use crate::cluster::peer::Peer;
use crate::error::{ApiError, ApiResult};
use crate::instances::{runtime_id, runtime_status};
use crate::routes::sync;
use crate::state::Daemon;

/// A transfer that sends nothing for this long has stalled: the move fails.
const STALL: Duration = Duration::from_secs(30);
/// How long a control call (prepare, commit, discard) may take.
const CONTROL_DEADLINE: Duration = Duration::from_secs(120);
/// How long a finish may take: waiting for the DB, then a start.
const FINISH_DEADLINE: Duration = Duration::from_secs(90);

/// What the target needs to know of a move on every call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoveQuery {
    /// Project of the instance.
    pub project: String,
    /// Instance name.
    pub instance: String,
    /// Pool of its root disk.
    pub pool: String,
    /// Whether data is copied (member-local pool).
    #[serde(default)]
    pub copy: bool,
    /// Start it once the target owns it (finish only).
    #[serde(default)]
    pub start: bool,
    /// Its base image, which the target fetches before it takes the volume (`""`: none).
    #[serde(default)]
    pub image: String,
}

impl MoveQuery {
    fn of(plan: &Plan) -> Self {
        Self {
            project: plan.rec.project.clone(),
            instance: plan.rec.name.clone(),
            pool: plan.pool.clone(),
            copy: plan.copy_data,
            start: plan.start_after,
            image: plan
                .rec
                .config
                .get("volatile.base_image")
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn encode(&self) -> String {
        let mut q = format!(
            "project={}&instance={}&pool={}&copy={}&start={}",
            enc(&self.project),
            enc(&self.instance),
            enc(&self.pool),
            self.copy,
            self.start
        );
        if !self.image.is_empty() {
            q.push_str("&image=");
            q.push_str(&enc(&self.image));
        }
        q
    }

    /// The volume (and runtime) name of the instance.
    pub(super) fn volume(&self) -> String {
        runtime_id(&self.project, &self.instance)
    }
}

/// Percent-encodes everything but unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the target received in one transfer, as it verified it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Received {
    /// Entries applied.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
    /// Deletions applied.
    pub deleted: u64,
    /// The target put the volume in place before it answered (a pass with `commit=true`).
    /// A member that predates that option answers without it (and ignores the option):
    /// the source then asks for the commit itself, before the switch.
    #[serde(default)]
    pub committed: bool,
}

/// What the target answers to a finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Finished {
    running: bool,
}

/// The member-only routes of moves.
pub fn routes(d: Daemon) -> Router {
    Router::new()
        .route("/internal/moves/check", get(check))
        .route("/internal/moves/{id}/prepare", post(prepare_route))
        .route("/internal/moves/{id}/data", put(data_route))
        .route("/internal/moves/{id}/commit", post(commit_route))
        .route("/internal/moves/{id}/discard", post(discard_route))
        .route("/internal/moves/{id}/finish", post(finish_route))
        .route(
            "/internal/moves/{id}/live/prepare",
            post(super::live_target::prepare_route),
        )
        .route(
            "/internal/moves/{id}/live/stream",
            put(super::live_target::stream_route),
        )
        .route(
            "/internal/moves/{id}/live/resume",
            post(super::live_target::resume_route),
        )
        .layer(axum::middleware::from_fn_with_state(
            d.clone(),
            members_only,
        ))
        .with_state(d)
}

/// Refuses a request whose client certificate is not a cluster member's.
async fn members_only(State(d): State<Daemon>, request: Request, next: Next) -> Response {
    let fingerprint = request
        .extensions()
        .get::<tls::Peer>()
        .and_then(|p| p.fingerprint.clone());
    let store = d.store.clone();
    let admitted = match fingerprint {
        Some(fp) => {
            tokio::task::spawn_blocking(move || crate::cluster::is_member_fingerprint(&store, &fp))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if admitted {
        next.run(request).await
    } else {
        crate::auth::not_authorized().into_response()
    }
}

/// A move id is a UUID: never a path.
pub(super) fn check_id(id: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(id)
        .map(drop)
        .map_err(|_| ApiError::bad_request(format!("Invalid move id {id:?}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

// ---- target side ----

/// Refuses a move onto this member unless it takes the instance (a restore brings its
/// instances home while the member is restoring).
pub(super) async fn check_takes(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    let (member, p, n) = (d.member(), project.to_string(), name.to_string());
    let (state, rec) = d
        .read(move |c| {
            Ok((
                db::members::get(c, &member)?.map(|m| m.state),
                db::instances::get(c, &p, &n)?,
            ))
        })
        .await?;
    let config = rec.map(|r| r.config).unwrap_or_default();
    match state {
        Some(s) if !crate::instances::member_takes(s, &d.member(), &config) => Err(
            ApiError::bad_request("The destination cluster member is evacuated"),
        ),
        _ => Ok(()),
    }
}

async fn check(State(d): State<Daemon>, Query(q): Query<MoveQuery>) -> ApiResult<Response> {
    check_takes(&d, &q.project, &q.instance).await?;
    let pool = crate::volumes::pool(&d, &q.pool).await.map_err(|e| {
        ApiError::bad_request(format!(
            "The destination cluster member lacks storage pool {:?}: {}",
            q.pool, e.message
        ))
    })?;
    if q.copy && pool.volume_exists(&q.volume()) {
        return Err(ApiError::conflict(format!(
            "The destination cluster member already has a volume for instance {:?}",
            q.instance
        )));
    }
    Ok(sync(serde_json::json!({})))
}

async fn prepare_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
) -> ApiResult<Response> {
    check_id(&id)?;
    prepare_local(&d, &id, &q).await?;
    Ok(sync(serde_json::json!({})))
}

/// Makes an empty staging directory for move `id` (removing a stale one) and starts
/// getting the image base.
async fn prepare_local(d: &Daemon, id: &str, q: &MoveQuery) -> ApiResult<()> {
    let pool = crate::volumes::pool(d, &q.pool).await?;
    if q.copy && !q.image.is_empty() {
        // Only the commit needs the base: fetch and copy it while the data flows. The
        // commit makes sure of it again (and fails the move if it cannot be had).
        let (d, q, id) = (d.clone(), q.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = ensure_base(&d, &q).await {
                tracing::warn!(move_id = %id, image = %q.image, error = %e.message, "image base not ready yet");
            }
        });
    }
    let volume = q.volume();
    blocking(move || {
        // A staging directory left by an earlier attempt is stale: start from empty.
        pool.discard(&volume).map_err(pool_error)?;
        pool.stage(&volume).map(drop).map_err(pool_error)
    })
    .await?;
    tracing::info!(move_id = %id, instance = %q.instance, "staging ready");
    Ok(())
}

/// A volume layered on its image needs that image's base in the pool: fetches the image
/// from a member that has it (once per member), makes the base (once per pool). Both are
/// idempotent and serialised, so concurrent calls wait for one copy.
async fn ensure_base(d: &Daemon, q: &MoveQuery) -> ApiResult<()> {
    if !q.copy || q.image.is_empty() {
        return Ok(());
    }
    let pool = crate::volumes::pool(d, &q.pool).await?;
    if pool.has_base(&q.image) {
        return Ok(());
    }
    crate::image_share::ensure_local(d, &q.image).await?;
    let (image, unpacked) = (q.image.clone(), d.images.unpacked_dir(&q.image));
    blocking(move || {
        pool.ensure_base(&image, &unpacked)
            .map(drop)
            .map_err(pool_error)
    })
    .await
}

/// `?flush=&commit=` of a data pass.
#[derive(Debug, Default, Deserialize)]
struct PassQuery {
    /// Sync the received data to disk before answering (a pre-copy pass); otherwise the
    /// commit does.
    #[serde(default = "yes")]
    flush: bool,
    /// The last pass: once received and verified, commit the volume as
    /// `POST .../commit` does, and answer only then (one round trip less in the downtime).
    #[serde(default)]
    commit: bool,
    /// The only pass: make the staging directory first, as `POST .../prepare` does.
    #[serde(default)]
    stage: bool,
}

fn yes() -> bool {
    true
}

/// How long a failed pass keeps reading the rest of the source's stream, so that its answer
/// reaches the source.
const DRAIN: Duration = Duration::from_secs(10);

/// `PUT /internal/moves/{id}/data`: one pass of the volume's stream into the staging
/// directory (made first on the only pass), synced on a pre-copy, committed on the last.
async fn data_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
    Query(pass): Query<PassQuery>,
    body: Body,
) -> ApiResult<Response> {
    check_id(&id)?;
    if pass.stage {
        prepare_local(&d, &id, &q).await?;
    }
    let pool = crate::volumes::pool(&d, &q.pool).await?;
    if !pool.is_staged(&q.volume()) {
        return Err(ApiError::not_found(format!(
            "No staging for move {id}: it was discarded"
        )));
    }
    let dir = pool.staging_path(&q.volume());
    let t0 = Instant::now();
    let summary = receive_pass(&id, dir.clone(), body).await?;
    let received_ms = t0.elapsed().as_millis();
    // Flush a pre-copy now, while the instance still runs, so the sync of the commit
    // (inside the downtime) only has the last pass's data to write. The last pass leaves
    // it to the commit: one sync less in the downtime.
    if pass.flush {
        sync_dir(dir).await?;
    }
    tracing::debug!(
        move_id = %id, bytes = summary.bytes, entries = summary.entries, received_ms,
        synced_ms = t0.elapsed().as_millis() - received_ms, "pass received"
    );
    if pass.commit {
        commit_local(&d, &id, &q).await?;
    }
    Ok(sync(Received {
        entries: summary.entries,
        bytes: summary.bytes,
        deleted: summary.deleted,
        committed: pass.commit,
    }))
}

/// Receives one pass of move `id` from `body` into the staging directory `dir`. A failed
/// pass reads what the source still sends before it answers: a connection closed with
/// unread data is reset, and the source would see a broken pipe instead of the cause (a
/// full disk, a checksum).
async fn receive_pass(
    id: &str,
    dir: std::path::PathBuf,
    body: Body,
) -> ApiResult<storage::transfer::ReceiveSummary> {
    let mut data = body.into_data_stream();
    match storage::transfer::receive_stream(dir, data.by_ref()).await {
        Ok(summary) => Ok(summary),
        Err(e) => {
            let drain = async { while let Some(Ok(_)) = data.next().await {} };
            if tokio::time::timeout(DRAIN, drain).await.is_err() {
                tracing::warn!(move_id = %id, "the source kept sending after a failed pass");
            }
            Err(ApiError::internal(format!(
                "Failed to receive the volume: {}",
                crate::error::error_chain(&e)
            )))
        }
    }
}

/// Syncs the filesystem that holds `dir` to disk.
async fn sync_dir(dir: std::path::PathBuf) -> ApiResult<()> {
    blocking(move || {
        let f = std::fs::File::open(&dir)
            .map_err(|e| ApiError::internal(format!("open {}: {e}", dir.display())))?;
        rustix::fs::syncfs(&f)
            .map_err(|e| ApiError::internal(format!("sync {}: {e}", dir.display())))
    })
    .await
}

async fn commit_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
) -> ApiResult<Response> {
    check_id(&id)?;
    commit_local(&d, &id, &q).await?;
    Ok(sync(serde_json::json!({})))
}

/// Puts the received volume of move `id` in place, once the image base it needs is here.
async fn commit_local(d: &Daemon, id: &str, q: &MoveQuery) -> ApiResult<()> {
    let t0 = Instant::now();
    ensure_base(d, q).await?;
    let pool = crate::volumes::pool(d, &q.pool).await?;
    let volume = q.volume();
    blocking(move || match pool.commit(&volume) {
        Ok(_) => Ok(()),
        Err(storage::PoolError::NotFound(_)) => Err(ApiError::not_found(format!(
            "No staging for volume {volume:?}: it was discarded"
        ))),
        Err(e) => Err(pool_error(e)),
    })
    .await?;
    tracing::info!(
        move_id = %id, instance = %q.instance, ms = t0.elapsed().as_millis(),
        "moved volume in place"
    );
    Ok(())
}

/// A pool failure as an API error.
fn pool_error(e: storage::PoolError) -> ApiError {
    match e {
        storage::PoolError::AlreadyExists(v) => ApiError::conflict(format!(
            "The destination cluster member already has volume {v:?}"
        )),
        e => ApiError::internal(crate::error::error_chain(&e)),
    }
}

async fn discard_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
) -> ApiResult<Response> {
    check_id(&id)?;
    discard_local(&d, &id, &q).await?;
    Ok(sync(serde_json::json!({})))
}

/// Removes what this member (the target) holds of move `id`: its staging, and the volume
/// it put in place — only after a linearizable read shows the move did not switch, so the
/// only copy of an instance that now belongs here is never removed.
pub(super) async fn discard_local(d: &Daemon, id: &str, q: &MoveQuery) -> ApiResult<()> {
    let live_vm = d
        .vms
        .as_ref()
        .is_some_and(|v| v.paths(&q.volume()).dir.exists());
    if !q.copy && !live_vm {
        return Ok(());
    }
    d.replicator().ensure_linearizable().await?;
    let owned = id.to_string();
    let rec = d.read(move |c| db::moves::get(c, &owned)).await?;
    if rec.as_ref().is_some_and(|r| r.step.is_switched()) {
        return Err(ApiError::conflict(format!(
            "Move {id} has switched ownership: nothing to discard"
        )));
    }
    let (p, n, me) = (q.project.clone(), q.instance.clone(), d.member());
    let owner = d
        .read(move |c| db::instances::get(c, &p, &n))
        .await?
        .map(|r| r.member);
    let drop_volume = owner.as_deref() != Some(me.as_str());
    if drop_volume {
        // The paused QEMU of a live move that was undone.
        super::live_target::discard_vm(d, &q.volume()).await;
    }
    if !q.copy {
        return Ok(());
    }
    let pool = crate::volumes::pool(d, &q.pool).await?;
    let volume = q.volume();
    blocking(move || {
        pool.discard(&volume).map_err(pool_error)?;
        if drop_volume {
            // A live move's target mounted it for its QEMU.
            let _ = pool.unmount_rootfs(&volume);
            pool.delete_volume(&volume).map_err(pool_error)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(move_id = %id, instance = %q.instance, "discarded what the target held of a move");
    Ok(())
}

async fn finish_route(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
) -> ApiResult<Response> {
    check_id(&id)?;
    // In a task of its own: a source that dies mid-request must not cancel a start half
    // done (the container would run without this daemon knowing it).
    let running = tokio::spawn(async move { finish_move(&d, Some(&id), &q).await })
        .await
        .map_err(|e| ApiError::internal(format!("finishing the move: {e}")))??;
    Ok(sync(Finished { running }))
}

/// Waits until this member's DB shows it owns the instance, then starts it if `q.start`
/// and it is not running. Returns whether it runs.
pub(super) async fn finish_local(d: &Daemon, q: &MoveQuery) -> ApiResult<bool> {
    finish_move(d, None, q).await
}

/// [`finish_local`] for move `id` (when known), whose switch may still be on its way: the
/// source asks while it proposes the switch, so that the start follows the switch without
/// a round trip between members. Gives up once the move is aborted.
async fn finish_move(d: &Daemon, id: Option<&str>, q: &MoveQuery) -> ApiResult<bool> {
    wait_owner(d, id, q).await?;
    let id = runtime_id(&q.project, &q.instance);
    let lock = d.instance_lock(&id);
    let _guard = lock.lock().await;
    // A live move left its QEMU here, paused: it runs from now on.
    super::live_target::adopt(d, q).await?;
    let running = runtime_status(d, &id) == api::InstanceStatus::Running;
    if !q.start || running {
        return Ok(running);
    }
    let rec = crate::instances::load(d, &q.project, &q.instance).await?;
    crate::instances::lifecycle::start_instance(d, &rec).await?;
    Ok(true)
}

/// Waits until this member's DB shows it owns `q`'s instance, at most [`super::CATCH_UP`]
/// (then 503); fails at once with 409 when move `id` is aborted or failed (the switch can
/// never come).
async fn wait_owner(d: &Daemon, id: Option<&str>, q: &MoveQuery) -> ApiResult<()> {
    let deadline = Instant::now() + super::CATCH_UP;
    let (me, replicator) = (d.member(), d.replicator());
    let mut caught_up = false;
    loop {
        let applied = replicator.metrics().last_applied_index;
        let (p, n, mid) = (
            q.project.clone(),
            q.instance.clone(),
            id.map(str::to_string),
        );
        let (owner, step) = d
            .read(move |c| {
                let owner = db::instances::get(c, &p, &n)?.map(|r| r.member);
                let step = match mid {
                    Some(mid) => db::moves::get(c, &mid)?.map(|m| m.step),
                    None => None,
                };
                Ok((owner, step))
            })
            .await?;
        if owner.as_deref() == Some(me.as_str()) {
            return Ok(());
        }
        if let Some(step @ (db::moves::MoveStep::Aborted | db::moves::MoveStep::Failed)) = step {
            return Err(ApiError::conflict(format!(
                "Move {} of instance {:?} is {}: it does not come to {me:?}",
                id.unwrap_or_default(),
                q.instance,
                step.as_str()
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Not final: the switch may still reach this member (a 503 makes the source
            // leave the move to its recovery, which asks again, not take it as refused).
            return Err(ApiError::unavailable(format!(
                "Instance {:?} does not belong to {me:?} yet (its DB says {owner:?})",
                q.instance
            )));
        }
        if !caught_up {
            // Once this member has applied what the leader had committed, a switch that
            // committed before the ask shows in the next read: no sleep then.
            caught_up = replicator.ensure_linearizable().await.is_ok();
            if !caught_up {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            // The switch is still on its way: read again once the next entry is applied
            // here. An entry applied since `applied` was taken ends the wait at once.
            let waited = replicator
                .wait_for(left.min(SWITCH_WAIT), "the next entry applied", |m| {
                    m.last_applied_index > applied
                })
                .await;
            // Nothing applied for a while: ask the leader again.
            caught_up = waited.is_ok();
        }
    }
}

/// How long a target waiting for a switch waits for the next applied entry before it asks
/// the leader again.
const SWITCH_WAIT: Duration = Duration::from_millis(200);

// ---- source side ----

/// The query of the pre-move check of `plan`.
pub(super) fn check_path(plan: &Plan) -> String {
    format!("/internal/moves/check?{}", MoveQuery::of(plan).encode())
}

/// The path and query of the target's route `what` for `plan`.
pub(super) fn path(plan: &Plan, what: &str) -> String {
    format!(
        "/internal/moves/{}/{what}?{}",
        plan.id,
        MoveQuery::of(plan).encode()
    )
}

async fn control(peer: &Peer, plan: &Plan, what: &str) -> ApiResult<serde_json::Value> {
    peer.request_within(
        reqwest::Method::POST,
        &path(plan, what),
        None,
        CONTROL_DEADLINE,
    )
    .await?
    .into_sync()
}

/// Asks the target to make an empty staging directory.
pub(super) async fn prepare(peer: &Peer, plan: &Plan) -> ApiResult<()> {
    control(peer, plan, "prepare").await.map(drop)
}

/// Asks the target to check what it received against `sent` and put the volume in place.
pub(super) async fn commit(peer: &Peer, plan: &Plan, sent: &Received) -> ApiResult<()> {
    tracing::debug!(move_id = %plan.id, ?sent, "last pass received; committing");
    control(peer, plan, "commit").await.map(drop)
}

/// Asks the target to remove what it holds of the move.
pub(super) async fn discard(peer: &Peer, plan: &Plan) -> ApiResult<()> {
    control(peer, plan, "discard").await.map(drop)
}

/// Asks the target to take the instance over (and start it if it is to run); returns
/// whether it runs there.
pub(super) async fn finish(peer: &Peer, plan: &Plan) -> ApiResult<bool> {
    let v = peer
        .request_within(
            reqwest::Method::POST,
            &path(plan, "finish"),
            None,
            FINISH_DEADLINE,
        )
        .await?
        .into_sync::<Finished>()?;
    Ok(v.running)
}

/// Streams the volume (`base`: `None` for everything, else what changed since the send
/// that returned it) to the target's staging, which syncs it to disk before answering (a
/// pre-copy pass); on success `base` holds the new manifest. Checks that the target
/// received exactly what was sent.
pub(super) async fn send_volume(
    peer: &Peer,
    plan: &Plan,
    src: PathBuf,
    base: &mut Option<storage::transfer::Manifest>,
    rep: &mut Reporter,
) -> ApiResult<Received> {
    send_pass(peer, plan, src, base, rep, "flush=true").await
}

/// The last pass of a volume (everything, or what changed since the send that returned
/// `base`): the target verifies it and puts the volume in place before it answers, as
/// [`commit`] does, with one sync (the commit's) and no round trip of its own. Without
/// `base` (no pre-copy), the target also makes the staging directory first, as
/// [`prepare`] does: the whole move's data in one request.
pub(super) async fn send_last_pass(
    peer: &Peer,
    plan: &Plan,
    src: PathBuf,
    base: &mut Option<storage::transfer::Manifest>,
    rep: &mut Reporter,
) -> ApiResult<Received> {
    let pass = if base.is_none() {
        "flush=false&commit=true&stage=true"
    } else {
        "flush=false&commit=true"
    };
    let received = send_pass(peer, plan, src, base, rep, pass).await?;
    if !received.committed {
        // A target of an earlier version received the pass but did not commit it: the
        // volume must be in place there before the switch.
        commit(peer, plan, &received).await?;
    }
    tracing::debug!(move_id = %plan.id, ?received, "last pass received and committed");
    Ok(received)
}

/// One data pass with the pass options `pass` (see `PassQuery`).
async fn send_pass(
    peer: &Peer,
    plan: &Plan,
    src: PathBuf,
    base: &mut Option<storage::transfer::Manifest>,
    rep: &mut Reporter,
    pass: &str,
) -> ApiResult<Received> {
    let (stream, sender) = storage::transfer::send_stream(src, base.take());
    let counter = Arc::new(AtomicU64::new(0));
    let seen = counter.clone();
    let stream = stream.inspect(move |item| {
        if let Ok(b) = item {
            seen.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    });
    let request = peer
        .client()
        .put(peer.url(&format!("{}&{pass}", path(plan, "data"))))
        .header(crate::cluster::peer::FORWARDED_HEADER, "1")
        .body(reqwest::Body::wrap_stream(stream))
        .send();
    let mut request = std::pin::pin!(request);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let (mut last, mut last_change) = (0u64, Instant::now());
    let answer = loop {
        tokio::select! {
            r = &mut request => break r,
            _ = tick.tick() => {
                let now = counter.load(Ordering::Relaxed);
                rep.sent(now);
                if now != last {
                    (last, last_change) = (now, Instant::now());
                } else if last_change.elapsed() > STALL {
                    sender.abort();
                    return Err(ApiError::internal(format!(
                        "Transfer to {} stalled for {}s", peer.name(), STALL.as_secs()
                    )));
                }
            }
        }
    };
    rep.sent(counter.load(Ordering::Relaxed));
    let received = match answer {
        Ok(resp) => {
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| link_broken(peer, &e))?;
            decode_received(peer, status, &bytes)
        }
        Err(e) => Err(link_broken(peer, &e)),
    };
    let sent = sender
        .await
        .map_err(|e| ApiError::internal(format!("transfer task failed: {e}")))?;
    // The target's error says why (disk full, checksum); it comes first.
    let received = received?;
    let sent = sent.map_err(|e| {
        ApiError::internal(format!(
            "Failed to send the volume: {}",
            crate::error::error_chain(&e)
        ))
    })?;
    if sent.entries != received.entries || sent.bytes != received.bytes {
        return Err(ApiError::internal(format!(
            "Transfer mismatch: sent {} entries and {} bytes, {} received {} and {}",
            sent.entries,
            sent.bytes,
            peer.name(),
            received.entries,
            received.bytes
        )));
    }
    *base = Some(sent.manifest);
    Ok(received)
}

fn link_broken(peer: &Peer, e: &reqwest::Error) -> ApiError {
    ApiError::internal(format!(
        "Transfer to cluster member {} broke: {}",
        peer.name(),
        crate::error::error_chain(e)
    ))
}

fn decode_received(peer: &Peer, status: reqwest::StatusCode, bytes: &[u8]) -> ApiResult<Received> {
    let env: api::Response<serde_json::Value> = serde_json::from_slice(bytes).map_err(|_| {
        ApiError::internal(format!(
            "Transfer to cluster member {} failed ({status}): {}",
            peer.name(),
            String::from_utf8_lossy(bytes).trim()
        ))
    })?;
    match env.kind {
        api::ResponseType::Sync => serde_json::from_value(env.metadata)
            .map_err(|e| ApiError::internal(format!("unexpected transfer answer: {e}"))),
        _ => Err(ApiError::internal(format!(
            "Cluster member {}: {}",
            peer.name(),
            env.error
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What does this test do?
    /// - a last pass answered by a target that predates `commit=true` (no `committed` in
    ///   its answer) reads as not committed, so the source commits before the switch
    #[test]
    fn an_answer_without_committed_is_not_a_commit() {
        let old = r#"{"entries":3,"bytes":10,"deleted":0}"#;
        let r = serde_json::from_str::<Received>(old).ok();
        assert_eq!(r.map(|r| (r.entries, r.committed)), Some((3, false)));
        let new = serde_json::to_string(&Received {
            entries: 3,
            committed: true,
            ..Received::default()
        })
        .ok();
        let back = new.and_then(|j| serde_json::from_str::<Received>(&j).ok());
        assert_eq!(back.map(|r| r.committed), Some(true));
    }
}

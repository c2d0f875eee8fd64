//! Request forwarding, LXD's way: a member that does not hold an instance hands the
//! client's request to the member that does and returns its answer as is.
//!
//! [`middleware`] runs after authentication on every API request of a clustered member:
//!
//! - `/1.0/instances/{name}` and everything under it go to the member in the instance's
//!   `member` column when that is not this member;
//! - `POST /1.0/instances` goes to the member [`super::placement::choose`] picks (the
//!   `?target=` one, for now);
//! - a request already forwarded by a member ([`FORWARDED_HEADER`], honoured only from a
//!   member's certificate) is served here, never forwarded again, and carries a
//!   [`Forwarded`] extension so handlers answer for this member alone (a list returns
//!   this member's instances).
//!
//! The proxy ([`proxy`]) carries the method, path and query, the headers that matter and
//! the body, and returns the status, headers (`ETag`, `Location`) and body unchanged.
//! `/1.0/operations/{id}` (and its `wait` and `websocket`) for an operation another member
//! runs is proxied to that member, websockets frame by frame ([`super::websocket`]).
//! Operations a forwarded request created live on the other member: their ids are
//! remembered ([`RemoteOps`]) so that `/1.0/operations/{id}` on this member finds them.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::peer::{FORWARDED_HEADER, Peer};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, lock};

/// Marks a request a member forwarded here: serve it for this member alone.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded {
    /// How many members it went through (the value of [`FORWARDED_HEADER`], at least 1).
    hops: u8,
}

/// The most member-to-member hops a request may take: one, and a second only when the
/// member it reached knows, from an up-to-date read, that the instance moved.
const MAX_HOPS: u8 = 2;

/// How long a forwarded request may take until the other member's answer starts.
const PROXY_DEADLINE: Duration = Duration::from_secs(60);

/// The longest single wait on another member's operation; longer waits repeat it.
const WAIT_SLICE: Duration = Duration::from_secs(30);

/// How many remote operation ids a member remembers.
const REMOTE_OPS_KEPT: usize = 4096;

/// Request headers carried to the other member, with LXD's own `X-LXD-*` ones (the rest
/// are hop-by-hop, or about this connection: TLS identity is the member's own).
const REQUEST_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::IF_MATCH,
    header::ACCEPT,
    header::USER_AGENT,
];

/// Response headers not carried back (hop-by-hop, or recomputed by our server).
const DROPPED_RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

/// Which member runs the operations that requests forwarded from this member created, so
/// that `/1.0/operations/{id}` here finds them without asking every member.
#[derive(Debug, Default)]
pub struct RemoteOps {
    inner: Mutex<(HashMap<String, String>, VecDeque<String>)>,
}

impl RemoteOps {
    /// Remembers that operation `id` runs on `member` (the oldest are forgotten first).
    pub fn insert(&self, id: &str, member: &str) {
        let mut guard = lock(&self.inner);
        let (map, order) = &mut *guard;
        if map.insert(id.to_string(), member.to_string()).is_none() {
            order.push_back(id.to_string());
        }
        while order.len() > REMOTE_OPS_KEPT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    /// The member running operation `id`, if a request forwarded from here created it.
    pub fn member_of(&self, id: &str) -> Option<String> {
        lock(&self.inner).0.get(id).cloned()
    }
}

/// Whether `req` is one a member forwarded here: it carries [`FORWARDED_HEADER`] and comes
/// from a member's certificate (a client setting the header gains nothing).
async fn forwarded_by_member(d: &Daemon, claim: Option<String>) -> ApiResult<bool> {
    let Some(fp) = claim else {
        return Ok(false);
    };
    let store = d.store.clone();
    Ok(tokio::task::spawn_blocking(move || super::is_member_fingerprint(&store, &fp)).await?)
}

/// The hops a forwarded request took, by its [`FORWARDED_HEADER`] (a value that is not a
/// number counts as one hop).
fn hops_of(req: &Request) -> u8 {
    req.headers()
        .get(FORWARDED_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The certificate fingerprint of a trusted caller whose request carries
/// [`FORWARDED_HEADER`].
fn member_claim(req: &Request) -> Option<String> {
    match req.extensions().get::<Caller>() {
        Some(Caller::Trusted(peer)) if req.headers().contains_key(FORWARDED_HEADER) => {
            peer.fingerprint.clone()
        }
        _ => None,
    }
}

/// The query parameter `key` of `req`.
fn query_param(req: &Request, key: &str) -> Option<String> {
    let query = req.uri().query()?;
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(
        &format!("/?{query}").parse().ok()?,
    )
    .ok()?
    .0
    .remove(key)
}

/// The instance name of `/1.0/instances/{name}[/...]`.
fn instance_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/1.0/instances/")?;
    let name = rest.split('/').next()?;
    (!name.is_empty()).then_some(name)
}

/// The operation id of `/1.0/operations/{id}[/...]`.
fn operation_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/1.0/operations/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Middleware: forwards instance requests to the member that holds (or will hold) the
/// instance; see the module doc.
pub async fn middleware(State(d): State<Daemon>, mut req: Request, next: Next) -> Response {
    if !d.cluster.is_clustered() {
        // LXD refuses a placement on a standalone server before it reads the body.
        let creates = req.method() == Method::POST
            && req.uri().path().trim_end_matches('/') == "/1.0/instances";
        if creates && query_param(&req, "target").is_some_and(|t| !t.is_empty()) {
            return ApiError::bad_request("Target only allowed when clustered").into_response();
        }
        return next.run(req).await;
    }
    match forwarded_by_member(&d, member_claim(&req)).await {
        Ok(true) => {
            let hops = hops_of(&req);
            req.extensions_mut().insert(Forwarded { hops });
            return match route_forwarded(&d, req, hops).await {
                Ok(Route::Here(req)) => next.run(req).await,
                Ok(Route::Answered(resp)) => resp,
                Err(e) => e.into_response(),
            };
        }
        Ok(false) => {}
        Err(e) => return e.into_response(),
    }
    match route(&d, req).await {
        Ok(Route::Here(req)) => next.run(req).await,
        Ok(Route::Answered(resp)) => resp,
        Err(e) => e.into_response(),
    }
}

/// What the middleware does with a request.
enum Route {
    /// Serve it on this member.
    Here(Request),
    /// Another member answered it.
    Answered(Response),
}

async fn route(d: &Daemon, req: Request) -> ApiResult<Route> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let project = query_param(&req, "project")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    if path == "/1.0/instances" && req.method() == Method::POST {
        return route_create(d, &project, req).await;
    }
    if let Some(id) = operation_of(&path) {
        return route_operation(d, id.to_string(), req).await;
    }
    if path == "/1.0" || member_specific(&path) {
        // `lxc info --target m2`, `lxc config set core.https_address ... --target m2`: the
        // server and its member-specific config are the target's; so are its resources
        // (`lxc info --resources --target m2`, `lxc storage info p --target m2`) and its
        // network interfaces.
        // Only for a trusted caller: the member link is trusted everywhere.
        let trusted = req
            .extensions()
            .get::<Caller>()
            .is_some_and(Caller::is_trusted);
        let target =
            query_param(&req, "target").filter(|t| trusted && !t.is_empty() && *t != d.member());
        if let Some(target) = target {
            let peer = Peer::connect(d, &target).await?;
            return Ok(Route::Answered(proxy(d, &peer, req).await?));
        }
        return Ok(Route::Here(req));
    }
    let Some(name) = instance_of(&path) else {
        return Ok(Route::Here(req));
    };
    let Some(rec) = holder(d, &project, name).await? else {
        return Ok(Route::Here(req));
    };
    if rec.member.is_empty() || rec.member == d.member() {
        return Ok(Route::Here(req));
    }
    let peer = Peer::connect(d, &rec.member).await?;
    Ok(Route::Answered(proxy(d, &peer, req).await?))
}

/// Whether `path` is about the member that answers (its resources, its interfaces), so
/// that `?target=` sends it to that member.
fn member_specific(path: &str) -> bool {
    path == "/1.0/resources"
        || path == "/1.0/networks"
        || path.starts_with("/1.0/networks/")
        || (path.starts_with("/1.0/storage-pools/") && path.ends_with("/resources"))
}

/// A request a member forwarded here for an instance: served here, unless this member's
/// up-to-date read says another member holds the instance (the forwarding member's copy of
/// the DB was behind a move). Then it goes on to that member, once: serving it here would
/// act on an instance this member does not hold.
async fn route_forwarded(d: &Daemon, req: Request, hops: u8) -> ApiResult<Route> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    if let Some(id) = operation_of(&path) {
        // An operation this member created by forwarding the request on (its DB was behind
        // a move): the member that runs it answers, so that a client polling or attaching
        // to it through the first member reaches it.
        let passed_on = d.ops.get(id).is_none() && d.cluster.remote_ops.member_of(id).is_some();
        if passed_on && hops < MAX_HOPS {
            return route_operation(d, id.to_string(), req).await;
        }
        return Ok(Route::Here(req));
    }
    let Some(name) = instance_of(&path) else {
        return Ok(Route::Here(req));
    };
    let project = query_param(&req, "project")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let me = d.member();
    let elsewhere = |rec: &Option<db::instances::InstanceRecord>| {
        rec.as_ref()
            .is_some_and(|r| !r.member.is_empty() && r.member != me)
    };
    if !elsewhere(&read_instance(d, &project, name).await?) {
        return Ok(Route::Here(req));
    }
    d.replicator().ensure_linearizable().await?;
    let rec = read_instance(d, &project, name).await?;
    if !elsewhere(&rec) {
        return Ok(Route::Here(req));
    }
    let holder = rec.map(|r| r.member).unwrap_or_default();
    if hops >= MAX_HOPS {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("Instance {name:?} is moving to cluster member {holder}; retry"),
        });
    }
    tracing::info!(instance = %name, member = %holder, "the instance moved: forwarding on");
    let peer = Peer::connect(d, &holder).await?;
    Ok(Route::Answered(proxy(d, &peer, req).await?))
}

/// The record of instance `name` in this member's copy of the DB.
async fn read_instance(
    d: &Daemon,
    project: &str,
    name: &str,
) -> ApiResult<Option<db::instances::InstanceRecord>> {
    let (p, n) = (project.to_string(), name.to_string());
    d.read(move |c| db::instances::get(c, &p, &n)).await
}

/// The record of instance `name`, as of every write committed before the request: a
/// member that does not see it yet may only be behind the leader (the client created or
/// renamed it through another member a moment ago), so a miss waits until this member has
/// caught up and reads again. Hits need no wait: an instance's member only changes through
/// the member that holds it.
async fn holder(
    d: &Daemon,
    project: &str,
    name: &str,
) -> ApiResult<Option<db::instances::InstanceRecord>> {
    if let Some(rec) = read_instance(d, project, name).await? {
        return Ok(Some(rec));
    }
    d.replicator().ensure_linearizable().await?;
    read_instance(d, project, name).await
}

/// `/1.0/operations/{id}[/wait|/websocket]` for an operation this member does not run:
/// the member that runs it answers (see [`super::operations::locate`]).
async fn route_operation(d: &Daemon, id: String, req: Request) -> ApiResult<Route> {
    if d.ops.get(&id).is_some() {
        return Ok(Route::Here(req));
    }
    let target = query_param(&req, "target");
    let wait = req.uri().path().ends_with("/wait");
    let read = req.method() == axum::http::Method::GET;
    let peer = super::operations::locate(d, &id, target.as_deref()).await?;
    if wait && read {
        let timeout = query_param(&req, "timeout").and_then(|t| t.parse::<i64>().ok());
        let deadline = timeout
            .filter(|t| *t >= 0)
            .map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
        return Ok(match wait_anywhere(d, &id, peer, deadline).await? {
            Some(answer) => Route::Answered(answer),
            None => Route::Here(req),
        });
    }
    let Some(peer) = peer else {
        if read && let Some(op) = journaled_operation(d, &id).await? {
            return Ok(Route::Answered(op));
        }
        return Ok(Route::Here(req));
    };
    if !req.uri().path().ends_with("/websocket") {
        return match proxy(d, &peer, req).await {
            Err(e) if read && e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE => {
                journaled_operation(d, &id)
                    .await?
                    .map(Route::Answered)
                    .ok_or(e)
            }
            other => other.map(Route::Answered),
        };
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), ToString::to_string);
    let (mut parts, _) = req.into_parts();
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, d)
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Route::Answered(
        super::websocket::proxy(d, &peer, &path, upgrade).await?,
    ))
}

/// How often a wait on an evacuation whose coordinator is down looks for it again.
const JOURNAL_WAIT: Duration = Duration::from_secs(2);

/// The answer for operation `id` when it is an evacuation or restore whose coordinator
/// cannot answer: its record from the replicated journal, `None` when it is not one.
async fn journaled_operation(d: &Daemon, id: &str) -> ApiResult<Option<Response>> {
    Ok(super::evacuate::record::operation(d, id)
        .await?
        .map(crate::routes::sync))
}

/// `/1.0/operations/{id}/wait` of an operation `peer` runs (`None`: no member answered
/// for it), until it is final or `deadline` has passed, as LXD's wait answers.
///
/// An evacuation or restore whose coordinator is down (killed, restarting) is still
/// running as far as the replicated journal goes: the wait goes on, looking for the
/// coordinator again every [`JOURNAL_WAIT`], since its restart resumes the job under the
/// same id (a restarted coordinator that does not know the operation yet has not resumed
/// it yet). It stops with a 503 that says so once the coordinator is `Offline` (no
/// heartbeat for `cluster.offline_threshold`), and answers the journal's record (still
/// `Running`) when the deadline comes first. Answering a running operation to a wait
/// without a deadline would read as a failure to pylxd, which raises on any status that
/// is not final.
///
/// `None` when no member runs the operation and the journal does not know it.
async fn wait_anywhere(
    d: &Daemon,
    id: &str,
    mut peer: Option<Peer>,
    deadline: Option<Instant>,
) -> ApiResult<Option<Response>> {
    loop {
        let mut unreachable = None;
        if let Some(p) = &peer {
            let left = deadline.map(|dl| {
                i64::try_from(dl.saturating_duration_since(Instant::now()).as_secs())
                    .unwrap_or(i64::MAX)
            });
            match wait_remote(p, id, left).await {
                // Not found: a coordinator that restarted serves before it resumed the job.
                Err(e)
                    if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE
                        || e.status == axum::http::StatusCode::NOT_FOUND =>
                {
                    unreachable = Some(e);
                }
                other => return other.map(Some),
            }
        }
        let Some(op) = super::evacuate::record::operation(d, id).await? else {
            return unreachable.map_or(Ok(None), Err);
        };
        let now = Instant::now();
        if deadline.is_some_and(|dl| now + JOURNAL_WAIT >= dl) {
            if let Some(dl) = deadline {
                tokio::time::sleep(dl.saturating_duration_since(now)).await;
            }
            return Ok(Some(crate::routes::sync(op)));
        }
        if !crate::cluster::evacuate::online_members(d)
            .await?
            .contains(&op.location)
        {
            return Err(ApiError::unavailable(format!(
                "Cluster member {:?} is offline: operation {id} ({}) goes on when it is back",
                op.location, op.description
            )));
        }
        tokio::time::sleep(JOURNAL_WAIT).await;
        peer = super::operations::locate(d, id, None).await.ok().flatten();
    }
}

/// `/1.0/operations/{id}/wait?timeout=` of an operation `peer` runs: waits on it in
/// slices of [`WAIT_SLICE`] (each call has its deadline) until it is final or `timeout`
/// seconds have passed (`None` or negative: until it is final), as LXD's wait answers.
async fn wait_remote(peer: &Peer, id: &str, timeout: Option<i64>) -> ApiResult<Response> {
    let deadline = timeout
        .filter(|t| *t >= 0)
        .map(|t| Instant::now() + Duration::from_secs(t.unsigned_abs()));
    loop {
        let slice = deadline.map_or(WAIT_SLICE, |dl| {
            dl.saturating_duration_since(Instant::now()).min(WAIT_SLICE)
        });
        // Waits go in whole seconds: a part of one left waits one more.
        let slice = if slice.is_zero() {
            slice
        } else {
            slice.max(Duration::from_secs(1))
        };
        let op = peer.wait_operation(id, slice).await?;
        if op.status.is_final() || deadline.is_some_and(|dl| Instant::now() >= dl) {
            return Ok(crate::routes::sync(op));
        }
    }
}

/// `POST /1.0/instances`: where placement puts the instance.
async fn route_create(d: &Daemon, project: &str, req: Request) -> ApiResult<Route> {
    let target = query_param(&req, "target");
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::bad_request(format!("Failed to read the request body: {e}")))?;
    // A body that does not parse is the handler's to refuse.
    let Ok(post) = serde_json::from_slice::<api::InstancesPost>(&bytes) else {
        return Ok(Route::Here(Request::from_parts(parts, Body::from(bytes))));
    };
    let member = super::placement::choose(d, project, &post, target.as_deref()).await?;
    let req = Request::from_parts(parts, Body::from(bytes));
    if member == d.member() {
        return Ok(Route::Here(req));
    }
    let peer = Peer::connect(d, &member).await?;
    Ok(Route::Answered(proxy(d, &peer, req).await?))
}

/// How long a change forwarded to a member waits for this member to relay that member's
/// events (just after a join, or while the relay reconnects).
const RELAY_WAIT: Duration = Duration::from_secs(3);

/// Before a change goes to member `name`, where it may start an operation: waits (at most
/// [`RELAY_WAIT`]) until this member relays `name`'s events, so that its clients see that
/// operation end.
pub async fn wait_relayed(name: &str) {
    if !super::events::wait_relayed(name, RELAY_WAIT).await {
        tracing::warn!(member = %name, "forwarding before its events are relayed here");
    }
}

/// Sends `req` as is to `peer` and returns its answer as is; an operation it created is
/// remembered as running there. The request is marked with one more hop than it came with.
///
/// # Errors
///
/// 503 when the member cannot be reached or does not answer within the deadline.
pub async fn proxy(d: &Daemon, peer: &Peer, req: Request) -> ApiResult<Response> {
    let hops = req
        .extensions()
        .get::<Forwarded>()
        .map_or(1, |f| f.hops.saturating_add(1));
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_string(), ToString::to_string);
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| ApiError::bad_request(format!("Failed to read the request body: {e}")))?;
    let mut out = peer
        .client()
        .request(parts.method.clone(), peer.url(&path))
        .header(FORWARDED_HEADER, hops.to_string())
        .timeout(PROXY_DEADLINE);
    for (name, value) in &parts.headers {
        if REQUEST_HEADERS.contains(name) || name.as_str().starts_with("x-lxd-") {
            out = out.header(name, value);
        }
    }
    if !bytes.is_empty() {
        out = out.body(bytes);
    }
    tracing::debug!(member = %peer.name(), method = %parts.method, path = %path, "forwarding");
    // A change may start an operation there: its end must reach this member's clients.
    if parts.method != axum::http::Method::GET {
        wait_relayed(peer.name()).await;
    }
    let answer = async {
        let resp = out.send().await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, headers, body))
    };
    let (status, headers, body) = tokio::time::timeout(PROXY_DEADLINE, answer)
        .await
        .map_err(|_| unreachable(peer, "did not answer in time"))?
        .map_err(|e| unreachable(peer, &e.to_string()))?;
    if status == StatusCode::ACCEPTED {
        remember_operation(d, peer.name(), &body);
    }
    Ok(response(status, &headers, body))
}

/// Records the operation of a 202 answer as running where it says (its `location`), else
/// on `member`, which answered: a member that forwarded the request on is only a relay.
fn remember_operation(d: &Daemon, member: &str, body: &[u8]) {
    if let Ok(env) = serde_json::from_slice::<api::Response<api::Operation>>(body) {
        let op = env.metadata;
        let runs_on = match op.location.as_str() {
            "" | "none" => member,
            location => location,
        };
        d.cluster.remote_ops.insert(&op.id, runs_on);
    }
}

/// An answer with `status`, the end-to-end `headers` and `body`.
fn response(status: StatusCode, headers: &HeaderMap, body: Bytes) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    for (name, value) in headers {
        if !DROPPED_RESPONSE_HEADERS.contains(name) {
            resp.headers_mut().append(name.clone(), value.clone());
        }
    }
    resp
}

fn unreachable(peer: &Peer, why: &str) -> ApiError {
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        message: format!(
            "Failed to forward the request to cluster member {}: {why}",
            peer.name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_paths_name_their_instance() {
        assert_eq!(instance_of("/1.0/instances/c1"), Some("c1"));
        assert_eq!(instance_of("/1.0/instances/c1/state"), Some("c1"));
        assert_eq!(instance_of("/1.0/instances/c1/logs/lxc.log"), Some("c1"));
        assert_eq!(instance_of("/1.0/instances"), None);
        assert_eq!(instance_of("/1.0/instances/"), None);
        assert_eq!(instance_of("/1.0/operations/x"), None);
    }

    #[test]
    fn hops_count_from_the_header() {
        let with = |v: &str| {
            Request::builder()
                .header(FORWARDED_HEADER, v)
                .body(Body::empty())
                .expect("request")
        };
        assert_eq!(hops_of(&with("1")), 1);
        assert_eq!(hops_of(&with("2")), 2);
        assert_eq!(hops_of(&with("0")), 1, "a forwarded request took a hop");
        assert_eq!(hops_of(&with("yes")), 1);
    }

    #[test]
    fn remote_ops_forget_the_oldest_first() {
        let ops = RemoteOps::default();
        for i in 0..=REMOTE_OPS_KEPT {
            ops.insert(&format!("op{i}"), "m2");
        }
        assert_eq!(ops.member_of("op0"), None);
        assert_eq!(ops.member_of("op1").as_deref(), Some("m2"));
        assert_eq!(
            ops.member_of(&format!("op{REMOTE_OPS_KEPT}")).as_deref(),
            Some("m2")
        );
    }
}

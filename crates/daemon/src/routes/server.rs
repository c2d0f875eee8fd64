//! `/1.0`: what this server is, and its config.

use api::server::ServerPut;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};

use super::{empty, parse_body, sync, sync_etag};
use crate::auth::Caller;
use crate::error::ApiResult;
use crate::state::Daemon;

/// How long a follower's `GET /1.0` waits to catch up with the leader.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Trusted callers see everything (with the config's ETag); untrusted ones only what LXD
/// shows them (`auth: "untrusted"`, no config, no environment).
async fn get_server(
    State(d): State<Daemon>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    if !caller.is_trusted() {
        return Ok(sync(crate::server::untrusted_info()));
    }
    // A follower learns that the leader committed a write with its next message (up to a
    // heartbeat later): a client that changed the cluster's config through another member
    // reads it back here. Catch up first, within a bound (during an election, answer with
    // what this member has rather than hang). The leader reads its own DB.
    if d.cluster.is_clustered() && !d.replicator().is_leader() {
        let _ = tokio::time::timeout(CATCH_UP, d.replicator().ensure_linearizable()).await;
    }
    let info = crate::server::info(&d).await?;
    let etag = crate::server_config::etag(&info.config);
    Ok(sync_etag(info, &etag))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn put(State(d): State<Daemon>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let req: ServerPut = parse_body(&body)?;
    crate::server_config::update(&d, req, false, if_match(&headers)).await?;
    config_updated(&d);
    Ok(empty())
}

async fn patch(State(d): State<Daemon>, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let req: ServerPut = parse_body(&body)?;
    crate::server_config::update(&d, req, true, if_match(&headers)).await?;
    config_updated(&d);
    Ok(empty())
}

/// LXD 5.0.2 tells of every accepted `PUT`/`PATCH /1.0`, a change or not.
fn config_updated(d: &Daemon) {
    d.bus
        .lifecycle("config-updated", "/1.0".to_string(), "default", None);
}

pub fn routes() -> Router<Daemon> {
    Router::new().route("/1.0", get(get_server).put(put).patch(patch))
}

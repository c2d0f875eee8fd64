//! `/1.0/operations`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{CommonQuery, empty, sync};
use crate::cluster::forward::Forwarded;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

async fn list(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    forwarded: Option<Extension<Forwarded>>,
) -> ApiResult<Response> {
    let recursion = q.recursion.unwrap_or(0);
    let mut grouped: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for op in d.ops.list() {
        let key = op.status.list_key();
        let item = if recursion > 0 {
            serde_json::to_value(&op).unwrap_or_default()
        } else {
            serde_json::Value::String(format!("/1.0/operations/{}", op.id))
        };
        grouped.entry(key.to_string()).or_default().push(item);
    }
    // A member gathering the cluster's operations asked for this member's alone.
    if d.cluster.is_clustered() && forwarded.is_none() {
        for (status, items) in crate::cluster::operations::others(&d, recursion).await? {
            grouped.entry(status).or_default().extend(items);
        }
        // An evacuation whose coordinator is down is still listed, from the journal.
        for op in crate::cluster::evacuate::record::operations(&d).await? {
            let url = format!("/1.0/operations/{}", op.id);
            let listed = grouped
                .values()
                .flatten()
                .any(|v| v.as_str() == Some(url.as_str()) || v["id"] == op.id.as_str());
            if !listed {
                let item = if recursion > 0 {
                    serde_json::to_value(&op).unwrap_or_default()
                } else {
                    serde_json::Value::String(url)
                };
                grouped
                    .entry(op.status.list_key().to_string())
                    .or_default()
                    .push(item);
            }
        }
    }
    Ok(sync(grouped))
}

async fn get_one(State(d): State<Daemon>, Path(id): Path<String>) -> ApiResult<Response> {
    d.ops
        .get(&id)
        .map(sync)
        .ok_or_else(|| ApiError::not_found("Operation not found"))
}

/// How long `DELETE /1.0/operations/{id}` waits for the cancelled operation to end.
const CANCEL_SETTLE: Duration = Duration::from_secs(5);

/// `DELETE /1.0/operations/{id}`: cancels it and, as LXD does, answers once it has ended
/// (bounded by [`CANCEL_SETTLE`]), so a client listing operations right after sees it
/// cancelled (`lxc cluster revoke-token` then `list-tokens`).
async fn cancel(State(d): State<Daemon>, Path(id): Path<String>) -> ApiResult<Response> {
    match d.ops.cancel(&id) {
        Ok(true) => {
            let _ = d.ops.wait(&id, Some(CANCEL_SETTLE)).await;
            // As LXD 5.0.2 tells `lxc monitor --type=lifecycle` (`lxc cluster revoke-token`).
            d.bus.lifecycle(
                "operation-cancelled",
                format!("/1.0/operations/{id}"),
                "default",
                None,
            );
            Ok(empty())
        }
        Ok(false) => Err(ApiError::bad_request("This operation can't be cancelled")),
        Err(_) => Err(ApiError::not_found("Operation not found")),
    }
}

#[derive(Debug, serde::Deserialize)]
struct WaitQuery {
    #[serde(default)]
    timeout: Option<i64>,
}

async fn wait(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let timeout = q
        .timeout
        .filter(|t| *t >= 0)
        .map(|t| Duration::from_secs(t.unsigned_abs()));
    let op = d
        .ops
        .wait(&id, timeout)
        .await
        .map_err(|_| ApiError::not_found("Operation not found"))?;
    Ok(sync(op))
}

#[derive(Debug, serde::Deserialize)]
struct SecretQuery {
    #[serde(default)]
    secret: String,
}

async fn websocket(
    State(d): State<Daemon>,
    Path(id): Path<String>,
    Query(q): Query<SecretQuery>,
    ws: WebSocketUpgrade,
) -> ApiResult<Response> {
    if d.ops.get(&id).is_none() {
        return Err(ApiError::not_found("Operation not found"));
    }
    if !d.exec.knows(&id, &q.secret) {
        return Err(ApiError::forbidden("permission denied"));
    }
    Ok(ws
        .on_upgrade(move |socket| async move {
            if !d.exec.attach(&id, &q.secret, socket) {
                tracing::debug!(op = %id, "websocket refused: already connected or gone");
            }
        })
        .into_response())
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/operations", get(list))
        .route("/1.0/operations/{id}", get(get_one).delete(cancel))
        .route("/1.0/operations/{id}/wait", get(wait))
        .route("/1.0/operations/{id}/websocket", get(websocket))
}

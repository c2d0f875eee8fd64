//! HTTP routes: one file per resource. Handlers parse, call one service, map the result.

mod certificates;
mod cluster;
mod cluster_groups;
mod cluster_member_state;
mod events;
mod images;
mod instance_files;
mod instances;
mod networks;
mod operations;
mod profiles;
mod projects;
mod resources;
mod server;
mod storage_pools;
mod warnings;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Query parameters LXD's clients send on most endpoints.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CommonQuery {
    /// `?project=default`.
    #[serde(default)]
    pub project: Option<String>,
    /// `?recursion=1|2`.
    #[serde(default)]
    pub recursion: Option<u8>,
    /// `?filter=name eq c1` (api_filtering).
    #[serde(default)]
    pub filter: Option<String>,
}

impl CommonQuery {
    /// The project asked for, `default` when none.
    pub fn project(&self) -> &str {
        self.project
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("default")
    }
}

/// Parses a JSON body, answering LXD-style 400s for malformed input.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    if body.is_empty() {
        return Err(ApiError::bad_request("Request body is empty"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

/// A `sync` 200 answer.
pub fn sync<T: serde::Serialize>(metadata: T) -> Response {
    axum::Json(api::Response::sync(metadata)).into_response()
}

/// A collection as LXD lists it: full records with `recursion` ≥ 1, else their URLs.
pub fn listing<T: serde::Serialize>(
    q: &CommonQuery,
    items: Vec<T>,
    url: impl Fn(&T) -> String,
) -> Response {
    if q.recursion.unwrap_or(0) > 0 {
        sync(items)
    } else {
        sync(items.iter().map(url).collect::<Vec<_>>())
    }
}

/// A `sync` 200 answer with an ETag.
pub fn sync_etag<T: serde::Serialize>(metadata: T, etag: &str) -> Response {
    let mut r = sync(metadata);
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// An empty `sync` answer (`metadata: {}`).
pub fn empty() -> Response {
    sync(serde_json::json!({}))
}

/// The 202 answer for a new operation.
pub fn accepted(op: api::Operation) -> Response {
    let url = format!("/1.0/operations/{}", op.id);
    let mut r = (
        StatusCode::ACCEPTED,
        axum::Json(api::Response::async_op(url.clone(), op)),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

async fn root() -> Response {
    sync(["/1.0"])
}

async fn not_found() -> ApiError {
    ApiError::not_found("not found")
}

/// A known path with a method it does not have: LXD's error envelope, not an empty 405.
async fn method_not_allowed() -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed".into(),
    }
}

/// The whole API, behind [`crate::auth::authenticate`] (the unix socket and the HTTPS
/// listener serve the same router; requests from HTTPS carry a [`tls::Peer`]).
pub fn router(d: Daemon) -> Router {
    Router::new()
        .route("/", get(root))
        .merge(server::routes())
        .merge(instances::routes())
        .merge(instance_files::routes())
        .merge(operations::routes())
        .merge(events::routes())
        .merge(images::routes())
        .merge(profiles::routes())
        .merge(storage_pools::routes())
        .merge(certificates::routes())
        .merge(cluster::routes())
        .merge(cluster_groups::routes())
        .merge(cluster_member_state::routes())
        .merge(networks::routes())
        .merge(projects::routes())
        .merge(resources::routes())
        .merge(warnings::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            d.clone(),
            crate::cluster::forward::middleware,
        ))
        .layer(axum::middleware::from_fn_with_state(
            d.clone(),
            crate::auth::authenticate,
        ))
        .with_state(d)
}

//! `/1.0/cluster/groups` (API extension `clustering_groups`).

use api::cluster::{ClusterGroupPost, ClusterGroupsPost};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, empty, parse_body, sync_etag};
use crate::cluster::groups;
use crate::error::ApiResult;
use crate::state::Daemon;

/// The `If-Match` header, `""` when absent.
pub fn if_match(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_matches('"')
}

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = groups::list(&d).await?;
    Ok(super::listing(&q, all, |g| {
        format!("/1.0/cluster/groups/{}", g.name)
    }))
}

async fn create(State(d): State<Daemon>, body: Bytes) -> ApiResult<Response> {
    let req: ClusterGroupsPost = parse_body(&body)?;
    groups::create(&d, req).await?;
    Ok(empty())
}

async fn get_one(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    let group = groups::get(&d, &name).await?;
    let tag = groups::etag(&group);
    Ok(sync_etag(group, &tag))
}

/// `PUT` (replace) or `PATCH` (the fields given) of a group.
async fn update(
    State(d): State<Daemon>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: serde_json::Value = parse_body(&body)?;
    let patch = method == Method::PATCH;
    groups::update(&d, &name, &req, patch, if_match(&headers)).await?;
    Ok(empty())
}

async fn rename(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ClusterGroupPost = parse_body(&body)?;
    groups::rename(&d, &name, req).await?;
    Ok(empty())
}

async fn delete(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    groups::delete(&d, &name).await?;
    Ok(empty())
}

/// The routes.
pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/cluster/groups", get(list).post(create))
        .route(
            "/1.0/cluster/groups/{name}",
            get(get_one)
                .put(update)
                .patch(update)
                .post(rename)
                .delete(delete),
        )
}

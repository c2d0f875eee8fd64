//! `/1.0/storage-pools`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, empty, parse_body, sync};
use crate::error::ApiResult;
use crate::pools;
use crate::state::Daemon;

/// `?target=` of pool requests: the member whose own config is meant.
#[derive(Debug, Default, serde::Deserialize)]
struct TargetQuery {
    #[serde(default)]
    target: Option<String>,
}

async fn list(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    Query(t): Query<TargetQuery>,
) -> ApiResult<Response> {
    let all = pools::list(&d, t.target.as_deref()).await?;
    Ok(super::listing(&q, all, |p| {
        format!("/1.0/storage-pools/{}", p.name)
    }))
}

async fn create(
    State(d): State<Daemon>,
    Query(t): Query<TargetQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    pools::create(&d, parse_body(&body)?, t.target.filter(|t| !t.is_empty())).await?;
    Ok(empty())
}

async fn get_one(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(t): Query<TargetQuery>,
) -> ApiResult<Response> {
    Ok(sync(pools::get(&d, &name, t.target.as_deref()).await?))
}

async fn volumes(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    let all = pools::volumes(&d, &name).await?;
    Ok(super::listing(&q, all, |v| {
        format!("/1.0/storage-pools/{name}/volumes/{}/{}", v.kind, v.name)
    }))
}

async fn volume(
    State(d): State<Daemon>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    Ok(sync(pools::volume(&d, &pool, &kind, &name).await?))
}

async fn volume_state(
    State(d): State<Daemon>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    Ok(sync(pools::volume_state(&d, &pool, &kind, &name).await?))
}

/// A volume's snapshots (`lxc storage volume info`): drover takes none, so the list is
/// empty (404 for an unknown volume).
async fn volume_snapshots(
    State(d): State<Daemon>,
    Path((pool, kind, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    pools::volume(&d, &pool, &kind, &name).await?;
    Ok(sync(Vec::<String>::new()))
}

/// `POST /1.0/storage-pools/{name}/volumes[/{type}]` (`lxc storage volume create`):
/// refused in plain words (404 for an unknown pool), nothing is created.
async fn no_custom_volumes(
    State(d): State<Daemon>,
    Path(params): Path<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let pool = params
        .iter()
        .find(|(k, _)| k == "name")
        .map_or("", |(_, v)| v.as_str());
    pools::get(&d, pool, None).await?;
    Err(crate::error::ApiError::not_implemented(
        "Custom storage volumes are not supported by drover: instances keep their data on their root disk, or on a host path (a disk device with a source)",
    ))
}

async fn put(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: serde_json::Value = super::parse_body(&body)?;
    pools::update(&d, &name, &body, false).await?;
    Ok(super::empty())
}

async fn patch(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body: serde_json::Value = super::parse_body(&body)?;
    pools::update(&d, &name, &body, true).await?;
    Ok(super::empty())
}

async fn delete(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    pools::delete(&d, &name).await?;
    Ok(super::empty())
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/storage-pools", get(list).post(create))
        .route(
            "/1.0/storage-pools/{name}",
            get(get_one).delete(delete).put(put).patch(patch),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes",
            get(volumes).post(no_custom_volumes),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{kind}",
            axum::routing::post(no_custom_volumes),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{kind}/{volume}",
            get(volume),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{kind}/{volume}/state",
            get(volume_state),
        )
        .route(
            "/1.0/storage-pools/{name}/volumes/{kind}/{volume}/snapshots",
            get(volume_snapshots),
        )
}

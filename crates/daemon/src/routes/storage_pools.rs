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

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = pools::list(&d).await?;
    Ok(super::listing(&q, all, |p| {
        format!("/1.0/storage-pools/{}", p.name)
    }))
}

async fn create(State(d): State<Daemon>, body: Bytes) -> ApiResult<Response> {
    pools::create(&d, parse_body(&body)?).await?;
    Ok(empty())
}

async fn get_one(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(sync(pools::get(&d, &name).await?))
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

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/storage-pools", get(list).post(create))
        .route("/1.0/storage-pools/{name}", get(get_one))
        .route("/1.0/storage-pools/{name}/volumes", get(volumes))
}

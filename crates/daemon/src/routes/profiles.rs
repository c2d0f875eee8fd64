//! `/1.0/profiles`.

use api::profiles::ProfilePut;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, empty, parse_body, sync};
use crate::error::ApiResult;
use crate::profiles;
use crate::state::Daemon;

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = profiles::list(&d, q.project()).await?;
    Ok(super::listing(&q, all, |p| {
        format!("/1.0/profiles/{}", p.name)
    }))
}

async fn create(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    profiles::create(&d, q.project(), parse_body(&body)?).await?;
    Ok(empty())
}

async fn get_one(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    Ok(sync(profiles::get(&d, q.project(), &name).await?))
}

async fn put(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ProfilePut = parse_body(&body)?;
    profiles::update(&d, q.project(), &name, req, false).await?;
    Ok(empty())
}

async fn patch(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ProfilePut = parse_body(&body)?;
    profiles::update(&d, q.project(), &name, req, true).await?;
    Ok(empty())
}

async fn delete(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    profiles::delete(&d, q.project(), &name).await?;
    Ok(empty())
}

/// `POST /1.0/profiles/{name}` with `{"name": "new"}`: a rename.
#[derive(Debug, serde::Deserialize)]
struct ProfilePost {
    #[serde(default)]
    name: String,
}

async fn rename(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ProfilePost = parse_body(&body)?;
    profiles::rename(&d, q.project(), &name, &req.name).await?;
    Ok(empty())
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/profiles", get(list).post(create))
        .route(
            "/1.0/profiles/{name}",
            get(get_one)
                .put(put)
                .patch(patch)
                .delete(delete)
                .post(rename),
        )
}

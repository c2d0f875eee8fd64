//! `/1.0/projects`: the `default` project, read-only.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, listing, parse_body, sync};
use crate::error::{ApiError, ApiResult};
use crate::projects;
use crate::state::Daemon;

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = projects::list(&d).await?;
    Ok(listing(&q, all, |p| format!("/1.0/projects/{}", p.name)))
}

async fn get_one(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(sync(projects::get(&d, &name).await?))
}

/// `POST /1.0/projects` body: the name is all that matters for the refusal.
#[derive(Debug, serde::Deserialize)]
struct ProjectsPost {
    name: String,
}

async fn create(body: Bytes) -> ApiResult<Response> {
    let req: ProjectsPost = parse_body(&body)?;
    Err(projects::refuse(&req.name, "created"))
}

async fn change(Path(name): Path<String>) -> ApiError {
    projects::refuse(&name, "changed")
}

async fn rename(Path(name): Path<String>) -> ApiError {
    projects::refuse(&name, "renamed")
}

async fn delete(Path(name): Path<String>) -> ApiError {
    projects::refuse(&name, "deleted")
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/projects", get(list).post(create))
        .route(
            "/1.0/projects/{name}",
            get(get_one)
                .put(change)
                .patch(change)
                .post(rename)
                .delete(delete),
        )
}

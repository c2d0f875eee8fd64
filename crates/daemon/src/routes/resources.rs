//! `/1.0/resources` and `/1.0/storage-pools/{name}/resources`: what this member has.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;

use super::sync;
use crate::error::ApiResult;
use crate::resources;
use crate::state::Daemon;

async fn member() -> ApiResult<Response> {
    Ok(sync(resources::member().await?))
}

async fn pool(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(sync(resources::pool(&d, &name).await?))
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/resources", get(member))
        .route("/1.0/storage-pools/{name}/resources", get(pool))
}

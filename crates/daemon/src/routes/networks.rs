//! `/1.0/networks`: this member's interfaces, unmanaged (drover manages no network).

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, listing, sync};
use crate::error::{ApiError, ApiResult};
use crate::networks;
use crate::state::Daemon;

async fn list(Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    Daemon::check_project(q.project())?;
    let all = networks::list().await?;
    Ok(listing(&q, all, |n| format!("/1.0/networks/{}", n.name)))
}

async fn get_one(Path(name): Path<String>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    Daemon::check_project(q.project())?;
    Ok(sync(networks::get(&name).await?))
}

/// Creating, changing or deleting a network: drover manages none.
async fn unmanaged() -> ApiError {
    ApiError::not_implemented("Managed networks are not supported by drover")
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/networks", get(list).post(unmanaged))
        .route(
            "/1.0/networks/{name}",
            get(get_one)
                .put(unmanaged)
                .patch(unmanaged)
                .post(unmanaged)
                .delete(unmanaged),
        )
}

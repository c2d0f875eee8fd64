//! `/1.0/warnings`: drover raises no warnings, so the list is empty (`lxc warning list`).

use axum::Router;
use axum::extract::Query;
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, listing};
use crate::error::ApiError;
use crate::state::Daemon;

async fn list(Query(q): Query<CommonQuery>) -> Response {
    listing(&q, Vec::<serde_json::Value>::new(), |_| String::new())
}

async fn no_such_warning() -> ApiError {
    ApiError::not_found("Warning not found")
}

pub fn routes() -> Router<Daemon> {
    Router::new().route("/1.0/warnings", get(list)).route(
        "/1.0/warnings/{id}",
        get(no_such_warning)
            .put(no_such_warning)
            .patch(no_such_warning)
            .delete(no_such_warning),
    )
}

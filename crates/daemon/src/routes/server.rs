//! `GET /1.0`.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

use super::sync;
use crate::error::ApiResult;
use crate::state::Daemon;

async fn get_server(State(d): State<Daemon>) -> ApiResult<Response> {
    Ok(sync(crate::server::info(&d).await?))
}

pub fn routes() -> Router<Daemon> {
    Router::new().route("/1.0", get(get_server))
}

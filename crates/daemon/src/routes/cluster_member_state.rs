//! `POST /1.0/cluster/members/{name}/state`: evacuate or restore a member.

use api::evacuation::MemberStatePost;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};

use super::{accepted, parse_body};
use crate::cluster::evacuate;
use crate::cluster::forward::Forwarded;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

async fn post_state(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    forwarded: Option<Extension<Forwarded>>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: MemberStatePost = parse_body(&body)?;
    let op = evacuate::change_state(&d, &name, req, forwarded.is_some()).await?;
    Ok(accepted(op))
}

/// `GET` of the state: LXD 5.0.2 has none and answers 501 `not implemented`.
async fn get_state() -> ApiError {
    ApiError::not_implemented("not implemented")
}

/// The routes.
pub fn routes() -> Router<Daemon> {
    Router::new().route(
        "/1.0/cluster/members/{name}/state",
        post(post_state).get(get_state),
    )
}

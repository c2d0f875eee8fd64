//! `/1.0/certificates`: the trust store.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::{CommonQuery, accepted, empty, parse_body, sync};
use crate::auth::Caller;
use crate::certificates::{self, Added};
use crate::error::ApiResult;
use crate::state::Daemon;

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let certs = certificates::list(&d).await?;
    if q.recursion.unwrap_or(0) >= 1 {
        return Ok(sync(certs));
    }
    let urls: Vec<String> = certs
        .iter()
        .map(|c| format!("/1.0/certificates/{}", c.fingerprint))
        .collect();
    Ok(sync(urls))
}

async fn post(
    State(d): State<Daemon>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Response> {
    let req = parse_body(&body)?;
    match certificates::add(&d, &caller, req).await? {
        Added::Token(op) => Ok(accepted(op)),
        Added::Certificate(fingerprint) => {
            let mut r = (
                StatusCode::CREATED,
                axum::Json(api::Response::sync(serde_json::Value::Null)),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/1.0/certificates/{fingerprint}")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
    }
}

async fn get_one(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    Ok(sync(certificates::get(&d, &fp).await?))
}

async fn delete(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    certificates::delete(&d, &fp).await?;
    Ok(empty())
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/certificates", get(list).post(post))
        .route(
            "/1.0/certificates/{fingerprint}",
            get(get_one).delete(delete),
        )
}

//! `/1.0/cluster` and `/1.0/cluster/members`.

use api::OperationClass;
use api::cluster::{ClusterMembersPost, ClusterPut};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::get;

use super::{CommonQuery, accepted, parse_body, sync};
use crate::cluster;
use crate::error::ApiResult;
use crate::state::Daemon;

async fn get_cluster(State(d): State<Daemon>) -> ApiResult<Response> {
    Ok(sync(cluster::members::cluster(&d).await?))
}

/// Enable (no cluster address, no token) or join. LXD answers with an operation; drover
/// does the work before answering, so the operation is already final.
async fn put_cluster(State(d): State<Daemon>, body: Bytes) -> ApiResult<Response> {
    let req: ClusterPut = parse_body(&body)?;
    if !req.enabled {
        return Err(crate::error::ApiError::bad_request(
            "Disabling clustering is not supported",
        ));
    }
    let joining = !req.cluster_address.is_empty()
        || !req.cluster_password.is_empty()
        || !req.cluster_token.is_empty();
    if joining {
        cluster::join::join(&d, req).await?;
    } else {
        cluster::enable::enable(&d, &req.server_name).await?;
    }
    Ok(accepted(d.ops.completed(
        OperationClass::Task,
        if joining {
            "Joining cluster"
        } else {
            "Creating bootstrap node"
        },
        Default::default(),
    )))
}

fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(cluster::members::FORWARDED)
}

/// LXD 5.0.2's answer to a member request on a standalone server (a 500, as it gives).
fn require_clustered(d: &Daemon) -> ApiResult<()> {
    if d.cluster.is_clustered() {
        return Ok(());
    }
    Err(crate::error::ApiError::internal("Server is not clustered"))
}

async fn list_members(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_clustered(&d)?;
    let members = cluster::members::list(&d, forwarded(&headers)).await?;
    Ok(super::listing(&q, members, |m| {
        format!("/1.0/cluster/members/{}", m.server_name)
    }))
}

async fn get_member(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    require_clustered(&d)?;
    let member = cluster::members::get(&d, &name, forwarded(&headers)).await?;
    let tag = cluster::edit::etag(&member);
    Ok(super::sync_etag(member, &tag))
}

/// `PUT` (replace) or `PATCH` (the fields given) of a member.
async fn update_member(
    State(d): State<Daemon>,
    method: Method,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: serde_json::Value = parse_body(&body)?;
    let tag = super::cluster_groups::if_match(&headers);
    let patch = method == Method::PATCH;
    cluster::edit::update(&d, &name, &req, patch, tag).await?;
    Ok(super::empty())
}

/// `?force=1` of `DELETE /1.0/cluster/members/{name}`.
#[derive(Debug, Default, serde::Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: Option<String>,
}

async fn delete_member(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<RemoveQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let force = matches!(q.force.as_deref(), Some("1" | "true"));
    cluster::remove::remove(&d, &name, force, forwarded(&headers)).await?;
    Ok(super::empty())
}

async fn post_member(State(d): State<Daemon>, body: Bytes) -> ApiResult<Response> {
    let req: ClusterMembersPost = parse_body(&body)?;
    Ok(accepted(
        cluster::tokens::create(&d, &req.server_name).await?,
    ))
}

/// `POST /1.0/cluster/members/{name}` (`lxc cluster rename`): refused, nothing renamed (a
/// member's name is its Raft identity and every instance's location).
async fn rename_member(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    cluster::members::get(&d, &name, true).await?;
    Err(crate::error::ApiError::not_implemented(
        "Renaming a cluster member is not supported by drover",
    ))
}

/// The routes.
pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/cluster", get(get_cluster).put(put_cluster))
        .route("/1.0/cluster/members", get(list_members).post(post_member))
        .route(
            "/1.0/cluster/members/{name}",
            get(get_member)
                .put(update_member)
                .patch(update_member)
                .post(rename_member)
                .delete(delete_member),
        )
}

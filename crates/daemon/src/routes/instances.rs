//! `/1.0/instances` and its sub-resources.

use api::InstanceStatePut;
use api::exec::InstanceExecPost;
use api::instances::{InstancePost, InstancePut};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, MatchedPath, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{CommonQuery, accepted, parse_body, sync, sync_etag};
use crate::cluster::forward::Forwarded;
use crate::cluster::listing;
use crate::error::{ApiError, ApiResult};
use crate::instances;
use crate::state::Daemon;

/// `?all-projects=true` of `GET /1.0/instances` (`instance_all_projects`, `lxc list
/// --all-projects`).
#[derive(Debug, Default, serde::Deserialize)]
struct AllProjects {
    #[serde(default, rename = "all-projects")]
    all_projects: Option<String>,
}

impl AllProjects {
    /// LXD reads the flag as a boolean string (`true`, `1`, `yes`, `on`).
    fn wanted(&self) -> bool {
        matches!(
            self.all_projects
                .as_deref()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("true" | "1" | "yes" | "on")
        )
    }
}

async fn list(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    Query(all): Query<AllProjects>,
    forwarded: Option<Extension<Forwarded>>,
) -> ApiResult<Response> {
    // drover has the `default` project only, so every instance is in "all projects"; as
    // LXD does, naming a project as well is refused.
    if all.wanted() && q.project.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::bad_request(
            "Cannot specify a project when requesting all projects",
        ));
    }
    let project = q.project().to_string();
    Daemon::check_project(&project)?;
    let filter = crate::filter::Filter::parse(q.filter.as_deref().unwrap_or(""))?;
    let records = d.read(move |c| db::instances::list(c, &project)).await?;
    let recursion = q.recursion.unwrap_or(0);
    if recursion == 0 && filter.is_empty() {
        return Ok(sync(
            records
                .iter()
                .map(|r| instances::url(&r.name))
                .collect::<Vec<_>>(),
        ));
    }
    let project = q.project();
    let views: Vec<_> =
        listing::instance_views(&d, project, records, recursion, forwarded.is_some())
            .await?
            .into_iter()
            .filter(|v| filter.matches(&serde_json::to_value(v).unwrap_or_default()))
            .collect();
    if recursion == 0 {
        return Ok(sync(
            views
                .iter()
                .map(|v| instances::url(&v.name))
                .collect::<Vec<_>>(),
        ));
    }
    Ok(sync(views))
}

/// `?target=` of `POST /1.0/instances` (placement itself happens before the handler, in
/// [`crate::cluster::forward`]).
#[derive(Debug, Default, serde::Deserialize)]
struct CreateTarget {
    #[serde(default)]
    target: Option<String>,
    /// Set by a member asking this one for a copy it takes over at once
    /// ([`instances::create_in_transit`]); honoured only on a request a member forwarded.
    #[serde(default)]
    transit: Option<String>,
}

async fn create(
    State(d): State<Daemon>,
    Query(q): Query<CommonQuery>,
    Query(t): Query<CreateTarget>,
    forwarded: Option<Extension<Forwarded>>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut req: api::InstancesPost = parse_body(&body)?;
    // Placed through `@group`: the instance remembers its group, as LXD records it, so an
    // evacuation keeps it among that group's members.
    if let Some(group) = t.target.as_deref().and_then(|t| t.strip_prefix('@')) {
        req.config
            .insert(cluster::GROUP_KEY.to_string(), group.to_string());
    }
    if t.transit.is_some() && forwarded.is_some() {
        return Ok(accepted(
            instances::create_in_transit(&d, q.project(), req).await?,
        ));
    }
    Ok(accepted(instances::create(&d, q.project(), req).await?))
}

async fn get_one(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    let view = instances::instance_view(&d, &rec, q.recursion.unwrap_or(0) >= 2).await?;
    Ok(sync_etag(view, &instances::etag(&rec)))
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get("if-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn put(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstancePut = parse_body(&body)?;
    instances::update(&d, q.project(), &name, req, false, if_match(&headers)).await?;
    // LXD answers PUT with an operation; ours has already finished.
    let resources = [("instances".to_string(), vec![instances::url(&name)])].into();
    Ok(accepted(d.ops.completed(
        api::OperationClass::Task,
        "Updating instance",
        resources,
    )))
}

async fn patch(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstancePut = parse_body(&body)?;
    instances::update(&d, q.project(), &name, req, true, if_match(&headers)).await?;
    Ok(super::empty())
}

async fn delete(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    Ok(accepted(instances::delete(&d, q.project(), &name).await?))
}

async fn post_one(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    Query(t): Query<instances::migrate::TargetQuery>,
    forwarded: Option<Extension<Forwarded>>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstancePost = parse_body(&body)?;
    if req.migration && t.transit.is_some() && forwarded.is_some() {
        let target = t.target.as_deref();
        let op = instances::migrate::start_move_with(&d, q.project(), &name, &req, target, true);
        return Ok(accepted(op.await?));
    }
    if req.migration && !req.name.is_empty() && req.name != name {
        let op = instances::move_renamed(&d, q.project(), &name, &req, t.target.as_deref());
        return Ok(accepted(op.await?));
    }
    if req.migration {
        let op = instances::migrate::start_move(&d, q.project(), &name, &req, t.target.as_deref());
        return Ok(accepted(op.await?));
    }
    if req.name.is_empty() || req.name == name {
        return Err(ApiError::bad_request(
            "A new name is required to rename an instance",
        ));
    }
    Ok(accepted(
        instances::rename(&d, q.project(), &name, &req.name).await?,
    ))
}

async fn get_state(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    Ok(sync(instances::instance_state(&d, &rec).await?))
}

async fn put_state(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstanceStatePut = parse_body(&body)?;
    Ok(accepted(
        instances::change_state(&d, q.project(), &name, req).await?,
    ))
}

async fn exec(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstanceExecPost = parse_body(&body)?;
    Ok(accepted(
        crate::exec::exec(&d, q.project(), &name, req).await?,
    ))
}

/// `GET /1.0/instances/{name}/console`: what a VM's serial console printed.
async fn console_log(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    Ok(crate::console::log(&d, q.project(), &name)
        .await?
        .into_response())
}

/// `POST /1.0/instances/{name}/console`: attach to a VM's serial console.
async fn console(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    Ok(accepted(
        crate::console::attach(&d, q.project(), &name).await?,
    ))
}

/// Snapshots and backups are not supported yet: the lists exist and are empty, which is what
/// `lxc list` and `lxc info` read.
async fn empty_list(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    instances::load(&d, q.project(), &name).await?;
    Ok(sync(Vec::<String>::new()))
}

/// `POST /1.0/instances/{name}/snapshots` (`lxc snapshot`) and `.../backups` (`lxc
/// export`): refused, nothing is created.
async fn not_supported(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
    path: MatchedPath,
) -> ApiResult<Response> {
    instances::load(&d, q.project(), &name).await?;
    let what = path.as_str().rsplit('/').next().unwrap_or("snapshots");
    Err(ApiError::not_implemented(format!(
        "Instance {what} are not supported by drover"
    )))
}

/// `/1.0/instances/{name}/snapshots/{snapshot}`: there are none.
async fn no_snapshot(
    State(d): State<Daemon>,
    Path((name, _snapshot)): Path<(String, String)>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    instances::load(&d, q.project(), &name).await?;
    Err(ApiError::not_found("Snapshot not found"))
}

async fn logs(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    let file = instances::log_name(&rec);
    Ok(sync([format!("/1.0/instances/{name}/logs/{file}")]))
}

/// A log file of the instance as plain text: `lxc.log` (PID 1's console output, under LXD's
/// name), a VM's `qemu.log`, or the recorded output of an exec (`exec_<id>.stdout`).
async fn log_file(
    State(d): State<Daemon>,
    Path((name, file)): Path<(String, String)>,
    Query(q): Query<CommonQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    Ok(instances::log_file(&d, &rec, &file).await?.into_response())
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        .route("/1.0/instances", get(list).post(create))
        .route(
            "/1.0/instances/{name}",
            get(get_one)
                .put(put)
                .patch(patch)
                .delete(delete)
                .post(post_one),
        )
        .route("/1.0/instances/{name}/state", get(get_state).put(put_state))
        .route("/1.0/instances/{name}/exec", post(exec))
        .route(
            "/1.0/instances/{name}/console",
            get(console_log).post(console),
        )
        .route(
            "/1.0/instances/{name}/snapshots",
            get(empty_list).post(not_supported),
        )
        .route(
            "/1.0/instances/{name}/snapshots/{snapshot}",
            get(no_snapshot)
                .put(no_snapshot)
                .patch(no_snapshot)
                .post(no_snapshot)
                .delete(no_snapshot),
        )
        .route("/1.0/instances/{name}/logs", get(logs))
        .route("/1.0/instances/{name}/logs/{file}", get(log_file))
        .route(
            "/1.0/instances/{name}/backups",
            get(empty_list).post(not_supported),
        )
}

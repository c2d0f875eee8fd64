//! Cluster groups (`/1.0/cluster/groups`, LXD's `clustering_groups`): named sets of
//! members. `default` always exists and every new member joins it; `--target @group`
//! places an instance on one of a group's members.
//!
//! Every change is checked against the current DB first (a bad request changes nothing),
//! then committed as one command. Reads are linearizable: a follower first catches up with
//! the leader, so a client sees its own earlier writes whichever member it asks.

use api::cluster::{ClusterGroup, ClusterGroupPost, ClusterGroupPut, ClusterGroupsPost};
use db::cluster_groups::{ClusterGroupRecord, DEFAULT};
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

fn view(rec: ClusterGroupRecord) -> ClusterGroup {
    ClusterGroup {
        name: rec.name,
        description: rec.description,
        members: rec.members,
    }
}

/// The ETag of a group: what `PUT` replaces.
pub fn etag(group: &ClusterGroup) -> String {
    let json = serde_json::to_string(&(&group.description, &group.members)).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json.as_bytes()))
}

/// Every group, by name.
pub async fn list(d: &Daemon) -> ApiResult<Vec<ClusterGroup>> {
    d.replicator().ensure_linearizable().await?;
    Ok(d.read(db::cluster_groups::list)
        .await?
        .into_iter()
        .map(view)
        .collect())
}

/// The group `name`.
///
/// # Errors
///
/// 404 when there is none.
pub async fn get(d: &Daemon, name: &str) -> ApiResult<ClusterGroup> {
    d.replicator().ensure_linearizable().await?;
    let owned = name.to_string();
    d.read(move |c| db::cluster_groups::get(c, &owned))
        .await?
        .map(view)
        .ok_or_else(|| ApiError::not_found("Cluster group not found"))
}

/// Refuses a name LXD would refuse (empty, with a `/`, or starting with `@`, which
/// targets mean as "a group").
fn check_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::bad_request("Cluster group name cannot be empty"));
    }
    if name.contains('/') || name.starts_with('@') || name.chars().any(char::is_whitespace) {
        return Err(ApiError::bad_request(format!(
            "Invalid cluster group name {name:?}"
        )));
    }
    Ok(())
}

/// Refuses member names no member has, naming the first.
async fn check_members(d: &Daemon, names: &[String]) -> ApiResult<()> {
    let known: Vec<String> = d
        .read(db::members::list)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    match names.iter().find(|n| !known.contains(n)) {
        Some(n) => Err(ApiError::bad_request(format!(
            "Cluster member {n:?} not found"
        ))),
        None => Ok(()),
    }
}

/// `POST /1.0/cluster/groups`.
///
/// # Errors
///
/// 400 for a bad name or an unknown member, 409 when the group exists.
pub async fn create(d: &Daemon, req: ClusterGroupsPost) -> ApiResult<()> {
    check_name(&req.name)?;
    if get(d, &req.name).await.is_ok() {
        return Err(ApiError::conflict(format!(
            "Cluster group {:?} already exists",
            req.name
        )));
    }
    check_members(d, &req.members).await?;
    let source = url(&req.name);
    d.write(db::Command::CreateClusterGroup {
        name: req.name,
        description: req.description,
        members: req.members,
    })
    .await?;
    d.bus
        .lifecycle("cluster-group-created", source, "default", None);
    Ok(())
}

/// `PUT` (`patch == false`: the body replaces description and members) or `PATCH` (only
/// the fields the body has) of `/1.0/cluster/groups/{name}`, checked against `if_match`
/// (empty: no check).
///
/// # Errors
///
/// 404 for an unknown group, 412 for a stale ETag, 400 for an unknown member.
pub async fn update(
    d: &Daemon,
    name: &str,
    body: &serde_json::Value,
    patch: bool,
    if_match: &str,
) -> ApiResult<()> {
    let current = get(d, name).await?;
    if !if_match.is_empty() && if_match != etag(&current) {
        return Err(ApiError::precondition_failed("ETag doesn't match"));
    }
    let current = serde_json::json!({
        "description": current.description,
        "members": current.members,
    });
    let req: ClusterGroupPut = super::edit::request(current, body, patch, &[])?;
    check_members(d, &req.members).await?;
    // LXD's event carries the group as it is now.
    let context = serde_json::json!({"description": req.description, "members": req.members});
    d.write(db::Command::UpdateClusterGroup {
        name: name.to_string(),
        description: req.description,
        members: req.members,
    })
    .await?;
    d.bus
        .lifecycle("cluster-group-updated", url(name), "default", Some(context));
    Ok(())
}

/// `POST /1.0/cluster/groups/{name}`: rename.
///
/// # Errors
///
/// 400 for `default` or a bad new name, 404 for an unknown group, 409 when the new name
/// is taken.
pub async fn rename(d: &Daemon, name: &str, req: ClusterGroupPost) -> ApiResult<()> {
    if name == DEFAULT {
        return Err(ApiError::bad_request(
            "The 'default' cluster group cannot be renamed",
        ));
    }
    check_name(&req.name)?;
    get(d, name).await?;
    if get(d, &req.name).await.is_ok() {
        return Err(ApiError::conflict(format!(
            "Name {:?} already in use",
            req.name
        )));
    }
    let source = url(&req.name);
    d.write(db::Command::RenameClusterGroup {
        name: name.to_string(),
        new_name: req.name,
    })
    .await?;
    let context = serde_json::json!({"old_name": name});
    d.bus
        .lifecycle("cluster-group-renamed", source, "default", Some(context));
    Ok(())
}

/// The URL of group `name`, the source of its lifecycle events (LXD 5.0.2 tells of a
/// group created, updated or renamed, not of one deleted).
fn url(name: &str) -> String {
    format!("/1.0/cluster/groups/{name}")
}

/// `DELETE /1.0/cluster/groups/{name}`.
///
/// # Errors
///
/// 400 for `default` or a group that still has members, 404 for an unknown group.
pub async fn delete(d: &Daemon, name: &str) -> ApiResult<()> {
    if name == DEFAULT {
        return Err(ApiError::bad_request(
            "The 'default' cluster group cannot be deleted",
        ));
    }
    let current = get(d, name).await?;
    if !current.members.is_empty() {
        return Err(ApiError::bad_request(
            "Only empty cluster groups can be removed",
        ));
    }
    d.write(db::Command::DeleteClusterGroup {
        name: name.to_string(),
    })
    .await
}

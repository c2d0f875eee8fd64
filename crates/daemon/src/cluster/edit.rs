//! `PUT`/`PATCH /1.0/cluster/members/{name}`: a member's config, description, failure
//! domain and groups, LXD-style (`lxc cluster edit`, `lxc cluster set`, `lxc cluster group
//! assign`).
//!
//! Member config keys: `scheduler.instance` (`all`, the default: placed automatically;
//! `manual`: only when targeted by name; `group`: only when targeted through one of its
//! groups) and `user.*`. Roles: the database roles (`database-leader`, `database`,
//! `database-standby`) follow the Raft group: a request naming roles may not drop or add
//! `database` (LXD's refusal) nor name another database role the member does not hold;
//! any other role is refused.

use api::cluster::{ClusterMember, ClusterMemberPut};
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The member config key choosing how instances land on a member.
pub const SCHEDULER_INSTANCE: &str = "scheduler.instance";

/// The role of a Raft voter.
const DATABASE: &str = "database";

/// Roles that follow the Raft group.
const DATABASE_ROLES: &[&str] = &["database-leader", "database", "database-standby"];

/// The ETag of a member: what `PUT` replaces.
pub fn etag(member: &ClusterMember) -> String {
    let json = serde_json::to_string(&(
        &member.config,
        &member.description,
        &member.failure_domain,
        &member.groups,
    ))
    .unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json.as_bytes()))
}

/// Refuses config LXD would refuse, in LXD's words. An empty value is valid: it unsets
/// the key (`lxc cluster unset` sends the config with the key set to `""`).
fn check_config(config: &api::ConfigMap) -> ApiResult<()> {
    for (key, value) in config {
        match key.as_str() {
            SCHEDULER_INSTANCE => {
                if !["", "all", "manual", "group"].contains(&value.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid cluster configuration key {key:?} value"
                    )));
                }
            }
            k if k.starts_with("user.") => {}
            k => {
                return Err(ApiError::bad_request(format!(
                    "Invalid cluster configuration key {k:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Replaces (`patch == false`) or updates (`patch`: only the fields the body has; config
/// keys merge) the member `name`, checked against `if_match` (empty: no check).
///
/// # Errors
///
/// 404 for an unknown member, 412 for a stale ETag, 400 for a bad key or value, an
/// unknown group or a role drover does not have.
pub async fn update(
    d: &Daemon,
    name: &str,
    body: &serde_json::Value,
    patch: bool,
    if_match: &str,
) -> ApiResult<()> {
    // Linearizable: a follower must not check the ETag against a stale row.
    d.replicator().ensure_linearizable().await?;
    let current = super::members::get(d, name, true).await?;
    if !if_match.is_empty() && if_match != etag(&current) {
        return Err(ApiError::precondition_failed("ETag doesn't match"));
    }
    let current = serde_json::json!({
        "config": current.config,
        "description": current.description,
        "failure_domain": current.failure_domain,
        "groups": current.groups,
        "roles": current.roles,
    });
    let held: Vec<String> = current["roles"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let had_database = held.iter().any(|r| r == DATABASE);
    let mut req: ClusterMemberPut = request(current, body, patch, &["config"])?;
    check_config(&req.config)?;
    // The database role follows the Raft group: a request that names roles (`lxc cluster
    // role add|remove`) may not drop or add it, as LXD refuses; one that names none (a
    // partial `lxc cluster edit`) leaves the roles as they are.
    if body.get("roles").is_some_and(serde_json::Value::is_array) {
        let has_database = req.roles.iter().any(|r| r == DATABASE);
        if had_database != has_database {
            let verb = if had_database { "dropped" } else { "added" };
            return Err(ApiError::bad_request(format!(
                "The '{DATABASE}' role cannot be {verb} at this time"
            )));
        }
    }
    // The other database roles also follow the Raft group: naming one the member does not
    // hold (`lxc cluster role add m3 database-standby`) is refused, as LXD refuses a role
    // it cannot store, instead of answering success and changing nothing.
    if let Some(role) = req
        .roles
        .iter()
        .find(|r| DATABASE_ROLES.contains(&r.as_str()) && !held.contains(r))
    {
        return Err(ApiError::bad_request(format!(
            "Invalid cluster role '{role}'"
        )));
    }
    // As LXD stores member config: a key set to "" is removed.
    req.config.retain(|_, v| !v.is_empty());
    if let Some(role) = req
        .roles
        .iter()
        .find(|r| !DATABASE_ROLES.contains(&r.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "Unsupported cluster member role {role:?}"
        )));
    }
    // As LXD: a member is always in a group. A PUT without `groups` (pylxd's
    // `ClusterMember.save()` sends `{}`) used to leave it in none, out of `@default`.
    if req.groups.is_empty() {
        return Err(ApiError::bad_request(
            "Cluster members need to belong to at least one group",
        ));
    }
    let groups = d.read(db::cluster_groups::list).await?;
    if let Some(g) = req
        .groups
        .iter()
        .find(|g| !groups.iter().any(|known| &known.name == *g))
    {
        return Err(ApiError::bad_request(format!(
            "Cluster group {g:?} doesn't exist"
        )));
    }
    let failure_domain = if req.failure_domain.is_empty() {
        "default".to_string()
    } else {
        req.failure_domain
    };
    let mut wanted = req.groups;
    wanted.sort();
    wanted.dedup();
    d.write(db::Command::UpdateMember {
        name: name.to_string(),
        description: req.description,
        failure_domain,
        config: req.config,
        groups: wanted,
    })
    .await?;
    // As LXD 5.0.2 tells `lxc monitor --type=lifecycle` of `lxc cluster set|edit`.
    d.bus.lifecycle(
        "cluster-member-updated",
        format!("/1.0/cluster/members/{name}"),
        "default",
        None,
    );
    Ok(())
}

/// The request a `PUT` (`patch == false`: `body` as is) or a `PATCH` (`body`'s fields over
/// `current`; the objects named in `merge` merged key by key, as LXD merges config) makes.
///
/// # Errors
///
/// 400 when the result is not a `T`.
pub fn request<T: serde::de::DeserializeOwned>(
    mut current: serde_json::Value,
    body: &serde_json::Value,
    patch: bool,
    merge: &[&str],
) -> ApiResult<T> {
    let value = if patch {
        if let (Some(to), Some(from)) = (current.as_object_mut(), body.as_object()) {
            for (k, v) in from {
                match (to.get_mut(k), v.as_object()) {
                    (Some(serde_json::Value::Object(old)), Some(new))
                        if merge.contains(&k.as_str()) =>
                    {
                        old.extend(new.clone());
                    }
                    _ => {
                        to.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        current
    } else {
        body.clone()
    };
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))
}

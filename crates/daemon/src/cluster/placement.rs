//! Where a new instance goes: the member that will hold it.
//!
//! [`choose`] is the one place that decides: an explicit `?target=member` (checked: the
//! member exists and accepts instances); otherwise, on a clustered member, the scheduler
//! ([`cluster::scheduler::place`]) picks among every member, or among the members of the
//! group of `?target=@group`: `created`, online, same architecture, `scheduler.instance`
//! allowing it, room for the instance's expanded `limits.memory`/`limits.cpu`, then the
//! least loaded. A standalone member keeps the instance.

use api::InstancesPost;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The name of the member that must create the instance `req` asks for in `project`,
/// `target` being the request's `?target=` (empty or absent: no preference).
///
/// The caller forwards the create to that member when it is not itself ([`super::forward`])
/// and the receiving member creates it without choosing again.
///
/// # Errors
///
/// - 400 `Target only allowed when clustered` for a target on a standalone member;
/// - 404 `Cluster member not found` for a target no member has;
/// - 403 `Cluster member is evacuated` when the target does not accept instances
///   (what LXD answers);
/// - 404 `Cluster group "g" not found` for `@g` no group has;
/// - 400 `No suitable cluster member could be found` (LXD's status and words), then why
///   each member was turned down, when the scheduler finds none;
/// - 400 for a profile that does not exist; 500 on a DB failure.
pub async fn choose(
    d: &Daemon,
    project: &str,
    req: &InstancesPost,
    target: Option<&str>,
) -> ApiResult<String> {
    let target = target.filter(|t| !t.is_empty());
    if !d.cluster.is_clustered() {
        return match target {
            None => Ok(d.member()),
            Some(_) => Err(ApiError::bad_request("Target only allowed when clustered")),
        };
    }
    let Some(target) = target else {
        // A copy is made where its source is (drover copies volumes within a member),
        // unless that member takes no instances (evacuated): then the scheduler picks, as
        // LXD's does for every copy, and the copy is made there from the source.
        if req.source.kind == "copy" && !req.source.source.is_empty() {
            let (p, n) = (project.to_string(), req.source.source.clone());
            if let Some(src) = d.read(move |c| db::instances::get(c, &p, &n)).await? {
                let name = src.member.clone();
                let holder = d.read(move |c| db::members::get(c, &name)).await?;
                if holder.is_none_or(|m| m.state.accepts_instances()) {
                    return Ok(src.member);
                }
            }
        }
        return schedule(d, project, req, None).await;
    };
    if let Some(group) = target.strip_prefix('@') {
        let owned = group.to_string();
        if d.read(move |c| db::cluster_groups::get(c, &owned))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found(format!(
                "Cluster group {group:?} not found"
            )));
        }
        return schedule(d, project, req, Some(group)).await;
    }
    let name = target.to_string();
    let member = d
        .read(move |c| db::members::get(c, &name))
        .await?
        .ok_or_else(|| ApiError::not_found("Cluster member not found"))?;
    if !member.state.accepts_instances() {
        return Err(ApiError::forbidden("Cluster member is evacuated"));
    }
    Ok(member.name)
}

/// The scheduler's choice for `req` (in `group` when given), over a snapshot of the
/// cluster: members with their liveness, instances with their expanded config.
async fn schedule(
    d: &Daemon,
    project: &str,
    req: &InstancesPost,
    group: Option<&str>,
) -> ApiResult<String> {
    let online = super::members::list(d, false)
        .await?
        .into_iter()
        .filter(|m| m.status == "Online")
        .map(|m| m.server_name)
        .collect();
    let snapshot = super::evacuate::snapshot::take(d, online).await?;
    let names = req
        .profiles
        .clone()
        .unwrap_or_else(|| vec!["default".to_string()]);
    let profiles = crate::instances::load_profiles(d, project, &names).await?;
    let config = crate::instances::expand_config(&req.config, &profiles);
    let architecture = if req.architecture.is_empty() {
        std::env::consts::ARCH
    } else {
        req.architecture.as_str()
    };
    let request = cluster::scheduler::Request {
        architecture,
        config: &config,
        group,
    };
    cluster::scheduler::place(&snapshot, &request)
        .map_err(|none| ApiError::bad_request(none.to_string()))
}

//! Where a new instance goes: the member that will hold it.
//!
//! [`choose`] is the one place that decides. Today it honours an explicit `?target=`
//! (checked: the member exists and accepts instances) and otherwise keeps the instance on
//! the member that received the request; the scheduler (cluster groups, capacity, load)
//! grows inside it without changing its signature.

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
/// - 500 on a DB failure.
pub async fn choose(
    d: &Daemon,
    project: &str,
    req: &InstancesPost,
    target: Option<&str>,
) -> ApiResult<String> {
    let _ = (project, req);
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Ok(d.member());
    };
    if !d.cluster.is_clustered() {
        return Err(ApiError::bad_request("Target only allowed when clustered"));
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

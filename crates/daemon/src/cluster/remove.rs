//! `DELETE /1.0/cluster/members/{name}[?force=1]` (`lxc cluster remove`): a member leaves
//! the cluster.
//!
//! The leader does it (a follower hands the request to the leader): it refuses, as LXD
//! does, while instances are recorded on the member, unless `force` (which forgets them);
//! then removes the member from the Raft group (voter or standby) and deletes its row with
//! its group memberships. From then on its certificate is no member's: the other members
//! refuse its Raft and API calls. A voter leaving makes room for a standby, which is
//! promoted. The removed member is told, and goes back to being a standalone server
//! ([`super::reset`]); one unreachable then finds out when it is back.

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Removes the member `name`; see the module doc. `forwarded`: the request was handed
/// over by another member and must be served here.
///
/// # Errors
///
/// 404 for an unknown member; 400 while it holds instances and `force` is false (LXD's
/// `Node still has the following containers: ...`), or when it is the only member; 503
/// without a leader; 500 when the Raft group refuses the change.
pub async fn remove(d: &Daemon, name: &str, force: bool, forwarded: bool) -> ApiResult<()> {
    d.replicator().ensure_linearizable().await?;
    let owned = name.to_string();
    let (member, members, instances) = d
        .read(move |c| {
            Ok((
                db::members::get(c, &owned)?,
                db::members::list(c)?.len(),
                db::instances::list(c, "default")?,
            ))
        })
        .await?;
    let member = member.ok_or_else(|| ApiError::not_found("Cluster member not found"))?;
    if members <= 1 {
        return Err(ApiError::bad_request(
            "The last member of a cluster cannot be removed",
        ));
    }
    let mut held: Vec<&str> = instances
        .iter()
        .filter(|i| i.member == name)
        .map(|i| i.name.as_str())
        .collect();
    held.sort_unstable();
    if !held.is_empty() && !force {
        return Err(ApiError::bad_request(format!(
            "Node still has the following containers: {}",
            held.join(", ")
        )));
    }
    let replicator = d.replicator();
    if !replicator.is_leader() && !forwarded {
        return on_leader(d, name, force).await;
    }
    let id = u64::try_from(member.id).map_err(|_| ApiError::internal("negative member id"))?;
    {
        let _serial = d.cluster.membership.lock().await;
        if replicator.metrics().members.contains_key(&id) {
            replicator.remove(id).await.map_err(|e| {
                ApiError::internal(format!("remove {name} from the raft group: {e}"))
            })?;
        }
    }
    d.write(db::Command::RemoveMember {
        name: name.to_string(),
        force,
    })
    .await?;
    tracing::info!(member = %name, node = id, force, "member removed from the cluster");
    super::reset::tell_removed(d, name, &member.address).await;
    promote_a_standby(d).await;
    d.bus.lifecycle(
        "cluster-member-removed",
        format!("/1.0/cluster/members/{name}"),
        "default",
        None,
    );
    Ok(())
}

/// Hands the removal to the leader.
async fn on_leader(d: &Daemon, name: &str, force: bool) -> ApiResult<()> {
    let metrics = d.replicator().metrics();
    let leader = metrics.leader.ok_or_else(|| ApiError {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        message: "The cluster has no leader".into(),
    })?;
    let leader = i64::try_from(leader).unwrap_or_default();
    let row = d
        .read(move |c| db::members::get_by_id(c, leader))
        .await?
        .ok_or_else(|| ApiError::internal("the leader has no member row"))?;
    let peer = super::peer::Peer::connect(d, &row.name).await?;
    let path = format!(
        "/1.0/cluster/members/{}{}",
        name,
        if force { "?force=1" } else { "" }
    );
    peer.request(reqwest::Method::DELETE, &path, None).await?;
    Ok(())
}

/// After a voter left: promotes a standby while there are fewer voters than
/// `cluster.max_voters`. Best effort (logged): the cluster works without it.
async fn promote_a_standby(d: &Daemon) {
    let _serial = d.cluster.membership.lock().await;
    let replicator = d.replicator();
    let max_voters = super::config_number(d, super::MAX_VOTERS, super::DEFAULT_MAX_VOTERS as u64)
        .await
        .unwrap_or(super::DEFAULT_MAX_VOTERS as u64);
    let metrics = replicator.metrics();
    if metrics.voters().len() as u64 >= max_voters {
        return;
    }
    let Some(standby) = metrics.learners().into_iter().next() else {
        return;
    };
    match replicator.promote(standby).await {
        Ok(()) => tracing::info!(node = standby, "standby promoted to voter"),
        Err(e) => tracing::warn!(node = standby, error = %e, "could not promote a standby"),
    }
}

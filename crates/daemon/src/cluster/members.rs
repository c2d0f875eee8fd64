//! `GET /1.0/cluster` and `/1.0/cluster/members[/{name}]` in LXD's shape.
//!
//! Status comes from Raft heartbeats: a member not heard from for longer than
//! `cluster.offline_threshold` is `Offline`. Only the leader hears from every member, so a
//! follower asks the leader for the list (falling back to its own view when the leader
//! cannot be reached, in which case members it has no contact with show `Offline`).

use std::time::Duration;

use api::MemberState;
use api::cluster::{Cluster, ClusterMember};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Header marking a members request forwarded by a member: answer from this member's view.
pub const FORWARDED: &str = "x-drover-forwarded";

/// `GET /1.0/cluster`.
pub fn cluster(d: &Daemon) -> Cluster {
    let enabled = d.cluster.is_clustered();
    Cluster {
        server_name: if enabled { d.member() } else { String::new() },
        enabled,
        member_config: Vec::new(),
    }
}

/// Every member, in id order: from the leader's view when this member is a follower and
/// `forwarded` is false.
pub async fn list(d: &Daemon, forwarded: bool) -> ApiResult<Vec<ClusterMember>> {
    if !forwarded
        && d.cluster.is_clustered()
        && let Some(members) = from_leader(d).await
    {
        return Ok(members);
    }
    local_view(d).await
}

/// The member `name`.
pub async fn get(d: &Daemon, name: &str, forwarded: bool) -> ApiResult<ClusterMember> {
    list(d, forwarded)
        .await?
        .into_iter()
        .find(|m| m.server_name == name)
        .ok_or_else(|| ApiError::not_found("Cluster member not found"))
}

/// The leader's list, when this member is a follower and the leader answers.
async fn from_leader(d: &Daemon) -> Option<Vec<ClusterMember>> {
    let replicator = d.replicator();
    let metrics = replicator.metrics();
    let leader = metrics.leader?;
    if leader == metrics.id {
        return None;
    }
    let address = metrics.members.get(&leader)?.address.clone();
    let cluster = d.cluster.identity()?;
    let client = super::member_client(d.https.identity(), cluster.fingerprint()).ok()?;
    let url = format!("https://{address}/1.0/cluster/members?recursion=1");
    let answer = client
        .get(&url)
        .header(FORWARDED, "1")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let body: api::Response<Vec<ClusterMember>> = answer.json().await.ok()?;
    Some(body.metadata)
}

/// The members as this member sees them.
async fn local_view(d: &Daemon) -> ApiResult<Vec<ClusterMember>> {
    let threshold = Duration::from_secs(
        super::config_number(
            d,
            super::OFFLINE_THRESHOLD,
            super::DEFAULT_OFFLINE_THRESHOLD,
        )
        .await?,
    );
    let records = d.read(db::members::list).await?;
    let metrics = d.replicator().metrics();
    let now = chrono::Utc::now();
    Ok(records
        .into_iter()
        .map(|rec| {
            let id = u64::try_from(rec.id).unwrap_or_default();
            let raft = metrics.members.get(&id);
            let mut roles = Vec::new();
            if metrics.leader == Some(id) {
                roles.push("database-leader".to_string());
            }
            match raft {
                Some(m) if m.voter => roles.push("database".into()),
                Some(_) => roles.push("database-standby".into()),
                None => {}
            }
            let contact = if id == metrics.id {
                Some(Duration::ZERO)
            } else {
                raft.and_then(|m| m.last_contact)
            };
            let (status, message) = match contact {
                Some(age) if age <= threshold => match rec.state {
                    MemberState::Created => ("Online", "Fully operational".to_string()),
                    MemberState::Pending => ("Online", "Joining the cluster".to_string()),
                    MemberState::Evacuated => {
                        ("Evacuated", "Unavailable due to maintenance".into())
                    }
                    MemberState::Evacuating => ("Evacuated", "Evacuating".to_string()),
                    MemberState::Restoring => ("Online", "Restoring".to_string()),
                },
                Some(age) => {
                    let since = now - chrono::Duration::from_std(age).unwrap_or_default();
                    (
                        "Offline",
                        format!(
                            "No heartbeat for {:.1}s ({})",
                            age.as_secs_f64(),
                            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                    )
                }
                None => (
                    "Offline",
                    "No heartbeat since this member started".to_string(),
                ),
            };
            ClusterMember {
                database: raft.is_some_and(|m| m.voter),
                roles,
                failure_domain: rec.failure_domain,
                description: rec.description,
                config: Default::default(),
                groups: vec!["default".into()],
                url: if rec.address.is_empty() {
                    String::new()
                } else {
                    format!("https://{}", rec.address)
                },
                server_name: rec.name,
                status: status.into(),
                message,
                architecture: rec.architecture,
            }
        })
        .collect())
}

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

/// `GET /1.0/cluster`: with, when clustered, the member-specific pool keys a joiner
/// supplies ([`crate::pools::member_config_keys`]).
pub async fn cluster(d: &Daemon) -> ApiResult<Cluster> {
    let enabled = d.cluster.is_clustered();
    let member_config = if enabled {
        crate::pools::member_config_keys(&d.read(db::pools::list).await?)
    } else {
        Vec::new()
    };
    Ok(Cluster {
        server_name: if enabled { d.member() } else { String::new() },
        enabled,
        member_config,
    })
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
    let mut members = local_view(d).await?;
    if !forwarded && d.cluster.is_clustered() {
        confirm_unheard(d, &mut members).await;
    }
    Ok(members)
}

/// How long a member this one has not heard from has to answer for itself.
const CONFIRM_DEADLINE: Duration = Duration::from_secs(2);

/// In this member's own view (the leader did not answer: it is down, or being elected),
/// the members it has no recent contact with are `Offline`: a follower only hears from
/// the leader. Each of them that answers is shown as it sees itself, so a live member is
/// not reported `Offline` while the cluster elects a new leader.
async fn confirm_unheard(d: &Daemon, members: &mut [ClusterMember]) {
    let me = d.member();
    let asks = members
        .iter()
        .filter(|m| m.status == "Offline" && m.server_name != me)
        .map(|m| {
            let (name, address) = (m.server_name.clone(), m.url.trim_start_matches("https://"));
            let address = address.to_string();
            async move {
                let own = view_of(d, &address, CONFIRM_DEADLINE)
                    .await?
                    .into_iter()
                    .find(|v| v.server_name == name)?;
                Some(own)
            }
        });
    for own in futures::future::join_all(asks).await.into_iter().flatten() {
        if let Some(m) = members
            .iter_mut()
            .find(|m| m.server_name == own.server_name)
        {
            m.status = own.status;
            m.message = own.message;
        }
    }
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
    view_of(d, &address, Duration::from_secs(5)).await
}

/// The members as the member at `address` sees them itself (its answer within `deadline`).
async fn view_of(d: &Daemon, address: &str, deadline: Duration) -> Option<Vec<ClusterMember>> {
    let cluster = d.cluster.identity()?;
    let client = super::member_client(d.https.identity(), cluster.fingerprint()).ok()?;
    let url = format!("https://{address}/1.0/cluster/members?recursion=1");
    let answer = client
        .get(&url)
        .header(FORWARDED, "1")
        .timeout(deadline)
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
    let (records, groups) = d
        .read(|c| Ok((db::members::list(c)?, db::members::groups(c)?)))
        .await?;
    let metrics = d.replicator().metrics();
    Ok(view(
        records,
        &groups,
        &metrics,
        threshold,
        chrono::Utc::now(),
    ))
}

/// The members in LXD's shape, from their rows and this member's Raft view at `now`.
///
/// Roles: the leader is `database-leader` + `database`, voters `database`, learners
/// `database-standby`; `database` is true for voters. A member not heard from for longer
/// than `threshold` (or never, since this process started) is `Offline`.
fn view(
    records: Vec<db::members::MemberRecord>,
    groups: &std::collections::BTreeMap<i64, Vec<String>>,
    metrics: &raft::ClusterMetrics,
    threshold: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ClusterMember> {
    records
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
            let maintenance = || "Unavailable due to maintenance".to_string();
            let (status, message) = match contact {
                // An evacuated member says so even when it is also offline.
                _ if rec.state == MemberState::Evacuated => ("Evacuated", maintenance()),
                Some(age) if age <= threshold => match rec.state {
                    MemberState::Created => ("Online", "Fully operational".to_string()),
                    MemberState::Pending => ("Online", "Joining the cluster".to_string()),
                    MemberState::Evacuated => ("Evacuated", maintenance()),
                    MemberState::Evacuating => ("Evacuating", maintenance()),
                    MemberState::Restoring => ("Restoring", maintenance()),
                },
                Some(age) => {
                    let since = now - chrono::Duration::from_std(age).unwrap_or_default();
                    (
                        "Offline",
                        format!("No heartbeat for {} ({})", go_duration(age), go_time(since)),
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
                config: rec.config,
                groups: groups.get(&rec.id).cloned().unwrap_or_default(),
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
        .collect()
}

/// `d` the way Go prints a `time.Duration` (LXD's offline message): `34.177179212s`,
/// `5m0.085158921s`, `1h0m0s`; under a second in `ms`, `µs` or `ns`.
fn go_duration(d: Duration) -> String {
    /// `n` units of which `per` make one, with the fraction's trailing zeros dropped.
    fn decimal(n: u128, per: u128, unit: &str) -> String {
        let (whole, frac) = (n / per, n % per);
        if frac == 0 {
            return format!("{whole}{unit}");
        }
        let width = per.ilog10() as usize;
        let digits = format!("{frac:0width$}");
        format!("{whole}.{}{unit}", digits.trim_end_matches('0'))
    }
    let ns = d.as_nanos();
    match ns {
        0 => "0s".to_string(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => decimal(n, 1_000, "µs"),
        n if n < 1_000_000_000 => decimal(n, 1_000_000, "ms"),
        n => {
            let secs = decimal(n % 60_000_000_000, 1_000_000_000, "s");
            let minutes = n / 60_000_000_000;
            match (minutes / 60, minutes % 60) {
                (0, 0) => secs,
                (0, m) => format!("{m}m{secs}"),
                (h, m) => format!("{h}h{m}m{secs}"),
            }
        }
    }
}

/// `t` the way Go prints a `time.Time` in UTC: `2026-11-30 13:14:25.238705102 +0000 UTC`
/// (the fraction's trailing zeros dropped, none when whole).
fn go_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let frac = if nanos == 0 {
        String::new()
    } else {
        format!(".{nanos:09}").trim_end_matches('0').to_string()
    };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn record(id: i64, name: &str) -> db::members::MemberRecord {
        db::members::MemberRecord {
            id,
            name: name.into(),
            address: format!("127.0.0.1{id}:8443"),
            state: MemberState::Created,
            architecture: "x86_64".into(),
            description: String::new(),
            failure_domain: "default".into(),
            fingerprint: format!("fp{id}"),
            config: Default::default(),
            schema: db::SCHEMA_VERSION,
            api_extensions: 0,
            memory: 0,
            cpus: 0,
        }
    }

    fn status(voter: bool, last_contact: Option<Duration>) -> raft::MemberStatus {
        raft::MemberStatus {
            address: String::new(),
            voter,
            matched_index: None,
            last_contact,
        }
    }

    #[test]
    fn durations_and_times_print_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(999), "999ns"),
            (Duration::from_micros(1_500), "1.5ms"),
            (Duration::from_nanos(34_177_179_212), "34.177179212s"),
            (Duration::from_nanos(300_085_158_921), "5m0.085158921s"),
            (Duration::from_secs(3_600), "1h0m0s"),
            (Duration::from_millis(25_100), "25.1s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-30T13:14:25.238705102Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(go_time(t), "2026-11-30 13:14:25.238705102 +0000 UTC");
        let whole = chrono::DateTime::parse_from_rfc3339("2026-11-30T13:14:25Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(go_time(whole), "2026-11-30 13:14:25 +0000 UTC");
    }

    #[test]
    fn roles_and_status_follow_the_raft_view() {
        let metrics = raft::ClusterMetrics {
            id: 1,
            role: raft::Role::Leader,
            term: 3,
            leader: Some(1),
            members: BTreeMap::from([
                (1, status(true, Some(Duration::ZERO))),
                (2, status(true, Some(Duration::from_millis(300)))),
                (3, status(true, Some(Duration::from_millis(25_100)))),
                (4, status(false, None)),
            ]),
            last_log_index: Some(9),
            last_applied_index: Some(9),
            snapshot_index: None,
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T03:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let mut evacuated = record(5, "m5");
        evacuated.state = MemberState::Evacuated;
        let got = view(
            vec![
                record(1, "m1"),
                record(2, "m2"),
                record(3, "m3"),
                record(4, "m4"),
                evacuated,
            ],
            &(1..=5)
                .map(|id| (id, vec!["default".to_string()]))
                .collect(),
            &metrics,
            Duration::from_secs(20),
            now,
        );
        let summary: Vec<(String, Vec<String>, bool, String, String)> = got
            .iter()
            .map(|m| {
                (
                    m.server_name.clone(),
                    m.roles.clone(),
                    m.database,
                    m.status.clone(),
                    m.message.clone(),
                )
            })
            .collect();
        let s = |v: &str| v.to_string();
        assert_eq!(
            summary,
            vec![
                (
                    s("m1"),
                    vec![s("database-leader"), s("database")],
                    true,
                    s("Online"),
                    s("Fully operational")
                ),
                (
                    s("m2"),
                    vec![s("database")],
                    true,
                    s("Online"),
                    s("Fully operational")
                ),
                (
                    s("m3"),
                    vec![s("database")],
                    true,
                    s("Offline"),
                    s("No heartbeat for 25.1s (2026-11-30 02:59:34.9 +0000 UTC)")
                ),
                (
                    s("m4"),
                    vec![s("database-standby")],
                    false,
                    s("Offline"),
                    s("No heartbeat since this member started")
                ),
                // Evacuated says so even when also offline (EVACUATION.md).
                (
                    s("m5"),
                    vec![],
                    false,
                    s("Evacuated"),
                    s("Unavailable due to maintenance")
                ),
            ]
        );
        assert_eq!(got[0].url, "https://127.0.0.11:8443");
        assert_eq!(got[0].groups, vec!["default"]);
    }
}

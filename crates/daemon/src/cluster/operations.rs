//! Operations across members: every member's operations in one list, and the member that
//! runs a given operation.
//!
//! An operation lives in the registry of the member that runs it (its `location`). A
//! client may ask any member about it: [`locate`] finds the member, which the forwarding
//! layer ([`super::forward`]) then hands the request to.

use std::collections::BTreeMap;
use std::time::Duration;

use super::peer::Peer;
use crate::error::ApiResult;
use crate::state::Daemon;

/// How long a member may take to say whether it has an operation, or to list its own.
const ASK_DEADLINE: Duration = Duration::from_secs(5);

/// The other members of the cluster that have an address, as peers.
///
/// # Errors
///
/// On a DB or TLS failure.
pub async fn other_members(d: &Daemon) -> ApiResult<Vec<Peer>> {
    let me = d.member();
    let members = d.read(db::members::list).await?;
    let client = d.cluster.peers.get(d)?;
    Ok(members
        .into_iter()
        .filter(|m| m.name != me && !m.address.is_empty())
        .map(|m| Peer::new(&m.name, &m.address, client.clone()))
        .collect())
}

/// The member that runs operation `id`, which this member does not have: the member a
/// request forwarded from here created it on, the `target` the client named (lxc 5.0.2
/// sends the operation's `location` as `?target=`, or for a move its destination), or
/// whichever other member has it. `None` when no member has it.
///
/// # Errors
///
/// 404 when `target` names no member; on a DB or TLS failure.
pub async fn locate(d: &Daemon, id: &str, target: Option<&str>) -> ApiResult<Option<Peer>> {
    // A member this one forwarded the creating request to knows best: `lxc move --target`
    // polls with the move's destination as `?target=`, not the member running the move.
    if let Some(member) = d.cluster.remote_ops.member_of(id) {
        return Peer::connect(d, &member).await.map(Some);
    }
    if let Some(target) = target.filter(|t| !t.is_empty() && *t != d.member()) {
        return Peer::connect(d, target).await.map(Some);
    }
    let path = format!("/1.0/operations/{id}");
    let asks = other_members(d).await?.into_iter().map(|peer| {
        let path = path.clone();
        Box::pin(async move {
            peer.request_within(reqwest::Method::GET, &path, None, ASK_DEADLINE)
                .await
                .map(|_| peer)
        })
    });
    let asks: Vec<_> = asks.collect();
    if asks.is_empty() {
        return Ok(None);
    }
    // The first member that has it; the others' answers are not needed.
    match futures::future::select_ok(asks).await {
        Ok((peer, _)) => {
            d.cluster.remote_ops.insert(id, peer.name());
            Ok(Some(peer))
        }
        Err(_) => Ok(None),
    }
}

/// Every other member's operations, grouped by status as LXD lists them (`running`,
/// `success`, ...), records with `recursion` ≥ 1, URLs otherwise. A member that does not
/// answer within the deadline is left out (and logged) rather than failing the list.
///
/// # Errors
///
/// On a DB or TLS failure of this member.
pub async fn others(
    d: &Daemon,
    recursion: u8,
) -> ApiResult<BTreeMap<String, Vec<serde_json::Value>>> {
    let path = format!("/1.0/operations?recursion={recursion}");
    let calls = other_members(d).await?.into_iter().map(|peer| {
        let path = path.clone();
        async move {
            let answer = peer
                .request_within(reqwest::Method::GET, &path, None, ASK_DEADLINE)
                .await
                .and_then(|r| r.into_sync::<BTreeMap<String, Vec<serde_json::Value>>>());
            if let Err(e) = &answer {
                tracing::warn!(member = %peer.name(), error = %e, "member's operations unavailable");
            }
            answer
        }
    });
    let mut merged: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for groups in futures::future::join_all(calls).await.into_iter().flatten() {
        for (status, items) in groups {
            merged.entry(status).or_default().extend(items);
        }
    }
    Ok(merged)
}

//! A member removed from the cluster goes back to being a standalone server, as in LXD:
//! it drops its cluster state (DB, Raft log, snapshots, cluster certificate) and restarts
//! its daemon, which then starts fresh and unclustered, ready to join again with a new
//! token. Its own certificate, images and the directories of its pools stay.
//!
//! It learns it was removed in one of two ways:
//! - the member that removed it tells it ([`REMOVED_PATH`], member channel, the caller's
//!   certificate must be a member's by the removed member's own DB);
//! - when it was unreachable then (`--force`), it finds, once back, that it has no
//!   leader, asks the other members whether its certificate is still a member's
//!   ([`MEMBERSHIP_PATH`], answered after a linearizable read), and resets on a "no".

use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// `POST` (member → removed member): "you were removed".
pub const REMOVED_PATH: &str = "/internal/cluster/removed";
/// `GET` (any certificate): whether the caller's certificate is a member's.
pub const MEMBERSHIP_PATH: &str = "/internal/cluster/membership";

/// How often a member without a leader checks it is still a member.
const WATCH_EVERY: Duration = Duration::from_secs(5);
/// Deadline of one call to a member.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The body of [`REMOVED_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    /// The removed member's name.
    pub name: String,
}

/// The answer of [`MEMBERSHIP_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    /// Whether the caller's certificate is a member's.
    pub member: bool,
}

/// The routes of this module, outside the member guard (each checks its caller).
pub fn routes(d: Daemon) -> Router {
    Router::new()
        .route(REMOVED_PATH, post(removed_route))
        .route(MEMBERSHIP_PATH, get(membership_route))
        .with_state(d)
}

fn caller(peer: Option<Extension<tls::Peer>>) -> ApiResult<String> {
    peer.and_then(|Extension(p)| p.fingerprint)
        .ok_or_else(|| ApiError::forbidden("A client certificate is required"))
}

async fn removed_route(
    State(d): State<Daemon>,
    peer: Option<Extension<tls::Peer>>,
    Json(req): Json<Removed>,
) -> ApiResult<Json<serde_json::Value>> {
    let fingerprint = caller(peer)?;
    let store = d.store.clone();
    if !tokio::task::spawn_blocking(move || super::is_member_fingerprint(&store, &fingerprint))
        .await?
    {
        return Err(ApiError::forbidden("Only a cluster member may say so"));
    }
    if !d.cluster.is_clustered() || req.name != d.member() {
        return Err(ApiError::bad_request(format!(
            "This server is not cluster member {:?}",
            req.name
        )));
    }
    tracing::warn!(member = %req.name, "removed from the cluster by a member");
    let d2 = d.clone();
    tokio::spawn(async move { reset(&d2).await });
    Ok(Json(serde_json::json!({})))
}

async fn membership_route(
    State(d): State<Daemon>,
    peer: Option<Extension<tls::Peer>>,
) -> ApiResult<Json<Membership>> {
    let fingerprint = caller(peer)?;
    d.replicator().ensure_linearizable().await?;
    let store = d.store.clone();
    let member =
        tokio::task::spawn_blocking(move || super::is_member_fingerprint(&store, &fingerprint))
            .await?;
    Ok(Json(Membership { member }))
}

/// Tells member `name` at `address` that it was removed. Best effort: an unreachable
/// member finds out by itself when it is back ([`spawn_watch`]).
pub async fn tell_removed(d: &Daemon, name: &str, address: &str) {
    let Some(cluster) = d.cluster.identity() else {
        return;
    };
    let client = match super::member_client(d.https.identity(), cluster.fingerprint()) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(member = %name, error = %e.message, "cannot tell the removed member");
            return;
        }
    };
    let sent = client
        .post(format!("https://{address}{REMOVED_PATH}"))
        .timeout(CALL_TIMEOUT)
        .json(&Removed { name: name.into() })
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {
            tracing::info!(member = %name, "the removed member resets itself");
        }
        Ok(r) => {
            tracing::warn!(member = %name, status = %r.status(), "the removed member refused the news")
        }
        Err(e) => {
            tracing::warn!(member = %name, error = %e, "removed member unreachable; it resets when it is back")
        }
    }
}

/// On a clustered member: every [`WATCH_EVERY`] without a leader, asks the other members
/// whether this one is still a member, and resets on a definite "no".
pub fn spawn_watch(d: &Daemon) {
    let d = d.clone();
    tokio::spawn(async move {
        let mut leaderless = 0u32;
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            if !d.cluster.is_clustered() {
                continue;
            }
            if d.replicator().metrics().leader.is_some() {
                leaderless = 0;
                continue;
            }
            leaderless += 1;
            if leaderless >= 2 && still_member(&d).await == Some(false) {
                tracing::warn!("the cluster says this member was removed");
                reset(&d).await;
                return;
            }
        }
    });
}

/// What the other members say: `Some(false)` when one of them says this member's
/// certificate is no member's, `Some(true)` when one says it is, `None` when none answers.
async fn still_member(d: &Daemon) -> Option<bool> {
    let cluster = d.cluster.identity()?;
    let client = super::member_client(d.https.identity(), cluster.fingerprint()).ok()?;
    let me = d.member();
    let others: Vec<String> = d
        .read(db::members::list)
        .await
        .ok()?
        .into_iter()
        .filter(|m| m.name != me && !m.address.is_empty())
        .map(|m| m.address)
        .collect();
    for address in others {
        let answer = client
            .get(format!("https://{address}{MEMBERSHIP_PATH}"))
            .timeout(CALL_TIMEOUT)
            .send()
            .await;
        let Ok(answer) = answer else { continue };
        if !answer.status().is_success() {
            continue;
        }
        if let Ok(m) = answer.json::<Membership>().await {
            return Some(m.member);
        }
    }
    None
}

/// Drops this member's cluster state and restarts the daemon (same binary, arguments and
/// environment, same process id), which comes back standalone. Does not return unless the
/// restart fails, in which case the process exits.
pub async fn reset(d: &Daemon) {
    // Let the answer to the member that told us go out first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.replicator().shutdown().await;
    let dir = d.paths.state_dir.clone();
    let wiped = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let db = dir.join("database");
        if db.exists() {
            std::fs::remove_dir_all(&db)?;
        }
        for ext in ["crt", "key"] {
            let f = dir.join(format!("{}.{ext}", super::CLUSTER_CERT));
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await;
    match wiped {
        Ok(Ok(())) => tracing::warn!("cluster state wiped; restarting as a standalone server"),
        Ok(Err(e)) => tracing::error!(error = %e, "could not wipe all the cluster state"),
        Err(e) => tracing::error!(error = %e, "could not wipe all the cluster state"),
    }
    let e = std::os::unix::process::CommandExt::exec(
        std::process::Command::new("/proc/self/exe").args(std::env::args_os().skip(1)),
    );
    tracing::error!(error = %e, "could not restart the daemon; exiting");
    std::process::exit(1);
}

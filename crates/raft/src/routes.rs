//! The server half of member-to-member Raft traffic: the `/internal/raft/*` routes.
//!
//! Each route takes a JSON body, hands it to this member's Raft node and answers `200` with
//! the JSON of the node's `Result` (a Raft-level refusal is a normal answer). A body this
//! binary cannot decode (for instance an entry carrying a command added by a newer drover)
//! is refused with `422` before anything is stored: the sender backs off and retries, and
//! this member never applies what it cannot read.

use std::fmt::Debug;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use openraft::Vote;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::network::{
    APPEND_PATH, CAMPAIGN_PATH, PROPOSE_PATH, READ_INDEX_PATH, SNAPSHOT_PATH, VOTE_PATH,
};
use crate::replicator::CampaignRequest;
use crate::{Replicator, TypeConfig};

/// Decides whether a request on the `/internal/raft/*` routes comes from a cluster member.
///
/// # Correctness
///
/// These routes change the replicated DB and the Raft group: anyone who reaches them can
/// vote, append entries or replace the whole DB with a snapshot. The daemon serves them
/// only on its HTTPS listener, whose accept loop attaches the verified peer certificate to
/// each request; its guard admits a request only if that certificate's fingerprint is one
/// of the cluster members'. They must never be served on the unix socket.
pub trait PeerGuard: Send + Sync + Debug + 'static {
    /// Whether `request` comes from a cluster member.
    fn admit(&self, request: &Request) -> bool;

    /// The Raft node id of the member `request` comes from, when the guard knows it. An
    /// admitted append-entries, vote or install-snapshot RPC whose vote names another
    /// sender is then refused (`403`): a member cannot speak for another.
    fn member_id(&self, _request: &Request) -> Option<u64> {
        None
    }
}

/// The member id the guard found for a request (see [`PeerGuard::member_id`]).
#[derive(Debug, Clone, Copy)]
struct Sender(Option<u64>);

/// A guard that admits everyone: for tests on loopback only, never in the daemon.
#[derive(Debug, Clone, Copy)]
pub struct AdmitAll;

impl PeerGuard for AdmitAll {
    fn admit(&self, _request: &Request) -> bool {
        true
    }
}

/// The largest request body accepted: a batch of entries or one snapshot chunk as JSON
/// (a chunk is at most [`crate::Settings`]' 1 MiB of DB bytes, a few times that as JSON).
const MAX_BODY: usize = 64 << 20;

/// The `/internal/raft/*` routes of this member, every request checked by `guard` first
/// (`403` when it refuses).
pub fn router(replicator: Replicator, guard: Arc<dyn PeerGuard>) -> Router {
    Router::new()
        .route(APPEND_PATH, post(append))
        .route(VOTE_PATH, post(vote))
        .route(SNAPSHOT_PATH, post(snapshot))
        .route(PROPOSE_PATH, post(propose))
        .route(READ_INDEX_PATH, post(read_index))
        .route(CAMPAIGN_PATH, post(campaign))
        .with_state(replicator)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(guard, check_peer))
}

async fn check_peer(
    State(guard): State<Arc<dyn PeerGuard>>,
    mut request: Request,
    next: Next,
) -> Response {
    if guard.admit(&request) {
        let sender = Sender(guard.member_id(&request));
        request.extensions_mut().insert(sender);
        next.run(request).await
    } else {
        tracing::warn!(path = %request.uri().path(), "refused a raft request from a non-member");
        (StatusCode::FORBIDDEN, "not a cluster member").into_response()
    }
}

/// A request refused after the guard: a body this member cannot decode (`422`), or a
/// sender that is not who it claims (`403`).
#[derive(Debug)]
struct Undecodable(StatusCode, String);

impl IntoResponse for Undecodable {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// Decodes a request body, or refuses it.
fn decode<T: DeserializeOwned>(what: &str, body: &Bytes) -> Result<T, Undecodable> {
    serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(
            request = what,
            error = %e,
            "refusing a raft request this member cannot decode (sent by a newer drover?)"
        );
        Undecodable(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot decode {what}: {e}"),
        )
    })
}

/// Checks that `vote`'s sender (the leader or a candidate) is the member whose certificate
/// the request came with, when the guard knows it, and records that it was heard from.
fn check_sender(
    r: &Replicator,
    vote: &Vote<u64>,
    known: Option<Sender>,
) -> Result<(), Undecodable> {
    let claimed = vote.leader_id().voted_for();
    if let (Some(Sender(Some(actual))), Some(claimed)) = (known, claimed)
        && actual != claimed
    {
        tracing::warn!(
            actual,
            claimed,
            "refused a raft request sent on behalf of another member"
        );
        return Err(Undecodable(
            StatusCode::FORBIDDEN,
            format!("member {actual} may not speak for member {claimed}"),
        ));
    }
    if let Some(sender) = claimed {
        r.contacts().saw(sender);
    }
    Ok(())
}

fn answer<T: Serialize>(value: &T) -> Response {
    axum::Json(value).into_response()
}

async fn append(
    State(r): State<Replicator>,
    sender: Option<Extension<Sender>>,
    body: Bytes,
) -> Result<Response, Undecodable> {
    let rpc: AppendEntriesRequest<TypeConfig> = decode("append-entries", &body)?;
    check_sender(&r, &rpc.vote, sender.map(|e| e.0))?;
    Ok(answer(&r.raft().append_entries(rpc).await))
}

async fn vote(
    State(r): State<Replicator>,
    sender: Option<Extension<Sender>>,
    body: Bytes,
) -> Result<Response, Undecodable> {
    let rpc: VoteRequest<u64> = decode("vote", &body)?;
    check_sender(&r, &rpc.vote, sender.map(|e| e.0))?;
    Ok(answer(&r.raft().vote(rpc).await))
}

async fn snapshot(
    State(r): State<Replicator>,
    sender: Option<Extension<Sender>>,
    body: Bytes,
) -> Result<Response, Undecodable> {
    let rpc: InstallSnapshotRequest<TypeConfig> = decode("install-snapshot", &body)?;
    check_sender(&r, &rpc.vote, sender.map(|e| e.0))?;
    Ok(answer(&r.raft().install_snapshot(rpc).await))
}

async fn propose(State(r): State<Replicator>, body: Bytes) -> Result<Response, Undecodable> {
    let cmd: db::Command = decode("command", &body)?;
    Ok(answer(&r.propose_forwarded(cmd).await))
}

async fn read_index(State(r): State<Replicator>) -> Response {
    answer(&r.read_index_here().await)
}

/// A leader handing over asks this member to stand for election; only that leader may.
async fn campaign(
    State(r): State<Replicator>,
    sender: Option<Extension<Sender>>,
    body: Bytes,
) -> Result<Response, Undecodable> {
    let rpc: CampaignRequest = decode("campaign", &body)?;
    if let Some(Extension(Sender(Some(actual)))) = sender
        && actual != rpc.leader
    {
        return Err(Undecodable(
            StatusCode::FORBIDDEN,
            format!("member {actual} may not speak for member {}", rpc.leader),
        ));
    }
    Ok(answer(&r.campaign_here(rpc.leader).await))
}

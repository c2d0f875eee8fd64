//! What does this test do?
//! - serves a member's Raft routes behind a guard that knows which member each request's
//!   certificate belongs to (here: always member 7)
//! - a vote request claiming to come from member 1 is refused with 403: a member cannot
//!   speak for another
//! - the same request from member 7 is answered
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::extract::Request;
use openraft::Vote;
use openraft::raft::VoteRequest;
use raft::{PeerGuard, RaftNode, Scheme, Transport};

/// Admits everyone, as member 7.
#[derive(Debug)]
struct AlwaysSeven;

impl PeerGuard for AlwaysSeven {
    fn admit(&self, _request: &Request) -> bool {
        true
    }

    fn member_id(&self, _request: &Request) -> Option<u64> {
        Some(7)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_speak_for_another() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let store = Arc::new(db::Store::open(&tmp.path().join("cluster.db"))?);
    let transport = Transport::new(reqwest::Client::new(), Scheme::Http);
    let (_raft, replicator) = RaftNode::open(tmp.path(), store, 1, "", transport).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = raft::router(replicator.clone(), Arc::new(AlwaysSeven));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let http = reqwest::Client::new();
    let url = format!("http://{addr}{}", raft::VOTE_PATH);
    let vote_from = |id: u64| VoteRequest::<u64>::new(Vote::new(5, id), None);

    let refused = http.post(&url).json(&vote_from(1)).send().await?;
    assert_eq!(refused.status(), 403, "{:?}", refused.text().await);

    let answered = http.post(&url).json(&vote_from(7)).send().await?;
    assert_eq!(answered.status(), 200, "{:?}", answered.text().await);

    server.abort();
    replicator.shutdown().await;
    Ok(())
}

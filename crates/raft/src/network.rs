//! Raft RPC between members over HTTP(S): the client half (openraft's `RaftNetwork`).
//!
//! Every call is one `POST {scheme}://{member address}/internal/raft/...` with a JSON body;
//! the answer is the JSON of the remote `Result` (see [`crate::routes`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use openraft::BasicNode;
use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::TypeConfig;

/// `POST`: openraft's append-entries (and heartbeat) RPC.
pub const APPEND_PATH: &str = "/internal/raft/append";
/// `POST`: openraft's vote RPC.
pub const VOTE_PATH: &str = "/internal/raft/vote";
/// `POST`: one chunk of openraft's install-snapshot RPC.
pub const SNAPSHOT_PATH: &str = "/internal/raft/snapshot";
/// `POST`: a [`db::Command`] forwarded by a follower to the leader.
pub const PROPOSE_PATH: &str = "/internal/raft/propose";
/// `POST`: a follower asks the leader for a linearizable read index.
pub const READ_INDEX_PATH: &str = "/internal/raft/read-index";
/// `POST`: the leader handing its leadership over asks a voter to stand for election now.
pub const CAMPAIGN_PATH: &str = "/internal/raft/campaign";

/// The URL scheme members speak to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP: tests on loopback only.
    Http,
    /// HTTPS; the client decides whom it trusts (members pin each other's certificate).
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// How this member reaches the others: an HTTP client and the scheme to use with it.
///
/// The client is the caller's: the daemon passes one that presents this member's
/// certificate and accepts only the cluster's pinned ones. Cheap to clone; clones share
/// the client, so [`Transport::replace_client`] takes effect for every one of them (a
/// member that becomes clustered gets its pinned client without restarting its node).
#[derive(Debug, Clone)]
pub struct Transport {
    client: Arc<RwLock<reqwest::Client>>,
    scheme: Scheme,
}

/// Why one call to another member failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection could not be made: the request surely was not processed.
    #[error("{url}: cannot connect")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// No complete answer came within the deadline; the request may have been processed.
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    /// The exchange broke after the request may have been sent.
    #[error("{url}: request failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The member answered with an error status (refused, or could not decode the body).
    #[error("{url}: answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The answer is not what this binary expects.
    #[error("{url}: undecodable answer")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    /// The request body could not be encoded.
    #[error("encoding a request")]
    Encode(#[source] serde_json::Error),
}

impl Transport {
    /// Speaks `scheme` through `client`.
    pub fn new(client: reqwest::Client, scheme: Scheme) -> Self {
        Self {
            client: Arc::new(RwLock::new(client)),
            scheme,
        }
    }

    /// Makes every later call (of this transport and its clones) use `client`.
    pub fn replace_client(&self, client: reqwest::Client) {
        *self.client.write().unwrap_or_else(PoisonError::into_inner) = client;
    }

    fn client(&self) -> reqwest::Client {
        self.client
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `POST`s `body` as JSON to `path` on the member at `addr` (`host:port`) and decodes
    /// the JSON answer, all within `timeout`.
    pub(crate) async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let url = format!("{}://{addr}{path}", self.scheme.as_str());
        let body = serde_json::to_vec(body).map_err(CallError::Encode)?;
        let classify = |source: reqwest::Error, url: &str| {
            let url = url.to_string();
            if source.is_timeout() {
                CallError::Timeout { url, timeout }
            } else if source.is_connect() {
                CallError::Connect { url, source }
            } else {
                CallError::Transport { url, source }
            }
        };
        let response = self
            .client()
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| classify(e, &url))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| classify(e, &url))?;
        if !status.is_success() {
            return Err(CallError::Status {
                url,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| CallError::Decode { url, source })
    }
}

/// When each member was last heard from: an answer to one of our RPCs, or an RPC it sent
/// us. Shared by the network, the RPC routes and the metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct Contacts {
    seen: Arc<Mutex<HashMap<u64, Instant>>>,
}

impl Contacts {
    pub(crate) fn saw(&self, member: u64) {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(member, Instant::now());
    }

    pub(crate) fn last_seen(&self, member: u64) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&member)
            .copied()
    }
}

/// openraft's network factory: one [`Peer`] per target member.
#[derive(Debug, Clone)]
pub struct Network {
    id: u64,
    transport: Transport,
    contacts: Contacts,
}

impl Network {
    pub(crate) fn new(id: u64, transport: Transport, contacts: Contacts) -> Self {
        Self {
            id,
            transport,
            contacts,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            id: self.id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

/// The RPC client to one member.
///
/// # Correctness
///
/// - Every call has a deadline: openraft's `RPCOption::hard_ttl`.
/// - A remote `RaftError` is returned as `RemoteError`; a call that timed out as `Timeout`;
///   every other failure (connection, refused or undecodable request, undecodable answer)
///   as `Unreachable`, so openraft backs off before retrying instead of spinning, e.g. on a
///   member whose binary cannot decode our entries.
#[derive(Debug)]
pub struct Peer {
    id: u64,
    target: u64,
    node: BasicNode,
    transport: Transport,
    contacts: Contacts,
}

type RpcResult<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        rpc: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        E: std::error::Error,
        Result<Resp, RaftError<u64, E>>: DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let answer: Result<Resp, RaftError<u64, E>> = match self
            .transport
            .post(&self.node.addr, path, rpc, timeout)
            .await
        {
            Ok(answer) => answer,
            Err(CallError::Timeout { .. }) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }));
            }
            Err(e @ CallError::Encode(_)) => return Err(RPCError::Network(NetworkError::new(&e))),
            Err(e) => {
                tracing::debug!(target_member = self.target, error = %e, "raft rpc failed");
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        self.contacts.saw(self.target);
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, Infallible> {
        self.call(APPEND_PATH, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(SNAPSHOT_PATH, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, Infallible> {
        self.call(VOTE_PATH, RPCTypes::Vote, &rpc, &option).await
    }
}

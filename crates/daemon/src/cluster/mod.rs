//! Clustering, LXD-style: enable ([`enable`]), join tokens ([`tokens`]), joining
//! ([`join`]) and the members' status ([`members`]).
//!
//! Identities: every member keeps its own certificate (`server.crt`), which it presents as
//! a *client* to the other members; they admit its Raft and member-to-member requests by
//! that certificate's fingerprint, recorded in its `members` row. The cluster certificate
//! (`cluster.crt`/`cluster.key`, made by the first member, handed to each joiner by the
//! leader over the pinned link) is what every member's HTTPS listener *serves* once
//! clustered: clients, `lxd init` and the other members pin its fingerprint, the one the
//! join token carries.

pub mod edit;
pub mod enable;
pub mod evacuate;
pub mod events;
pub mod forward;
pub mod groups;
pub mod join;
pub mod listing;
pub mod members;
pub mod operations;
pub mod peer;
pub mod placement;
pub mod remove;
pub mod reset;
pub mod tokens;
pub mod version;
pub mod websocket;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context;
use axum::extract::Request;

use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, Paths};

/// Server config key: seconds without a heartbeat before a member shows `Offline`.
pub const OFFLINE_THRESHOLD: &str = "cluster.offline_threshold";
/// Server config key: how many members vote in the Raft group.
pub const MAX_VOTERS: &str = "cluster.max_voters";
/// Server config key: how long join tokens live.
pub const JOIN_TOKEN_EXPIRY: &str = "cluster.join_token_expiry";

/// The config key LXD shows a member's cluster address under (per member).
pub const CLUSTER_HTTPS_ADDRESS: &str = "cluster.https_address";

/// LXD's default offline threshold, in seconds.
const DEFAULT_OFFLINE_THRESHOLD: u64 = 20;
/// LXD's default number of voters.
const DEFAULT_MAX_VOTERS: usize = 3;
/// LXD's default join token life.
const DEFAULT_JOIN_TOKEN_EXPIRY: &str = "3H";

/// File stem of the cluster certificate in `$DROVER_DIR`.
const CLUSTER_CERT: &str = "cluster";

/// What this member knows of its cluster beyond the DB.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// The cluster certificate, once clustered.
    identity: RwLock<Option<Arc<tls::Identity>>>,
    /// Members (certificate fingerprint → member id) admitted before this member's own
    /// DB lists them: a joiner waiting for the leader's first snapshot admits the members
    /// the leader named.
    admitted: Arc<RwLock<HashMap<String, u64>>>,
    /// Serializes enabling and joining.
    change: tokio::sync::Mutex<()>,
    /// Serializes Raft membership changes made on the leader for joiners.
    membership: tokio::sync::Mutex<()>,
    /// The member-to-member client ([`peer::Peer`]), built once.
    pub peers: peer::ClientCache,
    /// Operations that requests forwarded from this member created on other members.
    pub remote_ops: forward::RemoteOps,
}

impl ClusterState {
    /// Loads the cluster certificate when this member is clustered (the file exists).
    ///
    /// # Errors
    ///
    /// When the files exist but cannot be read or do not match.
    pub fn load(paths: &Paths) -> anyhow::Result<Self> {
        let crt = paths.state_dir.join(format!("{CLUSTER_CERT}.crt"));
        let state = Self::default();
        if crt.exists() {
            let id = tls::Identity::load_or_create(&paths.state_dir, CLUSTER_CERT, "", &[])
                .context("load the cluster certificate")?;
            state.set_identity(Arc::new(id));
        }
        Ok(state)
    }

    /// The cluster certificate, once clustered.
    pub fn identity(&self) -> Option<Arc<tls::Identity>> {
        self.identity
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether this member is part of a cluster.
    pub fn is_clustered(&self) -> bool {
        self.identity().is_some()
    }

    fn set_identity(&self, id: Arc<tls::Identity>) {
        *self
            .identity
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(id);
    }

    fn admit(&self, fingerprints: impl IntoIterator<Item = (String, u64)>) {
        self.admitted
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(fingerprints);
    }
}

/// The HTTP client members call each other with: presents `member`'s certificate and
/// accepts only a server showing the certificate with fingerprint `cluster_fingerprint`.
///
/// # Errors
///
/// 500 when rustls or reqwest refuse the configuration.
pub fn member_client(
    member: &tls::Identity,
    cluster_fingerprint: &str,
) -> ApiResult<reqwest::Client> {
    let config = tls::client_config(Some(member), Some(cluster_fingerprint.to_string()))
        .map_err(|e| ApiError::internal(format!("member tls client: {e}")))?;
    reqwest::Client::builder()
        .use_preconfigured_tls((*config).clone())
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| ApiError::internal(format!("member http client: {e}")))
}

/// Admits a request on the `/internal/*` routes only when its TLS client certificate is a
/// cluster member's (recorded in the DB, or named by the leader while joining), and tells
/// the Raft routes which member that is, so that no member speaks for another.
#[derive(Debug)]
struct MemberGuard {
    store: Arc<db::Store>,
    admitted: Arc<RwLock<HashMap<String, u64>>>,
}

impl MemberGuard {
    fn member_of(&self, request: &Request) -> Option<u64> {
        let fp = request
            .extensions()
            .get::<tls::Peer>()
            .and_then(|p| p.fingerprint.clone())?;
        if let Some(id) = self
            .admitted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fp)
        {
            return Some(*id);
        }
        // A short read of the local DB; members are few.
        member_with_fingerprint(&self.store, &fp)
    }
}

impl raft::PeerGuard for MemberGuard {
    fn admit(&self, request: &Request) -> bool {
        self.member_of(request).is_some()
    }

    fn member_id(&self, request: &Request) -> Option<u64> {
        self.member_of(request)
    }
}

/// The id of the member whose certificate has `fingerprint`, by this member's DB.
fn member_with_fingerprint(store: &db::Store, fingerprint: &str) -> Option<u64> {
    if fingerprint.is_empty() {
        return None;
    }
    store
        .read(db::members::list)
        .ok()?
        .into_iter()
        .find(|m| m.fingerprint == fingerprint)
        .and_then(|m| u64::try_from(m.id).ok())
}

/// Whether `fingerprint` is a member's certificate, by this member's DB.
pub fn is_member_fingerprint(store: &db::Store, fingerprint: &str) -> bool {
    member_with_fingerprint(store, fingerprint).is_some()
}

/// The member-to-member routes served on the HTTPS listener once clustered, outside the
/// client authentication: the Raft RPCs (members only) and the join endpoint (which a
/// joiner, not a member yet, reaches with a token secret).
pub fn internal_router(d: &Daemon) -> axum::Router {
    let guard = Arc::new(MemberGuard {
        store: d.store.clone(),
        admitted: d.cluster.admitted.clone(),
    });
    raft::router(d.replicator(), guard)
        .merge(join::routes(d.clone()))
        .merge(crate::image_share::routes(d.clone()))
        .merge(crate::certificates::internal_routes(d.clone()))
        .merge(crate::instances::migrate::internal::routes(d.clone()))
        .merge(crate::instances::profile_apply::routes(d.clone()))
        .merge(reset::routes(d.clone()))
}

/// A server config value as a number, or its default.
async fn config_number(d: &Daemon, key: &str, default: u64) -> ApiResult<u64> {
    let config = d.read(db::config::all).await?;
    Ok(config
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default))
}

/// This member's cluster address, from its member row (`""` when not clustered).
pub async fn own_address(d: &Daemon) -> ApiResult<String> {
    let name = d.member();
    Ok(d.read(move |c| db::members::get(c, &name))
        .await?
        .map(|m| m.address)
        .unwrap_or_default())
}

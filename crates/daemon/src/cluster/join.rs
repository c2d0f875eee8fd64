//! Joining a cluster: `PUT /1.0/cluster` with a token on the joiner ([`join`]), and the
//! member-to-member join endpoint the leader answers ([`accept`]).
//!
//! The joiner checks that the cluster certificate it was given matches the token's
//! fingerprint (fail closed), then asks a member, presenting its own certificate and the
//! token's secret, to admit it. The leader checks the token (secret, name, expiry) and
//! that the joiner's schema version and API extension count are its own, records
//! the member under a new id (one command), hands back the cluster certificate and the
//! members' fingerprints, and in the background adds it as a learner, then promotes it
//! while there are fewer voters than `cluster.max_voters`. The joiner drops its standalone
//! DB and Raft log, opens a node under its new id, serves the cluster certificate and the
//! member routes, and waits until the leader's log (or snapshot) has reached it.

use std::sync::Arc;
use std::time::Duration;

use api::cluster::{ClusterJoinToken, ClusterPut};
use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// `POST`: a joiner asks to be admitted (HTTPS only, the joiner's own certificate
/// presented, the token's secret in the body).
pub const JOIN_PATH: &str = "/internal/cluster/join";

/// How long a joiner waits for the leader's data to reach it.
const CATCH_UP: Duration = Duration::from_secs(90);
/// Deadline of one call to a member.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the leader keeps trying to add a joiner to the Raft group.
const ADD_DEADLINE: Duration = Duration::from_secs(120);

/// What a joiner sends to [`JOIN_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The token's secret.
    pub secret: String,
    /// The joiner's member name (the token's).
    pub name: String,
    /// The joiner's cluster address.
    pub address: String,
    /// `"x86_64"`.
    pub architecture: String,
    /// The joiner's DB schema version ([`db::SCHEMA_VERSION`]).
    #[serde(default)]
    pub schema: i64,
    /// How many API extensions the joiner has.
    #[serde(default)]
    pub api_extensions: usize,
    /// The joiner's answers to `GET /1.0/cluster`'s `member_config`.
    #[serde(default)]
    pub member_config: Vec<api::cluster::MemberConfigKey>,
}

/// The answer of [`JOIN_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum JoinAnswer {
    /// Admitted: the joiner's Raft node id, the cluster certificate and key, and every
    /// member's certificate fingerprint and id (to admit their Raft calls before its DB
    /// lists them).
    Accepted {
        /// The joiner's member id and Raft node id.
        id: u64,
        /// Cluster certificate, PEM.
        cluster_certificate: String,
        /// Its key, PEM.
        cluster_key: String,
        /// Every member's certificate fingerprint and member id.
        members: Vec<(String, u64)>,
    },
    /// This member is not the leader: ask `leader` (an address) instead.
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
}

/// The member routes of the join endpoint.
pub fn routes(d: Daemon) -> Router {
    Router::new()
        .route(JOIN_PATH, post(accept_route))
        .with_state(d)
}

async fn accept_route(
    State(d): State<Daemon>,
    peer: Option<Extension<tls::Peer>>,
    Json(req): Json<JoinRequest>,
) -> ApiResult<Json<JoinAnswer>> {
    let fingerprint = peer
        .and_then(|Extension(p)| p.fingerprint)
        .ok_or_else(|| ApiError::forbidden("A client certificate is required to join"))?;
    Ok(Json(accept(&d, &fingerprint, req).await?))
}

/// The leader's side of a join; see the module doc.
///
/// # Errors
///
/// 403 for an unknown, used, revoked, expired or wrongly named token; 409 when the name
/// is taken. Nothing changes in these cases.
pub async fn accept(d: &Daemon, fingerprint: &str, req: JoinRequest) -> ApiResult<JoinAnswer> {
    let Some(cluster) = d.cluster.identity() else {
        return Err(ApiError::bad_request("This server is not clustered"));
    };
    let replicator = d.replicator();
    if !replicator.is_leader() {
        let metrics = replicator.metrics();
        let leader = metrics
            .leader
            .and_then(|l| metrics.members.get(&l))
            .map(|m| m.address.clone());
        return Ok(JoinAnswer::NotLeader { leader });
    }
    let api_extensions = api::extensions::API_EXTENSIONS.len();
    if req.schema != db::SCHEMA_VERSION || req.api_extensions != api_extensions {
        return Err(ApiError::bad_request(format!(
            "The joining server version doesn't match (expected schema {} with API count {api_extensions})",
            db::SCHEMA_VERSION
        )));
    }
    let pools = d.read(db::pools::list).await?;
    crate::pools::check_member_config(&pools, &req.member_config).map_err(ApiError::bad_request)?;
    let secret = req.secret.clone();
    let token = d
        .read(move |c| db::cluster_tokens::get(c, &secret))
        .await?
        .ok_or_else(|| ApiError::forbidden("No valid cluster join token found"))?;
    let now = super::tokens::rfc3339(chrono::Utc::now());
    if token.expires_at <= now {
        return Err(ApiError::forbidden("The cluster join token has expired"));
    }
    if token.name != req.name {
        return Err(ApiError::forbidden(format!(
            "The cluster join token was issued for {:?}, not {:?}",
            token.name, req.name
        )));
    }
    let result = d
        .write(db::Command::JoinMember {
            secret: req.secret.clone(),
            name: req.name.clone(),
            address: req.address.clone(),
            fingerprint: fingerprint.to_string(),
            architecture: req.architecture.clone(),
            now,
        })
        .await;
    match result {
        Ok(()) => {}
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
            return Err(ApiError::forbidden("No valid cluster join token found"));
        }
        Err(e) if e.status == axum::http::StatusCode::INTERNAL_SERVER_ERROR => {
            return Err(ApiError::forbidden(e.message));
        }
        Err(e) => return Err(e),
    }
    super::tokens::used(d, &token.operation);
    let name = req.name.clone();
    let member = d
        .read(move |c| db::members::get(c, &name))
        .await?
        .ok_or_else(|| ApiError::internal("the new member's row vanished"))?;
    let id = u64::try_from(member.id).map_err(|_| ApiError::internal("negative member id"))?;
    let members = d
        .read(db::members::list)
        .await?
        .into_iter()
        .filter(|m| !m.fingerprint.is_empty())
        .filter_map(|m| Some((m.fingerprint, u64::try_from(m.id).ok()?)))
        .collect();
    tracing::info!(member = %req.name, id, address = %req.address, "member admitted; adding it to the raft group");
    let d2 = d.clone();
    let address = req.address.clone();
    tokio::spawn(async move { add_to_group(&d2, id, &address).await });
    Ok(JoinAnswer::Accepted {
        id,
        cluster_certificate: cluster.certificate_pem().to_string(),
        cluster_key: cluster.private_key_pem().to_string(),
        members,
    })
}

/// Adds member `id` as a learner (waiting for it to catch up), then promotes it while
/// the group has fewer voters than `cluster.max_voters`. Runs on the leader.
async fn add_to_group(d: &Daemon, id: u64, address: &str) {
    let _serial = d.cluster.membership.lock().await;
    let replicator = d.replicator();
    match tokio::time::timeout(ADD_DEADLINE, replicator.add_learner(id, address)).await {
        Ok(Ok(())) => tracing::info!(node = id, "joiner caught up as a learner"),
        Ok(Err(e)) => {
            tracing::error!(node = id, error = %e, "could not add the joiner as a learner");
            return;
        }
        Err(_) => {
            tracing::error!(
                node = id,
                "the joiner did not catch up in time; it stays a learner"
            );
            return;
        }
    }
    let max_voters = super::config_number(d, super::MAX_VOTERS, super::DEFAULT_MAX_VOTERS as u64)
        .await
        .unwrap_or(super::DEFAULT_MAX_VOTERS as u64);
    let voters = replicator.metrics().voters().len() as u64;
    if voters >= max_voters {
        tracing::info!(
            node = id,
            voters,
            "enough voters: the joiner stays a standby"
        );
        return;
    }
    match replicator.promote(id).await {
        Ok(()) => tracing::info!(node = id, "joiner promoted to voter"),
        Err(e) => tracing::error!(node = id, error = %e, "could not promote the joiner"),
    }
}

/// Decodes a join token (base64 of JSON), as `lxc cluster add` prints it.
pub fn decode_token(token: &str) -> ApiResult<ClusterJoinToken> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|json| serde_json::from_slice::<ClusterJoinToken>(&json).ok())
        .filter(|t| !t.secret.is_empty() && !t.fingerprint.is_empty())
        .ok_or_else(|| ApiError::bad_request("Invalid cluster join token"))
}

/// The joiner's side: `PUT /1.0/cluster` with a cluster address or a token.
///
/// # Contract
///
/// Refused with 400 and nothing changed when: already clustered, no certificate or no
/// server address given, the token is malformed, made for another name, or its
/// fingerprint is not the given certificate's (fail closed), or this member has
/// instances. A refusal by the leader (unknown, revoked or expired token) changes nothing
/// either. Once the leader admitted it, this member's standalone DB and Raft log are set
/// aside (`*.before-join`) and replaced by the cluster's.
pub async fn join(d: &Daemon, req: ClusterPut) -> ApiResult<()> {
    let _serial = d.cluster.change.lock().await;
    if d.cluster.is_clustered() {
        return Err(ApiError::bad_request("This server is already clustered"));
    }
    if req.cluster_certificate.is_empty() {
        return Err(ApiError::bad_request(
            "No target cluster member certificate provided",
        ));
    }
    if req.server_address.is_empty() {
        return Err(ApiError::bad_request(
            "No server address provided for this member",
        ));
    }
    let raw_token = if req.cluster_token.is_empty() {
        &req.cluster_password
    } else {
        &req.cluster_token
    };
    let token = decode_token(raw_token)?;
    let name = if req.server_name.is_empty() {
        token.server_name.clone()
    } else {
        req.server_name.clone()
    };
    if name != token.server_name {
        return Err(ApiError::bad_request(format!(
            "The join token was issued for {:?}, not {name:?}",
            token.server_name
        )));
    }
    let given = tls::fingerprint_pem(&req.cluster_certificate)
        .map_err(|e| ApiError::bad_request(format!("Invalid cluster certificate: {e}")))?;
    if given != token.fingerprint {
        return Err(ApiError::bad_request(format!(
            "The cluster certificate's fingerprint {given} does not match the join token's {}",
            token.fingerprint
        )));
    }
    let instances = d.read(|c| db::instances::list(c, "default")).await?;
    if !instances.is_empty() {
        return Err(ApiError::bad_request(format!(
            "The joining server has {} instance(s): a member must be empty to join",
            instances.len()
        )));
    }
    for c in &req.member_config {
        let path = std::path::Path::new(&c.value);
        if c.key == "source" && path.exists() && !path.is_dir() {
            return Err(ApiError::bad_request(format!(
                "Storage pool {:?}: source {:?} exists and is not a directory",
                c.name, c.value
            )));
        }
    }
    let target = crate::https::parse_address(&req.server_address)?;
    if target.ip().is_unspecified() {
        return Err(ApiError::bad_request(format!(
            "Cannot use wildcard address {:?} for a cluster member",
            req.server_address
        )));
    }
    // Bindable (or already ours) before the leader records this member at that address.
    if d.https.local_addr().await != Some(target) {
        std::net::TcpListener::bind(target).map_err(|e| {
            ApiError::bad_request(format!("Cannot listen on {}: {e}", req.server_address))
        })?;
    }

    let client = super::member_client(d.https.identity(), &token.fingerprint)?;
    let ask = JoinRequest {
        secret: token.secret.clone(),
        name: name.clone(),
        address: req.server_address.clone(),
        architecture: std::env::consts::ARCH.into(),
        schema: db::SCHEMA_VERSION,
        api_extensions: api::extensions::API_EXTENSIONS.len(),
        member_config: req.member_config.clone(),
    };
    let mut candidates: Vec<String> = Vec::new();
    if !req.cluster_address.is_empty() {
        candidates.push(req.cluster_address.clone());
    }
    candidates.extend(token.addresses.iter().cloned());
    let answer = ask_members(&client, candidates, &ask).await?;
    let JoinAnswer::Accepted {
        id,
        cluster_certificate,
        cluster_key,
        members,
    } = answer
    else {
        return Err(ApiError::internal("no member admitted this one"));
    };
    if tls::fingerprint_pem(&cluster_certificate).ok().as_deref() != Some(&token.fingerprint) {
        return Err(ApiError::internal(
            "the leader sent a cluster certificate that is not the token's",
        ));
    }
    let identity = Arc::new(save_cluster_identity(d, &cluster_certificate, &cluster_key).await?);
    d.cluster.admit(members);
    adopt_group(d, id, &req.server_address, client).await?;
    d.set_member(&name);
    d.cluster.set_identity(identity.clone());
    d.https
        .serve_cluster_at(d, &identity, &req.server_address)
        .await?;
    tracing::info!(member = %name, node = id, "admitted; waiting for the cluster's data");
    let store = d.store.clone();
    let me = name.clone();
    d.replicator()
        .wait_for(
            CATCH_UP,
            "the cluster's data to reach this member",
            move |m| {
                m.leader.is_some()
                    && m.members.contains_key(&id)
                    && store
                        .read(|c| db::members::get(c, &me))
                        .ok()
                        .flatten()
                        .is_some()
            },
        )
        .await
        .map_err(|e| ApiError::internal(format!("joined, but {e}")))?;
    tracing::info!(member = %name, node = id, "joined the cluster");
    let pools_ready = crate::pools::apply_member_config(d, &req.member_config).await;
    // From now on this member's DB says who the members are: one removed later must not
    // stay admitted by the leader's list of the time.
    d.cluster
        .admitted
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let reporter = d.clone();
    tokio::spawn(async move { super::version::report(&reporter).await });
    d.bus.lifecycle(
        "cluster-member-added",
        format!("/1.0/cluster/members/{name}"),
        "default",
        None,
    );
    pools_ready
}

/// Asks each address in turn (following a member's pointer to the leader) to admit this
/// member; a refusal is final.
async fn ask_members(
    client: &reqwest::Client,
    mut candidates: Vec<String>,
    ask: &JoinRequest,
) -> ApiResult<JoinAnswer> {
    let mut last = String::from("no member address to join through");
    let mut hops = 0;
    while let Some(addr) = (!candidates.is_empty()).then(|| candidates.remove(0)) {
        hops += 1;
        if hops > 10 {
            break;
        }
        let url = format!("https://{addr}{JOIN_PATH}");
        let response = match client
            .post(&url)
            .timeout(CALL_TIMEOUT)
            .json(ask)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                last = format!("{addr}: {e}");
                tracing::warn!(member = %addr, error = %e, "cannot reach a member to join through");
                continue;
            }
        };
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("refused").to_string();
            return Err(ApiError {
                status,
                message: format!("Failed to join the cluster: {message}"),
            });
        }
        match serde_json::from_value::<JoinAnswer>(body) {
            Ok(a @ JoinAnswer::Accepted { .. }) => return Ok(a),
            Ok(JoinAnswer::NotLeader { leader }) => {
                last = format!("{addr} is not the leader");
                if let Some(l) = leader {
                    candidates.insert(0, l);
                }
            }
            Err(e) => last = format!("{addr}: undecodable answer: {e}"),
        }
    }
    Err(ApiError::bad_request(format!(
        "Failed to join the cluster: {last}"
    )))
}

/// Writes `cluster.crt`/`cluster.key` (the key 0600) after checking they belong together.
async fn save_cluster_identity(d: &Daemon, cert: &str, key: &str) -> ApiResult<tls::Identity> {
    let identity = tls::Identity::from_pem(cert, key)
        .map_err(|e| ApiError::internal(format!("cluster certificate from the leader: {e}")))?;
    let dir = d.paths.state_dir.clone();
    let (cert, key) = (cert.to_string(), key.to_string());
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let key_path = dir.join(format!("{}.key", super::CLUSTER_CERT));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&key_path)?;
        std::io::Write::write_all(&mut f, key.as_bytes())?;
        f.sync_all()?;
        std::fs::write(dir.join(format!("{}.crt", super::CLUSTER_CERT)), cert)?;
        Ok(())
    })
    .await?
    .map_err(|e| ApiError::internal(format!("write the cluster certificate: {e}")))?;
    Ok(identity)
}

/// Replaces this member's one-voter Raft group by an empty node `id` of the cluster's:
/// stops the old node, sets its log, snapshots and node id aside, empties the DB, and
/// opens the new node (which the leader then fills).
async fn adopt_group(d: &Daemon, id: u64, address: &str, client: reqwest::Client) -> ApiResult<()> {
    let old = d.replicator();
    old.shutdown().await;
    let db_dir = d.paths.state_dir.join("database");
    let store = d.store.clone();
    let dir = db_dir.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        for name in [
            raft::LOG_FILE.to_string(),
            format!("{}-wal", raft::LOG_FILE),
            format!("{}-shm", raft::LOG_FILE),
            raft::SNAPSHOT_DIR.to_string(),
            raft::NODE_ID_FILE.to_string(),
        ] {
            let from = dir.join(&name);
            let to = dir.join(format!("{name}.before-join"));
            if !from.exists() {
                continue;
            }
            let _ = std::fs::remove_dir_all(&to);
            let _ = std::fs::remove_file(&to);
            // The old log store closing its SQLite connection removes its -wal/-shm files,
            // possibly between the check above and here: gone is as good as set aside.
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        let empty = dir.join("empty.db.tmp");
        let _ = std::fs::remove_file(&empty);
        drop(db::Store::open(&empty)?);
        store.restore_from(&empty)?;
        let _ = std::fs::remove_file(&empty);
        raft::load_or_create_node_id(&dir, id)?;
        Ok(())
    })
    .await?
    .map_err(|e| ApiError::internal(format!("set the standalone database aside: {e:#}")))?;
    let transport = raft::Transport::new(client, raft::Scheme::Https);
    let (_raft, replicator) =
        raft::RaftNode::open(&db_dir, d.store.clone(), id, address, transport)
            .await
            .map_err(|e| ApiError::internal(format!("open the raft node: {e}")))?;
    *d.replicator
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = replicator;
    Ok(())
}

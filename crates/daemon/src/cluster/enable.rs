//! `PUT /1.0/cluster` without a cluster address: the standalone member becomes the first
//! member of a new cluster (`lxc cluster enable m1`).

use std::sync::Arc;

use crate::error::{ApiError, ApiResult};
use crate::https::HTTPS_ADDRESS;
use crate::state::Daemon;

/// Makes this standalone member the first member `name` of a new cluster.
///
/// # Contract
///
/// - Refused (400, nothing changed) when already clustered, when `name` is empty, or when
///   `core.https_address` is unset or a wildcard (the other members must reach this one).
/// - Otherwise, in order: the cluster certificate is made (`cluster.crt`/`.key`, kept if
///   a previous attempt made it), this member's Raft node gets its cluster address and a
///   client that presents its certificate and pins the cluster's, the member row `none`
///   (and its instances) is renamed to `name` with its address and fingerprint, and the
///   HTTPS listener restarts serving the cluster certificate and the member routes.
pub async fn enable(d: &Daemon, name: &str) -> ApiResult<()> {
    let _serial = d.cluster.change.lock().await;
    if d.cluster.is_clustered() {
        return Err(ApiError::bad_request("This server is already clustered"));
    }
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "ServerName is required when enabling clustering",
        ));
    }
    super::tokens::check_member_name(name)?;
    let config = d.read(db::config::all).await?;
    let address = config
        .get(HTTPS_ADDRESS)
        .filter(|a| !a.is_empty())
        .cloned()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Can't enable clustering: {HTTPS_ADDRESS} is not set on this member"
            ))
        })?;
    if crate::https::parse_address(&address)?.ip().is_unspecified() {
        return Err(ApiError::bad_request(format!(
            "Cannot use wildcard {HTTPS_ADDRESS} {address:?} for clustering. Please specify a single address"
        )));
    }
    let state_dir = d.paths.state_dir.clone();
    let sans = vec![name.to_string(), host_of(&address)];
    let identity = tokio::task::spawn_blocking(move || {
        tls::Identity::load_or_create(&state_dir, super::CLUSTER_CERT, "drover cluster", &sans)
    })
    .await?
    .map_err(|e| ApiError::internal(format!("cluster certificate: {e}")))?;
    let identity = Arc::new(identity);

    let replicator = d.replicator();
    let client = super::member_client(d.https.identity(), identity.fingerprint())?;
    replicator.transport().replace_client(client);
    replicator
        .set_address(replicator.id(), &address)
        .await
        .map_err(|e| ApiError::internal(format!("set this member's raft address: {e}")))?;
    d.write(db::Command::EnableClustering {
        from: crate::STANDALONE.into(),
        name: name.to_string(),
        address: address.clone(),
        fingerprint: d.https.identity().fingerprint().to_string(),
    })
    .await?;
    d.set_member(name);
    d.cluster.set_identity(identity.clone());
    d.https.serve_cluster(d, &identity).await?;
    tracing::info!(member = %name, address = %address, fingerprint = %identity.fingerprint(), "clustering enabled");
    d.bus.lifecycle(
        "cluster-enabled",
        format!("/1.0/cluster/members/{name}"),
        "default",
        None,
    );
    Ok(())
}

/// The host part of `host:port` (an IP: the certificate gets it as an IP SAN).
fn host_of(address: &str) -> String {
    address
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| address.to_string())
}

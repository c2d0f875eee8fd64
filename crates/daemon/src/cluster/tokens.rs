//! Join tokens (`POST /1.0/cluster/members`): a `token` operation on the member that made
//! it, and a replicated row so any member can check it.

use api::OperationClass;
use chrono::{DateTime, Utc};
use db::cluster_tokens::ClusterTokenRecord;

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// RFC 3339 UTC with nanoseconds: stored times compare as strings.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Refuses a member name that is not a host name (letters, digits and dashes, at most 63,
/// no dash first or last), as LXD refuses one: it names the member in URLs, certificates
/// and every instance's location.
pub fn check_member_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Invalid cluster member name {name:?}: use letters, digits and dashes (at most 63), not starting or ending with a dash"
        )))
    }
}

/// Issues a join token for a member to be called `name`, as LXD 5.0.2 does: a running
/// `token` operation whose metadata is exactly `serverName`, `secret`, `fingerprint` (of
/// the cluster certificate), `addresses` (of the members) and `expiresAt`. An earlier
/// token for the same name is revoked. Deleting the operation revokes the token.
///
/// # Errors
///
/// 400 when this member is not clustered or `name` is empty or already a member's.
pub async fn create(d: &Daemon, name: &str) -> ApiResult<api::Operation> {
    let Some(cluster) = d.cluster.identity() else {
        return Err(ApiError::bad_request("This server is not clustered"));
    };
    if name.is_empty() {
        return Err(ApiError::bad_request("Cluster member name is required"));
    }
    check_member_name(name)?;
    let members = d.read(db::members::list).await?;
    if members.iter().any(|m| m.name == name) {
        return Err(ApiError::bad_request(format!(
            "The cluster already has a member with name: {name}"
        )));
    }
    let config = d.read(db::config::all).await?;
    let expiry = config
        .get(super::JOIN_TOKEN_EXPIRY)
        .map(String::as_str)
        .unwrap_or(super::DEFAULT_JOIN_TOKEN_EXPIRY);
    let now = Utc::now();
    let expires_at = crate::server_config::expiry_after(now, expiry)
        .map_err(ApiError::internal)?
        .unwrap_or_else(|| now + chrono::Duration::hours(3));
    for old in d.read(db::cluster_tokens::list).await? {
        if old.name == name {
            revoke(d, &old).await;
        }
    }
    let secret = tls::random_secret().map_err(|e| ApiError::internal(e.to_string()))?;
    let addresses: Vec<String> = members
        .iter()
        .map(|m| m.address.clone())
        .filter(|a| !a.is_empty())
        .collect();
    let meta = serde_json::json!({
        "serverName": name,
        "secret": secret,
        "fingerprint": cluster.fingerprint(),
        "addresses": addresses,
        "expiresAt": rfc3339(expires_at),
    });
    let op = d.ops.create(
        OperationClass::Token,
        "Executing operation",
        Default::default(),
        Some(meta),
    );
    let record = ClusterTokenRecord {
        secret: secret.clone(),
        name: name.to_string(),
        operation: op.id().to_string(),
        expires_at: rfc3339(expires_at),
    };
    if let Err(e) = d
        .write(db::Command::CreateClusterToken(record.clone()))
        .await
    {
        op.fail(e.message.clone());
        return Err(e);
    }
    // As LXD 5.0.2 tells `lxc monitor --type=lifecycle` of `lxc cluster add`.
    d.bus.lifecycle(
        "cluster-token-created",
        "/1.0/cluster/members".to_string(),
        "default",
        None,
    );
    let revoked = op.cancellable();
    let snapshot = op.record();
    let d2 = d.clone();
    tokio::spawn(async move {
        // Cancelled by DELETE (revoke), or by this member when the token is used.
        let _ = revoked.await;
        revoke(&d2, &record).await;
        op.cancelled();
    });
    tracing::info!(member = %name, op = %snapshot.id, "cluster join token issued");
    Ok(snapshot)
}

/// Deletes the token's row (already gone when used: fine) and ends its operation when it
/// lives on this member.
async fn revoke(d: &Daemon, token: &ClusterTokenRecord) {
    match d
        .write(db::Command::DeleteClusterToken {
            secret: token.secret.clone(),
        })
        .await
    {
        Ok(()) => {
            tracing::info!(member = %token.name, op = %token.operation, "cluster join token revoked")
        }
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
        Err(e) => tracing::warn!(error = %e.message, "could not revoke a cluster join token"),
    }
    let _ = d.ops.cancel(&token.operation);
}

/// Ends the operation of a token that was just used, when it lives on this member.
pub(crate) fn used(d: &Daemon, operation: &str) {
    let _ = d.ops.cancel(operation);
}

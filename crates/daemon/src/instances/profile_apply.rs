//! A profile change reaching the running instances that use the profile, as LXD applies
//! one: new `limits.*` at once, host-path disks the profile adds or removes mounted into
//! or unmounted from the running container (hotplug). Stopped instances need nothing: a
//! start reads the expanded config.
//!
//! The member that changed the profile computes, per instance, the expanded config and
//! devices before and after ([`Change`]) and has the member holding the instance apply
//! them: itself, or another member through the member-only route
//! `POST /internal/instances/profile-change`.

use api::{ConfigMap, DeviceMap, InstanceStatus};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::{disks, runtime_id, runtime_status};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The member-only route.
const PATH: &str = "/internal/instances/profile-change";

/// What a profile change means for one instance: its expanded config and devices before
/// and after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    /// Project of the instance.
    pub project: String,
    /// The instance.
    pub name: String,
    /// Expanded config before the change.
    pub old_config: ConfigMap,
    /// Expanded config after it.
    pub new_config: ConfigMap,
    /// Expanded devices before the change.
    pub old_devices: DeviceMap,
    /// Expanded devices after it.
    pub new_devices: DeviceMap,
}

impl Change {
    fn limits(c: &ConfigMap) -> Vec<(&String, &String)> {
        c.iter().filter(|(k, _)| k.starts_with("limits.")).collect()
    }

    /// Whether a running instance must be touched at all.
    pub fn is_live(&self) -> bool {
        Self::limits(&self.old_config) != Self::limits(&self.new_config)
            || disks::changes(&self.old_devices, &self.new_devices) != (vec![], vec![])
    }
}

/// Applies `change` to its instance when it runs on this member: limits, then disks. A
/// disk that fails puts the old limits back.
///
/// # Errors
///
/// The driver's refusal, worded as an instance update's.
pub async fn apply_here(d: &Daemon, change: &Change) -> ApiResult<()> {
    let id = runtime_id(&change.project, &change.name);
    let lock = d.instance_lock(&id);
    let _guard = lock.lock().await;
    if runtime_status(d, &id) != InstanceStatus::Running {
        return Ok(());
    }
    let limits = Change::limits(&change.old_config) != Change::limits(&change.new_config);
    if limits {
        d.driver
            .update_limits(&id, &change.new_config)
            .await
            .map_err(|e| ApiError::bad_request(format!("Failed to apply new limits: {e}")))?;
    }
    if let Err(e) = disks::hotplug(d, &id, &change.old_devices, &change.new_devices).await {
        if limits && let Err(undo) = d.driver.update_limits(&id, &change.old_config).await {
            tracing::error!(instance = %change.name, error = %undo, "old limits not restored");
        }
        return Err(e);
    }
    Ok(())
}

/// Applies `change` on `member` (this one or another).
///
/// # Errors
///
/// As [`apply_here`], or the member's error when it cannot be reached.
pub async fn apply_on(d: &Daemon, member: &str, change: &Change) -> ApiResult<()> {
    if !d.cluster.is_clustered() || member == d.member() {
        return apply_here(d, change).await;
    }
    let body = serde_json::to_value(change)
        .map_err(|e| ApiError::internal(format!("encode a profile change: {e}")))?;
    crate::cluster::peer::Peer::connect(d, member)
        .await?
        .request(reqwest::Method::POST, PATH, Some(&body))
        .await
        .map(drop)
}

/// The member-only route applying a change another member computed.
pub fn routes(d: Daemon) -> Router {
    Router::new().route(PATH, post(apply_route)).with_state(d)
}

async fn apply_route(
    State(d): State<Daemon>,
    peer: Option<Extension<tls::Peer>>,
    body: Bytes,
) -> ApiResult<Response> {
    let fingerprint = peer
        .and_then(|Extension(p)| p.fingerprint)
        .ok_or_else(crate::auth::not_authorized)?;
    let store = d.store.clone();
    let admitted = tokio::task::spawn_blocking(move || {
        crate::cluster::is_member_fingerprint(&store, &fingerprint)
    })
    .await?;
    if !admitted {
        return Err(crate::auth::not_authorized());
    }
    let change: Change = crate::routes::parse_body(&body)?;
    apply_here(&d, &change).await?;
    Ok(crate::routes::empty())
}

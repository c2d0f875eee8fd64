//! Events on `/1.0/events`: `operation`, `lifecycle` and `logging`.

use serde::{Deserialize, Serialize};

/// One event as LXD sends it on the events websocket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// `operation`, `lifecycle` or `logging`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339 time the event was emitted.
    pub timestamp: String,
    /// The payload: an operation record, a lifecycle record or a log record.
    pub metadata: serde_json::Value,
    /// The member that emitted it (`"m1"`, or `"none"` when not clustered).
    #[serde(default)]
    pub location: String,
    /// The project, for lifecycle events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// The `metadata` of a lifecycle event:
/// `{"action": "instance-started", "source": "/1.0/instances/c1"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// `instance-created`, `instance-started`, `instance-shutdown`, ...
    pub action: String,
    /// The URL of the entity.
    pub source: String,
    /// Extra details (`{"storage-pool": "default", "type": "container"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// Who asked (`{"address": "@", "protocol": "unix", "username": "root"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor: Option<serde_json::Value>,
}

//! Instances.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ConfigMap, DeviceMap};

/// An instance's runtime status with LXD's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// 102.
    Stopped,
    /// 103.
    Running,
    /// 106: starting.
    Starting,
    /// 107: stopping.
    Stopping,
    /// 110: frozen (`lxc pause`): its processes are in memory but get no CPU.
    Frozen,
    /// 112: the runtime lost track of it.
    Error,
}

impl InstanceStatus {
    /// LXD's `status_code`.
    pub fn code(self) -> u16 {
        match self {
            Self::Stopped => 102,
            Self::Running => 103,
            Self::Starting => 106,
            Self::Stopping => 107,
            Self::Frozen => 110,
            Self::Error => 112,
        }
    }
}

/// `GET /1.0/instances/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// `"x86_64"`.
    pub architecture: String,
    /// Local config (with `volatile.*` and `image.*`).
    pub config: ConfigMap,
    /// Local devices.
    pub devices: DeviceMap,
    /// Deleted when stopped.
    pub ephemeral: bool,
    /// Profiles applied, in order.
    pub profiles: Vec<String>,
    /// Whether it has stateful snapshots (never, in drover).
    pub stateful: bool,
    /// Free text.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// Profiles' config overlaid by the local config.
    pub expanded_config: ConfigMap,
    /// Profiles' devices overlaid by the local devices.
    pub expanded_devices: DeviceMap,
    /// Instance name.
    pub name: String,
    /// `"Running"`, `"Stopped"`.
    pub status: InstanceStatus,
    /// 103, 102.
    pub status_code: u16,
    /// RFC 3339 of the last start.
    pub last_used_at: String,
    /// Member holding it (`"none"` when not clustered).
    pub location: String,
    /// `"container"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `"default"`.
    pub project: String,
    /// With `recursion=2`: the runtime state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InstanceState>,
    /// With `recursion=2`: snapshots (always empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<Vec<serde_json::Value>>,
    /// With `recursion=2`: backups (always empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<Vec<serde_json::Value>>,
}

/// `GET /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceState {
    /// `"Running"`.
    pub status: InstanceStatus,
    /// 103.
    pub status_code: u16,
    /// Per-disk usage (empty).
    pub disk: BTreeMap<String, serde_json::Value>,
    /// Memory usage in bytes.
    pub memory: InstanceStateMemory,
    /// Network interfaces (`null` when stopped).
    pub network: Option<BTreeMap<String, serde_json::Value>>,
    /// PID 1 of the instance on the host (0 when stopped).
    pub pid: i64,
    /// Number of processes (0 when stopped).
    pub processes: i64,
    /// CPU usage in nanoseconds.
    pub cpu: InstanceStateCpu,
}

/// Memory figures of [`InstanceState`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceStateMemory {
    /// Bytes in use.
    pub usage: i64,
    /// Peak bytes.
    pub usage_peak: i64,
    /// Swap in use.
    pub swap_usage: i64,
    /// Peak swap.
    pub swap_usage_peak: i64,
}

/// CPU figures of [`InstanceState`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceStateCpu {
    /// Nanoseconds of CPU time.
    pub usage: i64,
}

/// The action of `PUT /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateAction {
    /// Start a stopped instance.
    Start,
    /// Stop (clean unless `force`).
    Stop,
    /// Stop then start.
    Restart,
    /// Freeze (not supported).
    Freeze,
    /// Unfreeze (not supported).
    Unfreeze,
}

/// `PUT /1.0/instances/{name}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceStatePut {
    /// What to do.
    pub action: String,
    /// Seconds to wait for a clean stop (-1 or 0: the instance's `boot.host_shutdown_timeout`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub timeout: i64,
    /// Kill instead of a clean stop.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub force: bool,
    /// Stateful stop/start (not supported).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub stateful: bool,
}

/// Where a new instance's root filesystem comes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceSource {
    /// `"image"`, `"none"` or `"copy"` (of an instance on the same member).
    #[serde(rename = "type", default, deserialize_with = "crate::de::null_default")]
    pub kind: String,
    /// Image alias.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub alias: String,
    /// Image fingerprint (or a unique prefix).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub fingerprint: String,
    /// `{"alias": "busybox"}`-style selection by property (accepted, unused).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub properties: ConfigMap,
    /// `"local"`, `"pull"`, ... (only local images exist in drover).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub mode: String,
    /// Remote server (must be empty: drover has no remotes).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub server: String,
    /// `"lxd"` or `"simplestreams"` (ignored when `server` is empty).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub protocol: String,
    /// `type: "copy"`: the instance copied (`"c1"`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub source: String,
    /// `type: "copy"`: the source's project (empty: the request's).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub project: String,
    /// `type: "copy"`: update an existing copy (`lxc copy --refresh`; refused by drover).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub refresh: bool,
}

/// `POST /1.0/instances`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstancesPost {
    /// Name (empty: a generated one).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub name: String,
    /// `"container"` (default) or `"virtual-machine"`.
    #[serde(rename = "type", default, deserialize_with = "crate::de::null_default")]
    pub kind: String,
    /// Where the rootfs comes from.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub source: InstanceSource,
    /// Local config.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub config: ConfigMap,
    /// Local devices.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub devices: DeviceMap,
    /// Profiles (`null` or absent: `["default"]`).
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// Deleted when stopped.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub ephemeral: bool,
    /// Free text.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub description: String,
    /// Architecture (empty: the host's).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub architecture: String,
    /// Start once created (what `lxc launch` does with a second request; pylxd may send this).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub start: bool,
    /// Cloud instance type (ignored).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub instance_type: String,
}

/// `PUT /1.0/instances/{name}` (all fields replace), and the fields of `PATCH` (merge).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstancePut {
    /// Architecture (must not change).
    #[serde(default)]
    pub architecture: Option<String>,
    /// Local config.
    #[serde(default)]
    pub config: Option<ConfigMap>,
    /// Local devices.
    #[serde(default)]
    pub devices: Option<DeviceMap>,
    /// Deleted when stopped.
    #[serde(default)]
    pub ephemeral: Option<bool>,
    /// Profiles.
    #[serde(default)]
    pub profiles: Option<Vec<String>>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Restore a snapshot (not supported).
    #[serde(default)]
    pub restore: Option<String>,
    /// Stateful (ignored).
    #[serde(default)]
    pub stateful: Option<bool>,
}

/// `POST /1.0/instances/{name}`: rename (`{"name": "c2"}`), or move to another member
/// (`migration: true` with `?target=m3`, the body `lxc move c1 --target m3` sends).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstancePost {
    /// New name (`"c2"`); a move sends the current name.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub name: String,
    /// A move to the member named by `?target=` (`true`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub migration: bool,
    /// Move while running (`true` unless `lxc move --stateless`): containers cannot here.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub live: bool,
    /// Leave snapshots behind (`false`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub instance_only: bool,
    /// Older name of `instance_only` (`false`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub container_only: bool,
    /// A push-migration target on another server (`null` for a move within the cluster).
    #[serde(default)]
    pub target: Option<serde_json::Value>,
    /// Move to this storage pool (`""`: keep the pool).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub pool: String,
    /// Move to this project (`""`: keep the project).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub project: String,
    /// Ignore copy errors of a running instance (`false`).
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub allow_inconsistent: bool,
}

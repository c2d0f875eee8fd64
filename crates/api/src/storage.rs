//! Storage pools and volumes.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0/storage-pools/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoragePool {
    /// `"default"`.
    pub name: String,
    /// `"dir"`.
    pub driver: String,
    /// Free text.
    pub description: String,
    /// `{"source": "/var/lib/drover/storage-pools/default"}`.
    pub config: ConfigMap,
    /// `"Created"`.
    pub status: String,
    /// Members it is defined on (`["none"]` when not clustered).
    pub locations: Vec<String>,
    /// URLs of what uses it.
    pub used_by: Vec<String>,
}

/// `POST /1.0/storage-pools`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePoolsPost {
    /// Pool name.
    pub name: String,
    /// `"dir"`.
    pub driver: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// `source` is the directory (created if missing).
    #[serde(default)]
    pub config: ConfigMap,
}

/// `GET /1.0/storage-pools/{pool}/volumes/{type}/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageVolume {
    /// Volume name (the instance name for instance volumes).
    pub name: String,
    /// `"container"`, `"image"`, `"custom"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    pub description: String,
    /// Config.
    pub config: ConfigMap,
    /// The member holding it (`"none"` when not clustered).
    pub location: String,
    /// `"filesystem"`.
    pub content_type: String,
    /// URLs of what uses it.
    pub used_by: Vec<String>,
}

/// `GET /1.0/storage-pools/{pool}/volumes/{type}/{name}/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageVolumeState {
    /// Space used.
    pub usage: StorageVolumeStateUsage,
}

/// The `usage` of a [`StorageVolumeState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StorageVolumeStateUsage {
    /// Bytes on disk (`4096`): for a volume layered on an image, its own changes only.
    pub used: u64,
    /// The quota in bytes, `-1` when there is none (drover sets none).
    pub total: i64,
}

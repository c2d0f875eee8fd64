//! Images and aliases.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0/images/{fingerprint}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    /// SHA-256 of the image file(s).
    pub fingerprint: String,
    /// The file name it was uploaded as.
    pub filename: String,
    /// Total size in bytes.
    pub size: i64,
    /// `"x86_64"`.
    pub architecture: String,
    /// `"container"` or `"virtual-machine"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether untrusted clients may see it.
    pub public: bool,
    /// Whether it auto-updates (never, in drover).
    pub auto_update: bool,
    /// From `metadata.yaml` `properties` (`os`, `release`, `description`).
    pub properties: ConfigMap,
    /// Aliases pointing at it.
    pub aliases: Vec<ImageAlias>,
    /// Whether the image was cached from a remote (never, in drover).
    pub cached: bool,
    /// RFC 3339 creation date (from `metadata.yaml`).
    pub created_at: String,
    /// RFC 3339; zero time when it does not expire.
    pub expires_at: String,
    /// RFC 3339 last use.
    pub last_used_at: String,
    /// RFC 3339 upload time.
    pub uploaded_at: String,
    /// Profiles applied by default (`["default"]`).
    pub profiles: Vec<String>,
    /// Where it came from (unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_source: Option<serde_json::Value>,
}

/// An alias inside an image record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageAlias {
    /// Alias name.
    pub name: String,
    /// Free text.
    pub description: String,
}

/// `GET /1.0/images/aliases/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageAliasesEntry {
    /// Alias name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The image it points to.
    pub target: String,
    /// `"container"`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /1.0/images/aliases`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageAliasesPost {
    /// Alias name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Fingerprint it points to.
    pub target: String,
}

/// The JSON form of `POST /1.0/images` (LXD's `ImagesPost`); drover accepts only uploads
/// (the body is the tarball) and reads this from the `X-LXD-*` headers instead.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImagePut {
    /// Whether untrusted clients may see it.
    #[serde(default)]
    pub public: bool,
    /// Properties to set.
    #[serde(default)]
    pub properties: ConfigMap,
}

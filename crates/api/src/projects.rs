//! Projects: drover has one, `default`, shaped as LXD shows its own.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0/projects/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    /// `"default"`.
    pub name: String,
    /// `"Default drover project"`.
    pub description: String,
    /// Its features: `{"features.images": "true", "features.profiles": "true", ...}`.
    pub config: ConfigMap,
    /// URLs of what lives in it: `"/1.0/instances/c1"`, `"/1.0/profiles/default"`, images.
    pub used_by: Vec<String>,
}

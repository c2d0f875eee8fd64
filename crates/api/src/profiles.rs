//! Profiles.

use serde::{Deserialize, Serialize};

use crate::{ConfigMap, DeviceMap};

/// `GET /1.0/profiles/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    /// `"default"`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Config applied to instances using it.
    pub config: ConfigMap,
    /// Devices applied to instances using it.
    pub devices: DeviceMap,
    /// Instance URLs using it.
    pub used_by: Vec<String>,
}

/// `PUT`/`PATCH /1.0/profiles/{name}` and the body of `POST /1.0/profiles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfilePut {
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Config.
    #[serde(default)]
    pub config: Option<ConfigMap>,
    /// Devices.
    #[serde(default)]
    pub devices: Option<DeviceMap>,
}

/// `POST /1.0/profiles`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProfilesPost {
    /// Name of the new profile.
    pub name: String,
    /// The rest.
    #[serde(flatten)]
    pub put: ProfilePut,
}

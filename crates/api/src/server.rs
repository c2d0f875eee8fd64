//! `GET /1.0`: the server and its environment.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Server {
    /// Server config (`core.https_address`, ...).
    pub config: ConfigMap,
    /// What this server implements (see [`crate::extensions::API_EXTENSIONS`]).
    pub api_extensions: Vec<String>,
    /// `"stable"`.
    pub api_status: String,
    /// `"1.0"`.
    pub api_version: String,
    /// `"trusted"` or `"untrusted"`.
    pub auth: String,
    /// `false`: drover is not public.
    pub public: bool,
    /// Auth methods offered (`["tls"]`).
    pub auth_methods: Vec<String>,
    /// Facts about the host and the daemon.
    pub environment: ServerEnvironment,
}

/// `GET /1.0` → `environment`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerEnvironment {
    /// Listen addresses (`["127.0.0.11:8443"]`).
    pub addresses: Vec<String>,
    /// Architectures instances can use (`["x86_64"]`).
    pub architectures: Vec<String>,
    /// PEM of the server certificate (empty until HTTPS is set up).
    pub certificate: String,
    /// SHA-256 of the server certificate.
    pub certificate_fingerprint: String,
    /// `"drover"`.
    pub driver: String,
    /// The container runtime in use and its version (`"crun 1.8.1"`).
    pub driver_version: String,
    /// Firewall backend (`""`: drover adds no NICs yet).
    pub firewall: String,
    /// `"Linux"`.
    pub kernel: String,
    /// Host architecture (`"x86_64"`).
    pub kernel_architecture: String,
    /// Kernel features (empty).
    pub kernel_features: ConfigMap,
    /// Kernel release (`"6.1.0"`).
    pub kernel_version: String,
    /// LXC features (empty: drover does not use liblxc).
    pub lxc_features: ConfigMap,
    /// Operating system name.
    pub os_name: String,
    /// Operating system version.
    pub os_version: String,
    /// `"default"`.
    pub project: String,
    /// `"drover"`.
    pub server: String,
    /// `false` until clustering is enabled.
    pub server_clustered: bool,
    /// `"standalone"` or `"cluster"` (what LXD reports as `server_event_mode`).
    pub server_event_mode: String,
    /// This member's name (`"none"` before clustering, as LXD).
    pub server_name: String,
    /// The daemon's process id.
    pub server_pid: u32,
    /// drover's version.
    pub server_version: String,
    /// Storage drivers in use (`"dir"`).
    pub storage: String,
    /// Their versions.
    pub storage_version: String,
    /// Storage drivers available.
    pub storage_supported_drivers: Vec<serde_json::Value>,
    /// drover extension: the OCI runtime actually used (`"crun"` or `"runc"`), after probing.
    pub container_runtime: String,
}

/// `GET /1.0` as an untrusted client sees it: no config, no environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUntrusted {
    /// What this server implements.
    pub api_extensions: Vec<String>,
    /// `"stable"`.
    pub api_status: String,
    /// `"1.0"`.
    pub api_version: String,
    /// `"untrusted"`.
    pub auth: String,
    /// `false`.
    pub public: bool,
    /// Auth methods offered (`["tls"]`).
    pub auth_methods: Vec<String>,
}

/// `PUT /1.0` and `PATCH /1.0`: the server's editable part.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerPut {
    /// Server config (`{"core.https_address": "127.0.0.11:8443"}`). `PUT` replaces the
    /// whole map (keys left out are unset); `PATCH` changes only the keys given. An empty
    /// value unsets a key.
    #[serde(default, deserialize_with = "crate::de::null_default")]
    pub config: ConfigMap,
}

//! `GET /1.0`: what this server is.

use api::server::{Server, ServerEnvironment, ServerUntrusted};

use crate::error::ApiResult;
use crate::state::Daemon;

fn uname() -> (String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (
            u.release().to_string_lossy().into_owned(),
            u.machine().to_string_lossy().into_owned(),
        ),
        Err(_) => (String::new(), std::env::consts::ARCH.to_string()),
    }
}

fn os_release() -> (String, String) {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (field("NAME"), field("VERSION_ID"))
}

fn api_extensions() -> Vec<String> {
    api::extensions::API_EXTENSIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `GET /1.0` as seen by an untrusted HTTPS client.
pub fn untrusted_info() -> ServerUntrusted {
    ServerUntrusted {
        api_extensions: api_extensions(),
        api_status: "stable".into(),
        api_version: "1.0".into(),
        auth: "untrusted".into(),
        public: false,
        auth_methods: vec!["tls".into()],
    }
}

/// `GET /1.0` as seen by a trusted client.
pub async fn info(d: &Daemon) -> ApiResult<Server> {
    let config = crate::server_config::shown(d, d.read(db::config::all).await?).await?;
    let cluster = d.cluster.identity();
    let served = cluster
        .as_deref()
        .map(|c| (c.certificate_pem(), c.fingerprint()))
        .unwrap_or((
            d.https.identity().certificate_pem(),
            d.https.identity().fingerprint(),
        ));
    let (kernel_version, arch) = uname();
    let (os_name, os_version) = os_release();
    Ok(Server {
        config,
        api_extensions: api_extensions(),
        api_status: "stable".into(),
        api_version: "1.0".into(),
        auth: "trusted".into(),
        public: false,
        auth_methods: vec!["tls".into()],
        environment: ServerEnvironment {
            addresses: d.https.addresses().await,
            architectures: vec![arch.clone()],
            certificate: served.0.to_string(),
            certificate_fingerprint: served.1.to_string(),
            driver: "drover".into(),
            driver_version: d.driver.describe(),
            firewall: String::new(),
            kernel: "Linux".into(),
            kernel_architecture: arch,
            kernel_features: Default::default(),
            kernel_version,
            lxc_features: Default::default(),
            os_name,
            os_version,
            project: "default".into(),
            server: "drover".into(),
            server_clustered: cluster.is_some(),
            server_event_mode: "full-mesh".into(),
            server_name: d.member(),
            server_pid: std::process::id(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            storage: "dir".into(),
            storage_version: "1".into(),
            storage_supported_drivers: vec![
                serde_json::json!({"Name": "dir", "Version": "1", "Remote": false}),
            ],
            container_runtime: d.runtime_name.clone(),
        },
    })
}

//! The networks service: the host's interfaces, as LXD lists those it does not manage.
//!
//! drover manages no network (no bridge, no NIC device), but LXD's clients list networks
//! (`lxc network list`, pylxd's `client.networks.all()`), and LXD answers with the member's
//! own interfaces, `managed: false`. Each member answers with its own.

use std::path::Path;

use api::networks::Network;

use crate::error::{ApiError, ApiResult};

/// The interfaces of this member, by name.
pub async fn list() -> ApiResult<Vec<Network>> {
    tokio::task::spawn_blocking(|| read_interfaces(Path::new("/sys/class/net")))
        .await
        .map_err(|e| ApiError::internal(format!("list network interfaces: {e}")))?
}

/// The interface `name` of this member.
pub async fn get(name: &str) -> ApiResult<Network> {
    list()
        .await?
        .into_iter()
        .find(|n| n.name == name)
        .ok_or_else(|| ApiError::not_found("Network not found"))
}

/// Every interface under `sys` (`/sys/class/net`), sorted by name.
fn read_interfaces(sys: &Path) -> ApiResult<Vec<Network>> {
    let entries = std::fs::read_dir(sys)
        .map_err(|e| ApiError::internal(format!("read {}: {e}", sys.display())))?;
    let mut out: Vec<Network> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .map(|name| {
            let kind = kind_of(&sys.join(&name), &name).to_string();
            Network {
                name,
                description: String::new(),
                kind,
                managed: false,
                status: String::new(),
                config: api::ConfigMap::new(),
                used_by: Vec::new(),
                locations: Vec::new(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The type LXD gives an unmanaged interface whose sysfs directory is `dir`.
fn kind_of(dir: &Path, name: &str) -> &'static str {
    let arp_type = std::fs::read_to_string(dir.join("type")).unwrap_or_default();
    if arp_type.trim() == "772" {
        "loopback"
    } else if dir.join("bridge").exists() {
        "bridge"
    } else if dir.join("bonding").exists() {
        "bond"
    } else if Path::new("/proc/net/vlan").join(name).exists() {
        "vlan"
    } else if dir.join("device").exists() {
        "physical"
    } else {
        "unknown"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What does this test do?
    /// - a fake sysfs with a loopback, a bridge and a device-backed interface lists them
    ///   sorted, each with LXD's type and `managed: false`
    #[test]
    fn interfaces_are_typed_as_lxd_types_them() {
        let sys = tempfile::tempdir().expect("a temp dir");
        let make = |name: &str, arp: &str, sub: Option<&str>| {
            let dir = sys.path().join(name);
            std::fs::create_dir_all(&dir).expect("interface dir");
            std::fs::write(dir.join("type"), arp).expect("type file");
            if let Some(sub) = sub {
                std::fs::create_dir_all(dir.join(sub)).expect("marker dir");
            }
        };
        make("lo", "772\n", None);
        make("eth0", "1\n", Some("device"));
        make("br0", "1\n", Some("bridge"));
        make("dummy0", "1\n", None);
        let got: Vec<(String, String, bool)> = read_interfaces(sys.path())
            .expect("listed")
            .into_iter()
            .map(|n| (n.name, n.kind, n.managed))
            .collect();
        let want = [
            ("br0", "bridge"),
            ("dummy0", "unknown"),
            ("eth0", "physical"),
            ("lo", "loopback"),
        ]
        .map(|(n, k)| (n.to_string(), k.to_string(), false));
        assert_eq!(got, want);
    }
}

//! Networks: the host's interfaces, listed as LXD lists the ones it does not manage.

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0/networks/{name}`: one network interface of the member that answers.
///
/// drover manages no network itself (no bridge, no NIC device), so every entry is one of the
/// host's own interfaces with `managed: false`, as LXD 5.0.2 shows them (`lxc network list`,
/// pylxd's `client.networks.all()`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    /// The interface name: `"eth0"`.
    pub name: String,
    /// Free text, empty for an unmanaged interface.
    pub description: String,
    /// `"loopback"`, `"physical"`, `"bridge"`, `"bond"`, `"vlan"` or `"unknown"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `false`: drover does not manage networks.
    pub managed: bool,
    /// Empty for an unmanaged interface (LXD's `"Created"` is for managed ones).
    pub status: String,
    /// Empty for an unmanaged interface.
    pub config: ConfigMap,
    /// Instances and profiles using it: none, since drover has no NIC devices.
    pub used_by: Vec<String>,
    /// Members where a managed network is defined: empty for an interface.
    pub locations: Vec<String>,
}

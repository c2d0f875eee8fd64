//! Resources of a member (`GET /1.0/resources`) and of a storage pool on it
//! (`GET /1.0/storage-pools/{name}/resources`), with LXD 5.0.2's field names.
//!
//! drover fills in the CPU, memory and system parts; the device inventories (GPUs, NICs,
//! disks, USB, PCI) are present and empty, which LXD's clients print as nothing found.

use serde::{Deserialize, Serialize};

/// `GET /1.0/resources` (`lxc info --resources`, pylxd's `client.resources`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Processors.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// GPUs: not inventoried (`{"cards": [], "total": 0}`).
    pub gpu: Inventory,
    /// Network cards: not inventoried.
    pub network: Inventory,
    /// Disks: not inventoried (`{"disks": [], "total": 0}`).
    pub storage: Disks,
    /// USB devices: not inventoried (`{"devices": [], "total": 0}`).
    pub usb: Devices,
    /// PCI devices: not inventoried.
    pub pci: Devices,
    /// The machine, from DMI where readable.
    pub system: System,
}

/// The processors of a member.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// `"x86_64"`.
    pub architecture: String,
    /// One per physical package.
    pub sockets: Vec<CpuSocket>,
    /// Threads in all: `2`.
    pub total: u64,
}

/// One physical processor package.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuSocket {
    /// Model: `"AMD EPYC"`.
    pub name: String,
    /// `"AuthenticAMD"`.
    pub vendor: String,
    /// Package id: `0`.
    pub socket: u64,
    /// Its cores.
    pub cores: Vec<CpuCore>,
    /// Current frequency in MHz: `2596`.
    pub frequency: u64,
}

/// One core of a socket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuCore {
    /// Core id within the socket.
    pub core: u64,
    /// Die id: `0`.
    pub die: u64,
    /// Its hardware threads.
    pub threads: Vec<CpuThread>,
    /// Frequency in MHz.
    pub frequency: u64,
}

/// One hardware thread.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuThread {
    /// The kernel's CPU number: `0`.
    pub id: i64,
    /// NUMA node: `0`.
    pub numa_node: u64,
    /// Thread index within the core.
    pub thread: u64,
    /// Online.
    pub online: bool,
    /// Isolated from the scheduler.
    pub isolated: bool,
}

/// Memory of a member, in bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Huge pages in all.
    pub hugepages_total: u64,
    /// Huge pages in use.
    pub hugepages_used: u64,
    /// Size of one huge page.
    pub hugepages_size: u64,
    /// In use (total less available).
    pub used: u64,
    /// Installed.
    pub total: u64,
}

/// An inventory of cards (GPUs, NICs).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// The cards (drover lists none).
    pub cards: Vec<serde_json::Value>,
    /// How many.
    pub total: u64,
}

/// An inventory of disks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Disks {
    /// The disks (drover lists none).
    pub disks: Vec<serde_json::Value>,
    /// How many.
    pub total: u64,
}

/// An inventory of USB or PCI devices.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Devices {
    /// The devices (drover lists none).
    pub devices: Vec<serde_json::Value>,
    /// How many.
    pub total: u64,
}

/// The machine (DMI).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct System {
    /// `product_uuid`, when readable.
    pub uuid: String,
    /// `sys_vendor`.
    pub vendor: String,
    /// `product_name`.
    pub product: String,
    /// `product_family`.
    pub family: String,
    /// `product_version`.
    pub version: String,
    /// `product_sku`.
    pub sku: String,
    /// `product_serial`, when readable.
    pub serial: String,
    /// `"physical"`, `"virtual-machine"` or `"unknown"`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /1.0/storage-pools/{name}/resources` (`lxc storage info`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoragePoolResources {
    /// Bytes.
    pub space: Usage,
    /// Inodes.
    pub inodes: Usage,
}

/// Used out of total.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// In use.
    pub used: u64,
    /// In all.
    pub total: u64,
}

//! What the planner reads: a snapshot of members and instances taken from the cluster DB.

use std::collections::BTreeSet;

use api::{ConfigMap, MemberState};

/// A member's `scheduler.instance`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Scheduler {
    /// `all` (default): takes instances placed automatically.
    #[default]
    All,
    /// `manual`: only instances targeted at it by name; never an evacuation target.
    Manual,
    /// `group`: only instances placed in one of its cluster groups.
    Group,
}

impl Scheduler {
    /// The value of `scheduler.instance` (unknown values read as `all`).
    pub fn parse(value: &str) -> Self {
        match value {
            "manual" => Self::Manual,
            "group" => Self::Group,
            _ => Self::All,
        }
    }
}

/// One member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberInfo {
    /// `"m2"`.
    pub name: String,
    /// Its state.
    pub state: MemberState,
    /// Whether it answers heartbeats.
    pub online: bool,
    /// `"x86_64"`.
    pub architecture: String,
    /// Its cluster groups (`["default"]`).
    pub groups: Vec<String>,
    /// Its `scheduler.instance`.
    pub scheduler: Scheduler,
    /// Memory it can give instances, bytes (`None`: unknown, never a limit).
    pub memory: Option<u64>,
    /// CPUs it can give instances (`None`: unknown, never a limit).
    pub cpus: Option<u64>,
    /// Storage pools usable on it.
    pub pools: BTreeSet<String>,
}

/// An instance's type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum InstanceKind {
    /// A system container.
    #[default]
    Container,
    /// A virtual machine.
    VirtualMachine,
}

/// One instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `"default"`.
    pub project: String,
    /// `"c1"`.
    pub name: String,
    /// Container or VM.
    pub kind: InstanceKind,
    /// The member that holds it.
    pub member: String,
    /// Whether it runs now.
    pub running: bool,
    /// Expanded config (profiles applied): `cluster.evacuate`, `limits.*`, `volatile.*`.
    pub config: ConfigMap,
    /// The pool of its root disk (`None` when it has none).
    pub root_pool: Option<String>,
    /// Whether that pool is shared (the same data on every member: nothing to copy).
    pub root_pool_shared: bool,
    /// What ties it to its member and cannot move (`device "gpu0" (unix-char)`, `volume
    /// "data" on local pool "fast"`): such an instance is stopped in place.
    pub tied_to_member: Vec<String>,
    /// Whether its driver can move it while it runs (a VM with `migration.stateful=true`
    /// on storage the target reaches; never a container on this kernel).
    pub can_live_migrate: bool,
}

impl InstanceInfo {
    /// A config value, `""` when unset.
    pub fn config_value(&self, key: &str) -> &str {
        self.config.get(key).map_or("", String::as_str)
    }
}

/// Everything the planner reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Every member.
    pub members: Vec<MemberInfo>,
    /// Every instance of every member.
    pub instances: Vec<InstanceInfo>,
}

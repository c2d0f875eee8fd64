//! The planner's view of the cluster, read from the DB (and this member's runtime).

use std::collections::{BTreeMap, BTreeSet};

use api::evacuation::PlanEntry;
use cluster::{InstanceInfo, InstanceKind, MemberInfo, Scheduler, Snapshot};

use crate::error::ApiResult;
use crate::instances::{expand_config, expand_devices, read_profiles, root_pool};
use crate::state::Daemon;

/// Device types that exist only on the member that has the hardware.
const MEMBER_DEVICES: &[&str] = &[
    "unix-char",
    "unix-block",
    "unix-hotplug",
    "gpu",
    "usb",
    "pci",
];

/// What ties an instance to its member: member-local devices, host paths, and volumes on
/// local pools other than its root disk's.
fn ties(devices: &api::DeviceMap, shared_pools: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, dev) in devices {
        let kind = dev.get("type").map_or("", String::as_str);
        if MEMBER_DEVICES.contains(&kind) {
            out.push(format!("device {name:?} ({kind})"));
            continue;
        }
        if kind != "disk" || dev.get("path").map(String::as_str) == Some("/") {
            continue;
        }
        match (dev.get("pool"), dev.get("source")) {
            (Some(pool), _) if !shared_pools.contains(pool) => {
                out.push(format!("a volume on local pool {pool:?} (device {name:?})"));
            }
            (None, Some(source)) if !source.is_empty() => {
                out.push(format!("the host path {source:?} (device {name:?})"));
            }
            _ => {}
        }
    }
    out
}

/// A snapshot of members and instances. Instances on this member are running when their
/// runtime says so; elsewhere, when their `volatile.last_state.power` is `RUNNING`.
/// `online` names the members that answer heartbeats.
pub async fn take(d: &Daemon, online: BTreeSet<String>) -> ApiResult<Snapshot> {
    let here = d.member();
    let (members, groups, pools, instances) = d
        .read(|c| {
            let members = db::members::list(c)?;
            let groups = db::members::groups(c)?;
            let pools = db::pools::list(c)?;
            let instances = db::instances::list(c, "default")?;
            let mut with_profiles = Vec::with_capacity(instances.len());
            for rec in instances {
                let profiles = read_profiles(c, &rec.project, &rec.profiles)?.unwrap_or_default();
                with_profiles.push((rec, profiles));
            }
            Ok((members, groups, pools, with_profiles))
        })
        .await?;
    let all_pools: BTreeSet<String> = pools.iter().map(|p| p.name.clone()).collect();
    let shared: BTreeSet<String> = pools
        .iter()
        .filter(|p| p.driver == "shared-fs")
        .map(|p| p.name.clone())
        .collect();
    let members = members
        .into_iter()
        .map(|m| MemberInfo {
            online: online.contains(&m.name),
            groups: groups.get(&m.id).cloned().unwrap_or_default(),
            scheduler: Scheduler::parse(
                m.config
                    .get(crate::cluster::edit::SCHEDULER_INSTANCE)
                    .map_or("", String::as_str),
            ),
            memory: u64::try_from(m.memory).ok().filter(|&b| b > 0),
            cpus: u64::try_from(m.cpus).ok().filter(|&n| n > 0),
            pools: all_pools.clone(),
            state: m.state,
            architecture: m.architecture,
            name: m.name,
        })
        .collect();
    let instances = instances
        .into_iter()
        .map(|(rec, profiles)| {
            let config = expand_config(&rec.config, &profiles);
            let devices = expand_devices(&rec.devices, &profiles);
            let root = root_pool(&devices);
            let running = if rec.member == here {
                crate::instances::runtime_status(
                    d,
                    &crate::instances::runtime_id(&rec.project, &rec.name),
                ) == api::InstanceStatus::Running
            } else {
                config.get(cluster::LAST_POWER_KEY).map(String::as_str) == Some("RUNNING")
            };
            let kind = if rec.kind == "virtual-machine" {
                InstanceKind::VirtualMachine
            } else {
                InstanceKind::Container
            };
            InstanceInfo {
                tied_to_member: ties(&devices, &shared),
                root_pool_shared: root.as_ref().is_some_and(|p| shared.contains(p)),
                root_pool: root,
                // Containers cannot move while running on this kernel (no CRIU); a VM can
                // when this member runs QEMU (the target refuses a live move it cannot
                // take, and the evacuation then plans the VM again). A frozen VM moves
                // stopped, as LXD moves a frozen container: unfrozen, shut down, started on
                // its target.
                can_live_migrate: kind == InstanceKind::VirtualMachine
                    && d.vms.is_some()
                    && !crate::instances::is_frozen(d, &rec.project, &rec.name),
                kind,
                running,
                config,
                project: rec.project,
                name: rec.name,
                member: rec.member,
            }
        })
        .collect();
    Ok(Snapshot { members, instances })
}

/// Where the last evacuation of `member` put each instance it moved, from its journal.
pub async fn placed(d: &Daemon, member: &str) -> ApiResult<BTreeMap<(String, String), String>> {
    let member = member.to_string();
    let rows = d
        .read(move |c| db::evacuations::list_for_member(c, &member))
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| r.kind == db::evacuations::EvacuationKind::Evacuate)
        .filter(|r| {
            r.entry
                .action
                .is_some_and(api::evacuation::PlanAction::moves)
        })
        .map(|r| ((r.entry.project, r.entry.instance), r.entry.target))
        .collect())
}

/// The plan's entries as rows of the table.
pub fn entries(decisions: &[cluster::Decision]) -> Vec<PlanEntry> {
    decisions.iter().map(cluster::Decision::entry).collect()
}

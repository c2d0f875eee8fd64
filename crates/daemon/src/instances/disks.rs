//! Disk devices with a host `source` (`lxc config device add c1 data disk source=/srv/data
//! path=/mnt/data`): which of an instance's devices they are, what a container start mounts,
//! and what changes while it runs (LXD's disk hotplug).

use std::path::PathBuf;

use api::DeviceMap;
use drivers::BindMount;

use super::validate::is_true;
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// A host-path disk of an instance: its device name, the mount, and whether a missing
/// source is an error (`required`, default true) or skips the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDisk {
    /// Device name.
    pub name: String,
    /// What is mounted where.
    pub mount: BindMount,
    /// LXD's `required` (default true).
    pub required: bool,
}

/// Whether `dev` is a disk device with a host `source` (not the root disk).
pub fn is_host_disk(dev: &std::collections::BTreeMap<String, String>) -> bool {
    dev.get("type").map(String::as_str) == Some("disk")
        && dev.get("path").map(String::as_str) != Some("/")
        && dev.get("source").is_some_and(|s| !s.is_empty())
}

/// The host-path disks among the (expanded) `devices`, by device name.
pub fn host_disks(devices: &DeviceMap) -> Vec<HostDisk> {
    devices
        .iter()
        .filter(|(_, dev)| is_host_disk(dev))
        .map(|(name, dev)| HostDisk {
            name: name.clone(),
            mount: BindMount {
                source: PathBuf::from(dev.get("source").map_or("", String::as_str)),
                target: format!(
                    "/{}",
                    dev.get("path").map_or("", |p| p.trim_start_matches('/'))
                ),
                readonly: is_true(dev.get("readonly")),
            },
            required: dev.get("required").is_none_or(|v| is_true(Some(v))),
        })
        .collect()
}

/// Refuses host-path disks on a virtual machine (drover shares no host directory with a
/// guest), in the words of a device error.
///
/// # Errors
///
/// 400 naming the first such device.
pub fn check_kind(kind: &str, devices: &DeviceMap) -> ApiResult<()> {
    if kind != "virtual-machine" {
        return Ok(());
    }
    match host_disks(devices).first() {
        Some(disk) => Err(ApiError::bad_request(format!(
            "Invalid devices: Device {:?}: disks with a host source are not supported for virtual machines by drover",
            disk.name
        ))),
        None => Ok(()),
    }
}

/// What a start mounts: every host-path disk whose source exists; a missing required one
/// fails the start as LXD fails it.
///
/// # Errors
///
/// 400 `Missing source path "/x" for disk "data"`, or the VM refusal of [`check_kind`].
pub fn start_mounts(kind: &str, devices: &DeviceMap) -> ApiResult<Vec<BindMount>> {
    check_kind(kind, devices)?;
    let mut out = Vec::new();
    for disk in host_disks(devices) {
        if disk.mount.source.exists() {
            out.push(disk.mount);
        } else if disk.required {
            return Err(missing_source(&disk));
        }
    }
    Ok(out)
}

fn missing_source(disk: &HostDisk) -> ApiError {
    ApiError::bad_request(format!(
        "Failed to start device {:?}: Missing source path {:?} for disk {:?}",
        disk.name,
        disk.mount.source.display().to_string(),
        disk.name
    ))
}

/// The host-path disk changes from `old` to `new` (expanded devices): what to unmount
/// (targets) and what to mount.
pub fn changes(old: &DeviceMap, new: &DeviceMap) -> (Vec<String>, Vec<HostDisk>) {
    let (old, new) = (host_disks(old), host_disks(new));
    let gone = old
        .iter()
        .filter(|o| !new.contains(o))
        .map(|o| o.mount.target.clone())
        .collect();
    let added = new.into_iter().filter(|n| !old.contains(n)).collect();
    (gone, added)
}

/// Refuses host-path disks that `new` adds to `old` (expanded devices) whose required
/// source is missing, as LXD refuses them when they are added, running or not.
///
/// # Errors
///
/// 400 `Failed add validation for device "data": Missing source path "/x" for disk "data"`.
pub fn check_added(old: &DeviceMap, new: &DeviceMap) -> ApiResult<()> {
    let (_, added) = changes(old, new);
    match added
        .iter()
        .find(|d| d.required && !d.mount.source.exists())
    {
        Some(disk) => Err(ApiError::bad_request(format!(
            "Failed add validation for device {:?}: Missing source path {:?} for disk {:?}",
            disk.name,
            disk.mount.source.display().to_string(),
            disk.name
        ))),
        None => Ok(()),
    }
}

/// Applies [`changes`] to the running container `id` before its record changes: unmounts
/// what went, mounts what came (a missing optional source is skipped). On a failure, what
/// this call mounted is unmounted again and what it unmounted is mounted again.
///
/// # Errors
///
/// 400 as [`check_added`], or `Failed to add device "data": ...` (or remove), with nothing
/// changed.
pub async fn hotplug(d: &Daemon, id: &str, old: &DeviceMap, new: &DeviceMap) -> ApiResult<()> {
    let (gone, added) = changes(old, new);
    let restore: Vec<HostDisk> = host_disks(old)
        .into_iter()
        .filter(|o| gone.contains(&o.mount.target))
        .collect();
    check_added(old, new)?;
    let mut detached = Vec::new();
    for target in &gone {
        if let Err(e) = d.driver.detach_mount(id, target).await {
            undo(d, id, &[], &restore_of(&restore, &detached)).await;
            return Err(ApiError::bad_request(format!(
                "Failed to remove the disk at {target:?}: {e}"
            )));
        }
        detached.push(target.clone());
    }
    let mut attached: Vec<String> = Vec::new();
    for disk in added.iter().filter(|a| a.mount.source.exists()) {
        if let Err(e) = d.driver.attach_mount(id, &disk.mount).await {
            undo(d, id, &attached, &restore_of(&restore, &detached)).await;
            return Err(ApiError::bad_request(format!(
                "Failed to add device {:?}: {e}",
                disk.name
            )));
        }
        attached.push(disk.mount.target.clone());
    }
    Ok(())
}

/// The disks of `restore` whose target is in `detached`.
fn restore_of(restore: &[HostDisk], detached: &[String]) -> Vec<HostDisk> {
    restore
        .iter()
        .filter(|r| detached.contains(&r.mount.target))
        .cloned()
        .collect()
}

/// Unmounts `attached` and mounts `detached` again, logging what fails.
async fn undo(d: &Daemon, id: &str, attached: &[String], detached: &[HostDisk]) {
    for target in attached {
        if let Err(e) = d.driver.detach_mount(id, target).await {
            tracing::error!(instance = id, target, error = %e, "hotplugged disk left mounted");
        }
    }
    for disk in detached {
        if let Err(e) = d.driver.attach_mount(id, &disk.mount).await {
            tracing::error!(instance = id, device = %disk.name, error = %e, "disk not mounted again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(source: &str, path: &str, extra: &[(&str, &str)]) -> api::ConfigMap {
        let mut d: api::ConfigMap = [("type", "disk"), ("source", source), ("path", path)]
            .iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        if source.is_empty() {
            d.remove("source");
        }
        d
    }

    #[test]
    fn only_host_disks_are_mounted() {
        let devices: DeviceMap = [
            ("root".to_string(), disk("", "/", &[("pool", "default")])),
            (
                "data".to_string(),
                disk("/tmp", "/mnt/data", &[("readonly", "true")]),
            ),
        ]
        .into();
        let disks = host_disks(&devices);
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].name, "data");
        assert!(disks[0].mount.readonly && disks[0].required);
        assert_eq!(
            start_mounts("container", &devices).expect("mounts").len(),
            1
        );
        let e = start_mounts("virtual-machine", &devices).expect_err("a VM");
        assert!(e.message.contains("\"data\""), "{}", e.message);
    }

    #[test]
    fn a_missing_source_fails_unless_optional() {
        let gone = "/nonexistent/drover-disk-test";
        let devices: DeviceMap = [("d".to_string(), disk(gone, "/mnt", &[]))].into();
        let e = start_mounts("container", &devices).expect_err("missing");
        assert!(e.message.contains("Missing source path"), "{}", e.message);
        let optional: DeviceMap = [(
            "d".to_string(),
            disk(gone, "/mnt", &[("required", "false")]),
        )]
        .into();
        assert!(
            start_mounts("container", &optional)
                .expect("optional")
                .is_empty()
        );
    }

    #[test]
    fn changes_name_what_went_and_what_came() {
        let old: DeviceMap = [
            ("a".to_string(), disk("/tmp", "/mnt/a", &[])),
            ("b".to_string(), disk("/tmp", "/mnt/b", &[])),
        ]
        .into();
        let new: DeviceMap = [
            ("a".to_string(), disk("/tmp", "/mnt/a", &[])),
            ("b".to_string(), disk("/var", "/mnt/b", &[])),
            ("c".to_string(), disk("/tmp", "/mnt/c", &[])),
        ]
        .into();
        let (gone, added) = changes(&old, &new);
        assert_eq!(gone, vec!["/mnt/b".to_string()]);
        let names: Vec<_> = added.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
    }
}

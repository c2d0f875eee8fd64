//! The instances service: everything handlers ask about instances goes through here.

mod copy;
mod copy_remote;
mod create;
pub mod disks;
pub mod files;
mod lifecycle;
pub mod migrate;
pub mod profile_apply;
pub mod records;
mod update;
pub mod validate;
mod view;
mod watch;

use api::{ConfigMap, DeviceMap};
use db::instances::InstanceRecord;
use db::profiles::ProfileRecord;

pub use create::{create, create_in_transit};
pub use lifecycle::{
    autostart_all, change_state, check_member_accepts, instance_status, is_frozen, member_takes,
    reattach_all, runtime_status, start_for_restore, stop_for_evacuation,
};
pub use update::{delete, move_renamed, rename, update};
pub use view::{etag, instance_state, instance_view, log_file, log_name};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The runtime id of an instance, unique on this member.
pub fn runtime_id(project: &str, name: &str) -> String {
    format!("{project}_{name}")
}

/// `/1.0/instances/<name>`.
pub fn url(name: &str) -> String {
    format!("/1.0/instances/{name}")
}

/// Profiles' config overlaid in order, then the instance's own.
pub fn expand_config(local: &ConfigMap, profiles: &[ProfileRecord]) -> ConfigMap {
    let mut out = ConfigMap::new();
    for p in profiles {
        out.extend(p.config.clone());
    }
    out.extend(local.clone());
    out
}

/// Profiles' devices overlaid in order, then the instance's own.
pub fn expand_devices(local: &DeviceMap, profiles: &[ProfileRecord]) -> DeviceMap {
    let mut out = DeviceMap::new();
    for p in profiles {
        out.extend(p.devices.clone());
    }
    out.extend(local.clone());
    out
}

/// The profiles named, in order; 404-style error for a missing one.
pub async fn load_profiles(
    d: &Daemon,
    project: &str,
    names: &[String],
) -> ApiResult<Vec<ProfileRecord>> {
    let project = project.to_string();
    let names = names.to_vec();
    d.read(move |c| read_profiles(c, &project, &names))
        .await?
        .map_err(missing_profile)
}

/// The pool of `rec`'s root disk with its record (`None` inside when no such pool exists),
/// given its profiles as [`read_profiles`] found them; `None` when a profile is missing or
/// there is no root disk.
/// `get` reads a pool by name (for example [`db::pools::get`]).
pub fn read_root_pool(
    rec: &db::instances::InstanceRecord,
    profiles: &Result<Vec<ProfileRecord>, String>,
    get: impl FnOnce(&str) -> db::Result<Option<db::pools::PoolRecord>>,
) -> db::Result<Option<(String, Option<db::pools::PoolRecord>)>> {
    let Ok(profiles) = profiles else {
        return Ok(None);
    };
    match root_pool(&expand_devices(&rec.devices, profiles)) {
        Some(name) => {
            let found = get(&name)?;
            Ok(Some((name, found)))
        }
        None => Ok(None),
    }
}

/// The profiles named, in order, or the name of the first missing one: the DB half of
/// [`load_profiles`], for callers that read more in the same go.
pub fn read_profiles(
    c: &db::Connection,
    project: &str,
    names: &[String],
) -> db::Result<Result<Vec<ProfileRecord>, String>> {
    let mut found = Vec::with_capacity(names.len());
    for n in names {
        match db::profiles::get(c, project, n)? {
            Some(p) => found.push(p),
            None => return Ok(Err(n.clone())),
        }
    }
    Ok(Ok(found))
}

/// LXD's refusal of a missing profile.
pub fn missing_profile(name: String) -> ApiError {
    ApiError::bad_request(format!("Requested profile {name:?} doesn't exist"))
}

/// The instance record, or LXD's 404.
pub async fn load(d: &Daemon, project: &str, name: &str) -> ApiResult<InstanceRecord> {
    Daemon::check_project(project)?;
    let (p, n) = (project.to_string(), name.to_string());
    d.read(move |c| db::instances::get(c, &p, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Instance not found"))
}

/// The storage pool of an instance: its root disk's `pool`.
pub fn root_pool(expanded_devices: &DeviceMap) -> Option<String> {
    expanded_devices
        .values()
        .find(|d| {
            d.get("type").map(String::as_str) == Some("disk")
                && d.get("path").map(String::as_str) == Some("/")
        })
        .and_then(|d| d.get("pool").cloned())
}

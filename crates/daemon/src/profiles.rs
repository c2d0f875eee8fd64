//! The profiles service.

use api::profiles::{Profile, ProfilePut};

use crate::error::{ApiError, ApiResult};
use crate::instances::profile_apply::{self, Change};
use crate::instances::validate;
use crate::state::Daemon;

fn view(rec: db::profiles::ProfileRecord, used_by: Vec<String>) -> Profile {
    Profile {
        name: rec.name,
        description: rec.description,
        config: rec.config,
        devices: rec.devices,
        used_by,
    }
}

/// All profiles of `project`.
pub async fn list(d: &Daemon, project: &str) -> ApiResult<Vec<Profile>> {
    Daemon::check_project(project)?;
    let p = project.to_string();
    let recs = d.read(move |c| db::profiles::list(c, &p)).await?;
    let mut out = Vec::new();
    for rec in recs {
        let used = used_by(d, project, &rec.name).await?;
        out.push(view(rec, used));
    }
    Ok(out)
}

async fn used_by(d: &Daemon, project: &str, name: &str) -> ApiResult<Vec<String>> {
    let (p, n) = (project.to_string(), name.to_string());
    let names = d
        .read(move |c| db::instances::using_profile(c, &p, &n))
        .await?;
    Ok(names.iter().map(|n| crate::instances::url(n)).collect())
}

/// The profile `name` (`GET /1.0/profiles/{name}`; a missing one answers LXD 5.0.2's
/// `Fetch profile: Profile not found`, what `lxc profile show|set|copy` print).
pub async fn get(d: &Daemon, project: &str, name: &str) -> ApiResult<Profile> {
    Daemon::check_project(project)?;
    let (p, n) = (project.to_string(), name.to_string());
    let rec = d
        .read(move |c| db::profiles::get(c, &p, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Fetch profile: Profile not found"))?;
    let used = used_by(d, project, name).await?;
    Ok(view(rec, used))
}

/// `PUT` (replace) or `PATCH` (merge) a profile, validating config and devices first.
pub async fn update(
    d: &Daemon,
    project: &str,
    name: &str,
    req: ProfilePut,
    merge: bool,
) -> ApiResult<()> {
    let current = get(d, project, name).await?;
    let mut config = if merge {
        current.config
    } else {
        Default::default()
    };
    config.extend(req.config.unwrap_or_default());
    // An empty value unsets the key (`lxc profile unset`), as LXD stores no empty value.
    config.retain(|_, v| !v.is_empty());
    let mut devices = if merge {
        current.devices
    } else {
        Default::default()
    };
    devices.extend(req.devices.unwrap_or_default());
    validate::config(&config).map_err(profile_error)?;
    validate::devices(&devices).map_err(profile_error)?;
    for dev in devices.values() {
        if let Some(pool) = dev.get("pool").cloned() {
            let p = pool.clone();
            if d.read(move |c| db::pools::get(c, &p)).await?.is_none() {
                return Err(ApiError::bad_request(format!(
                    "Storage pool {pool:?} not found"
                )));
            }
        }
    }
    let changes = check_users(d, project, name, &config, &devices).await?;
    let description = if merge {
        req.description.unwrap_or(current.description)
    } else {
        req.description.unwrap_or_default()
    };
    d.write(db::Command::UpdateProfile {
        project: project.to_string(),
        name: name.to_string(),
        description,
        config,
        devices,
    })
    .await?;
    d.bus.lifecycle(
        "profile-updated",
        format!("/1.0/profiles/{name}"),
        project,
        None,
    );
    apply_to_running(d, changes).await
}

/// LXD's words for a profile's bad config or device: the instance's without the
/// `Invalid config: ` / `Invalid devices: ` in front.
fn profile_error(mut e: ApiError) -> ApiError {
    for prefix in ["Invalid config: ", "Invalid devices: "] {
        if let Some(rest) = e.message.strip_prefix(prefix) {
            e.message = rest.to_string();
        }
    }
    e
}

/// Has the member of each instance apply its [`Change`] (new limits, disks mounted or
/// unmounted while it runs), as LXD updates every instance using a changed profile. The
/// profile stays changed when an instance cannot follow (LXD keeps it too); the error names
/// each such instance in LXD's words.
async fn apply_to_running(d: &Daemon, changes: Vec<(String, Change)>) -> ApiResult<()> {
    // All at once: one slow member does not hold the others' instances back.
    let applied = futures::future::join_all(changes.iter().filter(|(_, c)| c.is_live()).map(
        |(member, change)| async move {
            (
                member,
                change,
                profile_apply::apply_on(d, member, change).await,
            )
        },
    ))
    .await;
    let mut failed = Vec::new();
    for (member, change, outcome) in applied {
        if let Err(e) = outcome {
            tracing::warn!(instance = %change.name, %member, error = %e.message, "profile change not applied");
            failed.push(format!(
                " - Project: {}, Instance: {}: {}",
                change.project, change.name, e.message
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "The following instances failed to update (profile change still saved):\n{}",
            failed.join("\n")
        )))
    }
}

/// Checks that every instance using profile `name` stays valid with its new `config` and
/// `devices`: expanded config valid, a root disk still there and on the same pool (volumes
/// do not move when a profile changes), no host disk on a virtual machine. Returns, per
/// instance, its member and what changes for it.
async fn check_users(
    d: &Daemon,
    project: &str,
    name: &str,
    config: &api::ConfigMap,
    devices: &api::DeviceMap,
) -> ApiResult<Vec<(String, Change)>> {
    let mut changes = Vec::new();
    let (p, n) = (project.to_string(), name.to_string());
    let users = d
        .read(move |c| {
            Ok(db::instances::list(c, &p)?
                .into_iter()
                .filter(|i| i.profiles.contains(&n))
                .collect::<Vec<_>>())
        })
        .await?;
    for inst in users {
        let old = crate::instances::load_profiles(d, project, &inst.profiles).await?;
        let new: Vec<_> = old
            .iter()
            .cloned()
            .map(|mut p| {
                if p.name == name {
                    p.config = config.clone();
                    p.devices = devices.clone();
                }
                p
            })
            .collect();
        let refuse = |why: String| {
            ApiError::bad_request(format!(
                "Profile update would break instance {:?}: {why}",
                inst.name
            ))
        };
        let new_config = crate::instances::expand_config(&inst.config, &new);
        validate::config(&new_config).map_err(|e| refuse(e.message))?;
        let old_devices = crate::instances::expand_devices(&inst.devices, &old);
        let new_devices = crate::instances::expand_devices(&inst.devices, &new);
        match crate::instances::root_pool(&new_devices) {
            None => return Err(refuse("it would have no root disk device".into())),
            Some(p) if Some(&p) != crate::instances::root_pool(&old_devices).as_ref() => {
                return Err(refuse(format!("its root disk would move to pool {p:?}")));
            }
            Some(_) => {}
        }
        crate::instances::disks::check_kind(&inst.kind, &new_devices)
            .map_err(|e| refuse(e.message))?;
        changes.push((
            inst.member.clone(),
            Change {
                project: project.to_string(),
                name: inst.name.clone(),
                old_config: crate::instances::expand_config(&inst.config, &old),
                new_config,
                old_devices,
                new_devices,
            },
        ));
    }
    Ok(changes)
}

/// Creates a profile.
pub async fn create(d: &Daemon, project: &str, req: api::profiles::ProfilesPost) -> ApiResult<()> {
    Daemon::check_project(project)?;
    if req.name.is_empty() || req.name.contains('/') {
        return Err(ApiError::bad_request("Invalid profile name"));
    }
    let mut config = req.put.config.unwrap_or_default();
    config.retain(|_, v| !v.is_empty());
    let devices = req.put.devices.unwrap_or_default();
    validate::config(&config).map_err(profile_error)?;
    validate::devices(&devices).map_err(profile_error)?;
    d.write(db::Command::CreateProfile {
        project: project.to_string(),
        name: req.name.clone(),
        description: req.put.description.unwrap_or_default(),
        config,
        devices,
    })
    .await
    .map_err(|e| {
        if e.status == axum::http::StatusCode::CONFLICT {
            ApiError::conflict(format!("Profile {:?} already exists", req.name))
        } else {
            e
        }
    })?;
    d.bus.lifecycle(
        "profile-created",
        format!("/1.0/profiles/{}", req.name),
        project,
        None,
    );
    Ok(())
}

/// Deletes profile `name` (`lxc profile delete`), as LXD 5.0.2 does: never `default`, never
/// one an instance uses.
///
/// # Errors
///
/// 403 for `default`, 404 for an unknown profile, 400 while it is in use.
pub async fn delete(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    Daemon::check_project(project)?;
    if name == "default" {
        return Err(ApiError::forbidden(
            r#"The "default" profile cannot be deleted"#,
        ));
    }
    let current = get(d, project, name).await?;
    if !current.used_by.is_empty() {
        return Err(ApiError::bad_request("Profile is currently in use"));
    }
    d.write(db::Command::DeleteProfile {
        project: project.to_string(),
        name: name.to_string(),
    })
    .await?;
    d.bus.lifecycle(
        "profile-deleted",
        format!("/1.0/profiles/{name}"),
        project,
        None,
    );
    Ok(())
}

/// Renames profile `name` to `new_name` (`lxc profile rename`); the instances using it
/// keep using it under its new name.
///
/// # Errors
///
/// 403 for `default`, 400 for a bad new name, 404 for an unknown profile, 409 when the
/// new name is taken.
pub async fn rename(d: &Daemon, project: &str, name: &str, new_name: &str) -> ApiResult<()> {
    Daemon::check_project(project)?;
    if name == "default" {
        return Err(ApiError::forbidden(
            r#"The "default" profile cannot be renamed"#,
        ));
    }
    if new_name.is_empty() {
        return Err(ApiError::bad_request("No name provided"));
    }
    if new_name.contains('/') {
        return Err(ApiError::bad_request(
            "Profile names may not contain slashes",
        ));
    }
    if [".", ".."].contains(&new_name) {
        return Err(ApiError::bad_request(format!(
            "Invalid profile name {new_name:?}"
        )));
    }
    get(d, project, name).await?;
    let (p, n) = (project.to_string(), new_name.to_string());
    if d.read(move |c| db::profiles::get(c, &p, &n))
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "Name {new_name:?} already in use"
        )));
    }
    d.write(db::Command::RenameProfile {
        project: project.to_string(),
        name: name.to_string(),
        new_name: new_name.to_string(),
    })
    .await
    .map_err(|e| {
        if e.status == axum::http::StatusCode::CONFLICT {
            ApiError::conflict(format!("Name {new_name:?} already in use"))
        } else {
            e
        }
    })?;
    d.bus.lifecycle(
        "profile-renamed",
        format!("/1.0/profiles/{new_name}"),
        project,
        None,
    );
    Ok(())
}

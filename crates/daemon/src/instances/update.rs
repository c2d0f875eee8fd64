//! `PUT`/`PATCH` (config), `POST` (rename) and `DELETE` of an instance.

use std::collections::BTreeMap;

use api::instances::InstancePut;
use api::{InstanceStatus, OperationClass};
use db::instances::InstanceRecord;

use super::{
    etag, expand_config, expand_devices, load_profiles, root_pool, runtime_id, runtime_status, url,
    validate,
};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Applies `PUT` (`merge = false`: absent fields become empty) or `PATCH` (`merge = true`:
/// config and devices merge key by key). Validates everything first; `if_match` is the
/// client's ETag.
pub async fn update(
    d: &Daemon,
    project: &str,
    name: &str,
    req: InstancePut,
    merge: bool,
    if_match: Option<String>,
) -> ApiResult<()> {
    // Under the instance lock: a start or stop in flight must not be overwritten with the
    // volatile keys read here.
    let lock = d.instance_lock(&runtime_id(project, name));
    let _guard = lock.lock().await;
    let rec = super::load(d, project, name).await?;
    if let Some(tag) = if_match {
        let tag = tag.trim_matches('"');
        if !tag.is_empty() && tag != etag(&rec) {
            return Err(ApiError::precondition_failed("ETag doesn't match"));
        }
    }
    if let Some(arch) = &req.architecture
        && !arch.is_empty()
        && arch != &rec.architecture
    {
        return Err(ApiError::bad_request(
            "Instance architecture can't be changed",
        ));
    }
    if req.restore.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request("Snapshots are not supported"));
    }
    let mut config = rec.config.clone();
    let mut devices = rec.devices.clone();
    match (merge, req.config) {
        (true, Some(c)) => config.extend(c),
        (false, Some(c)) => config = c,
        (false, None) => config.clear(),
        (true, None) => {}
    }
    match (merge, req.devices) {
        (true, Some(dv)) => devices.extend(dv),
        (false, Some(dv)) => devices = dv,
        (false, None) => devices.clear(),
        (true, None) => {}
    }
    // An empty value unsets the key, as LXD stores no empty value.
    config.retain(|_, v| !v.is_empty());
    // Keys LXD keeps across a PUT even when the client drops them.
    for (k, v) in &rec.config {
        if (k.starts_with("volatile.") || k.starts_with("image."))
            && !config.contains_key(k)
            && !merge
        {
            config.insert(k.clone(), v.clone());
        }
    }
    let profile_names = req.profiles.unwrap_or_else(|| rec.profiles.clone());
    validate::profile_names(&profile_names)?;
    validate::config(&config)?;
    validate::devices(&devices)?;
    let profiles = load_profiles(d, project, &profile_names).await?;
    let new_expanded = expand_config(&config, &profiles);
    validate::config(&new_expanded)?;
    let new_devices = expand_devices(&devices, &profiles);
    validate::devices(&new_devices)?;
    super::disks::check_kind(&rec.kind, &new_devices)?;
    let old_profiles = load_profiles(d, project, &rec.profiles)
        .await
        .unwrap_or_default();
    if root_pool(&new_devices) != root_pool(&expand_devices(&rec.devices, &old_profiles)) {
        return Err(ApiError::bad_request(
            "The root disk device's pool can't be changed",
        ));
    }
    let old_devices = expand_devices(&rec.devices, &old_profiles);
    super::disks::check_added(&old_devices, &new_devices)?;
    // A running instance gets changed limits now, before the record says so.
    let old_expanded = expand_config(&rec.config, &old_profiles);
    let limits = |c: &api::ConfigMap| {
        c.iter()
            .filter(|(k, _)| k.starts_with("limits."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    let id = runtime_id(project, name);
    let running = runtime_status(d, &id) == InstanceStatus::Running;
    let live = limits(&old_expanded) != limits(&new_expanded) && running;
    if live {
        d.driver
            .update_limits(&id, &new_expanded)
            .await
            .map_err(|e| ApiError::bad_request(format!("Failed to apply new limits: {e}")))?;
    }
    // Host-path disks come and go on a running container now, as LXD hotplugs them.
    let disks_live =
        running && super::disks::changes(&old_devices, &new_devices) != (vec![], vec![]);
    if disks_live && let Err(e) = super::disks::hotplug(d, &id, &old_devices, &new_devices).await {
        if live && let Err(undo) = d.driver.update_limits(&id, &old_expanded).await {
            tracing::error!(instance = %name, error = %undo, "old limits not restored");
        }
        return Err(e);
    }
    let written = d
        .write(db::Command::UpdateInstance {
            project: project.to_string(),
            name: name.to_string(),
            config,
            devices,
            profiles: profile_names,
            ephemeral: req.ephemeral.unwrap_or(rec.ephemeral),
            description: req.description.unwrap_or(rec.description),
        })
        .await;
    if let Err(e) = written {
        // The record kept the old limits: so does the instance.
        if live && let Err(undo) = d.driver.update_limits(&id, &old_expanded).await {
            tracing::error!(instance = %name, error = %undo, "old limits not restored");
        }
        if disks_live
            && let Err(undo) = super::disks::hotplug(d, &id, &new_devices, &old_devices).await
        {
            tracing::error!(instance = %name, error = %undo.message, "old disks not restored");
        }
        return Err(e);
    }
    d.bus
        .lifecycle("instance-updated", url(name), project, None);
    Ok(())
}

/// `POST /1.0/instances/{name}` with a new name: renames a stopped instance.
pub async fn rename(
    d: &Daemon,
    project: &str,
    name: &str,
    new_name: &str,
) -> ApiResult<api::Operation> {
    validate::name(new_name)?;
    check_renamable(d, project, name, new_name).await?;
    let id = runtime_id(project, name);
    let resources = BTreeMap::from([("instances".to_string(), vec![url(name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, "Renaming instance", resources, None);
    let record = op.record();
    let (d, project, name, new_name) = (
        d.clone(),
        project.to_string(),
        name.to_string(),
        new_name.to_string(),
    );
    tokio::spawn(async move {
        // Both names are locked: nothing may start under the old name or be created under
        // the new one while the volume moves.
        let (old_lock, new_lock) = (
            d.instance_lock(&id),
            d.instance_lock(&runtime_id(&project, &new_name)),
        );
        let _old = old_lock.lock().await;
        let _new = new_lock.lock().await;
        match rename_now(&d, &project, &name, &new_name).await {
            Ok(()) => op.succeed(None),
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

/// `POST /1.0/instances/{name}?target=m2` with `migration` and a new name (`lxc move c1
/// c2 --target m2`, a stopped instance): renames it here, then moves it as
/// [`super::migrate::start_move`] does. A move refused at once puts the old name back.
///
/// # Errors
///
/// The rename's refusals (a running instance, the name in use), then the move's.
pub async fn move_renamed(
    d: &Daemon,
    project: &str,
    name: &str,
    req: &api::instances::InstancePost,
    target: Option<&str>,
) -> ApiResult<api::Operation> {
    validate::name(&req.name)?;
    if target.is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "Moving an instance needs a target cluster member (?target=<member>)",
        ));
    }
    check_renamable(d, project, name, &req.name).await?;
    renamed_locked(d, project, name, &req.name).await?;
    match super::migrate::start_move(d, project, &req.name, req, target).await {
        Ok(op) => Ok(op),
        Err(e) => {
            if let Err(undo) = renamed_locked(d, project, &req.name, name).await {
                tracing::error!(instance = %req.name, error = %undo.message, "rename before a refused move not undone");
            }
            Err(e)
        }
    }
}

/// [`rename_now`] under both names' locks.
async fn renamed_locked(d: &Daemon, project: &str, name: &str, new_name: &str) -> ApiResult<()> {
    let (old_lock, new_lock) = (
        d.instance_lock(&runtime_id(project, name)),
        d.instance_lock(&runtime_id(project, new_name)),
    );
    let _old = old_lock.lock().await;
    let _new = new_lock.lock().await;
    rename_now(d, project, name, new_name).await
}

/// LXD's refusals of a rename, in LXD 5.0.2's order: unknown instance, name in use, then
/// running instance (`container` for a container, as LXD words it).
async fn check_renamable(
    d: &Daemon,
    project: &str,
    name: &str,
    new_name: &str,
) -> ApiResult<InstanceRecord> {
    let rec = super::load(d, project, name).await?;
    let (p, n) = (project.to_string(), new_name.to_string());
    if d.read(move |c| db::instances::get(c, &p, &n))
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "Name {new_name:?} already in use"
        )));
    }
    // A frozen instance still runs, for LXD too.
    if matches!(
        runtime_status(d, &runtime_id(project, name)),
        InstanceStatus::Running | InstanceStatus::Frozen
    ) {
        let kind = if rec.kind == "virtual-machine" {
            "instance"
        } else {
            "container"
        };
        return Err(ApiError::bad_request(format!(
            "Renaming of running {kind} not allowed"
        )));
    }
    Ok(rec)
}

/// The runtime directories instance `id` may have: a container's (`containers/`) and a
/// VM's (`vms/`), each with its console log.
fn runtime_dirs(d: &Daemon, id: &str) -> [std::path::PathBuf; 2] {
    [d.paths.run.join(id), d.paths.state_dir.join("vms").join(id)]
}

/// The body of a rename; the caller holds both names' locks.
async fn rename_now(d: &Daemon, project: &str, name: &str, new_name: &str) -> ApiResult<()> {
    let rec = check_renamable(d, project, name, new_name).await?;
    crate::volumes::rename(d, &rec, new_name).await?;
    let cmd = db::Command::RenameInstance {
        project: rec.project.clone(),
        name: rec.name.clone(),
        new_name: new_name.to_string(),
    };
    if let Err(e) = d.write(cmd).await {
        let mut renamed = rec.clone();
        renamed.name = new_name.to_string();
        if let Err(undo) = crate::volumes::rename(d, &renamed, &rec.name).await {
            tracing::error!(instance = %rec.name, error = %undo.message, "volume rename not undone");
        }
        return Err(e);
    }
    // The console log goes with the instance (a container's or a VM's).
    let new_dirs = runtime_dirs(d, &runtime_id(project, new_name));
    for (old_dir, new_dir) in runtime_dirs(d, &runtime_id(project, name))
        .into_iter()
        .zip(new_dirs)
    {
        if let Err(e) = tokio::fs::rename(&old_dir, &new_dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(instance = %new_name, error = %e, "runtime files not moved");
        }
    }
    d.bus.lifecycle(
        "instance-renamed",
        url(new_name),
        &rec.project,
        Some(serde_json::json!({"old_name": rec.name})),
    );
    Ok(())
}

/// `DELETE /1.0/instances/{name}`: refuses a running instance (as LXD does), else deletes
/// it in an operation that checks again under the instance lock.
pub async fn delete(d: &Daemon, project: &str, name: &str) -> ApiResult<api::Operation> {
    let rec = super::load(d, project, name).await?;
    let id = runtime_id(project, name);
    refuse_running(d, &id)?;
    let resources = BTreeMap::from([("instances".to_string(), vec![url(name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, "Deleting instance", resources, None);
    let record = op.record();
    let d = d.clone();
    tokio::spawn(async move {
        let lock = d.instance_lock(&id);
        let _guard = lock.lock().await;
        let result = async {
            let rec = super::load(&d, &rec.project, &rec.name).await?;
            delete_now(&d, &rec).await
        };
        match result.await {
            Ok(()) => op.succeed(None),
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

fn refuse_running(d: &Daemon, id: &str) -> ApiResult<()> {
    if runtime_status(d, id) == InstanceStatus::Running {
        return Err(ApiError::bad_request(
            "The instance is currently running, stop it first",
        ));
    }
    Ok(())
}

/// Deletes a stopped instance: record first (so it is gone for clients), then the volume
/// and runtime files. The caller holds its lock.
pub(super) async fn delete_now(d: &Daemon, rec: &InstanceRecord) -> ApiResult<()> {
    let id = runtime_id(&rec.project, &rec.name);
    refuse_running(d, &id)?;
    // Clear the runtime's leftovers of a stopped container before the files go.
    d.driver
        .state(&id)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to clean up runtime state: {e}")))?;
    let profiles = load_profiles(d, &rec.project, &rec.profiles)
        .await
        .unwrap_or_default();
    let pool = root_pool(&expand_devices(&rec.devices, &profiles));
    d.write(db::Command::DeleteInstance {
        project: rec.project.clone(),
        name: rec.name.clone(),
    })
    .await?;
    if let Some(pool) = pool {
        crate::volumes::delete(d, &pool, rec).await?;
    }
    // A VM's files (its console log above all) go too: a later instance of the same name
    // must not show the deleted one's console.
    for run_dir in runtime_dirs(d, &id) {
        if let Err(e) = tokio::fs::remove_dir_all(&run_dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(instance = %rec.name, error = %e, "runtime files not removed");
        }
    }
    d.bus
        .lifecycle("instance-deleted", url(&rec.name), &rec.project, None);
    Ok(())
}

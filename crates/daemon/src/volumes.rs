//! Instance volumes on storage pools, and the image templates rendered into them.

use std::path::PathBuf;

use api::ConfigMap;
use db::images::ImageRecord;
use db::instances::InstanceRecord;
use db::pools::PoolState;
use storage::{DirPool, TemplateContext, TemplateTrigger};

use crate::error::{ApiError, ApiResult};
use crate::instances::{expand_devices, load_profiles, root_pool, runtime_id};
use crate::state::Daemon;

/// Start-up work on every pool, before anything else runs on them: removes the leftovers
/// of volume work a previous daemon was doing when it stopped (member-local pools only: a
/// `shared-fs` pool's temporary directories may be another member's work in progress),
/// records this member's own part of each `dir` pool it has none of yet (a member that
/// joined after the pool was made), and records the volumes of this member's instances
/// made before volumes were recorded. Image bases whose image is gone from the cluster
/// leave the member's `dir` pools then (bases otherwise outlive their last volume).
pub async fn recover_all(d: &Daemon) -> ApiResult<()> {
    let pools = d.read(db::pools::list).await?;
    let images: std::collections::HashSet<String> = d
        .read(db::images::list)
        .await?
        .into_iter()
        .map(|i| i.fingerprint)
        .collect();
    let me = d.member();
    let mut parts = Vec::new();
    for rec in pools {
        if rec.state != PoolState::Created || !DRIVERS.contains(&rec.driver.as_str()) {
            continue;
        }
        let source = pool_source(d, &rec);
        let shared = rec.driver == "shared-fs";
        let made = source.clone();
        let images = images.clone();
        blocking(move || {
            if shared {
                DirPool::open(made).map(drop)
            } else {
                // Image bases outlive their volumes until their image is deleted.
                DirPool::new(made).and_then(|p| p.prune_bases(|fp| images.contains(fp)).map(drop))
            }
            .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
        if !shared && !rec.members.contains_key(&me) {
            parts.push(db::Command::SetPoolMember {
                name: rec.name.clone(),
                member: me.clone(),
                config: [("source".to_string(), source.display().to_string())].into(),
                state: PoolState::Created,
            });
        }
    }
    // The records need a Raft leader, which a member restarting with the whole cluster may
    // not have yet: write them in the background, never holding up the start.
    let d = d.clone();
    tokio::spawn(async move {
        for cmd in parts {
            if let Err(e) = d.write(cmd).await {
                tracing::warn!(error = %e, "cannot record this member's part of a pool");
            }
        }
        if let Err(e) = record_missing_volumes(&d).await {
            tracing::warn!(error = %e, "cannot record the volumes of this member's instances");
        }
    });
    Ok(())
}

/// Records the volume of every instance of this member that has none recorded.
async fn record_missing_volumes(d: &Daemon) -> ApiResult<()> {
    let me = d.member();
    let records = d.read(|c| db::instances::list(c, "default")).await?;
    for rec in records.into_iter().filter(|r| r.member == me) {
        let (project, name) = (rec.project.clone(), rec.name.clone());
        if d.read(move |c| db::volumes::of_instance(c, &project, &name))
            .await?
            .is_some()
        {
            continue;
        }
        let profiles = load_profiles(d, &rec.project, &rec.profiles).await?;
        let Some(pool_name) = root_pool(&expand_devices(&rec.devices, &profiles)) else {
            continue;
        };
        record_volume(d, &pool_name, &rec).await;
    }
    Ok(())
}

/// Records (or refreshes) the volume of `rec` on pool `pool_name`: this member, its size.
/// Call it once the instance is recorded (a failed create must not touch the record of an
/// instance of the same name). Best effort: a failure is logged, the volume is fine.
pub async fn record_volume(d: &Daemon, pool_name: &str, rec: &InstanceRecord) {
    let size = match pool(d, pool_name).await {
        Ok(pool) => {
            let name = volume_name(rec);
            tokio::task::spawn_blocking(move || pool.volume_size(&name).unwrap_or(0))
                .await
                .unwrap_or(0)
        }
        Err(_) => 0,
    };
    let cmd = db::Command::UpsertVolume(db::volumes::VolumeRecord {
        pool: pool_name.to_string(),
        project: rec.project.clone(),
        name: rec.name.clone(),
        kind: db::volumes::CONTAINER.into(),
        member: d.member(),
        size,
    });
    if let Err(e) = d.write(cmd).await {
        tracing::warn!(instance = %rec.name, error = %e, "cannot record the instance's volume");
    }
}

/// The drivers whose volumes this module handles (see `crate::pools`).
const DRIVERS: &[&str] = &["dir", "shared-fs"];

/// Where pool `rec` lives on this member: its own `source`; for a `shared-fs` pool, or a
/// pool nobody has a part of yet (made before per-member config), the global one; for a
/// `dir` pool other members have parts of but this one not yet, this member's default.
fn pool_source(d: &Daemon, rec: &db::pools::PoolRecord) -> PathBuf {
    let me = d.member();
    let own = rec.members.get(&me).and_then(|m| m.config.get("source"));
    let global = if rec.driver == "shared-fs" || rec.members.is_empty() {
        rec.config.get("source")
    } else {
        None
    };
    own.or(global)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| d.paths.pools.join(&rec.name))
}

/// The `DirPool` of pool `name` on this member.
pub async fn pool(d: &Daemon, name: &str) -> ApiResult<DirPool> {
    let n = name.to_string();
    let rec = d.read(move |c| db::pools::get(c, &n)).await?;
    let source = pool_source_checked(d, name, rec)?;
    blocking(move || open_pool(source)).await
}

/// Whether pool `name`'s volumes are reachable from every member (`shared-fs`): a move then
/// changes only the owner, and volumes are plain directories (NFS or CephFS cannot hold
/// an overlay upper layer), never layered on an image base.
pub async fn is_shared(d: &Daemon, name: &str) -> ApiResult<bool> {
    let n = name.to_string();
    let rec = d
        .read(move |c| db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Storage pool {name:?} not found")))?;
    Ok(rec.driver == "shared-fs")
}

/// The source of pool `name` whose record is `rec` on this member: LXD's refusal when there
/// is none, its driver is not one drover has, or it is not created yet.
pub fn pool_source_checked(
    d: &Daemon,
    name: &str,
    rec: Option<db::pools::PoolRecord>,
) -> ApiResult<PathBuf> {
    let rec = rec.ok_or_else(|| ApiError::not_found(format!("Storage pool {name:?} not found")))?;
    if !DRIVERS.contains(&rec.driver.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Storage pool driver {:?} is not supported",
            rec.driver
        )));
    }
    if rec.state != PoolState::Created {
        return Err(ApiError::bad_request(format!(
            "Storage pool {name:?} is {}",
            rec.state.as_str().to_lowercase()
        )));
    }
    Ok(pool_source(d, &rec))
}

/// Opens the pool at `source` (blocking).
fn open_pool(source: PathBuf) -> ApiResult<DirPool> {
    DirPool::open(source).map_err(|e| ApiError::internal(e.to_string()))
}

/// The root filesystem of `rec` on the pool at `source`, mounted if the volume is layered
/// on an image (blocking: opens the pool, may mount).
pub fn rootfs_at(source: PathBuf, rec: &InstanceRecord) -> ApiResult<PathBuf> {
    open_pool(source)?
        .mount_rootfs(&volume_name(rec))
        .map_err(|e| ApiError::internal(format!("Failed to mount the instance's rootfs: {e}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await?
}

fn volume_name(rec: &InstanceRecord) -> String {
    runtime_id(&rec.project, &rec.name)
}

/// What an image's templates see of instance `rec` (`expanded`: its expanded config).
pub fn template_context(rec: &InstanceRecord, expanded: &ConfigMap) -> TemplateContext {
    TemplateContext {
        instance: storage::template::InstanceMeta {
            name: rec.name.clone(),
            architecture: rec.architecture.clone(),
            privileged: crate::instances::validate::is_true(expanded.get("security.privileged")),
            ephemeral: rec.ephemeral,
        },
        config: expanded.clone(),
        devices: rec.devices.clone(),
        file_owner: None,
    }
}

/// Creates the volume of a new instance: the image's base in the pool plus an empty set of
/// own changes (no copy of the image; then its `create` templates), or an empty rootfs.
/// Leaves nothing behind on failure.
pub async fn create(
    d: &Daemon,
    rec: &InstanceRecord,
    image: Option<&ImageRecord>,
    pool_name: &str,
    expanded: &ConfigMap,
) -> ApiResult<()> {
    let pool = pool(d, pool_name).await?;
    let shared = is_shared(d, pool_name).await?;
    let name = volume_name(rec);
    let Some(image) = image else {
        blocking(move || {
            pool.create_empty_volume(&name)
                .map(|_| ())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
        return Ok(());
    };
    let unpacked = d.images.unpacked_dir(&image.fingerprint);
    let templates: std::collections::BTreeMap<String, storage::TemplateSpec> =
        serde_json::from_value(image.templates.clone()).unwrap_or_default();
    let ctx = template_context(rec, expanded);
    let fingerprint = image.fingerprint.clone();
    blocking(move || {
        if shared {
            pool.create_volume_from_image(&name, &unpacked).map(drop)
        } else {
            pool.create_volume_on_image(&name, &fingerprint, &unpacked)
                .map(drop)
        }
        .map_err(|e| ApiError::internal(format!("Failed creating instance from image: {e}")))?;
        let rootfs = pool
            .mount_rootfs(&name)
            .map_err(|e| ApiError::internal(format!("Failed creating instance from image: {e}")))?;
        if let Err(e) = storage::apply_templates(
            &unpacked,
            &templates,
            &rootfs,
            TemplateTrigger::Create,
            &ctx,
        ) {
            let _ = pool.delete_volume(&name);
            return Err(ApiError::internal(format!(
                "Failed to apply templates: {e}"
            )));
        }
        Ok(())
    })
    .await
}

/// Deletes the volume of `rec` on pool `pool_name` (idempotent), and its record when this
/// member holds it (after a move, the old owner deletes its copy but the record is the new
/// owner's).
pub async fn delete(d: &Daemon, pool_name: &str, rec: &InstanceRecord) -> ApiResult<()> {
    if let Some(files) = retire(d, pool_name, rec).await? {
        blocking(move || {
            files
                .remove()
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
    }
    Ok(())
}

/// Takes the volume of `rec` out of pool `pool_name` at once and forgets its record, as
/// [`delete`] does, but returns its files for the caller to remove when it suits (a move
/// answers first: freeing a GiB takes hundreds of ms). `None` if there was no volume.
pub async fn retire(
    d: &Daemon,
    pool_name: &str,
    rec: &InstanceRecord,
) -> ApiResult<Option<storage::RetiredVolume>> {
    let pool = pool(d, pool_name).await?;
    let name = volume_name(rec);
    let files = blocking(move || {
        pool.retire_volume(&name)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    let (project, instance) = (rec.project.clone(), rec.name.clone());
    let recorded = d
        .read(move |c| db::volumes::of_instance(c, &project, &instance))
        .await?;
    if let Some(v) = recorded.filter(|v| v.member == d.member() && v.pool == pool_name) {
        d.write(db::Command::DeleteVolume {
            pool: v.pool,
            project: v.project,
            name: v.name,
            kind: v.kind,
        })
        .await?;
    }
    Ok(files)
}

/// Removes the base of image `fingerprint` from this member's `dir` pools where no volume is
/// layered on it any more: the image was deleted. Best effort (failures are logged; the
/// next start prunes what is left).
pub async fn prune_image_base(d: &Daemon, fingerprint: &str) {
    let pools = match d.read(db::pools::list).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(image = fingerprint, error = %e, "image bases not pruned");
            return;
        }
    };
    for rec in pools
        .iter()
        .filter(|r| r.state == PoolState::Created && r.driver == "dir")
    {
        let (source, fp) = (pool_source(d, rec), fingerprint.to_string());
        let pruned = blocking(move || {
            if !source.join("images").join(&fp).is_dir() {
                return Ok(false);
            }
            DirPool::open(source)
                .and_then(|p| p.prune_base(&fp))
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await;
        if let Err(e) = pruned {
            tracing::warn!(image = fingerprint, pool = %rec.name, error = %e, "image base not pruned");
        }
    }
}

/// Renames the volume of `rec` to go with the instance's new name.
pub async fn rename(d: &Daemon, rec: &InstanceRecord, new_name: &str) -> ApiResult<()> {
    let profiles = load_profiles(d, &rec.project, &rec.profiles).await?;
    let Some(pool_name) = root_pool(&expand_devices(&rec.devices, &profiles)) else {
        return Ok(());
    };
    let pool = pool(d, &pool_name).await?;
    let (old, new) = (volume_name(rec), runtime_id(&rec.project, new_name));
    blocking(move || {
        pool.rename_volume(&old, &new)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
}

//! Instance volumes on storage pools, and the image templates rendered into them.

use std::path::PathBuf;

use api::ConfigMap;
use db::images::ImageRecord;
use db::instances::InstanceRecord;
use storage::{DirPool, TemplateContext, TemplateTrigger};

use crate::error::{ApiError, ApiResult};
use crate::instances::{expand_devices, load_profiles, root_pool, runtime_id};
use crate::state::Daemon;

/// Removes the leftovers of volume work a previous daemon was doing when it stopped, on
/// every pool. Start-up only: nothing else may run on the pools meanwhile.
pub async fn recover_all(d: &Daemon) -> ApiResult<()> {
    let pools = d.read(db::pools::list).await?;
    for rec in pools {
        if rec.driver != "dir" {
            continue;
        }
        let source = pool_source(d, &rec);
        blocking(move || {
            DirPool::new(source)
                .map(drop)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await?;
    }
    Ok(())
}

fn pool_source(d: &Daemon, rec: &db::pools::PoolRecord) -> PathBuf {
    rec.config
        .get("source")
        .map(PathBuf::from)
        .unwrap_or_else(|| d.paths.pools.join(&rec.name))
}

/// The `DirPool` of pool `name`.
pub async fn pool(d: &Daemon, name: &str) -> ApiResult<DirPool> {
    let n = name.to_string();
    let rec = d.read(move |c| db::pools::get(c, &n)).await?;
    let source = pool_source_checked(d, name, rec)?;
    blocking(move || open_pool(source)).await
}

/// The source of pool `name` whose record is `rec`: LXD's refusal when there is none or
/// its driver is not one drover has.
pub fn pool_source_checked(
    d: &Daemon,
    name: &str,
    rec: Option<db::pools::PoolRecord>,
) -> ApiResult<PathBuf> {
    let rec = rec.ok_or_else(|| ApiError::not_found(format!("Storage pool {name:?} not found")))?;
    if rec.driver != "dir" {
        return Err(ApiError::bad_request(format!(
            "Storage pool driver {:?} is not supported",
            rec.driver
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
    let name = volume_name(rec);
    let Some(image) = image else {
        return blocking(move || {
            pool.create_empty_volume(&name)
                .map(|_| ())
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await;
    };
    let unpacked = d.images.unpacked_dir(&image.fingerprint);
    let templates: std::collections::BTreeMap<String, storage::TemplateSpec> =
        serde_json::from_value(image.templates.clone()).unwrap_or_default();
    let ctx = TemplateContext {
        instance: storage::template::InstanceMeta {
            name: rec.name.clone(),
            architecture: rec.architecture.clone(),
            privileged: crate::instances::validate::is_true(expanded.get("security.privileged")),
            ephemeral: rec.ephemeral,
        },
        config: expanded.clone(),
        devices: rec.devices.clone(),
        file_owner: None,
    };
    let fingerprint = image.fingerprint.clone();
    blocking(move || {
        pool.create_volume_on_image(&name, &fingerprint, &unpacked)
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

/// Deletes the volume of `rec` on pool `pool_name` (idempotent).
pub async fn delete(d: &Daemon, pool_name: &str, rec: &InstanceRecord) -> ApiResult<()> {
    let pool = pool(d, pool_name).await?;
    let name = volume_name(rec);
    blocking(move || {
        pool.delete_volume(&name)
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await
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

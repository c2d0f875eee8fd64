//! The storage pools service.

use std::path::PathBuf;

use api::storage::{StoragePool, StoragePoolsPost};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

fn view(d: &Daemon, rec: db::pools::PoolRecord, used_by: Vec<String>) -> StoragePool {
    StoragePool {
        name: rec.name,
        driver: rec.driver,
        description: rec.description,
        config: rec.config,
        status: "Created".into(),
        locations: vec![d.member()],
        used_by,
    }
}

async fn used_by(d: &Daemon, pool: &str) -> ApiResult<Vec<String>> {
    let pool = pool.to_string();
    d.read(move |c| {
        let mut out = Vec::new();
        for p in db::profiles::list(c, "default")? {
            if p.devices.values().any(|dv| dv.get("pool") == Some(&pool)) {
                out.push(format!("/1.0/profiles/{}", p.name));
            }
        }
        for i in db::instances::list(c, "default")? {
            if i.devices.values().any(|dv| dv.get("pool") == Some(&pool)) {
                out.push(format!("/1.0/instances/{}", i.name));
            }
        }
        Ok(out)
    })
    .await
}

/// All pools.
pub async fn list(d: &Daemon) -> ApiResult<Vec<StoragePool>> {
    let recs = d.read(db::pools::list).await?;
    let mut out = Vec::new();
    for rec in recs {
        let used = used_by(d, &rec.name).await?;
        out.push(view(d, rec, used));
    }
    Ok(out)
}

/// The pool `name`.
pub async fn get(d: &Daemon, name: &str) -> ApiResult<StoragePool> {
    let n = name.to_string();
    let rec = d
        .read(move |c| db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Storage pool not found"))?;
    let used = used_by(d, name).await?;
    Ok(view(d, rec, used))
}

/// The volumes on pool `name`: one `container` volume per instance whose root disk is there.
pub async fn volumes(d: &Daemon, name: &str) -> ApiResult<Vec<api::storage::StorageVolume>> {
    get(d, name).await?;
    let records = d.read(|c| db::instances::list(c, "default")).await?;
    let mut out = Vec::new();
    for rec in records {
        let profiles = crate::instances::load_profiles(d, &rec.project, &rec.profiles)
            .await
            .unwrap_or_default();
        let devices = crate::instances::expand_devices(&rec.devices, &profiles);
        if crate::instances::root_pool(&devices).as_deref() != Some(name) {
            continue;
        }
        out.push(api::storage::StorageVolume {
            name: rec.name.clone(),
            kind: "container".into(),
            description: String::new(),
            config: Default::default(),
            location: rec.member.clone(),
            content_type: "filesystem".into(),
            used_by: vec![crate::instances::url(&rec.name)],
        });
    }
    Ok(out)
}

/// Creates a `dir` pool: validates, makes its directory, then records it.
pub async fn create(d: &Daemon, mut req: StoragePoolsPost) -> ApiResult<()> {
    if req.name.is_empty() || req.name.contains('/') || req.name.starts_with('.') {
        return Err(ApiError::bad_request("Invalid storage pool name"));
    }
    if req.driver != "dir" {
        return Err(ApiError::bad_request(format!(
            "Storage driver {:?} is not supported (drover has: dir)",
            req.driver
        )));
    }
    for k in req.config.keys() {
        if k != "source" && !k.starts_with("user.") {
            return Err(ApiError::bad_request(format!("Invalid option {k:?}")));
        }
    }
    let n = req.name.clone();
    if d.read(move |c| db::pools::get(c, &n)).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "Storage pool {:?} already exists",
            req.name
        )));
    }
    let source = req
        .config
        .get("source")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| d.paths.pools.join(&req.name));
    if !source.is_absolute() {
        return Err(ApiError::bad_request(
            "Storage pool source must be an absolute path",
        ));
    }
    req.config
        .insert("source".into(), source.display().to_string());
    let made = source.clone();
    tokio::task::spawn_blocking(move || storage::DirPool::new(made))
        .await?
        .map_err(|e| ApiError::bad_request(format!("Failed to create storage pool: {e}")))?;
    d.write(db::Command::CreatePool {
        name: req.name.clone(),
        driver: req.driver,
        description: req.description,
        config: req.config,
    })
    .await?;
    d.bus.lifecycle(
        "storage-pool-created",
        format!("/1.0/storage-pools/{}", req.name),
        "default",
        None,
    );
    Ok(())
}

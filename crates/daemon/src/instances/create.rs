//! `POST /1.0/instances`: validate everything, then build the volume and the record in an
//! operation. A failed create leaves neither volume nor record behind.

use std::collections::BTreeMap;

use api::{ConfigMap, InstancesPost, OperationClass};
use db::images::ImageRecord;
use db::instances::InstanceRecord;

use super::{expand_config, expand_devices, load_profiles, root_pool, runtime_id, url, validate};
use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, lock};

/// Never-started instances show this `last_used_at`, as LXD does.
const NEVER: &str = "1970-01-01T00:00:00Z";

/// Releases a reserved name when dropped.
struct Reservation {
    d: Daemon,
    key: String,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        lock(&self.d.creating).remove(&self.key);
    }
}

fn generated_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("c{}", &id[..11])
}

async fn resolve_image(d: &Daemon, req: &InstancesPost) -> ApiResult<Option<ImageRecord>> {
    let src = &req.source;
    match src.kind.as_str() {
        "none" => return Ok(None),
        "" if src.alias.is_empty() && src.fingerprint.is_empty() => return Ok(None),
        "image" | "" => {}
        // The volume comes from the source instance ([`super::copy`]).
        "copy" => return Ok(None),
        "migration" => {
            return Err(ApiError::not_implemented(format!(
                "Instance source type {:?} is not supported yet",
                src.kind
            )));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "Unknown source type {other}"
            )));
        }
    }
    if !src.server.is_empty() {
        return Err(ApiError::bad_request(
            "Remote image servers are not supported: import the image first",
        ));
    }
    let (alias, fp) = (src.alias.clone(), src.fingerprint.clone());
    let image = d
        .read(move |c| {
            let fp = if fp.is_empty() {
                match db::images::alias(c, &alias)? {
                    Some(a) => a.fingerprint,
                    None => return Ok(None),
                }
            } else {
                fp
            };
            db::images::get_by_prefix(c, &fp)
        })
        .await?;
    match image {
        Some(img) => Ok(Some(img)),
        None if !src.alias.is_empty() => Err(ApiError::not_found(format!(
            "Image {:?} not found",
            src.alias
        ))),
        None => Err(ApiError::not_found(format!(
            "Image {:?} not found",
            src.fingerprint
        ))),
    }
}

/// A VM needs a virtual-machine image (`properties.type`), a container any other.
fn check_image_type(kind: &str, image: Option<&ImageRecord>) -> ApiResult<()> {
    let image_kind = image.map(|i| match i.properties.get("type").map(String::as_str) {
        Some("virtual-machine") => "virtual-machine",
        _ => "container",
    });
    match (kind, image_kind) {
        ("virtual-machine", None) => Err(ApiError::bad_request(
            "A virtual machine needs an image (source type \"image\")",
        )),
        (kind, Some(image_kind)) if kind != image_kind => Err(ApiError::bad_request(format!(
            "Requested image's type {image_kind:?} doesn't match instance type {kind:?}"
        ))),
        _ => Ok(()),
    }
}

/// A VM's `limits.memory` must boot the guest and fit in this member.
fn check_vm_memory(expanded: &ConfigMap) -> ApiResult<()> {
    let Some(v) = expanded
        .get("limits.memory")
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(());
    };
    let mib = driver_qemu::vm::parse_memory_mib(v.trim())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if mib < driver_qemu::vm::MIN_MEMORY_MIB {
        return Err(ApiError::bad_request(format!(
            "limits.memory {v} is too small for a virtual machine (at least {}MiB)",
            driver_qemu::vm::MIN_MEMORY_MIB
        )));
    }
    let host_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024);
    if let Some(host) = host_mib.filter(|h| mib > *h) {
        return Err(ApiError::bad_request(format!(
            "limits.memory {v} is more than this member has ({host}MiB)"
        )));
    }
    Ok(())
}

/// A VM's `limits.cpu` must fit in this member: QEMU would start (or refuse to start) a
/// guest with more vCPUs than the host has only after the instance was created.
fn check_vm_cpu(expanded: &ConfigMap) -> ApiResult<()> {
    let Some(v) = expanded.get("limits.cpu").filter(|v| !v.trim().is_empty()) else {
        return Ok(());
    };
    let count = driver_qemu::vm::parse_cpu_count(v.trim())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let host = std::thread::available_parallelism()
        .map_or(u32::MAX, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    if count > host {
        return Err(ApiError::bad_request(format!(
            "limits.cpu {v} is more than this member has ({host} CPUs)"
        )));
    }
    Ok(())
}

/// Refuses `name` when an instance of `project` has it (LXD's 409).
///
/// # Errors
///
/// 409 `Instance "c1" already exists`; 500 on a DB failure.
pub(super) async fn check_name_free(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    let (p, n) = (project.to_string(), name.to_string());
    if d.read(move |c| db::instances::get(c, &p, &n))
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "Instance {name:?} already exists"
        )));
    }
    Ok(())
}

/// Validates `req` and starts the create operation.
pub async fn create(d: &Daemon, project: &str, req: InstancesPost) -> ApiResult<api::Operation> {
    create_with(d, project, req, false).await
}

/// [`create`] of the copy another member asked for to take it over at once
/// ([`super::copy_remote`]): made here, where its source is, even when this member is
/// evacuated (an instance left on an evacuated member can be copied elsewhere, as in LXD).
/// It is stopped and the asking member moves it away as soon as it is made.
pub async fn create_in_transit(
    d: &Daemon,
    project: &str,
    req: InstancesPost,
) -> ApiResult<api::Operation> {
    create_with(d, project, req, true).await
}

/// Whether this member takes a copy in transit: it is evacuated, and no evacuation or
/// restore is under way on it (those would not know of the copy).
async fn takes_transit_copy(d: &Daemon) -> ApiResult<bool> {
    let member = d.member();
    let rec = d.read(move |c| db::members::get(c, &member)).await?;
    Ok(rec.is_some_and(|m| m.state == api::MemberState::Evacuated))
}

async fn create_with(
    d: &Daemon,
    project: &str,
    mut req: InstancesPost,
    transit: bool,
) -> ApiResult<api::Operation> {
    Daemon::check_project(project)?;
    if req.name.is_empty() {
        req.name = generated_name();
    }
    validate::name(&req.name)?;
    if let Some(src) = super::copy_remote::source_elsewhere(d, project, &req).await? {
        return super::copy_remote::start(d, project, req, src).await;
    }
    let copy_from = super::copy::prepare(d, project, &mut req).await?;
    match req.kind.as_str() {
        "" | "container" => req.kind = "container".into(),
        "virtual-machine" => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "Invalid instance type {other:?}"
            )));
        }
    }
    if !req.architecture.is_empty() && req.architecture != std::env::consts::ARCH {
        return Err(ApiError::bad_request(format!(
            "Requested architecture isn't supported by this host: {}",
            req.architecture
        )));
    }
    validate::config(&req.config)?;
    validate::devices(&req.devices)?;
    let in_transit = transit && copy_from.is_some() && !req.start && takes_transit_copy(d).await?;
    if !in_transit {
        super::check_member_accepts(d).await?;
    }
    let profile_names = req
        .profiles
        .clone()
        .unwrap_or_else(|| vec!["default".to_string()]);
    validate::profile_names(&profile_names)?;
    let profiles = load_profiles(d, project, &profile_names).await?;
    let expanded = expand_config(&req.config, &profiles);
    validate::config(&expanded)?;
    let devices = expand_devices(&req.devices, &profiles);
    validate::devices(&devices)?;
    super::disks::check_kind(&req.kind, &devices)?;
    let pool = root_pool(&devices).ok_or_else(|| {
        ApiError::bad_request(
            "Failed to find a root disk device: add one (a profile or the instance's devices)",
        )
    })?;
    if let Some(src) = &copy_from {
        super::copy::check_pool(d, project, src, &pool).await?;
    }
    let pool_name = pool.clone();
    if d.read(move |c| db::pools::get(c, &pool_name))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!(
            "Storage pool {pool:?} not found"
        )));
    }
    let image = resolve_image(d, &req).await?;
    // A copy has no image of its own: its type was checked against the source's.
    if copy_from.is_none() {
        check_image_type(&req.kind, image.as_ref())?;
    }
    if req.kind == "virtual-machine" {
        check_vm_memory(&expanded)?;
        check_vm_cpu(&expanded)?;
    }

    // Reserve the name, then check the DB: a concurrent create of the same name loses.
    let key = runtime_id(project, &req.name);
    if !lock(&d.creating).insert(key.clone()) {
        return Err(ApiError::conflict(format!(
            "Instance {:?} already exists",
            req.name
        )));
    }
    let reservation = Reservation { d: d.clone(), key };
    check_name_free(d, project, &req.name).await?;

    let mut config: ConfigMap = req.config.clone();
    if let Some(img) = &image {
        for (k, v) in &img.properties {
            config
                .entry(format!("image.{k}"))
                .or_insert_with(|| v.clone());
        }
        config.insert("volatile.base_image".into(), img.fingerprint.clone());
    }
    config.insert("volatile.uuid".into(), uuid::Uuid::new_v4().to_string());
    let rec = InstanceRecord {
        project: project.to_string(),
        name: req.name.clone(),
        kind: req.kind.clone(),
        member: d.member(),
        architecture: std::env::consts::ARCH.to_string(),
        config,
        devices: req.devices.clone(),
        profiles: profile_names,
        ephemeral: req.ephemeral,
        description: req.description.clone(),
        created_at: ops::now_rfc3339(),
        last_used_at: NEVER.to_string(),
    };

    let resources = BTreeMap::from([("instances".to_string(), vec![url(&req.name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, "Creating instance", resources, None);
    let record = op.record();
    let d = d.clone();
    let start = req.start;
    tokio::spawn(async move {
        let _reservation = reservation;
        match build(
            &d,
            &rec,
            image.as_ref(),
            copy_from.as_ref(),
            &pool,
            &expanded,
        )
        .await
        {
            Ok(()) => {}
            Err(e) => return op.fail(e.message),
        }
        d.bus.lifecycle(
            "instance-created",
            url(&rec.name),
            &rec.project,
            Some(serde_json::json!({"storage-pool": pool, "type": rec.kind})),
        );
        if start {
            let lock = d.instance_lock(&runtime_id(&rec.project, &rec.name));
            let _guard = lock.lock().await;
            if let Err(e) = super::lifecycle::start_instance(&d, &rec).await {
                return op.fail(e.message);
            }
        }
        op.succeed(None);
    });
    Ok(record)
}

/// Makes the volume (from the image, or as a copy of `copy_from`'s), renders templates,
/// then records the instance. Undoes the volume if a later step fails.
async fn build(
    d: &Daemon,
    rec: &InstanceRecord,
    image: Option<&ImageRecord>,
    copy_from: Option<&InstanceRecord>,
    pool: &str,
    expanded: &ConfigMap,
) -> ApiResult<()> {
    if let Some(img) = image {
        crate::image_share::ensure_local(d, &img.fingerprint).await?;
    }
    match copy_from {
        Some(src) => super::copy::copy_volume(d, pool, src, rec, expanded).await?,
        None => crate::volumes::create(d, rec, image, pool, expanded).await?,
    }
    if let Err(e) = d.write(db::Command::CreateInstance(rec.clone())).await {
        if let Err(undo) = crate::volumes::delete(d, pool, rec).await {
            tracing::warn!(instance = %rec.name, error = %undo.message, "volume of failed create not removed");
        }
        return Err(e);
    }
    crate::volumes::record_volume(d, pool, rec).await;
    Ok(())
}

//! Copying an instance on its member: `POST /1.0/instances` with `source.type: "copy"`
//! (`lxc copy c1 c2`, `cluster_internal_copy`).
//!
//! The copy is made where the source is (placement sends a copy without `?target=` there)
//! and on the same pool: its volume is the source's, copied (for a volume layered on an
//! image, only the source's own changes). The request's config, devices and profiles
//! override the source's as in LXD: keys the request lacks come from the source (its
//! `volatile.*` keys excepted, but for `volatile.base_image`), and no profiles means the
//! source's.

use db::instances::InstanceRecord;
use storage::TemplateTrigger;

use super::{expand_devices, load, load_profiles, root_pool, runtime_id, runtime_status};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// Source config keys a copy takes although they are `volatile.*`.
const KEPT_VOLATILE: &[&str] = &["volatile.base_image"];

/// For a copy request, loads the source, checks it can be copied here, and fills in what
/// `req` lacks from it; `None` for any other request.
///
/// # Errors
///
/// 404 for a missing source; 400 for a copy onto another member, a `refresh`, a source of
/// another project, or a running virtual machine.
pub async fn prepare(
    d: &Daemon,
    project: &str,
    req: &mut api::InstancesPost,
) -> ApiResult<Option<InstanceRecord>> {
    if req.source.kind != "copy" {
        return Ok(None);
    }
    if req.source.source.is_empty() {
        return Err(ApiError::bad_request(
            "A copy needs a source instance (source.source)",
        ));
    }
    refuse_unsupported(project, &req.source)?;
    let src = load(d, project, &req.source.source).await?;
    if src.member != d.member() {
        return Err(ApiError::bad_request(format!(
            "Copying an instance to another cluster member is not supported by drover: copy it on {:?}, then move the copy",
            src.member
        )));
    }
    if src.kind == "virtual-machine"
        && runtime_status(d, &runtime_id(project, &src.name)) != api::InstanceStatus::Stopped
    {
        return Err(ApiError::bad_request(
            "Copying a running virtual machine is not supported: stop it first",
        ));
    }
    if req.kind.is_empty() {
        req.kind = src.kind.clone();
    } else if req.kind != src.kind {
        return Err(ApiError::bad_request(format!(
            "Instance type {:?} doesn't match the source's {:?}",
            req.kind, src.kind
        )));
    }
    for (k, v) in &src.config {
        if !k.starts_with("volatile.") || KEPT_VOLATILE.contains(&k.as_str()) {
            req.config.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    for (k, v) in &src.devices {
        req.devices.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if req.profiles.is_none() {
        req.profiles = Some(src.profiles.clone());
    }
    if req.description.is_empty() {
        req.description = src.description.clone();
    }
    Ok(Some(src))
}

/// Refuses what drover does not copy: from another project, or a `refresh`.
///
/// # Errors
///
/// 400 for another project, 501 for a refresh.
pub fn refuse_unsupported(project: &str, source: &api::instances::InstanceSource) -> ApiResult<()> {
    if !source.project.is_empty() && source.project != project {
        return Err(ApiError::bad_request(
            "Copying an instance between projects is not supported by drover",
        ));
    }
    if source.refresh {
        return Err(ApiError::not_implemented(
            "Refreshing a copy is not supported by drover",
        ));
    }
    Ok(())
}

/// Refuses a copy onto a pool other than the source's (`pool`: the copy's root pool).
pub async fn check_pool(
    d: &Daemon,
    project: &str,
    src: &InstanceRecord,
    pool: &str,
) -> ApiResult<()> {
    let profiles = load_profiles(d, project, &src.profiles).await?;
    let from = root_pool(&expand_devices(&src.devices, &profiles)).unwrap_or_default();
    if from != pool {
        return Err(ApiError::bad_request(format!(
            "Copying an instance to another storage pool ({from:?} to {pool:?}) is not supported by drover"
        )));
    }
    Ok(())
}

/// Makes the volume of `rec` on pool `pool` as a copy of `src`'s, then renders its image's
/// `copy` templates (`/etc/hostname` of the copy names the copy), as LXD does; `expanded`
/// is `rec`'s expanded config. Leaves nothing behind on failure.
pub async fn copy_volume(
    d: &Daemon,
    pool: &str,
    src: &InstanceRecord,
    rec: &InstanceRecord,
    expanded: &api::ConfigMap,
) -> ApiResult<()> {
    let dir_pool = crate::volumes::pool(d, pool).await?;
    let image = match rec.config.get("volatile.base_image") {
        Some(fp) => {
            let fp = fp.clone();
            d.read(move |c| db::images::get_by_prefix(c, &fp)).await?
        }
        None => None,
    };
    let templates = match &image {
        Some(img) => {
            crate::image_share::ensure_local(d, &img.fingerprint).await?;
            let specs: std::collections::BTreeMap<String, storage::TemplateSpec> =
                serde_json::from_value(img.templates.clone()).unwrap_or_default();
            Some((d.images.unpacked_dir(&img.fingerprint), specs))
        }
        None => None,
    };
    let ctx = crate::volumes::template_context(rec, expanded);
    let from = runtime_id(&src.project, &src.name);
    let to = runtime_id(&rec.project, &rec.name);
    tokio::task::spawn_blocking(move || {
        let failed = |e: String| ApiError::internal(format!("Failed copying the instance: {e}"));
        dir_pool
            .copy_volume(&from, &to)
            .map_err(|e| failed(e.to_string()))?;
        let Some((unpacked, specs)) = templates else {
            return Ok(());
        };
        let rendered = dir_pool
            .mount_rootfs(&to)
            .map_err(|e| e.to_string())
            .and_then(|rootfs| {
                storage::apply_templates(&unpacked, &specs, &rootfs, TemplateTrigger::Copy, &ctx)
                    .map_err(|e| format!("Failed to apply templates: {e}"))
            });
        if let Err(e) = rendered {
            let _ = dir_pool.delete_volume(&to);
            return Err(failed(e));
        }
        Ok(())
    })
    .await?
}

//! Writing an image's templates into an instance's rootfs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::context::TemplateContext;
use super::error::TemplateError;
use super::spec::{TemplateSpec, TemplateTrigger};
use super::template::Template;

/// Most symlinks followed while resolving one target path, like the kernel's limit.
const MAX_SYMLINKS: usize = 40;

/// Applies, as LXD does, every template of `templates` whose `when` lists `trigger`: renders
/// `<unpacked_image_dir>/templates/<template>` and writes it to `<rootfs>/<path>`.
///
/// - Parent directories are created. A new file gets mode `0644` and
///   [`TemplateContext::file_owner`]; an existing file is truncated and keeps its mode and
///   owner. With `create_only`, an existing file is left alone.
/// - Symlinks inside the rootfs are resolved as if `rootfs` were `/`, so nothing is ever
///   written outside `rootfs`. Template paths and file names containing `..` are refused.
/// - Templates are applied in path order; the first failure stops and is returned (files
///   already written stay written).
pub fn apply_templates(
    unpacked_image_dir: &Path,
    templates: &BTreeMap<String, TemplateSpec>,
    rootfs: &Path,
    trigger: TemplateTrigger,
    ctx: &TemplateContext,
) -> Result<(), TemplateError> {
    for (path, spec) in templates {
        if !spec.applies_on(trigger) {
            continue;
        }
        apply_one(unpacked_image_dir, path, spec, rootfs, trigger, ctx).map_err(|e| {
            TemplateError::InTemplate {
                template: spec.template.clone(),
                source: Box::new(e),
            }
        })?;
    }
    Ok(())
}

fn apply_one(
    image_dir: &Path,
    path: &str,
    spec: &TemplateSpec,
    rootfs: &Path,
    trigger: TemplateTrigger,
    ctx: &TemplateContext,
) -> Result<(), TemplateError> {
    let tpl_name = Path::new(&spec.template);
    if spec.template.is_empty()
        || !tpl_name
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(TemplateError::UnsafePath(spec.template.clone()));
    }
    let tpl_path = image_dir.join("templates").join(tpl_name);
    let src = fs::read_to_string(&tpl_path).map_err(|source| TemplateError::Io {
        op: "read template",
        path: tpl_path.clone(),
        source,
    })?;

    let dest = resolve_in_root(rootfs, path)?;
    let exists = fs::symlink_metadata(&dest).is_ok();
    if exists && spec.create_only {
        tracing::debug!(path, "template target exists, create_only: skipped");
        return Ok(());
    }
    let text = Template::parse(&src)?.render(&ctx.variables(trigger, path, &spec.properties));

    let io = |op| {
        let dest = dest.clone();
        move |source| TemplateError::Io {
            op,
            path: dest,
            source,
        }
    };
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(io("create parent of"))?;
    }
    let mut file = if exists {
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&dest)
            .map_err(io("open"))?
    } else {
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&dest)
            .map_err(io("create"))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io("chmod"))?;
        if let Some((uid, gid)) = ctx.file_owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io("chown"))?;
        }
        f
    };
    file.write_all(text.as_bytes()).map_err(io("write"))?;
    Ok(())
}

/// Resolves `path` inside `root` as if `root` were `/`: symlinks met on the way are followed
/// with absolute targets taken relative to `root` and `..` never climbing above it. The part
/// that does not exist yet is appended as is.
pub(crate) fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, TemplateError> {
    let mut pending: Vec<OsString> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => pending.push(s.to_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(TemplateError::UnsafePath(path.to_owned()));
            }
        }
    }
    if pending.is_empty() {
        return Err(TemplateError::UnsafePath(path.to_owned()));
    }
    pending.reverse();

    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    let mut hops = 0usize;
    while let Some(part) = pending.pop() {
        if part == ".." {
            if depth > 0 {
                resolved.pop();
                depth -= 1;
            }
            continue;
        }
        let candidate = resolved.join(&part);
        let is_link = fs::symlink_metadata(&candidate)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            resolved = candidate;
            depth += 1;
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            return Err(TemplateError::UnsafePath(path.to_owned()));
        }
        let target = fs::read_link(&candidate).map_err(|source| TemplateError::Io {
            op: "read link",
            path: candidate.clone(),
            source,
        })?;
        if target.is_absolute() {
            resolved = root.to_path_buf();
            depth = 0;
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(s) => pending.push(s.to_owned()),
                Component::ParentDir => pending.push(OsString::from("..")),
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            }
        }
    }
    Ok(resolved)
}

//! The images service: import uploaded LXD image tarballs, list, alias, delete.

use std::collections::BTreeMap;
use std::path::PathBuf;

use api::OperationClass;
use api::images::{Image, ImageAlias, ImageAliasesEntry, ImageAliasesPost};
use db::images::ImageRecord;
use storage::{ImportOptions, ImportedImage};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// What an upload carried, already written to files by the route.
#[derive(Debug, Clone)]
pub enum Upload {
    /// One tarball.
    Unified(PathBuf),
    /// Metadata tarball and rootfs tarball.
    Split {
        /// Metadata tarball.
        metadata: PathBuf,
        /// Rootfs tarball.
        rootfs: PathBuf,
    },
}

/// Upload headers (`X-LXD-*`).
#[derive(Debug, Default)]
pub struct UploadMeta {
    /// `X-LXD-fingerprint`.
    pub fingerprint: Option<String>,
    /// `X-LXD-filename`.
    pub filename: Option<String>,
    /// `X-LXD-public`.
    pub public: bool,
    /// `X-LXD-properties` (decoded).
    pub properties: BTreeMap<String, String>,
    /// Aliases to create (drover extension to the upload: `X-LXD-aliases`, comma separated).
    pub aliases: Vec<String>,
}

/// Imports an upload in an operation whose metadata ends as `{"fingerprint", "size"}`.
/// The upload files are removed whatever happens.
pub async fn import(d: &Daemon, upload: Upload, meta: UploadMeta) -> ApiResult<api::Operation> {
    let op = d.ops.create(
        OperationClass::Task,
        "Downloading image",
        BTreeMap::new(),
        None,
    );
    let record = op.record();
    let d = d.clone();
    tokio::spawn(async move {
        match import_now(&d, &upload, &meta).await {
            Ok(img) => op.succeed(Some(
                serde_json::json!({"fingerprint": img.fingerprint, "size": img.size}),
            )),
            Err(e) => op.fail(e.message),
        }
        let files = match upload {
            Upload::Unified(p) => vec![p],
            Upload::Split { metadata, rootfs } => vec![metadata, rootfs],
        };
        for f in files {
            let _ = tokio::fs::remove_file(f).await;
        }
    });
    Ok(record)
}

async fn import_now(d: &Daemon, upload: &Upload, meta: &UploadMeta) -> ApiResult<ImportedImage> {
    let opts = ImportOptions {
        expected_fingerprint: meta.fingerprint.clone(),
        filename: meta.filename.clone(),
    };
    for alias in &meta.aliases {
        let a = alias.clone();
        if d.read(move |c| db::images::alias(c, &a)).await?.is_some() {
            return Err(ApiError::conflict("Alias already exists"));
        }
    }
    let store = d.images.clone();
    let upload = upload.clone();
    let stored = tokio::task::spawn_blocking(move || match &upload {
        Upload::Unified(file) => store.import_unified(file, &opts),
        Upload::Split { metadata, rootfs } => store.import_split(metadata, rootfs, &opts),
    })
    .await?;
    let imported = match stored {
        Ok(i) => i,
        Err(storage::ImageError::AlreadyExists(fp)) => adopt_orphan(d, &fp, meta).await?,
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "Failed importing image: {e}"
            )));
        }
    };
    let now = ops::now_rfc3339();
    let mut properties = imported.properties.clone();
    properties.extend(meta.properties.clone());
    let rec = ImageRecord {
        fingerprint: imported.fingerprint.clone(),
        filename: imported.filename.clone(),
        size: i64::try_from(imported.size).unwrap_or(i64::MAX),
        architecture: imported.architecture.clone(),
        kind: image_kind(&properties).into(),
        public: meta.public,
        properties,
        templates: serde_json::to_value(&imported.templates).unwrap_or_default(),
        created_at: imported.created_at(),
        uploaded_at: now,
        last_used_at: ZERO_TIME.into(),
    };
    if let Err(e) = d.write(db::Command::CreateImage(rec)).await {
        // Files another import of the same image recorded meanwhile are that image's.
        if recorded(d, &imported.fingerprint).await? {
            return Err(same_fingerprint());
        }
        let store = d.images.clone();
        let fp = imported.fingerprint.clone();
        let _ = tokio::task::spawn_blocking(move || store.delete(&fp)).await;
        return Err(e);
    }
    for alias in &meta.aliases {
        create_alias(
            d,
            ImageAliasesPost {
                name: alias.clone(),
                description: String::new(),
                target: imported.fingerprint.clone(),
            },
        )
        .await?;
    }
    d.bus.lifecycle(
        "image-created",
        format!("/1.0/images/{}", imported.fingerprint),
        "default",
        None,
    );
    Ok(imported)
}

fn same_fingerprint() -> ApiError {
    ApiError::conflict("Image with same fingerprint already exists")
}

/// Whether the cluster DB has an image record for `fingerprint`.
async fn recorded(d: &Daemon, fingerprint: &str) -> ApiResult<bool> {
    let fp = fingerprint.to_string();
    Ok(d.read(move |c| db::images::get_by_prefix(c, &fp))
        .await?
        .is_some_and(|r| r.fingerprint == fingerprint))
}

/// The upload of image `fingerprint` whose files this member already stores: LXD's
/// conflict when the cluster knows the image; otherwise the files are an orphan (left by a
/// DB this member dropped when it left a cluster, or by a crash before the record was
/// written) and the upload takes them over, so the image can be imported again.
async fn adopt_orphan(
    d: &Daemon,
    fingerprint: &str,
    meta: &UploadMeta,
) -> ApiResult<ImportedImage> {
    if recorded(d, fingerprint).await? {
        return Err(same_fingerprint());
    }
    let store = d.images.clone();
    let fp = fingerprint.to_string();
    let mut image = tokio::task::spawn_blocking(move || store.get(&fp))
        .await?
        .map_err(|e| ApiError::bad_request(format!("Failed importing image: {e}")))?;
    tracing::warn!(image = %fingerprint, "image files without a record taken over by an upload");
    if let Some(name) = meta.filename.as_ref().filter(|n| !n.is_empty()) {
        image.filename = name.clone();
    }
    Ok(image)
}

/// `virtual-machine` for an image whose metadata says `properties.type: virtual-machine`
/// (the busybox-vm image), else `container`.
pub fn image_kind(properties: &api::ConfigMap) -> &'static str {
    match properties.get("type").map(String::as_str) {
        Some("virtual-machine") => "virtual-machine",
        _ => "container",
    }
}

/// The type of the image `fingerprint` (`container` when unknown).
fn kind_of(images: &[ImageRecord], fingerprint: &str) -> String {
    images
        .iter()
        .find(|i| i.fingerprint == fingerprint)
        .map_or("container", |i| image_kind(&i.properties))
        .into()
}

fn view(rec: ImageRecord, aliases: &[db::images::AliasRecord]) -> Image {
    Image {
        aliases: aliases
            .iter()
            .filter(|a| a.fingerprint == rec.fingerprint)
            .map(|a| ImageAlias {
                name: a.name.clone(),
                description: a.description.clone(),
            })
            .collect(),
        fingerprint: rec.fingerprint,
        filename: rec.filename,
        size: rec.size,
        architecture: rec.architecture,
        kind: rec.kind,
        public: rec.public,
        auto_update: false,
        properties: rec.properties,
        cached: false,
        created_at: rec.created_at,
        expires_at: ZERO_TIME.into(),
        last_used_at: rec.last_used_at,
        uploaded_at: rec.uploaded_at,
        profiles: vec!["default".into()],
        update_source: None,
    }
}

/// All images.
pub async fn list(d: &Daemon) -> ApiResult<Vec<Image>> {
    let (recs, aliases) = d
        .read(|c| Ok((db::images::list(c)?, db::images::aliases(c)?)))
        .await?;
    Ok(recs.into_iter().map(|r| view(r, &aliases)).collect())
}

/// One file of an exported image: the name LXD 5.0.2 gives it and where it is here.
#[derive(Debug)]
pub struct ExportFile {
    /// `<fingerprint><ext>` (`meta-` before it for a split image's metadata), whatever the
    /// upload was called.
    pub name: String,
    /// Its path on this member.
    pub path: PathBuf,
}

/// What an export of an image sends (`lxc image export`, pylxd's `Image.export()`).
#[derive(Debug)]
pub enum Export {
    /// A unified image: its one tarball.
    Unified(ExportFile),
    /// A split image: its metadata tarball and its rootfs.
    Split {
        /// The metadata tarball.
        metadata: ExportFile,
        /// The rootfs (tarball or squashfs).
        rootfs: ExportFile,
    },
}

/// The files of image `fp` (a fingerprint prefix) to export, on this member: a member that
/// does not hold them fetches them from one that does first.
pub async fn export(d: &Daemon, fp: &str) -> ApiResult<Export> {
    let img = get(d, fp).await?;
    crate::image_share::ensure_local(d, &img.fingerprint).await?;
    let fp = &img.fingerprint;
    let (image, rootfs) = (d.images.image_file(fp), d.images.rootfs_file(fp));
    let name = format!("{fp}{}", file_ext(&image).await);
    if !tokio::fs::try_exists(&rootfs).await.unwrap_or(false) {
        return Ok(Export::Unified(ExportFile { name, path: image }));
    }
    Ok(Export::Split {
        metadata: ExportFile {
            name: format!("meta-{name}"),
            path: image,
        },
        rootfs: ExportFile {
            name: format!("{fp}{}", file_ext(&rootfs).await),
            path: rootfs,
        },
    })
}

/// The extension of an image file, from its first bytes.
async fn file_ext(path: &std::path::Path) -> &'static str {
    let mut magic = [0u8; 6];
    let read = match tokio::fs::File::open(path).await {
        Ok(mut f) => tokio::io::AsyncReadExt::read(&mut f, &mut magic)
            .await
            .unwrap_or(0),
        Err(_) => 0,
    };
    match &magic[..read.min(6)] {
        [0x1f, 0x8b, ..] => ".tar.gz",
        [0xfd, b'7', b'z', b'X', b'Z', 0] => ".tar.xz",
        [b'h', b's', b'q', b's', ..] => ".squashfs",
        _ => ".tar",
    }
}

/// The image with fingerprint (prefix) `fp`.
pub async fn get(d: &Daemon, fp: &str) -> ApiResult<Image> {
    let fp = fp.to_string();
    let (rec, aliases) = d
        .read(move |c| Ok((db::images::get_by_prefix(c, &fp)?, db::images::aliases(c)?)))
        .await
        .map_err(|e| {
            if e.message.contains("ambiguous") {
                ApiError::bad_request(e.message)
            } else {
                e
            }
        })?;
    rec.map(|r| view(r, &aliases))
        .ok_or_else(|| ApiError::not_found("Image not found"))
}

/// Deletes an image, and its bases in this member's pools where no volume is layered on it
/// (a base still in use stays with its volumes).
pub async fn delete(d: &Daemon, fp: &str) -> ApiResult<api::Operation> {
    let img = get(d, fp).await?;
    let op = d.ops.create(
        OperationClass::Task,
        "Deleting image",
        BTreeMap::new(),
        None,
    );
    let record = op.record();
    let d = d.clone();
    tokio::spawn(async move {
        if let Err(e) = d
            .write(db::Command::DeleteImage {
                fingerprint: img.fingerprint.clone(),
            })
            .await
        {
            return op.fail(e.message);
        }
        let store = d.images.clone();
        let fp = img.fingerprint.clone();
        match tokio::task::spawn_blocking(move || store.delete(&fp)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(image = %img.fingerprint, error = %e, "image files not removed")
            }
            Err(e) => {
                tracing::warn!(image = %img.fingerprint, error = %e, "image files not removed")
            }
        }
        crate::volumes::prune_image_base(&d, &img.fingerprint).await;
        d.bus.lifecycle(
            "image-deleted",
            format!("/1.0/images/{}", img.fingerprint),
            "default",
            None,
        );
        op.succeed(None);
    });
    Ok(record)
}

/// All aliases.
pub async fn aliases(d: &Daemon) -> ApiResult<Vec<ImageAliasesEntry>> {
    let (list, images) = d
        .read(|c| Ok((db::images::aliases(c)?, db::images::list(c)?)))
        .await?;
    Ok(list
        .into_iter()
        .map(|a| ImageAliasesEntry {
            kind: kind_of(&images, &a.fingerprint),
            name: a.name,
            description: a.description,
            target: a.fingerprint,
        })
        .collect())
}

/// The alias `name`.
pub async fn alias(d: &Daemon, name: &str) -> ApiResult<ImageAliasesEntry> {
    let n = name.to_string();
    let (alias, images) = d
        .read(move |c| Ok((db::images::alias(c, &n)?, db::images::list(c)?)))
        .await?;
    alias
        .map(|a| ImageAliasesEntry {
            kind: kind_of(&images, &a.fingerprint),
            name: a.name,
            description: a.description,
            target: a.fingerprint,
        })
        .ok_or_else(|| ApiError::not_found("Image alias not found"))
}

/// Creates an alias to an existing image.
pub async fn create_alias(d: &Daemon, req: ImageAliasesPost) -> ApiResult<()> {
    if req.name.is_empty() || req.name.contains('/') {
        return Err(ApiError::bad_request("Invalid alias name"));
    }
    let img = get(d, &req.target).await?;
    d.write(db::Command::CreateImageAlias {
        name: req.name.clone(),
        fingerprint: img.fingerprint,
        description: req.description,
    })
    .await
    .map_err(|e| {
        if e.status == axum::http::StatusCode::CONFLICT {
            ApiError::conflict("Alias already exists")
        } else {
            e
        }
    })?;
    d.bus.lifecycle(
        "image-alias-created",
        format!("/1.0/images/aliases/{}", req.name),
        "default",
        None,
    );
    Ok(())
}

/// Deletes an alias.
pub async fn delete_alias(d: &Daemon, name: &str) -> ApiResult<()> {
    d.write(db::Command::DeleteImageAlias {
        name: name.to_string(),
    })
    .await
    .map_err(|e| {
        if e.status == axum::http::StatusCode::NOT_FOUND {
            ApiError::not_found("Image alias not found")
        } else {
            e
        }
    })?;
    d.bus.lifecycle(
        "image-alias-deleted",
        format!("/1.0/images/aliases/{name}"),
        "default",
        None,
    );
    Ok(())
}

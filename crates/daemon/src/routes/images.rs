//! `/1.0/images` and `/1.0/images/aliases`.

use std::path::{Path as FsPath, PathBuf};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{CommonQuery, accepted, empty, parse_body, sync};
use crate::error::{ApiError, ApiResult};
use crate::images::{self, Upload, UploadMeta};
use crate::state::Daemon;

async fn list(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = images::list(&d).await?;
    Ok(super::listing(&q, all, |i| {
        format!("/1.0/images/{}", i.fingerprint)
    }))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|v| !v.is_empty())
}

fn upload_meta(headers: &HeaderMap) -> UploadMeta {
    let properties = header(headers, "x-lxd-properties")
        .map(|p| {
            p.split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect()
        })
        .unwrap_or_default();
    UploadMeta {
        fingerprint: header(headers, "x-lxd-fingerprint"),
        filename: header(headers, "x-lxd-filename"),
        public: matches!(
            header(headers, "x-lxd-public").as_deref(),
            Some("1" | "true")
        ),
        properties,
        aliases: header(headers, "x-lxd-aliases")
            .map(|a| {
                a.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Percent-decoding of `application/x-www-form-urlencoded` values.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn upload_path(d: &Daemon) -> PathBuf {
    d.paths
        .state_dir
        .join("uploads")
        .join(uuid::Uuid::new_v4().simple().to_string())
}

async fn save<S, E>(path: &FsPath, mut stream: S) -> ApiResult<()>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| ApiError::internal(format!("uploads dir: {e}")))?;
    }
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::internal(format!("upload file: {e}")))?;
    let result = async {
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("Upload interrupted: {e}")))?;
            f.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("upload file: {e}")))?;
        }
        f.flush()
            .await
            .map_err(|e| ApiError::internal(format!("upload file: {e}")))
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

async fn create(State(d): State<Daemon>, req: Request) -> ApiResult<Response> {
    let headers = req.headers().clone();
    let meta = upload_meta(&headers);
    let content_type = header(&headers, header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let upload = if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart upload: {e}")))?;
        let (mut metadata, mut rootfs) = (None, None);
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| ApiError::bad_request(format!("Invalid multipart upload: {e}")))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let path = upload_path(&d);
            save(&path, field.map(|r| r.map_err(|e| e.to_string()))).await?;
            match name.as_str() {
                "metadata" => metadata = Some(path),
                "rootfs" | "rootfs.img" => rootfs = Some(path),
                _ => {
                    let _ = tokio::fs::remove_file(&path).await;
                }
            }
        }
        match (metadata, rootfs) {
            (Some(metadata), Some(rootfs)) => Upload::Split { metadata, rootfs },
            (m, r) => {
                for p in [m, r].into_iter().flatten() {
                    let _ = tokio::fs::remove_file(p).await;
                }
                return Err(ApiError::bad_request(
                    "Invalid multipart image upload: need metadata and rootfs parts",
                ));
            }
        }
    } else if content_type.starts_with("application/json") {
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let source: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        return Err(ApiError::not_implemented(
            match source["source"]["type"].as_str() {
                // `lxc publish c1`.
                Some("instance" | "container" | "virtual-machine" | "snapshot") => {
                    "Publishing an instance as an image is not supported by drover"
                }
                _ => {
                    "Image sources other than an upload are not supported: drover has no remote image servers"
                }
            },
        ));
    } else {
        let path = upload_path(&d);
        let stream = Body::into_data_stream(req.into_body());
        save(&path, stream.map(|r| r.map_err(|e| e.to_string()))).await?;
        Upload::Unified(path)
    };
    Ok(accepted(images::import(&d, upload, meta).await?))
}

async fn get_one(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    Ok(sync(images::get(&d, &fp).await?))
}

/// `GET /1.0/images/{fp}/export` (`lxc image export`, pylxd's `Image.export()`): a unified
/// image is its tarball (`Content-Disposition: inline;filename=<name>`), a split one a
/// `multipart/form-data` body with parts `metadata` and `rootfs`, as LXD sends them.
async fn export(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    match images::export(&d, &fp).await? {
        images::Export::Unified(file) => {
            let (len, body) = crate::image_share::file_body(&file.path).await?;
            Response::builder()
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len)
                .header(
                    header::CONTENT_DISPOSITION,
                    format!("inline;filename={}", file.name),
                )
                .body(body)
                .map_err(|e| ApiError::internal(e.to_string()))
        }
        images::Export::Split { metadata, rootfs } => {
            multipart([("metadata", metadata), ("rootfs", rootfs)]).await
        }
    }
}

/// A `multipart/form-data` response of `files` (part name, file), streamed.
async fn multipart<const N: usize>(files: [(&str, images::ExportFile); N]) -> ApiResult<Response> {
    let boundary = uuid::Uuid::new_v4().simple().to_string();
    let mut parts = Vec::new();
    for (part, file) in files {
        let f = tokio::fs::File::open(&file.path)
            .await
            .map_err(|e| ApiError::internal(format!("open {}: {e}", file.path.display())))?;
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{part}\"; \
             filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            file.name
        );
        parts.push(futures::stream::once(async move { Ok(Bytes::from(head)) }).boxed());
        parts.push(crate::image_share::file_stream(f).boxed());
        parts.push(futures::stream::once(async { Ok(Bytes::from_static(b"\r\n")) }).boxed());
    }
    let tail = format!("--{boundary}--\r\n");
    parts.push(futures::stream::once(async move { Ok(Bytes::from(tail)) }).boxed());
    Response::builder()
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from_stream(futures::stream::iter(parts).flatten()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn delete(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    Ok(accepted(images::delete(&d, &fp).await?))
}

async fn aliases(State(d): State<Daemon>, Query(q): Query<CommonQuery>) -> ApiResult<Response> {
    let all = images::aliases(&d).await?;
    Ok(super::listing(&q, all, |a| {
        format!("/1.0/images/aliases/{}", a.name)
    }))
}

async fn create_alias(State(d): State<Daemon>, body: Bytes) -> ApiResult<Response> {
    images::create_alias(&d, parse_body(&body)?).await?;
    Ok(empty())
}

async fn get_alias(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(sync(images::alias(&d, &name).await?))
}

async fn delete_alias(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    images::delete_alias(&d, &name).await?;
    Ok(empty())
}

/// `PUT`/`PATCH /1.0/images/{fp}` (`lxc image edit`): refused, the image unchanged (404
/// first for an unknown image).
async fn edit(State(d): State<Daemon>, Path(fp): Path<String>) -> ApiResult<Response> {
    images::get(&d, &fp).await?;
    Err(ApiError::not_implemented(
        "Editing an image's properties is not supported by drover",
    ))
}

/// `PUT`/`PATCH`/`POST /1.0/images/aliases/{name}` (`lxc image alias rename`, editing an
/// alias): refused, the alias unchanged (404 first for an unknown alias). Delete it and
/// create it again instead.
async fn edit_alias(State(d): State<Daemon>, Path(name): Path<String>) -> ApiResult<Response> {
    images::alias(&d, &name).await?;
    Err(ApiError::not_implemented(
        "Changing an image alias is not supported by drover: delete it and create it again",
    ))
}

pub fn routes() -> Router<Daemon> {
    Router::new()
        // Image uploads are the one client request whose body may be large.
        .route(
            "/1.0/images",
            get(list).post(create).layer(DefaultBodyLimit::disable()),
        )
        .route("/1.0/images/aliases", get(aliases).post(create_alias))
        .route(
            "/1.0/images/aliases/{name}",
            get(get_alias)
                .put(edit_alias)
                .patch(edit_alias)
                .post(edit_alias)
                .delete(delete_alias),
        )
        .route(
            "/1.0/images/{fp}",
            get(get_one).put(edit).patch(edit).delete(delete),
        )
        .route("/1.0/images/{fp}/export", get(export))
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_values_decode() {
        assert_eq!(super::decode("a%20b+c"), "a b c");
        assert_eq!(super::decode("100%"), "100%");
    }
}

//! `/1.0/images` and `/1.0/images/aliases`, including uploads as `lxc image import` sends them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use api::images::{Image, ImageAliasesEntry, ImageAliasesPost};
use api::{ConfigMap, Operation};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use http_body_util::{BodyExt, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName};
use tokio::io::AsyncReadExt;

use crate::transport::{Body, decode, op_of};
use crate::urlenc::{form, segment};
use crate::{Client, Error, Result};

const CHUNK: usize = 256 * 1024;

/// An image upload (`POST /1.0/images` with the file(s) as the body).
///
/// Unified image (one tarball with `metadata.yaml` and `rootfs/`): the body is the tarball,
/// `Content-Type: application/octet-stream`. Split image (metadata tarball + rootfs):
/// `multipart/form-data` with parts `metadata` and `rootfs` (`rootfs.img` for VMs). Headers
/// as LXD's client sends them: `X-LXD-filename`, `X-LXD-public: true` only when public,
/// `X-LXD-properties` as a URL-encoded form.
#[derive(Debug, Clone, Default)]
pub struct ImageUpload {
    /// The unified tarball, or the metadata tarball of a split image.
    pub metadata: PathBuf,
    /// The rootfs of a split image.
    pub rootfs: Option<PathBuf>,
    /// Whether the rootfs part is a VM disk (`rootfs.img` part name).
    pub vm: bool,
    /// Make the image public.
    pub public: bool,
    /// Properties to set (`X-LXD-properties`).
    pub properties: ConfigMap,
}

impl Client {
    /// All images (`?recursion=1`).
    pub async fn images(&self) -> Result<Vec<Image>> {
        self.sync(Method::GET, "/1.0/images?recursion=1", None::<&()>)
            .await
    }

    /// One image by fingerprint (or unique prefix).
    pub async fn image(&self, fingerprint: &str) -> Result<Image> {
        let path = format!("/1.0/images/{}", segment(fingerprint));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Delete an image. LXD answers with an operation; a `sync` answer yields `None`.
    pub async fn delete_image(&self, fingerprint: &str) -> Result<Option<Operation>> {
        let path = format!("/1.0/images/{}", segment(fingerprint));
        self.maybe_op(Method::DELETE, &path, None::<&()>, None)
            .await
    }

    /// All aliases (`?recursion=1`).
    pub async fn image_aliases(&self) -> Result<Vec<ImageAliasesEntry>> {
        self.sync(Method::GET, "/1.0/images/aliases?recursion=1", None::<&()>)
            .await
    }

    /// One alias.
    pub async fn image_alias(&self, name: &str) -> Result<ImageAliasesEntry> {
        let path = format!("/1.0/images/aliases/{}", segment(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Create an alias (`POST /1.0/images/aliases`).
    pub async fn create_image_alias(&self, req: &ImageAliasesPost) -> Result<()> {
        let _: serde_json::Value = self
            .sync(Method::POST, "/1.0/images/aliases", Some(req))
            .await?;
        Ok(())
    }

    /// Delete an alias.
    pub async fn delete_image_alias(&self, name: &str) -> Result<()> {
        let path = format!("/1.0/images/aliases/{}", segment(name));
        let _: serde_json::Value = self.sync(Method::DELETE, &path, None::<&()>).await?;
        Ok(())
    }

    /// Upload an image; returns the operation, whose final `metadata.fingerprint` names the
    /// new image.
    pub async fn import_image(&self, upload: &ImageUpload) -> Result<Operation> {
        let mut headers: Vec<(HeaderName, String)> = Vec::new();
        let body = match &upload.rootfs {
            None => {
                let len = tokio::fs::metadata(&upload.metadata).await?.len();
                headers.push((CONTENT_TYPE, "application/octet-stream".into()));
                headers.push((CONTENT_LENGTH, len.to_string()));
                let file = file_stream(&upload.metadata).await?;
                stream_body(file)
            }
            Some(rootfs) => {
                let boundary = boundary();
                headers.push((
                    CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                ));
                let rootfs_part = if upload.vm { "rootfs.img" } else { "rootfs" };
                let parts = stream::iter([Ok(part_head(
                    &boundary,
                    true,
                    "metadata",
                    &file_name(&upload.metadata),
                ))])
                .chain(file_stream(&upload.metadata).await?)
                .chain(stream::iter([Ok(part_head(
                    &boundary,
                    false,
                    rootfs_part,
                    &file_name(rootfs),
                ))]))
                .chain(file_stream(rootfs).await?)
                .chain(stream::iter([Ok(Bytes::from(format!(
                    "\r\n--{boundary}--\r\n"
                )))]));
                stream_body(parts)
            }
        };
        headers.push((
            HeaderName::from_static("x-lxd-filename"),
            file_name(&upload.metadata),
        ));
        if upload.public {
            headers.push((HeaderName::from_static("x-lxd-public"), "true".into()));
        }
        if !upload.properties.is_empty() {
            headers.push((
                HeaderName::from_static("x-lxd-properties"),
                form(&upload.properties),
            ));
        }
        let reply = self
            .send(Method::POST, "/1.0/images", headers, body)
            .await?;
        op_of(decode(&reply)?)?
            .ok_or_else(|| Error::Protocol("image upload: expected an operation".into()))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A multipart boundary: 30 hex digits from the process's random hasher keys.
fn boundary() -> String {
    let mut out = String::new();
    for i in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(i);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(30);
    out
}

/// The delimiter and headers that open a multipart part (Go's `CreateFormFile` shape).
fn part_head(boundary: &str, first: bool, name: &str, filename: &str) -> Bytes {
    let lead = if first { "" } else { "\r\n" };
    let filename = filename.replace('\\', "\\\\").replace('"', "\\\"");
    Bytes::from(format!(
        "{lead}--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
         filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    ))
}

async fn file_stream(path: &Path) -> Result<impl Stream<Item = io::Result<Bytes>> + Send + use<>> {
    let file = tokio::fs::File::open(path).await?;
    Ok(stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), file)))
    }))
}

fn stream_body(s: impl Stream<Item = io::Result<Bytes>> + Send + 'static) -> Body {
    BodyExt::boxed_unsync(StreamBody::new(s.map_ok(Frame::data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_part_head_matches_go_form_file() {
        let head = part_head("b0undary", true, "metadata", "meta.tar.xz");
        assert_eq!(
            head,
            Bytes::from_static(
                b"--b0undary\r\nContent-Disposition: form-data; name=\"metadata\"; \
                  filename=\"meta.tar.xz\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
        );
        let second = part_head("b0undary", false, "rootfs", "root\"fs");
        assert!(second.starts_with(b"\r\n--b0undary\r\n"));
        assert!(
            String::from_utf8_lossy(&second).contains("filename=\"root\\\"fs\""),
            "quotes escaped"
        );
    }

    #[test]
    fn boundaries_are_hex_and_fresh() {
        let a = boundary();
        assert_eq!(a.len(), 30);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, boundary());
    }
}

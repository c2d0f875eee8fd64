//! Images shared between members: the DB record of an image is replicated, its files are
//! not. A member that needs an image it does not hold (to create an instance, or to receive
//! one being moved) fetches the files once from a member that does, over the member mTLS
//! link, and imports them with the fingerprint checked, so a corrupt or truncated copy is
//! refused and leaves nothing behind.
//!
//! The files are served on the member-only route `GET /internal/images/{fp}/{part}` (`part`
//! is `image`, the unified tarball or the metadata tarball of a split image, or `rootfs`).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, lock};

/// The route's prefix.
const PATH: &str = "/internal/images/{fp}/{part}";
/// How long fetching one file from a member may take.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// Per-fingerprint locks, so concurrent creates of the same image fetch it once.
#[derive(Debug, Default)]
pub struct Fetches {
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The member-only routes serving image files.
pub fn routes(d: Daemon) -> Router {
    Router::new().route(PATH, get(serve_part)).with_state(d)
}

async fn serve_part(
    State(d): State<Daemon>,
    peer: Option<Extension<tls::Peer>>,
    Path((fp, part)): Path<(String, String)>,
) -> ApiResult<Response> {
    let fingerprint = peer
        .and_then(|Extension(p)| p.fingerprint)
        .ok_or_else(crate::auth::not_authorized)?;
    let store = d.store.clone();
    if !tokio::task::spawn_blocking(move || {
        crate::cluster::is_member_fingerprint(&store, &fingerprint)
    })
    .await?
    {
        return Err(crate::auth::not_authorized());
    }
    storage::image::valid_fingerprint(&fp).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !d.images.contains(&fp) {
        return Err(ApiError::not_found("Image not found"));
    }
    let path = match part.as_str() {
        "image" => d.images.image_file(&fp),
        "rootfs" => d.images.rootfs_file(&fp),
        _ => return Err(ApiError::not_found("not found")),
    };
    let (len, body) = file_body(&path).await?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

/// The bytes of the image file `path` as a streamed body, and its length (404 when the
/// file is missing).
///
/// # Errors
///
/// 404 when the file does not exist, 500 when it cannot be opened.
pub async fn file_body(path: &FsPath) -> ApiResult<(u64, Body)> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("Image file not found"));
        }
        Err(e) => return Err(ApiError::internal(format!("open {}: {e}", path.display()))),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    Ok((len, Body::from_stream(file_stream(file))))
}

/// `file` read in chunks of 256 KiB.
pub fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}

/// Makes sure this member holds the files of image `fingerprint`, fetching them from another
/// member when it does not. Returns at once when the image is already here.
///
/// # Errors
///
/// 500-class with every member's answer when no member could provide a valid copy.
pub async fn ensure_local(d: &Daemon, fingerprint: &str) -> ApiResult<()> {
    if d.images.contains(fingerprint) {
        return Ok(());
    }
    let guard = lock(&d.image_fetches.locks)
        .entry(fingerprint.to_string())
        .or_default()
        .clone();
    let _held = guard.lock().await;
    if d.images.contains(fingerprint) {
        return Ok(());
    }
    let (Some(cluster), me) = (d.cluster.identity(), d.member()) else {
        return Err(ApiError::internal(format!(
            "Image {fingerprint:?} is missing from this member's store"
        )));
    };
    let members = d.read(db::members::list).await?;
    let client = crate::cluster::member_client(d.https.identity(), cluster.fingerprint())?;
    let mut failures = Vec::new();
    for m in members
        .iter()
        .filter(|m| m.name != me && !m.address.is_empty())
    {
        match fetch_from(d, &client, &m.address, fingerprint).await {
            Ok(()) => {
                tracing::info!(image = %fingerprint, from = %m.name, "image fetched from member");
                return Ok(());
            }
            Err(e) => failures.push(format!("{}: {}", m.name, e.message)),
        }
    }
    Err(ApiError::internal(format!(
        "Failed to fetch image {fingerprint:?} from the other members ({})",
        if failures.is_empty() {
            "no other member".to_string()
        } else {
            failures.join("; ")
        }
    )))
}

/// Fetches both parts from the member at `address` into temporary files and imports them.
async fn fetch_from(
    d: &Daemon,
    client: &reqwest::Client,
    address: &str,
    fingerprint: &str,
) -> ApiResult<()> {
    let dir = d.images.dir().to_path_buf();
    let tmp = TempFiles::new(&dir, fingerprint);
    let image = tmp.path("image");
    if !download(client, address, fingerprint, "image", &image).await? {
        return Err(ApiError::not_found("does not hold the image"));
    }
    let rootfs = tmp.path("rootfs");
    let split = download(client, address, fingerprint, "rootfs", &rootfs).await?;
    let store = d.images.clone();
    let opts = storage::ImportOptions {
        expected_fingerprint: Some(fingerprint.to_string()),
        filename: None,
    };
    let result = tokio::task::spawn_blocking(move || {
        if split {
            store.import_split(&image, &rootfs, &opts)
        } else {
            store.import_unified(&image, &opts)
        }
    })
    .await?;
    match result {
        Ok(_) | Err(storage::ImageError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(ApiError::internal(format!("import: {e}"))),
    }
}

/// Downloads one part to `dest`; `false` when the member has no such part (404).
async fn download(
    client: &reqwest::Client,
    address: &str,
    fingerprint: &str,
    part: &str,
    dest: &FsPath,
) -> ApiResult<bool> {
    let url = format!("https://{address}/internal/images/{fingerprint}/{part}");
    let work = async {
        let mut answer = client
            .get(&url)
            .send()
            .await
            .map_err(|e| ApiError::internal(format!("request: {e}")))?;
        if answer.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !answer.status().is_success() {
            return Err(ApiError::internal(format!("answered {}", answer.status())));
        }
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| ApiError::internal(format!("create {}: {e}", dest.display())))?;
        while let Some(chunk) = answer
            .chunk()
            .await
            .map_err(|e| ApiError::internal(format!("read: {e}")))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("write {}: {e}", dest.display())))?;
        }
        file.flush()
            .await
            .map_err(|e| ApiError::internal(format!("write {}: {e}", dest.display())))?;
        Ok(true)
    };
    tokio::time::timeout(FETCH_DEADLINE, work)
        .await
        .map_err(|_| ApiError::internal(format!("fetching {part} timed out")))?
}

/// Download files in the image store's directory, removed when dropped (the store links
/// what it keeps). Named `.tmp-*` so that the store's start-up sweep also removes them.
struct TempFiles {
    base: PathBuf,
}

impl TempFiles {
    fn new(dir: &FsPath, fingerprint: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            base: dir.join(format!(".tmp-fetch-{fingerprint}-{id}")),
        }
    }

    fn path(&self, part: &str) -> PathBuf {
        let mut p = self.base.clone().into_os_string();
        p.push(format!(".{part}"));
        PathBuf::from(p)
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        for part in ["image", "rootfs"] {
            let _ = std::fs::remove_file(self.path(part));
        }
    }
}

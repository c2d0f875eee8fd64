//! `/1.0/instances/{name}/files?path=...`: files in an instance (see
//! [`crate::instances::files`]).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use crate::error::ApiResult;
use crate::instances::{self, files};
use crate::state::Daemon;

/// `?path=/etc/hostname` (and the usual `?project=`).
#[derive(Debug, Default, serde::Deserialize)]
struct FileQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    project: Option<String>,
}

impl FileQuery {
    fn project(&self) -> &str {
        self.project
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("default")
    }
}

async fn get_file(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    files::get(&d, &rec, &q.path).await
}

async fn post_file(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let how = files::PushHeaders::parse(&headers)?;
    let rec = instances::load(&d, q.project(), &name).await?;
    files::push(&d, &rec, &q.path, how, body).await?;
    Ok(files::done())
}

async fn delete_file(
    State(d): State<Daemon>,
    Path(name): Path<String>,
    Query(q): Query<FileQuery>,
) -> ApiResult<Response> {
    let rec = instances::load(&d, q.project(), &name).await?;
    files::delete(&d, &rec, &q.path).await?;
    Ok(files::done())
}

pub fn routes() -> Router<Daemon> {
    // A pushed file is as large as it is (`lxc file push`, pylxd's `files.put`): axum's
    // default 2 MiB limit refused anything bigger, which LXD does not.
    Router::new().route(
        "/1.0/instances/{name}/files",
        get(get_file)
            .post(post_file)
            .delete(delete_file)
            .layer(DefaultBodyLimit::disable()),
    )
}

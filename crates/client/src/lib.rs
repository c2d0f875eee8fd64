//! Typed async client of droverd's LXD-compatible `/1.0` API over its unix socket.
//!
//! One module per resource adds methods to [`Client`]: [`instances`], [`operations`],
//! [`images`], [`profiles`], [`storage`], [`server`], plus the two websocket users
//! [`events`] (`/1.0/events`) and [`exec`] (`/1.0/instances/{name}/exec`).
//!
//! Every request opens a fresh connection to the socket (connecting to a local unix socket
//! costs microseconds, and it keeps the client free of pool state). Requests that start long
//! work return the [`api::Operation`] at once; [`Client::wait_done`] waits for its outcome.
//!
//! Errors the daemon reports with LXD's error envelope become [`Error::Api`], whose `Display`
//! is the daemon's message verbatim.

mod error;
mod transport;
mod urlenc;

pub mod cluster;
pub mod events;
pub mod exec;
pub mod images;
pub mod instances;
pub mod operations;
pub mod profiles;
pub mod server;
pub mod storage;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{Error, Result};
pub use events::EventStream;
pub use exec::ExecIo;
pub use images::ImageUpload;

/// Where droverd keeps its state when `DROVER_DIR` is not set.
pub const DEFAULT_DROVER_DIR: &str = "/var/lib/drover";

/// A handle on one droverd, cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    project: Option<String>,
    connect_timeout: Duration,
}

impl Client {
    /// A client of the daemon listening on the unix socket at `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self {
            socket: path.into(),
            project: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// A client of the daemon at `$DROVER_DIR/unix.socket` (`/var/lib/drover/unix.socket`
    /// when `DROVER_DIR` is unset or empty).
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DROVER_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DROVER_DIR));
        Self::unix(dir.join("unix.socket"))
    }

    /// Send `?project=<project>` with every request (nothing is sent for `default`).
    pub fn with_project(mut self, project: impl Into<String>) -> Self {
        let project = project.into();
        self.project = (!project.is_empty() && project != "default").then_some(project);
        self
    }

    /// How long to wait for the socket to accept a connection (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The socket this client talks to.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }
}

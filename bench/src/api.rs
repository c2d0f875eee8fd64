//! A minimal LXD API client over a unix socket: HTTP/1.1 connections kept alive and reused
//! between requests, as pylxd's session does (`lxc` 5.0.2 opens one per request), and
//! nothing between the bench and the socket that could add its own cost (no typed client,
//! no retries).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// `GET` path that waits up to `timeout` seconds for operation `op` (its URL as returned,
/// which LXD gives with a `?project=` query: the query goes after `/wait`).
pub fn wait_path(op: &str, timeout: u32) -> String {
    match op.split_once('?') {
        Some((path, query)) => format!("{path}/wait?timeout={timeout}&{query}"),
        None => format!("{op}/wait?timeout={timeout}"),
    }
}

/// Deadline of one request (operation waits pass their own, shorter, server-side timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An idle connection, ready for its next request.
type Idle = SendRequest<Full<Bytes>>;

/// A client of one daemon's `unix.socket`; clones share its idle connections.
#[derive(Debug, Clone)]
pub struct Api {
    socket: PathBuf,
    idle: Arc<Mutex<Vec<Idle>>>,
}

impl Api {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Api {
        Api {
            socket: socket.into(),
            idle: Arc::default(),
        }
    }

    /// An idle connection the server has not closed, else a new one.
    async fn connection(&self) -> Result<Idle> {
        loop {
            let reused = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            match reused {
                Some(mut sender) if !sender.is_closed() => {
                    if sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        let stream = UnixStream::connect(&self.socket)
            .await
            .with_context(|| format!("connect {}", self.socket.display()))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("http handshake")?;
        // Ends by itself once the sender is dropped or the server closes the connection.
        tokio::spawn(conn);
        Ok(sender)
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends one request and returns the decoded LXD response envelope; an `error`
    /// response becomes an error carrying its message.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Value> {
        let what = format!("{method} {path}");
        tokio::time::timeout(REQUEST_TIMEOUT, self.send(method, path, content_type, body))
            .await
            .map_err(|_| anyhow!("timed out after {REQUEST_TIMEOUT:?}"))
            .and_then(|r| r)
            .with_context(|| what)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Value> {
        let mut sender = self.connection().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "drover")
            .header("content-type", content_type)
            .body(Full::new(body))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(sender);
        let v: Value = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "status {status}, unparsable body {:?}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        if v["type"] == "error" || !status.is_success() {
            bail!(
                "status {status}: {}",
                v["error"].as_str().unwrap_or("(no error message)")
            );
        }
        Ok(v)
    }

    /// `GET path`, the `metadata` of the response.
    pub async fn get(&self, path: &str) -> Result<Value> {
        Ok(self
            .request(Method::GET, path, "application/json", Bytes::new())
            .await?["metadata"]
            .take())
    }

    /// Sends JSON, returns the whole response envelope.
    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        self.request(
            method,
            path,
            "application/json",
            Bytes::from(serde_json::to_vec(body)?),
        )
        .await
    }

    /// Waits for the operation an async response points at and fails unless it succeeded.
    pub async fn wait(&self, response: &Value) -> Result<()> {
        let op = response["operation"]
            .as_str()
            .ok_or_else(|| anyhow!("not an async response: {response}"))?;
        let done = self.get(&wait_path(op, 90)).await?;
        match done["status"].as_str() {
            Some("Success") => Ok(()),
            other => bail!(
                "operation {op} ended {}: {}",
                other.unwrap_or("without a status"),
                done["err"].as_str().unwrap_or("")
            ),
        }
    }

    /// `PUT /1.0/instances/{name}/state {"action": action, ...}`, returning the async
    /// response (not awaited).
    pub async fn change_state(&self, name: &str, action: &str) -> Result<Value> {
        let body = if action == "stop" {
            serde_json::json!({"action": "stop", "timeout": 30})
        } else {
            serde_json::json!({"action": action})
        };
        self.send_json(Method::PUT, &format!("/1.0/instances/{name}/state"), &body)
            .await
    }

    /// Imports the unified image tarball `tarball` and gives it `alias`; returns the
    /// fingerprint.
    pub async fn import_image(&self, tarball: &Path, alias: &str) -> Result<String> {
        let data = tokio::fs::read(tarball)
            .await
            .with_context(|| format!("read {}", tarball.display()))?;
        let resp = self
            .request(
                Method::POST,
                "/1.0/images",
                "application/octet-stream",
                Bytes::from(data),
            )
            .await?;
        let op = resp["operation"]
            .as_str()
            .ok_or_else(|| anyhow!("image upload is not an operation: {resp}"))?;
        let done = self.get(&format!("{op}/wait?timeout=90")).await?;
        if done["status"] != "Success" {
            bail!("image import failed: {}", done["err"]);
        }
        let fp = done["metadata"]["fingerprint"]
            .as_str()
            .ok_or_else(|| anyhow!("image import gave no fingerprint: {done}"))?
            .to_string();
        self.send_json(
            Method::POST,
            "/1.0/images/aliases",
            &serde_json::json!({"name": alias, "target": fp}),
        )
        .await?;
        Ok(fp)
    }

    /// Creates instance `name` from image `alias` and waits for it.
    pub async fn create_instance(&self, name: &str, alias: &str) -> Result<()> {
        let resp = self
            .send_json(
                Method::POST,
                "/1.0/instances",
                &serde_json::json!({
                    "name": name,
                    "type": "container",
                    "source": {"type": "image", "alias": alias},
                }),
            )
            .await?;
        self.wait(&resp).await
    }

    /// Deletes instance `name` and waits for it.
    pub async fn delete_instance(&self, name: &str) -> Result<()> {
        let resp = self
            .request(
                Method::DELETE,
                &format!("/1.0/instances/{name}"),
                "application/json",
                Bytes::new(),
            )
            .await?;
        self.wait(&resp).await
    }
}

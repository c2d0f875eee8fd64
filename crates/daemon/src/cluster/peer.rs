//! A typed member-to-member client: make another member of the cluster do work.
//!
//! [`Peer::connect`] looks a member up by name in the DB and returns a handle that calls
//! its HTTPS API the way members trust each other: this member presents its own
//! certificate (`server.crt`, admitted by the callee because its fingerprint is in the
//! `members` table) and accepts only a server showing the cluster certificate (pinned by
//! fingerprint). The callee answers with LXD's envelope, which [`Peer::request`] decodes
//! into a [`Reply`]: the `sync` result, or the `async` operation the callee now runs.
//! An `error` envelope becomes an [`ApiError`] with the callee's status and message,
//! so a caller can return it to its own client unchanged.
//!
//! # Contract
//!
//! - Every call has a deadline ([`REQUEST_DEADLINE`], or the wait's own timeout plus
//!   [`WAIT_MARGIN`]); a member that does not answer in time, or cannot be reached, is
//!   a 503 naming the member, never a hang.
//! - Requests are marked with [`FORWARDED_HEADER`]: the callee serves them itself and
//!   never forwards them again, so a request crosses at most one member-to-member hop.
//!   Collections answer for the callee alone (`GET /1.0/instances` lists the instances
//!   it holds, `GET /1.0/operations` the operations it runs).
//! - Operations the callee created run on the callee: their ids are only known there.
//!   Wait for them with [`Peer::wait_operation`] on the same `Peer`.
//! - Only a clustered member can make a `Peer` (it needs the cluster certificate); a
//!   standalone daemon gets a 400.

// Part of this API is for the work other members are asked to do (moves, evacuation).
#![allow(dead_code, reason = "the moves and evacuation callers land separately")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, lock};

/// Header set on every member-to-member request that carries a client's request on to the
/// member that serves it: the callee must serve it itself, never forward it again.
pub const FORWARDED_HEADER: &str = "x-drover-forwarded";

/// How long a member-to-member request may take, connection included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// What a wait on a remote operation may take beyond the wait's own timeout.
pub const WAIT_MARGIN: Duration = Duration::from_secs(10);

/// The answer of a member to a request that succeeded.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A `sync` answer: its `metadata`.
    Sync(serde_json::Value),
    /// An `async` answer: the operation the member created and runs.
    Async(api::Operation),
}

impl Reply {
    /// The `sync` metadata decoded as `T`.
    ///
    /// # Errors
    ///
    /// 500 when the answer was an operation or its metadata is not a `T`.
    pub fn into_sync<T: serde::de::DeserializeOwned>(self) -> ApiResult<T> {
        match self {
            Reply::Sync(v) => serde_json::from_value(v)
                .map_err(|e| ApiError::internal(format!("unexpected member answer: {e}"))),
            Reply::Async(op) => Err(ApiError::internal(format!(
                "member answered with operation {} where a result was expected",
                op.id
            ))),
        }
    }

    /// The operation of an `async` answer.
    ///
    /// # Errors
    ///
    /// 500 when the answer was `sync`.
    pub fn into_operation(self) -> ApiResult<api::Operation> {
        match self {
            Reply::Async(op) => Ok(op),
            Reply::Sync(_) => Err(ApiError::internal(
                "member answered with a result where an operation was expected",
            )),
        }
    }
}

/// The member-to-member HTTP client of this member, built once per cluster certificate
/// (building one parses keys and sets up rustls: not something to do per request).
#[derive(Debug, Default)]
pub struct ClientCache {
    client: Mutex<Option<(String, reqwest::Client)>>,
}

impl ClientCache {
    /// The client that presents this member's certificate and pins the cluster's.
    ///
    /// # Errors
    ///
    /// 400 when this member is not clustered; 500 when the TLS setup fails.
    pub fn get(&self, d: &Daemon) -> ApiResult<reqwest::Client> {
        let cluster = d
            .cluster
            .identity()
            .ok_or_else(|| ApiError::bad_request("Server isn't part of a cluster"))?;
        let fingerprint = cluster.fingerprint().to_string();
        let mut cached = lock(&self.client);
        if let Some((fp, client)) = cached.as_ref()
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let client = super::member_client(d.https.identity(), &fingerprint)?;
        *cached = Some((fingerprint, client.clone()));
        Ok(client)
    }
}

/// Another member of the cluster, ready to be called.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name (`"m2"`).
    name: Arc<str>,
    /// Its cluster address (`"127.0.0.12:8443"`).
    address: Arc<str>,
    /// `https://<its cluster address>`.
    base: Arc<str>,
    client: reqwest::Client,
}

impl Peer {
    /// The member called `name`, by this member's DB.
    ///
    /// # Errors
    ///
    /// 404 when no member has that name; 400 when this member is not clustered or the
    /// member has no address; 500 on a DB or TLS failure.
    pub async fn connect(d: &Daemon, name: &str) -> ApiResult<Self> {
        let owned = name.to_string();
        let member = d
            .read(move |c| db::members::get(c, &owned))
            .await?
            .ok_or_else(|| ApiError::not_found("Cluster member not found"))?;
        if member.address.is_empty() {
            return Err(ApiError::bad_request(format!(
                "Cluster member {name} has no address"
            )));
        }
        let client = d.cluster.peers.get(d)?;
        Ok(Self::new(name, &member.address, client))
    }

    /// A peer at `address` (`"127.0.0.12:8443"`) called through `client` (which must
    /// present this member's certificate and pin the cluster's: [`ClientCache::get`]).
    pub fn new(name: &str, address: &str, client: reqwest::Client) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            base: format!("https://{address}").into(),
            client,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its cluster address (`"127.0.0.12:8443"`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The full URL of `path_and_query` (`"/1.0/instances/c1?project=default"`) on it.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The underlying HTTP client (for callers that proxy raw requests or websockets).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `method path_and_query` with an optional JSON `body`, within
    /// [`REQUEST_DEADLINE`], and decodes LXD's envelope.
    ///
    /// # Errors
    ///
    /// The member's own error (status and message) when it answered `error`; 503 when it
    /// could not be reached or did not answer in time; 500 when its answer is not LXD's
    /// envelope.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> ApiResult<Reply> {
        self.request_within(method, path_and_query, body, REQUEST_DEADLINE)
            .await
    }

    /// [`Peer::request`] with its own deadline.
    ///
    /// # Errors
    ///
    /// As [`Peer::request`].
    pub async fn request_within(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
        deadline: Duration,
    ) -> ApiResult<Reply> {
        let mut req = self
            .client
            .request(method, self.url(path_and_query))
            .header(FORWARDED_HEADER, "1")
            .timeout(deadline);
        if let Some(body) = body {
            req = req.json(body);
        }
        let call = async {
            let resp = req
                .send()
                .await
                .map_err(|e| self.unreachable(&e, deadline))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| self.unreachable(&e, deadline))?;
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(deadline, call)
            .await
            .map_err(|_| self.timed_out(deadline))??;
        decode(&self.name, status, &bytes)
    }

    /// Waits up to `timeout` for operation `id` (one this member created) to finish and
    /// returns its record, finished or not (LXD's `/wait?timeout=`).
    ///
    /// # Errors
    ///
    /// 404 when the member does not know the operation; as [`Peer::request`] otherwise.
    pub async fn wait_operation(&self, id: &str, timeout: Duration) -> ApiResult<api::Operation> {
        let path = format!("/1.0/operations/{id}/wait?timeout={}", timeout.as_secs());
        self.request_within(reqwest::Method::GET, &path, None, timeout + WAIT_MARGIN)
            .await?
            .into_sync()
    }

    /// The error of a call that failed in transport: a connection that could not be made
    /// (refused, or not made within the client's connect timeout) says so; a call that got
    /// no answer says how long it waited (`deadline`).
    fn unreachable(&self, e: &reqwest::Error, deadline: Duration) -> ApiError {
        if e.is_timeout() && !e.is_connect() {
            return self.timed_out(deadline);
        }
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "Failed to reach cluster member {}: {}",
                self.name,
                crate::error::error_chain(e)
            ),
        }
    }

    fn timed_out(&self, deadline: Duration) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "Cluster member {} did not answer within {}s",
                self.name,
                deadline.as_secs()
            ),
        }
    }
}

/// LXD's envelope of member `name`'s answer with HTTP `status`, as a [`Reply`] or the
/// member's error.
fn decode(name: &str, status: StatusCode, bytes: &[u8]) -> ApiResult<Reply> {
    let env: api::Response<serde_json::Value> = match serde_json::from_slice(bytes) {
        Ok(env) => env,
        Err(e) if status.is_success() => {
            return Err(ApiError::internal(format!(
                "cluster member {name} answered something else than LXD's envelope: {e}"
            )));
        }
        Err(_) => {
            return Err(ApiError {
                status,
                message: String::from_utf8_lossy(bytes).trim().to_string(),
            });
        }
    };
    match env.kind {
        api::ResponseType::Sync => Ok(Reply::Sync(env.metadata)),
        api::ResponseType::Async => serde_json::from_value(env.metadata)
            .map(Reply::Async)
            .map_err(|e| {
                ApiError::internal(format!(
                    "cluster member {name} answered an operation that does not parse: {e}"
                ))
            }),
        api::ResponseType::Error => Err(ApiError {
            status: StatusCode::from_u16(env.error_code)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(status),
            message: env.error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sync_answer_is_its_metadata() {
        let body = serde_json::to_vec(&api::Response::sync(serde_json::json!({"a": 1})))
            .expect("serializes");
        let reply = decode("m2", StatusCode::OK, &body).expect("decodes");
        assert!(matches!(reply, Reply::Sync(v) if v["a"] == 1));
    }

    #[test]
    fn an_error_answer_keeps_the_members_status_and_message() {
        let body =
            serde_json::to_vec(&api::ErrorBody::error(404, "Instance not found")).expect("json");
        let err = decode("m2", StatusCode::NOT_FOUND, &body).expect_err("an error");
        assert_eq!(err.status, StatusCode::NOT_FOUND);
        assert_eq!(err.message, "Instance not found");
    }

    #[test]
    fn a_non_envelope_error_keeps_the_http_status() {
        let err = decode("m2", StatusCode::BAD_GATEWAY, b"bad gateway\n").expect_err("an error");
        assert_eq!(err.status, StatusCode::BAD_GATEWAY);
        assert_eq!(err.message, "bad gateway");
    }

    #[test]
    fn an_async_answer_is_the_operation() {
        let op = serde_json::json!({
            "id": "0d05a3f3-5d26-47b9-8c66-de0110626a5d", "class": "task",
            "description": "Starting instance", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z", "status": "Running", "status_code": 103,
            "resources": null, "metadata": null, "may_cancel": false, "err": "",
            "location": "m2"
        });
        let body = serde_json::to_vec(&api::Response::async_op(
            "/1.0/operations/0d05a3f3-5d26-47b9-8c66-de0110626a5d".into(),
            op,
        ))
        .expect("json");
        let reply = decode("m2", StatusCode::ACCEPTED, &body).expect("decodes");
        let op = reply.into_operation().expect("an operation");
        assert_eq!(op.location, "m2");
    }

    #[tokio::test]
    async fn a_member_that_cannot_be_reached_is_named_with_the_cause() {
        // Nothing listens on port 9 of 127.0.0.1: the connection is refused at once.
        let client = reqwest::Client::new();
        let e = client
            .get("http://127.0.0.1:9/1.0")
            .send()
            .await
            .expect_err("refused");
        let text = crate::error::error_chain(&e);
        assert!(text.contains("127.0.0.1:9"), "{text}");
        assert!(
            text.to_lowercase().contains("refused"),
            "the cause is missing: {text}"
        );
    }
}

//! HTTP/1.1 and websockets over the daemon's unix socket, and LXD envelope decoding.

use std::io;

use api::{Operation, Response, ResponseType};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, ETAG, HOST, HeaderName, HeaderValue, IF_MATCH, USER_AGENT};
use hyper::{Method, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio_tungstenite::WebSocketStream;

use crate::{Client, Error, Result};

/// A request body: bytes in memory or a stream read from a file.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

const USER_AGENT_VALUE: &str = concat!("drover/", env!("CARGO_PKG_VERSION"));

/// A response: status, `ETag` and the whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Bytes,
}

/// An empty body.
pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON body.
pub(crate) fn json<B: Serialize + ?Sized>(value: &B) -> Result<Body> {
    let bytes = serde_json::to_vec(value)?;
    Ok(Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync())
}

/// A websocket on the daemon's socket.
pub(crate) type Ws = WebSocketStream<UnixStream>;

impl Client {
    /// `path` (which may carry a query) with `project=` appended when a project is set.
    pub(crate) fn url(&self, path: &str) -> String {
        match &self.project {
            None => path.to_string(),
            Some(p) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}project={}", crate::urlenc::query(p))
            }
        }
    }

    async fn connect(&self) -> Result<UnixStream> {
        let connect = UnixStream::connect(&self.socket);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => Err(Error::Timeout("connecting to the daemon socket")),
            Ok(Err(source)) => Err(Error::Connect {
                path: self.socket.display().to_string(),
                source,
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// Send one request on a fresh connection and read the whole reply.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(HeaderName, String)>,
        body: Body,
    ) -> Result<Reply> {
        let stream = self.connect().await?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            // The connection ends with the response; its error, if any, surfaces there.
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(self.url(path))
            .header(HOST, "localhost")
            .header(USER_AGENT, USER_AGENT_VALUE);
        for (name, value) in headers {
            req = req.header(
                name,
                HeaderValue::try_from(value).map_err(hyper::http::Error::from)?,
            );
        }
        let resp = sender.send_request(req.body(body)?).await?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string());
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Reply { status, etag, body })
    }

    /// Send a request with an optional JSON body and `If-Match` ETag.
    pub(crate) async fn send_json<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        etag: Option<&str>,
    ) -> Result<Reply> {
        let mut headers = Vec::new();
        let body = match body {
            Some(b) => {
                headers.push((CONTENT_TYPE, "application/json".to_string()));
                json(b)?
            }
            None => empty(),
        };
        if let Some(etag) = etag {
            headers.push((IF_MATCH, etag.to_string()));
        }
        self.send(method, path, headers, body).await
    }

    /// A `sync` request: the decoded `metadata`.
    pub(crate) async fn sync<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T> {
        let reply = self.send_json(method, path, body, None).await?;
        let envelope = decode(&reply)?;
        Ok(serde_json::from_value(envelope.metadata)?)
    }

    /// A `GET` returning the metadata and the response's `ETag`.
    pub(crate) async fn get_with_etag<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, Option<String>)> {
        let reply = self.send_json::<()>(Method::GET, path, None, None).await?;
        let envelope = decode(&reply)?;
        Ok((serde_json::from_value(envelope.metadata)?, reply.etag))
    }

    /// A request answered either `sync` (`None`) or `async` (`Some(operation)`).
    pub(crate) async fn maybe_op(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
        etag: Option<&str>,
    ) -> Result<Option<Operation>> {
        let reply = self.send_json(method, path, body, etag).await?;
        op_of(decode(&reply)?)
    }

    /// A request that must answer `async`: the created operation.
    pub(crate) async fn op(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<Operation> {
        self.maybe_op(method, path, body, None)
            .await?
            .ok_or_else(|| Error::Protocol(format!("{path}: expected an operation")))
    }

    /// Open a websocket at `path` (query included) on the daemon's socket.
    pub(crate) async fn websocket(&self, path: &str) -> Result<Ws> {
        let stream = self.connect().await?;
        let url = format!("ws://localhost{}", self.url(path));
        let handshake = tokio_tungstenite::client_async(url, stream);
        match tokio::time::timeout(self.connect_timeout, handshake).await {
            Err(_) => Err(Error::Timeout("opening a websocket")),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
                // The daemon refused the upgrade, most likely with an error envelope.
                let status = resp.status().as_u16();
                let body = resp.body().clone().unwrap_or_default();
                let reply = Reply {
                    status,
                    etag: None,
                    body: Bytes::from(body),
                };
                decode(&reply)?;
                Err(Error::Api {
                    status,
                    message: format!("websocket upgrade refused with status {status}"),
                })
            }
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok((ws, _))) => Ok(ws),
        }
    }
}

/// Decode an envelope; error envelopes and HTTP error statuses become [`Error::Api`].
pub(crate) fn decode(reply: &Reply) -> Result<Response<serde_json::Value>> {
    let parsed = serde_json::from_slice::<Response<serde_json::Value>>(&reply.body);
    match parsed {
        Ok(env) if env.kind == ResponseType::Error || reply.status >= 400 => {
            let status = if env.error_code != 0 {
                env.error_code
            } else {
                reply.status
            };
            let message = if env.error.is_empty() {
                format!("request failed with status {status}")
            } else {
                env.error
            };
            Err(Error::Api { status, message })
        }
        Ok(env) => Ok(env),
        Err(_) if reply.status >= 400 => {
            let text = String::from_utf8_lossy(&reply.body).trim().to_string();
            let message = if text.is_empty() {
                format!("request failed with status {}", reply.status)
            } else {
                text
            };
            Err(Error::Api {
                status: reply.status,
                message,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The operation of an `async` envelope, `None` for `sync`.
pub(crate) fn op_of(env: Response<serde_json::Value>) -> Result<Option<Operation>> {
    match env.kind {
        ResponseType::Async => Ok(Some(serde_json::from_value(env.metadata)?)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            etag: None,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn error_envelope_becomes_api_error_with_the_message() {
        let r = reply(
            404,
            r#"{"type":"error","status":"","status_code":0,"operation":"","error_code":404,"error":"Instance not found","metadata":null}"#,
        );
        let err = decode(&r).expect_err("is an error");
        assert_eq!(err.to_string(), "Instance not found");
        assert!(err.is_not_found());
    }

    #[test]
    fn plain_text_error_status_is_still_an_api_error() {
        let err = decode(&reply(502, "bad gateway\n")).expect_err("is an error");
        assert_eq!(err.status(), Some(502));
        assert_eq!(err.to_string(), "bad gateway");
    }

    #[test]
    fn sync_envelope_decodes() {
        let env = decode(&reply(
            200,
            r#"{"type":"sync","status":"Success","status_code":200,"operation":"","error_code":0,"error":"","metadata":["/1.0/instances/c1"]}"#,
        ))
        .expect("decodes");
        assert_eq!(env.metadata, serde_json::json!(["/1.0/instances/c1"]));
        assert!(op_of(env).expect("sync").is_none());
    }
}

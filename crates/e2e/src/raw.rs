//! Raw HTTP over the daemon's unix socket: for requests the typed client would never send
//! (malformed JSON) and for checking the exact error envelope.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// Deadline of one raw request.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// A response: HTTP status and the body as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed.
    pub body: serde_json::Value,
    /// The body as text, for messages.
    pub text: String,
}

impl RawResponse {
    /// Asserts LXD's error envelope with HTTP status `status` and returns its `error`.
    ///
    /// # Panics
    ///
    /// When the response is not an error envelope with that status and `error_code`.
    pub fn expect_error(&self, status: u16) -> String {
        assert_eq!(
            self.status, status,
            "HTTP status (expected {status}); body: {}",
            self.text
        );
        assert_eq!(
            self.body["type"], "error",
            "envelope type; body: {}",
            self.text
        );
        assert_eq!(
            self.body["error_code"], status,
            "envelope error_code; body: {}",
            self.text
        );
        let msg = self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("envelope has no error string: {}", self.text));
        assert!(!msg.is_empty(), "empty error message: {}", self.text);
        msg.to_string()
    }

    /// The `metadata` of a `sync` or `async` success.
    ///
    /// # Panics
    ///
    /// When the status is not 200/201/202.
    pub fn metadata(&self) -> &serde_json::Value {
        assert!(
            matches!(self.status, 200..=202),
            "expected success, got {}: {}",
            self.status,
            self.text
        );
        &self.body["metadata"]
    }
}

/// Sends `method path` with `body` (sent as is, typed `content_type`) on a fresh connection
/// to `socket`.
///
/// # Panics
///
/// On transport failure or after 30 s.
pub(crate) async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<(&str, Bytes)>,
) -> RawResponse {
    let what = format!("{method} {path}");
    crate::within(&what, RAW_TIMEOUT, async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", socket.display()));
        exchange(stream, method, path, body).await
    })
    .await
}

/// Sends one request on `io` (a fresh connection) and reads the whole response.
///
/// # Panics
///
/// On transport failure.
pub(crate) async fn exchange<IO>(
    io: IO,
    method: &str,
    path: &str,
    body: Option<(&str, Bytes)>,
) -> RawResponse
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("http handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    let body = match body {
        Some((content_type, bytes)) => {
            req = req.header("content-type", content_type);
            bytes
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(body)).expect("valid request");
    let resp = sender.send_request(req).await.expect("send request");
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("read the body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    RawResponse { status, body, text }
}

//! Raw HTTPS to a daemon's `core.https_address`, as any TLS client would do it: with or
//! without a client certificate, pinning the server's fingerprint.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::raw::{RawResponse, exchange};

/// Deadline of one HTTPS request.
const HTTPS_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port on `ip`: bound and released at once, so parallel tests on the same
/// loopback address do not collide (the kernel does not hand the same ephemeral port out
/// again right away).
///
/// # Panics
///
/// When nothing can be bound on `ip`.
pub fn free_address(ip: &str) -> SocketAddr {
    let ip: IpAddr = ip.parse().expect("an IP address");
    let l = std::net::TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}:0: {e}"));
    l.local_addr().expect("local address")
}

/// An HTTPS client of one daemon address.
#[derive(Debug, Clone)]
pub struct HttpsClient {
    addr: SocketAddr,
    config: Arc<tls::rustls::ClientConfig>,
}

impl HttpsClient {
    /// A client of `addr` presenting `identity` (none: no client certificate) and
    /// accepting only the server certificate with fingerprint `pin`.
    ///
    /// # Panics
    ///
    /// When rustls refuses the identity.
    pub fn new(addr: SocketAddr, identity: Option<&tls::Identity>, pin: &str) -> Self {
        let config = tls::client_config(identity, Some(pin.to_string())).expect("client config");
        Self { addr, config }
    }

    /// Sends `method path` with an optional JSON `body` on a fresh connection.
    ///
    /// # Errors
    ///
    /// When the connection or the TLS handshake fails (a wrong pin among them).
    ///
    /// # Panics
    ///
    /// When the HTTP exchange fails after the handshake, or after 30 s.
    pub async fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> tls::Result<RawResponse> {
        let what = format!("https {method} {path}");
        crate::within(&what, HTTPS_TIMEOUT, async {
            let stream = tls::connect(self.addr, self.config.clone()).await?;
            let body = body.map(|b| ("application/json", Bytes::from(b.to_string())));
            Ok(exchange(stream, method, path, body).await)
        })
        .await
    }

    /// [`HttpsClient::try_request`] that must get an answer.
    ///
    /// # Panics
    ///
    /// When the connection or the handshake fails.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> RawResponse {
        self.try_request(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("https {method} {path}: {e}"))
    }
}

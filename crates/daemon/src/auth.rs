//! Who is calling, and whether they may: the one place requests are authorized.
//!
//! The unix socket is trusted (its permissions are the access control). Over HTTPS a
//! client is trusted when the fingerprint of the certificate it presented is in the trust
//! store (`db::certificates`) or is this member's own certificate. An untrusted client may
//! only learn what the server is (`GET /` and `GET /1.0`, in their limited form) and ask to
//! be trusted (`POST /1.0/certificates` with a token); anything else is answered 403
//! `not authorized`, as LXD 5.0 does.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The caller of a request, attached to every request by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// The unix socket: fully trusted.
    Socket,
    /// An HTTPS client whose certificate is trusted.
    Trusted(tls::Peer),
    /// An HTTPS client without a certificate, or with one the trust store does not hold.
    Untrusted(tls::Peer),
}

impl Caller {
    /// Whether the caller may use the whole API.
    pub fn is_trusted(&self) -> bool {
        !matches!(self, Caller::Untrusted(_))
    }

    /// The TLS peer, for HTTPS callers.
    pub fn peer(&self) -> Option<&tls::Peer> {
        match self {
            Caller::Socket => None,
            Caller::Trusted(p) | Caller::Untrusted(p) => Some(p),
        }
    }
}

/// LXD's answer to an untrusted client.
pub fn not_authorized() -> ApiError {
    ApiError::forbidden("not authorized")
}

/// What an untrusted client may call (LXD's `AllowUntrusted` routes drover has).
fn allowed_untrusted(method: &Method, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    match *method {
        Method::GET => path.is_empty() || path == "/1.0",
        Method::POST => path == "/1.0/certificates",
        _ => false,
    }
}

/// Whether the certificate with `fingerprint` may use the API.
async fn is_trusted(d: &Daemon, fingerprint: &str) -> ApiResult<bool> {
    if fingerprint == d.https.identity().fingerprint() {
        return Ok(true);
    }
    // Cluster members call each other's API with their own certificates.
    if d.cluster.is_clustered() {
        let store = d.store.clone();
        let fp = fingerprint.to_string();
        if tokio::task::spawn_blocking(move || crate::cluster::is_member_fingerprint(&store, &fp))
            .await?
        {
            return Ok(true);
        }
    }
    let fp = fingerprint.to_string();
    Ok(d.read(move |c| db::certificates::get(c, &fp))
        .await?
        .is_some())
}

/// Middleware: works out the [`Caller`] from the request's [`tls::Peer`] (none: the unix
/// socket), refuses untrusted callers everything but the few routes they may use, and
/// attaches the caller for the handlers.
pub async fn authenticate(State(d): State<Daemon>, mut req: Request, next: Next) -> Response {
    let caller = match req.extensions().get::<tls::Peer>().cloned() {
        None => Caller::Socket,
        Some(peer) => {
            let trusted = match &peer.fingerprint {
                Some(fp) => match is_trusted(&d, fp).await {
                    Ok(t) => t,
                    Err(e) => return e.into_response(),
                },
                None => false,
            };
            if trusted {
                Caller::Trusted(peer)
            } else {
                Caller::Untrusted(peer)
            }
        }
    };
    if let Caller::Untrusted(peer) = &caller
        && !allowed_untrusted(req.method(), req.uri().path())
    {
        tracing::warn!(
            peer = %peer.addr,
            fingerprint = ?peer.fingerprint,
            method = %req.method(),
            path = %req.uri().path(),
            "rejecting request from untrusted client"
        );
        return not_authorized().into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_clients_reach_only_the_server_and_the_trust_request() {
        assert!(allowed_untrusted(&Method::GET, "/1.0"));
        assert!(allowed_untrusted(&Method::GET, "/1.0/"));
        assert!(allowed_untrusted(&Method::GET, "/"));
        assert!(allowed_untrusted(&Method::POST, "/1.0/certificates"));
        assert!(!allowed_untrusted(&Method::PUT, "/1.0"));
        assert!(!allowed_untrusted(&Method::GET, "/1.0/certificates"));
        assert!(!allowed_untrusted(&Method::GET, "/1.0/instances"));
        assert!(!allowed_untrusted(&Method::DELETE, "/1.0/certificates/abc"));
        assert!(!allowed_untrusted(&Method::GET, "/1.0/events"));
    }
}

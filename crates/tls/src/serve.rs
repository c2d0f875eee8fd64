//! The HTTPS accept loop: TLS handshake, peer identity, HTTP/1.1 with upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::fingerprint;

/// Deadline of a client's TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`serve`] lets open connections finish their requests after shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (out of file descriptors, ...), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Who is on the other end of a TLS connection: attached to every request [`serve`]
/// hands to the service, as a request extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// [`crate::fingerprint`] of the client's certificate; `None` when it showed none.
    pub fingerprint: Option<String>,
    /// The client's leaf certificate (DER), when it showed one.
    pub certificate: Option<CertificateDer<'static>>,
}

/// Serves HTTPS on `listener` until `shutdown` completes.
///
/// For every accepted connection: the TLS handshake (10 s deadline) with `config`, then
/// HTTP/1.1 (with upgrades, for websockets) where each request carries a [`Peer`] extension
/// naming the client's certificate fingerprint. A connection whose handshake fails is
/// dropped and logged at debug level; the loop goes on.
///
/// On `shutdown`: stop accepting (the listener is closed before this returns), ask every
/// open connection to finish its current request and close, wait up to 10 s for them, and
/// abort the rest. Upgraded connections (websockets) belong to their handlers and are not
/// waited for.
pub async fn serve<S, B>(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let local = listener.local_addr().ok();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => {
                    conns.spawn(connection(
                        tcp,
                        addr,
                        acceptor.clone(),
                        service.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = conns.len();
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = conns.len(),
            "https connections still open after the drain deadline; closing them"
        );
    }
    conns.abort_all();
    tracing::info!(address = ?local, drained = open, "https listener stopped");
}

async fn connection<S, B>(
    tcp: TcpStream,
    addr: SocketAddr,
    acceptor: TlsAcceptor,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %addr, error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %addr, "tls handshake timed out");
            return;
        }
    };
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned());
    let peer = Peer {
        addr,
        fingerprint: certificate.as_ref().map(|c| fingerprint(c)),
        certificate,
    };
    tracing::debug!(peer = %addr, fingerprint = ?peer.fingerprint, "tls connection");
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(peer.clone());
        let mut service = service.clone();
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(req).await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %addr, error = %e, "https connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, client_config, connect, server_config};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};

    /// A server on loopback answering every request with the peer's fingerprint (or `-`).
    async fn echo_server(
        identity: &Identity,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = server_config(identity).expect("server config");
        let svc = tower::service_fn(|req: Request<Incoming>| async move {
            let fp = req
                .extensions()
                .get::<Peer>()
                .and_then(|p| p.fingerprint.clone())
                .unwrap_or_else(|| "-".into());
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(fp))))
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, config, svc, async {
            let _ = rx.await;
        }));
        (addr, tx, task)
    }

    async fn get(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> crate::Result<String> {
        let tls = connect(addr, config).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("http handshake");
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                Request::get("/1.0")
                    .body(Empty::<Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// What does this test do?
    /// - serves on loopback with a fresh server identity
    /// - a client pinning the right fingerprint, with a client certificate: the request
    ///   sees that certificate's fingerprint
    /// - the same without a client certificate: the request sees none
    /// - a client pinning another fingerprint: the handshake fails, nothing is served
    /// - trust on first use fetches the server certificate
    /// - shutdown stops the listener
    #[tokio::test]
    async fn handshake_pins_and_reports_the_peer() {
        let server = Identity::generate("server", &["localhost".into()]).expect("server id");
        let client = Identity::generate("client", &[]).expect("client id");
        let (addr, stop, task) = echo_server(&server).await;

        let pinned = client_config(Some(&client), Some(server.fingerprint().to_uppercase()))
            .expect("client config");
        assert_eq!(get(addr, pinned).await.expect("mtls"), client.fingerprint());

        let anonymous =
            client_config(None, Some(server.fingerprint().into())).expect("client config");
        assert_eq!(get(addr, anonymous).await.expect("no client cert"), "-");

        let wrong =
            client_config(Some(&client), Some(client.fingerprint().into())).expect("client config");
        let err = get(addr, wrong).await.expect_err("pin mismatch must fail");
        assert!(
            err.to_string().contains("invalid peer certificate")
                && err.to_string().contains(server.fingerprint()),
            "unexpected error: {err}"
        );

        let fetched = crate::fetch_certificate(addr).await.expect("tofu");
        assert_eq!(fingerprint(&fetched), server.fingerprint());

        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task");
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }

    /// A client speaking only TLS 1.2 still gets through, with its certificate.
    #[tokio::test]
    async fn tls12_client_works() {
        let server = Identity::generate("server", &[]).expect("server id");
        let client = Identity::generate("client", &[]).expect("client id");
        let (addr, _stop, _task) = echo_server(&server).await;
        let config = crate::client::client_config_with_versions(
            Some(&client),
            Some(server.fingerprint().into()),
            &[&rustls::version::TLS12],
        )
        .expect("tls 1.2 client config");
        assert_eq!(
            get(addr, config).await.expect("tls 1.2"),
            client.fingerprint()
        );
    }
}

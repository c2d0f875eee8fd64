//! The client side: present our certificate, accept the server by its pinned fingerprint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::{Error, Identity, Result, fingerprint};

/// Deadline of a TCP connect plus TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS client config.
///
/// - With `identity`, the client presents that certificate when the server asks (mTLS).
/// - With `Some(pin)`, the server is accepted only if the SHA-256 fingerprint of its leaf
///   certificate equals `pin` (case-insensitive); anything else fails the handshake. Names
///   and CAs are not looked at: the pin is the whole trust decision.
/// - With `None`, any server certificate is accepted (trust on first use). Use this only to
///   *fetch* a certificate whose fingerprint is then compared with one learnt out of band
///   ([`fetch_certificate`]), never to send anything that matters.
///
/// In both cases the server's handshake signature is verified against the certificate it
/// showed, so the server must hold that certificate's key. ALPN `http/1.1`.
///
/// # Errors
///
/// [`Error::Tls`] when rustls refuses the client key.
pub fn client_config(
    identity: Option<&Identity>,
    pinned_server_fingerprint: Option<String>,
) -> Result<Arc<ClientConfig>> {
    client_config_with_versions(identity, pinned_server_fingerprint, crate::VERSIONS)
}

/// [`client_config`] limited to `versions`.
pub(crate) fn client_config_with_versions(
    identity: Option<&Identity>,
    pinned_server_fingerprint: Option<String>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>> {
    let provider = crate::provider();
    let verifier = Arc::new(PinnedServer {
        pin: pinned_server_fingerprint.map(|p| p.to_ascii_lowercase()),
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.certificate_der().clone()], id.private_key_der())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Connects to `addr` and completes the TLS handshake with `config`, within 10 s.
///
/// # Errors
///
/// [`Error::Io`] when the connection or the handshake fails (a pin mismatch among them),
/// [`Error::Timeout`] when it takes too long.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<TlsStream<TcpStream>> {
    let what = format!("connect {addr}");
    let run = async {
        let tcp = TcpStream::connect(addr).await.map_err(|source| Error::Io {
            what: what.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        // The name is only used for SNI, which rustls leaves out for IP addresses.
        let name = ServerName::IpAddress(addr.ip().into());
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| Error::Io {
                what: format!("tls handshake with {addr}"),
                source,
            })
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, run)
        .await
        .map_err(|_| Error::Timeout(what.clone()))?
}

/// Fetches the leaf certificate `addr` presents, trusting it on first use (no client
/// certificate is sent). The caller compares its [`fingerprint`] with the expected one.
///
/// # Errors
///
/// As [`connect`]; [`Error::Certificate`] when the server sent no certificate.
pub async fn fetch_certificate(addr: SocketAddr) -> Result<CertificateDer<'static>> {
    let stream = connect(addr, client_config(None, None)?).await?;
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| Error::Certificate(format!("{addr} presented no certificate")))
}

/// Accepts a server whose leaf has the pinned fingerprint (or any, without a pin).
#[derive(Debug)]
struct PinnedServer {
    pin: Option<String>,
    provider: Arc<CryptoProvider>,
}

/// Why a pinned server was refused (shown in the handshake error).
#[derive(Debug, thiserror::Error)]
#[error("server certificate fingerprint {found} is not the pinned {expected}")]
struct PinMismatch {
    expected: String,
    found: String,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(pin) = &self.pin else {
            return Ok(ServerCertVerified::assertion());
        };
        let found = fingerprint(end_entity);
        if &found == pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch {
                    expected: pin.clone(),
                    found,
                })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

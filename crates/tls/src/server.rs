//! The server side: ask for a client certificate, accept any, decide trust later.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use crate::{Identity, Result};

/// A TLS server config presenting `identity`.
///
/// - TLS 1.3 and 1.2, ALPN `http/1.1`.
/// - A client certificate is **requested, not required, and not verified against any CA**:
///   any certificate (self-signed or not, expired or not) is accepted at the TLS layer, as
///   long as the client proves it holds the certificate's key (the handshake signature is
///   verified). The request names no acceptable CAs, so clients (Go's included) send
///   whatever certificate they have. Trust is decided afterwards from the certificate's
///   fingerprint ([`crate::Peer`]).
///
/// # Errors
///
/// [`crate::Error::Tls`] when rustls refuses the key.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>> {
    let provider = crate::provider();
    let verifier = Arc::new(AnyClientCertificate {
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(crate::VERSIONS)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![identity.certificate_der().clone()],
            identity.private_key_der(),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any client certificate, or none; still checks the handshake signatures.
#[derive(Debug)]
struct AnyClientCertificate {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        // Trust is by fingerprint, per request; the signature checks below prove possession.
        Ok(ClientCertVerified::assertion())
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

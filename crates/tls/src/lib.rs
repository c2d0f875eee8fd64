//! drover's mTLS: who a member or client is, and how two of them check each other.
//!
//! drover trusts by **fingerprint**, as LXD does, not by a certificate authority:
//!
//! - Every member has its own self-signed [`Identity`] (`server.crt`/`server.key`), and a
//!   cluster will share a second one (`cluster.crt`/`cluster.key`). Both are ECDSA P-384
//!   certificates made with rcgen, like LXD's.
//! - A server ([`server_config`]) *asks* every client for a certificate but accepts any, or
//!   none: the TLS layer only proves that the client holds the key of the certificate it
//!   shows. Whether that certificate is trusted is decided afterwards, per request, from its
//!   [`fingerprint`], which [`serve`] attaches to every request as a [`Peer`].
//! - A client ([`client_config`]) accepts a server only when the fingerprint of the leaf
//!   certificate equals the one it pinned; handshake signatures are still verified, so a
//!   peer that merely replays a certificate cannot pass. Without a pin the client trusts on
//!   first use, which is only for fetching a certificate to compare with a fingerprint
//!   learnt elsewhere (a join token): [`fetch_certificate`].
//!
//! Everything uses rustls with the *ring* provider, named explicitly in every config, so no
//! process-wide default provider is needed.

mod client;
mod error;
mod fingerprint;
mod identity;
mod serve;
mod server;

pub use client::{client_config, connect, fetch_certificate};
pub use error::{Error, Result};
pub use fingerprint::{certificate_pem, fingerprint, fingerprint_pem};
pub use identity::{CertificateInfo, Identity, inspect_certificate};
pub use serve::{Peer, serve};
pub use server::server_config;

pub use rustls;
pub use rustls::pki_types::CertificateDer;
pub use tokio_rustls;

/// A fresh secret for tokens: 32 bytes from the system's secure random source, as 64
/// lowercase hex characters.
///
/// # Errors
///
/// [`Error::Random`] when the system cannot provide randomness.
pub fn random_secret() -> Result<String> {
    let mut buf = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| Error::Random)?;
    Ok(hex::encode(buf))
}

/// The crypto provider every drover config uses: ring's, with the AES-128-GCM suites
/// first.
///
/// ring lists AES-256-GCM first; a drover client offers AES-128-GCM first, and a server
/// takes the client's order, so member links (and volume streams on them) run AES-128-GCM:
/// 10 AES rounds instead of 14, ≈ 1.3× the throughput with AES-NI on this machine kind
/// (ring 0.17, 16 KiB records: 4.4–4.7 against 3.3–4.4 GB/s), for a margin TLS 1.3 deems
/// enough. Go clients (`lxc`) already prefer AES-128-GCM on such hardware.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        _ => 1,
    });
    std::sync::Arc::new(p)
}

/// TLS versions drover speaks: 1.3 first (what `lxc` insists on by default), and 1.2.
pub(crate) const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[cfg(test)]
mod tests {
    /// What does this test do?
    /// - the provider offers every ring suite, AES-128-GCM ones first (TLS 1.3, then 1.2)
    #[test]
    fn aes_128_gcm_comes_first() {
        use rustls::CipherSuite as C;
        let suites: Vec<C> = super::provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
        assert_eq!(suites[0], C::TLS13_AES_128_GCM_SHA256);
        assert!(
            suites[..3].contains(&C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            "{suites:?}"
        );
    }

    #[test]
    fn secrets_are_long_and_fresh() {
        let a = super::random_secret().expect("random");
        let b = super::random_secret().expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

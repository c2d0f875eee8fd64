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

/// The crypto provider every drover config uses.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS versions drover speaks: 1.3 first (what `lxc` insists on by default), and 1.2.
pub(crate) const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_long_and_fresh() {
        let a = super::random_secret().expect("random");
        let b = super::random_secret().expect("random");
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}

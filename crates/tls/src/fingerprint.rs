//! Certificate fingerprints, as LXD computes them.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The fingerprint of a DER certificate: lowercase hex of SHA-256 over the DER bytes, as
/// LXD's `shared.CertFingerprint` (64 characters).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The fingerprint of the first `CERTIFICATE` block of `pem`.
///
/// # Errors
///
/// [`Error::Pem`] when `pem` holds no certificate block.
pub fn fingerprint_pem(pem: &str) -> Result<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pem {
        what: "certificate",
        reason: e.to_string(),
    })?;
    Ok(fingerprint(&der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_hex_of_der() {
        // sha256("abc")
        assert_eq!(
            fingerprint(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn pem_without_certificate_is_an_error() {
        assert!(matches!(
            fingerprint_pem("not a pem"),
            Err(Error::Pem { .. })
        ));
    }
}

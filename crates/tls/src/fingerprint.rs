//! Certificate fingerprints, as LXD computes them, and PEM armour for a DER certificate.

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

/// A DER certificate as PEM (`-----BEGIN CERTIFICATE-----`, base64 in 64-column lines), as
/// LXD sends certificates in JSON.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
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

    #[test]
    fn pem_round_trips_to_the_same_fingerprint() {
        let der = b"not really a certificate, but any bytes armour the same way";
        let pem = certificate_pem(der);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back = CertificateDer::from_pem_slice(pem.as_bytes()).expect("parses back");
        assert_eq!(back.as_ref(), der);
    }

    #[test]
    fn a_real_certificate_keeps_its_fingerprint_through_pem() {
        let id = crate::Identity::generate("t", &[]).expect("identity");
        let text = certificate_pem(id.certificate_der());
        assert_eq!(fingerprint_pem(&text).expect("pem"), id.fingerprint());
    }
}

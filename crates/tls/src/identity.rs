//! A certificate and its private key: a member's own, or the cluster's.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Result, fingerprint};

/// How long a generated certificate is valid: ten years, as LXD's.
const VALIDITY_DAYS: i64 = 3650;
/// How far back a generated certificate's validity starts, for peers whose clock is behind.
const BACKDATE_DAYS: i64 = 1;

/// A certificate with its private key, as PEM and parsed DER.
///
/// One type for every identity drover has: each member's own certificate
/// (`server.crt`/`server.key`, presented on its HTTPS listener and to other members) and the
/// cluster certificate (`cluster.crt`/`cluster.key`, which clients see once clustered).
///
/// # Contract
///
/// The certificate's public key matches the private key (checked on load), and
/// [`Identity::fingerprint`] is the fingerprint of exactly [`Identity::certificate_der`].
pub struct Identity {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: PrivateKeyDer<'static>,
    fingerprint: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
            fingerprint: self.fingerprint.clone(),
        }
    }
}

impl Identity {
    /// Loads `<dir>/<file_stem>.crt` and `<dir>/<file_stem>.key`, or, when neither exists,
    /// generates a new identity with [`Identity::generate`] and writes both (the key with
    /// mode 0600, each file written whole before it appears under its name).
    ///
    /// A reload returns the same certificate, hence the same fingerprint. `common_name` and
    /// `sans` are used only when generating.
    ///
    /// # Errors
    ///
    /// [`Error::HalfIdentity`] when only one of the two files exists (nothing is
    /// overwritten), [`Error::File`] on I/O failures, [`Error::Pem`] / [`Error::Tls`] when
    /// the files are malformed or do not belong together.
    pub fn load_or_create(
        dir: &Path,
        file_stem: &str,
        common_name: &str,
        sans: &[String],
    ) -> Result<Self> {
        let cert_path = dir.join(format!("{file_stem}.crt"));
        let key_path = dir.join(format!("{file_stem}.key"));
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let cert = read(&cert_path)?;
                let key = read(&key_path)?;
                Self::from_pem(&cert, &key)
            }
            (false, false) => {
                let id = Self::generate(common_name, sans)?;
                std::fs::create_dir_all(dir).map_err(|source| Error::File {
                    path: dir.to_path_buf(),
                    source,
                })?;
                write_new(&key_path, id.key_pem.as_bytes(), 0o600)?;
                write_new(&cert_path, id.cert_pem.as_bytes(), 0o644)?;
                tracing::info!(
                    cert = %cert_path.display(),
                    fingerprint = %id.fingerprint,
                    "generated a new certificate"
                );
                Ok(id)
            }
            (true, false) => Err(Error::HalfIdentity {
                present: cert_path,
                missing: key_path,
            }),
            (false, true) => Err(Error::HalfIdentity {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    /// A new self-signed identity, in memory: ECDSA P-384 with SHA-384, subject
    /// `CN=<common_name>, O=drover`, valid from a day ago for ten years, usable for both
    /// server and client authentication, with `sans` as subject alternative names (entries
    /// that parse as IP addresses become IP SANs, the others DNS names; the first DNS name is
    /// what LXD's client sends as the server name, so put the host name first).
    ///
    /// # Errors
    ///
    /// [`Error::Generate`] when a name is not a valid DNS name.
    pub fn generate(common_name: &str, sans: &[String]) -> Result<Self> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "drover");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(BACKDATE_DAYS);
        params.not_after = now + time::Duration::days(VALIDITY_DAYS);
        // A random positive 128-bit serial, as LXD's.
        let mut serial = *uuid::Uuid::new_v4().as_bytes();
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// An identity from PEM text (the first `CERTIFICATE` block and the first private key).
    ///
    /// # Errors
    ///
    /// [`Error::Pem`] when a block is missing or malformed, [`Error::Tls`] when the key is
    /// unusable or does not match the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self> {
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Pem {
                what: "certificate",
                reason: e.to_string(),
            })?
            .into_owned();
        let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| Error::Pem {
                what: "private key",
                reason: e.to_string(),
            })?
            .clone_key();
        // Fails when the key is unusable or belongs to another certificate.
        rustls::sign::CertifiedKey::from_der(
            vec![cert_der.clone()],
            key_der.clone_key(),
            &crate::provider(),
        )?;
        Ok(Self {
            fingerprint: fingerprint(&cert_der),
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
            key_der,
        })
    }

    /// The certificate as PEM (what `GET /1.0` shows as `environment.certificate`).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The certificate as DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The private key as PEM (a joining member receives the cluster's).
    pub fn private_key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The private key as DER.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        self.key_der.clone_key()
    }

    /// [`crate::fingerprint`] of the certificate.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// What drover reads from a certificate: names and validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The subject's common name (`"root@host"`), empty when it has none.
    pub common_name: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
}

impl CertificateInfo {
    /// Whether `now` (seconds since the epoch) lies within the validity period.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Parses a DER certificate.
///
/// # Errors
///
/// [`Error::Certificate`] when `der` is not one whole X.509 certificate.
pub fn inspect_certificate(der: &[u8]) -> Result<CertificateInfo> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| Error::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => {
                    dns_names.push((*n).to_string())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertificateInfo {
        common_name,
        dns_names,
        ip_addresses,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `data` to a temporary file with `mode`, syncs it, and renames it to `path`.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let tmp: PathBuf = path.with_extension("tmp");
    let err = |source| Error::File {
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::File {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// What does this test do?
    /// - generates `server.crt`/`server.key` with a DNS and an IP SAN
    /// - checks the SANs, CN, validity and the key's mode 0600
    /// - reloads: same fingerprint, same PEM
    #[test]
    fn load_or_create_generates_once_and_reloads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sans = vec!["host1".to_string(), "127.0.0.11".to_string()];
        let a =
            Identity::load_or_create(dir.path(), "server", "root@host1", &sans).expect("generate");
        assert_eq!(a.fingerprint().len(), 64);
        assert_eq!(a.fingerprint(), fingerprint(a.certificate_der()));

        let info = inspect_certificate(a.certificate_der()).expect("parse");
        assert_eq!(info.common_name, "root@host1");
        assert_eq!(info.dns_names, vec!["host1".to_string()]);
        assert_eq!(
            info.ip_addresses,
            vec!["127.0.0.11".parse::<IpAddr>().expect("ip")]
        );
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!(info.is_valid_at(now));
        assert!(info.not_after - now > 9 * 365 * 86400, "long validity");

        let mode = std::fs::metadata(dir.path().join("server.key"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let b = Identity::load_or_create(dir.path(), "server", "ignored", &[]).expect("reload");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.certificate_pem(), b.certificate_pem());
        assert_eq!(
            crate::fingerprint_pem(b.certificate_pem()).expect("pem"),
            a.fingerprint()
        );
    }

    /// The cluster identity lives next to the member's and differs from it.
    #[test]
    fn stems_make_distinct_identities() {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Identity::load_or_create(dir.path(), "server", "m1", &[]).expect("server");
        let cluster =
            Identity::load_or_create(dir.path(), "cluster", "drover", &[]).expect("cluster");
        assert_ne!(server.fingerprint(), cluster.fingerprint());
        assert!(dir.path().join("cluster.key").exists());
    }

    #[test]
    fn half_identity_is_refused_and_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("server.crt"), "x").expect("write");
        let err = Identity::load_or_create(dir.path(), "server", "m1", &[]).expect_err("half");
        assert!(matches!(err, Error::HalfIdentity { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("server.crt")).expect("read"),
            "x"
        );
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = Identity::generate("a", &[]).expect("a");
        let b = Identity::generate("b", &[]).expect("b");
        let err =
            Identity::from_pem(a.certificate_pem(), b.private_key_pem()).expect_err("mismatch");
        assert!(matches!(err, Error::Tls(_)), "{err}");
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(matches!(
            inspect_certificate(b"\x30\x03\x02\x01\x01"),
            Err(Error::Certificate(_))
        ));
    }
}

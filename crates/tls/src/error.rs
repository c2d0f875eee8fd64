//! Errors of the TLS layer.

use std::path::PathBuf;

/// What can go wrong making, loading or using certificates and TLS connections.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a certificate or key file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Only one of the certificate and the key exists: refusing to guess or overwrite.
    #[error("{present} exists but {missing} does not")]
    HalfIdentity {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// No PEM block of the expected kind, or a malformed one.
    #[error("invalid pem {what}: {reason}")]
    Pem {
        /// `"certificate"` or `"private key"`.
        what: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// Bytes that are not an X.509 certificate.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// rcgen could not make a certificate (an unusable name, for instance).
    #[error("generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a config, a key or a handshake.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// A network operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done (`"connect 127.0.0.11:8443"`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The system's secure random source failed.
    #[error("no secure randomness available")]
    Random,
    /// A network operation did not finish in time.
    #[error("{0}: timed out")]
    Timeout(String),
}

/// Result of this crate's calls.
pub type Result<T> = std::result::Result<T, Error>;

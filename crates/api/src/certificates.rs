//! `/1.0/certificates`: the trust store, and LXD's certificate add tokens.

use serde::{Deserialize, Serialize};

use crate::de::null_default;

/// `GET /1.0/certificates/{fingerprint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// A name for people (`"laptop"`).
    pub name: String,
    /// `"client"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the holder is limited to `projects`.
    pub restricted: bool,
    /// Projects a restricted holder may use (`[]`).
    pub projects: Vec<String>,
    /// The certificate, PEM.
    pub certificate: String,
    /// SHA-256 of the DER certificate, lowercase hex
    /// (`"710696f775c5685d8f6f72fae009ff72d96fdf53e4103e28fde2728b1010d5b3"`).
    pub fingerprint: String,
}

/// `POST /1.0/certificates`: add a certificate, or (`token: true`) ask for a token that
/// lets a client add its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatesPost {
    /// A name for people (`"laptop"`); the certificate's CN when empty.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `"client"` (the default when empty).
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// Limit the holder to `projects`.
    #[serde(default, deserialize_with = "null_default")]
    pub restricted: bool,
    /// Projects of a restricted holder.
    #[serde(default, deserialize_with = "null_default")]
    pub projects: Vec<String>,
    /// The certificate to add: base64 of its DER (no PEM armour). Empty: the certificate
    /// the requesting TLS client presented.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
    /// From an untrusted client: a certificate add token (what `lxc remote add` sends in
    /// this field), or a trust password (drover has none).
    #[serde(default, deserialize_with = "null_default")]
    pub password: String,
    /// Newer LXD clients send the token here instead of `password`; both are accepted.
    #[serde(default, deserialize_with = "null_default")]
    pub trust_token: String,
    /// Ask for a certificate add token instead of adding a certificate.
    #[serde(default, deserialize_with = "null_default")]
    pub token: bool,
}

/// `PUT /1.0/certificates/{fingerprint}`: the editable fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificatePut {
    /// A name for people.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// `"client"`.
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    /// Limit the holder to `projects`.
    #[serde(default, deserialize_with = "null_default")]
    pub restricted: bool,
    /// Projects of a restricted holder.
    #[serde(default, deserialize_with = "null_default")]
    pub projects: Vec<String>,
    /// The certificate, PEM (must not change).
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
}

/// A certificate add token as `lxc config trust add` prints it: base64 (standard, padded)
/// of this JSON. `lxc remote add <name> <token>` decodes it, fetches the server certificate
/// from one of `addresses`, checks it against `fingerprint`, and sends the whole token back
/// in [`CertificatesPost::password`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateAddToken {
    /// The name the certificate will get (`"laptop"`).
    pub client_name: String,
    /// Fingerprint of the server certificate the client must see.
    pub fingerprint: String,
    /// Where the server listens (`["127.0.0.11:8443"]`).
    pub addresses: Vec<String>,
    /// The single-use secret (64 hex characters).
    pub secret: String,
    /// When the token stops working (RFC 3339; Go's zero time when it never does).
    #[serde(default)]
    pub expires_at: String,
}

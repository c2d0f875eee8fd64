//! The trust store (`/1.0/certificates`) and LXD's certificate add tokens.
//!
//! Adding a certificate ([`add`]) follows LXD 5.0.2's `certificatesPost`:
//!
//! - From the unix socket or a trusted client: the certificate given (base64 DER), or, with
//!   none, the requesting TLS client's own. `token: true` instead creates a certificate add
//!   token: a `token` operation whose metadata (`request`, `secret`, `fingerprint`,
//!   `addresses`, optional `expiresAt`) `lxc config trust add` turns into the token it
//!   prints. Deleting the operation revokes the token.
//! - From an untrusted client: with the trust password (`core.trust_password`) in
//!   `password`, the certificate given (or the client's own) with the name, type and
//!   projects asked for, as LXD 5.0.2 adds it; or with a token in `password` (what `lxc
//!   remote add` sends) or `trust_token`. A token is single use; the certificate added is
//!   the client's own, with the name, type and projects the token was made for.
//!
//! In a cluster a token is redeemed through any member, as LXD looks for the token
//! operation on every member: a member that does not hold the secret asks the others on
//! the member-only route `POST /internal/certificate-tokens/{secret}`, which uses the
//! token up where it was issued and answers the request it was made for. The token
//! lists every member's address.

use std::collections::HashMap;
use std::sync::Mutex;

use api::certificates::{Certificate, CertificateAddToken, CertificatesPost};
use api::{Operation, OperationClass};
use axum::response::IntoResponse;
use base64::Engine;
use chrono::{DateTime, Utc};
use db::certificates::CertificateRecord;
use tokio::sync::oneshot;

use crate::auth::{Caller, not_authorized};
use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, lock};

/// The only certificate type drover issues and accepts so far.
const CLIENT: &str = "client";

/// Certificate add tokens waiting to be used, by secret. Tokens live in this member's
/// memory, as LXD's token operations do: a restart forgets them.
#[derive(Debug, Default)]
pub struct Tokens {
    pending: Mutex<HashMap<String, Pending>>,
}

#[derive(Debug)]
struct Pending {
    request: CertificatesPost,
    expires_at: Option<DateTime<Utc>>,
    /// Fired when the token is used; the operation then ends as LXD's does (cancelled).
    used: oneshot::Sender<()>,
}

/// What [`add`] did.
#[derive(Debug)]
pub enum Added {
    /// The certificate with this fingerprint is now trusted.
    Certificate(String),
    /// A token operation was created.
    Token(Operation),
}

fn to_api(rec: CertificateRecord) -> Certificate {
    Certificate {
        name: rec.name,
        kind: rec.kind,
        restricted: rec.restricted,
        projects: rec.projects,
        certificate: rec.certificate,
        fingerprint: rec.fingerprint,
    }
}

/// Every trusted certificate.
pub async fn list(d: &Daemon) -> ApiResult<Vec<Certificate>> {
    Ok(d.read(db::certificates::list)
        .await?
        .into_iter()
        .map(to_api)
        .collect())
}

/// The certificate whose fingerprint starts with `prefix`.
pub async fn get(d: &Daemon, prefix: &str) -> ApiResult<Certificate> {
    let p = prefix.to_ascii_lowercase();
    match d
        .read(move |c| db::certificates::get_by_prefix(c, &p))
        .await
    {
        Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {
            Err(ApiError::not_found("Certificate not found"))
        }
        Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
            Err(ApiError::bad_request("More than one certificate matches"))
        }
        other => other.map(to_api),
    }
}

/// Removes the certificate whose fingerprint starts with `prefix` from the trust store.
pub async fn delete(d: &Daemon, prefix: &str) -> ApiResult<()> {
    let cert = get(d, prefix).await?;
    d.write(db::Command::DeleteCertificate {
        fingerprint: cert.fingerprint.clone(),
    })
    .await?;
    tracing::info!(fingerprint = %cert.fingerprint, name = %cert.name, "certificate removed from the trust store");
    d.bus.lifecycle(
        "certificate-deleted",
        format!("/1.0/certificates/{}", cert.fingerprint),
        "default",
        None,
    );
    Ok(())
}

/// `POST /1.0/certificates` (see the module doc).
pub async fn add(d: &Daemon, caller: &Caller, mut req: CertificatesPost) -> ApiResult<Added> {
    if req.token && !req.certificate.is_empty() {
        return Err(ApiError::bad_request(
            "Can't use certificate if token is requested",
        ));
    }
    if req.kind.is_empty() {
        req.kind = CLIENT.into();
    }
    if req.token {
        if !caller.is_trusted() {
            return Err(not_authorized());
        }
        return create_token(d, req).await.map(Added::Token);
    }
    match caller {
        Caller::Trusted(_) if req.certificate.is_empty() => {
            return Err(ApiError::bad_request("Client is already trusted"));
        }
        Caller::Socket | Caller::Trusted(_) => {}
        Caller::Untrusted(_)
            if crate::server_config::trust_password_matches(d, &req.password).await? =>
        {
            req.password.clear();
        }
        Caller::Untrusted(_) => {
            let secret = if req.trust_token.is_empty() {
                &req.password
            } else {
                &req.trust_token
            };
            if secret.is_empty() {
                return Err(not_authorized());
            }
            let granted = match redeem(d, secret) {
                Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => {
                    redeem_on_peers(d, secret).await.ok_or(e)?
                }
                other => other?,
            };
            // The token decides what is added; the client may not override anything.
            req = CertificatesPost {
                name: granted.name,
                kind: granted.kind,
                restricted: granted.restricted,
                projects: granted.projects,
                ..Default::default()
            };
        }
    }
    if req.kind != CLIENT {
        return Err(ApiError::bad_request(format!(
            "Unknown certificate type {:?}",
            req.kind
        )));
    }
    let der = if !req.certificate.is_empty() {
        // LXD decodes with Go's base64, which skips line breaks: pylxd sends the PEM body
        // with its lines.
        let body: String = req
            .certificate
            .chars()
            .filter(|c| !matches!(c, '\r' | '\n'))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|e| ApiError::bad_request(format!("Invalid certificate material: {e}")))?
    } else {
        match caller.peer() {
            Some(peer) => peer
                .certificate
                .as_ref()
                .map(|c| c.to_vec())
                .ok_or_else(|| ApiError::bad_request("No client certificate provided"))?,
            None => {
                return Err(ApiError::bad_request("Can't use TLS data on non-TLS link"));
            }
        }
    };
    let info = tls::inspect_certificate(&der)
        .map_err(|e| ApiError::bad_request(format!("Invalid certificate material: {e}")))?;
    if !info.is_valid_at(Utc::now().timestamp()) {
        return Err(ApiError::bad_request(
            "The provided certificate isn't valid yet or has expired",
        ));
    }
    let fingerprint = tls::fingerprint(&der);
    let name = if !req.name.is_empty() {
        req.name
    } else if !info.common_name.is_empty() {
        info.common_name
    } else {
        caller
            .peer()
            .map(|p| p.addr.ip().to_string())
            .unwrap_or_default()
    };
    let rec = CertificateRecord {
        fingerprint: fingerprint.clone(),
        kind: req.kind,
        name,
        certificate: tls::certificate_pem(&der),
        restricted: req.restricted,
        projects: req.projects,
    };
    match d.write(db::Command::CreateCertificate(rec.clone())).await {
        Err(e) if e.status == axum::http::StatusCode::CONFLICT => {
            return Err(ApiError::conflict("Certificate already in trust store"));
        }
        other => other?,
    }
    tracing::info!(fingerprint = %fingerprint, name = %rec.name, "certificate added to the trust store");
    d.bus.lifecycle(
        "certificate-created",
        format!("/1.0/certificates/{fingerprint}"),
        "default",
        None,
    );
    Ok(Added::Certificate(fingerprint))
}

/// Creates a certificate add token operation for `req` (from a trusted caller).
async fn create_token(d: &Daemon, mut req: CertificatesPost) -> ApiResult<Operation> {
    if req.kind != CLIENT {
        return Err(ApiError::bad_request(
            "Tokens can only be issued for client certificates",
        ));
    }
    let mut addresses = d.https.addresses().await;
    if d.cluster.is_clustered() {
        for m in d.read(db::members::list).await? {
            if !m.address.is_empty() && !addresses.contains(&m.address) {
                addresses.push(m.address);
            }
        }
    }
    if addresses.is_empty() {
        return Err(ApiError::bad_request(
            "Can't issue token when server isn't listening on network",
        ));
    }
    let config = d.read(db::config::all).await?;
    let expiry = config
        .get(crate::server_config::REMOTE_TOKEN_EXPIRY)
        .map(String::as_str)
        .unwrap_or_default();
    let expires_at =
        crate::server_config::expiry_after(Utc::now(), expiry).map_err(ApiError::internal)?;
    let secret = tls::random_secret().map_err(|e| ApiError::internal(e.to_string()))?;
    req.password.clear();
    req.trust_token.clear();
    let mut meta = serde_json::json!({
        "request": req,
        "secret": secret,
        "fingerprint": d.https.identity().fingerprint(),
        "addresses": addresses,
    });
    if let Some(at) = expires_at {
        meta["expiresAt"] = serde_json::Value::String(rfc3339(at));
    }
    let op = d.ops.create(
        OperationClass::Token,
        "Certificate add token",
        Default::default(),
        Some(meta),
    );
    let revoked = op.cancellable();
    let (used, used_rx) = oneshot::channel();
    lock(&d.cert_tokens.pending).insert(
        secret.clone(),
        Pending {
            request: req,
            expires_at,
            used,
        },
    );
    let record = op.record();
    let d2 = d.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = revoked => {
                lock(&d2.cert_tokens.pending).remove(&secret);
                tracing::info!(op = %op.id(), "certificate add token revoked");
            }
            _ = used_rx => {}
        }
        op.cancelled();
    });
    Ok(record)
}

/// Asks the other members to use up the token encoded in `token` (one this member did not
/// issue); the request it was made for, or `None` when no member holds it.
async fn redeem_on_peers(d: &Daemon, token: &str) -> Option<CertificatesPost> {
    if !d.cluster.is_clustered() {
        return None;
    }
    let secret = decode_token(token)?.secret;
    if secret.is_empty() || !secret.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let own = d.member();
    let members = d.read(db::members::list).await.ok()?;
    for m in members.into_iter().filter(|m| m.name != own) {
        let Ok(peer) = crate::cluster::peer::Peer::connect(d, &m.name).await else {
            continue;
        };
        let path = format!("/internal/certificate-tokens/{secret}");
        match peer.request(reqwest::Method::POST, &path, None).await {
            Ok(reply) => match reply.into_sync::<CertificatesPost>() {
                Ok(req) => return Some(req),
                Err(e) => tracing::warn!(member = %m.name, error = %e, "bad token answer"),
            },
            Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => {}
            Err(e) => tracing::warn!(member = %m.name, error = %e, "token look-up failed"),
        }
    }
    None
}

/// The member-only route redeeming this member's tokens for the others.
pub fn internal_routes(d: Daemon) -> axum::Router {
    axum::Router::new()
        .route(
            "/internal/certificate-tokens/{secret}",
            axum::routing::post(redeem_for_member),
        )
        .with_state(d)
}

async fn redeem_for_member(
    axum::extract::State(d): axum::extract::State<Daemon>,
    peer: Option<axum::Extension<tls::Peer>>,
    axum::extract::Path(secret): axum::extract::Path<String>,
) -> ApiResult<axum::response::Response> {
    let fingerprint = peer
        .and_then(|axum::Extension(p)| p.fingerprint)
        .ok_or_else(not_authorized)?;
    let store = d.store.clone();
    if !tokio::task::spawn_blocking(move || {
        crate::cluster::is_member_fingerprint(&store, &fingerprint)
    })
    .await?
    {
        return Err(not_authorized());
    }
    let req = take(&d, &secret)?;
    Ok(axum::Json(api::Response::sync(req)).into_response())
}

fn decode_token(token: &str) -> Option<CertificateAddToken> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
}

/// Uses up the token encoded in `token` (base64 JSON, as `lxc remote add` sends it) and
/// returns the request it was made for.
fn redeem(d: &Daemon, token: &str) -> ApiResult<CertificatesPost> {
    let Some(decoded) = decode_token(token) else {
        // Not a token, nor the trust password (checked before).
        tracing::warn!("refusing a wrong trust password");
        return Err(not_authorized());
    };
    take(d, &decoded.secret)
}

/// Uses up this member's token with `secret`.
fn take(d: &Daemon, secret: &str) -> ApiResult<CertificatesPost> {
    let Some(pending) = lock(&d.cert_tokens.pending).remove(secret) else {
        return Err(ApiError::forbidden(
            "No matching certificate add operation found",
        ));
    };
    let _ = pending.used.send(());
    if pending.expires_at.is_some_and(|at| Utc::now() > at) {
        return Err(ApiError::forbidden("Token has expired"));
    }
    Ok(pending.request)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

//! Server config (`PUT`/`PATCH /1.0`): the keys drover knows, validated before storing.
//!
//! Known keys:
//! - `core.https_address`: where to serve HTTPS (see [`crate::https`]); bound before the
//!   value is stored, so an address that cannot be used is refused and nothing changes.
//! - `core.remote_token_expiry`: how long certificate add tokens live (LXD's syntax,
//!   `"1H"`, `"30M 10S"`, `"2d"`); unset: they never expire.
//!
//! - `cluster.offline_threshold`: seconds without a heartbeat after which a member shows
//!   `Offline` (default 20).
//! - `cluster.max_voters`: how many members vote in the Raft group (default 3).
//! - `cluster.join_token_expiry`: how long join tokens live (LXD's syntax; default `3H`).
//! - `cluster.evacuate.parallel`, `cluster.evacuate.parallel_per_target`: how many
//!   instances an evacuation or restore handles at once on the member concerned (default
//!   4) and onto / from any one other member (default 2).
//!
//! Any other key is refused with 400, as LXD refuses unknown keys.

use api::ConfigMap;
use api::server::ServerPut;
use chrono::{DateTime, Months, Utc};
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::https::{self, HTTPS_ADDRESS};
use crate::state::Daemon;

/// The server config key bounding the life of certificate add tokens.
pub const REMOTE_TOKEN_EXPIRY: &str = "core.remote_token_expiry";

/// The ETag of the server config (what `PUT /1.0` replaces).
pub fn etag(config: &ConfigMap) -> String {
    let json = serde_json::to_string(config).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json.as_bytes()))
}

fn validate(key: &str, value: &str) -> ApiResult<()> {
    let refuse =
        |why: String| ApiError::bad_request(format!("cannot set '{key}' to '{value}': {why}"));
    match key {
        HTTPS_ADDRESS => https::parse_address(value).map(|_| ()),
        REMOTE_TOKEN_EXPIRY | crate::cluster::JOIN_TOKEN_EXPIRY => {
            expiry_after(Utc::now(), value).map(|_| ()).map_err(refuse)
        }
        crate::cluster::OFFLINE_THRESHOLD
        | crate::cluster::MAX_VOTERS
        | crate::cluster::evacuate::PARALLEL
        | crate::cluster::evacuate::PARALLEL_PER_TARGET => match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => Err(refuse("expected a positive integer".into())),
        },
        _ => Err(refuse("unknown key".into())),
    }
}

/// The server config as `GET /1.0` shows it: a clustered member shows its own address
/// under `core.https_address` and `cluster.https_address`.
pub async fn shown(d: &Daemon, mut config: ConfigMap) -> ApiResult<ConfigMap> {
    if d.cluster.is_clustered() {
        let own = crate::cluster::own_address(d).await?;
        config.insert(HTTPS_ADDRESS.into(), own.clone());
        config.insert(crate::cluster::CLUSTER_HTTPS_ADDRESS.into(), own);
    }
    Ok(config)
}

/// Applies `PUT /1.0` (`merge == false`: `req.config` is the whole new config) or
/// `PATCH /1.0` (`merge == true`: only the keys given change). An empty value unsets a key.
///
/// # Contract
///
/// Every changed key is validated first; any invalid key fails the whole request with 400
/// and stores nothing. A changed `core.https_address` moves the listener in the same call
/// ([`https::Https::reconfigure`]). `if_match`, when given and not empty, must equal the
/// current [`etag`] (else 412).
pub async fn update(
    d: &Daemon,
    req: ServerPut,
    merge: bool,
    if_match: Option<String>,
) -> ApiResult<()> {
    let current = d.read(db::config::all).await?;
    if let Some(tag) = if_match {
        let tag = tag.trim_matches('"');
        if !tag.is_empty() && tag != etag(&shown(d, current.clone()).await?) {
            return Err(ApiError::precondition_failed("ETag doesn't match"));
        }
    }
    let mut desired = if merge {
        current.clone()
    } else {
        ConfigMap::new()
    };
    let asked = req.config.clone();
    for (k, v) in req.config {
        if v.is_empty() {
            desired.remove(&k);
        } else {
            desired.insert(k, v);
        }
    }
    if d.cluster.is_clustered() {
        // A clustered member listens on the address in its member row; the shared config
        // keys are shown per member and may not be changed here.
        let own = crate::cluster::own_address(d).await?;
        for key in [HTTPS_ADDRESS, crate::cluster::CLUSTER_HTTPS_ADDRESS] {
            if let Some(v) = asked.get(key)
                && *v != own
            {
                return Err(ApiError::bad_request(format!(
                    "Changing {key} on a clustered member is not supported"
                )));
            }
            match current.get(key) {
                Some(v) => desired.insert(key.to_string(), v.clone()),
                None => desired.remove(key),
            };
        }
    }
    let mut changes = std::collections::BTreeMap::new();
    for (k, v) in &desired {
        if current.get(k) != Some(v) {
            validate(k, v)?;
            changes.insert(k.clone(), Some(v.clone()));
        }
    }
    for k in current.keys() {
        if !desired.contains_key(k) {
            changes.insert(k.clone(), None);
        }
    }
    if changes.is_empty() {
        return Ok(());
    }
    let https_changes = changes.contains_key(HTTPS_ADDRESS);
    let write = d.write(db::Command::SetConfig { changes });
    if https_changes {
        let address = desired.get(HTTPS_ADDRESS).cloned();
        d.https.reconfigure(d, address, write).await
    } else {
        write.await
    }
}

/// When something made at `now` expires under LXD's expiry expression `expr`: space
/// separated `<n><unit>` terms, units `S` seconds, `M` minutes, `H` hours, `d` days, `w`
/// weeks, `m` months, `y` years, each unit at most once. `""` → `None` (never).
///
/// # Errors
///
/// A message when the expression is malformed.
pub fn expiry_after(now: DateTime<Utc>, expr: &str) -> Result<Option<DateTime<Utc>>, String> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Ok(None);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut at = now;
    for term in expr.split(' ') {
        let invalid = || "Invalid expiry expression".to_string();
        let unit = term.chars().last().ok_or_else(invalid)?;
        let n: u32 = term[..term.len() - unit.len_utf8()]
            .parse()
            .map_err(|_| invalid())?;
        if !seen.insert(unit) {
            return Err(invalid());
        }
        let secs = |k: i64| chrono::Duration::try_seconds(i64::from(n) * k).ok_or_else(invalid);
        at = match unit {
            'S' => at + secs(1)?,
            'M' => at + secs(60)?,
            'H' => at + secs(3600)?,
            'd' => at + secs(86_400)?,
            'w' => at + secs(7 * 86_400)?,
            'm' => at.checked_add_months(Months::new(n)).ok_or_else(invalid)?,
            'y' => at
                .checked_add_months(Months::new(n.checked_mul(12).ok_or_else(invalid)?))
                .ok_or_else(invalid)?,
            _ => return Err(invalid()),
        };
    }
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_lxd_syntax() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-31T00:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .ok();
        let t0 = t0.unwrap_or_else(Utc::now);
        assert_eq!(expiry_after(t0, ""), Ok(None));
        assert_eq!(
            expiry_after(t0, "1H 30M 5S"),
            Ok(Some(t0 + chrono::Duration::seconds(5405)))
        );
        assert_eq!(
            expiry_after(t0, "1w 1d"),
            Ok(Some(t0 + chrono::Duration::days(8)))
        );
        assert!(expiry_after(t0, "1m").is_ok_and(|t| t.is_some()));
        for bad in ["1", "H", "1h", "1H 2H", "1H  2M", "-1H", "1.5H"] {
            assert!(expiry_after(t0, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = validate("core.trust_password", "x").expect_err("unknown");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(validate(HTTPS_ADDRESS, "127.0.0.11:8443").is_ok());
        assert!(validate(HTTPS_ADDRESS, "not an address").is_err());
    }
}

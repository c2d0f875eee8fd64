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
//! The other server keys of LXD 5.0.2 ([`STORED_ONLY`]) are accepted with LXD's checks of
//! their type, stored and shown in `GET /1.0`, so clients and scripts that set them work;
//! drover does not act on them; so are free-form `user.*` keys. Any other key is refused
//! with 400, as LXD refuses unknown keys.
//!
//! `core.trust_password` is kept as a salted, stretched hash (never the password itself)
//! and shown as `true` while set, as LXD shows it; an untrusted client that sends it in
//! `POST /1.0/certificates` is trusted (what pylxd's `Client.authenticate` and `lxc remote
//! add` without a token do against LXD 5.0.2).

use api::ConfigMap;
use api::server::ServerPut;
use chrono::{DateTime, Months, Utc};
use sha2::Digest;

use crate::error::{ApiError, ApiResult};
use crate::https::{self, HTTPS_ADDRESS};
use crate::state::Daemon;

/// The server config key bounding the life of certificate add tokens.
pub const REMOTE_TOKEN_EXPIRY: &str = "core.remote_token_expiry";

/// The trust password key: stored hashed ([`hash_password`]), shown as [`PASSWORD_SET`].
pub const TRUST_PASSWORD: &str = "core.trust_password";

/// What `GET /1.0` shows for a trust password that is set (LXD shows `true`); given back
/// in a `PUT /1.0` it keeps the password.
const PASSWORD_SET: &str = "true";

/// How many SHA-256 rounds stretch a trust password.
const PASSWORD_ROUNDS: u32 = 20_000;

/// `<salt hex>$<hash hex>` of `password` under a new random salt.
fn hash_password(password: &str) -> String {
    let salt = uuid::Uuid::new_v4();
    let salt = hex::encode(salt.as_bytes());
    format!("{salt}${}", stretch(&salt, password))
}

fn stretch(salt: &str, password: &str) -> String {
    let mut digest = sha2::Sha256::new();
    digest.update(salt.as_bytes());
    digest.update(password.as_bytes());
    let mut out = digest.finalize();
    for _ in 1..PASSWORD_ROUNDS {
        out = sha2::Sha256::digest(out);
    }
    hex::encode(out)
}

/// Whether `password` is the one `stored` (a [`hash_password`] value) was made from.
fn password_matches(stored: &str, password: &str) -> bool {
    let Some((salt, want)) = stored.split_once('$') else {
        return false;
    };
    let got = stretch(salt, password);
    // Same length always (hex of SHA-256); compare every byte.
    got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Whether the cluster has a trust password and `password` is it.
///
/// # Errors
///
/// When the config cannot be read.
pub async fn trust_password_matches(d: &Daemon, password: &str) -> ApiResult<bool> {
    if password.is_empty() {
        return Ok(false);
    }
    let config = d.read(db::config::all).await?;
    Ok(config
        .get(TRUST_PASSWORD)
        .is_some_and(|stored| password_matches(stored, password)))
}

/// The ETag of the server config (what `PUT /1.0` replaces).
pub fn etag(config: &ConfigMap) -> String {
    let json = serde_json::to_string(config).unwrap_or_default();
    hex::encode(sha2::Sha256::digest(json.as_bytes()))
}

/// What a stored-only key's value must be (LXD's checks of the same key).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Any string.
    Text,
    /// `true`/`false` and LXD's other boolean spellings.
    Bool,
    /// A 64-bit integer.
    Int,
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// A compressor for images and backups (`bzip2`, `gzip`, `lzma`, `xz`, `zstd`, `none`).
    Compression,
    /// An address to listen on (`<ip>:<port>`, `<ip>`, `:<port>`).
    Address,
    /// An architecture name LXD knows.
    Architecture,
    /// `<pool>/<volume>`.
    PoolVolume,
    /// `random` or `mac` (`instances.nic.host_name`).
    NicHostName,
}

/// The server keys of LXD 5.0.2 that drover accepts, stores and shows without acting on
/// them, with the check LXD applies to each.
const STORED_ONLY: &[(&str, Kind)] = &[
    ("backups.compression_algorithm", Kind::Compression),
    ("candid.api.key", Kind::Text),
    ("candid.api.url", Kind::Text),
    ("candid.domains", Kind::Text),
    ("candid.expiry", Kind::Int),
    ("cluster.images_minimal_replica", Kind::Range(-1, i64::MAX)),
    ("cluster.max_standby", Kind::Range(0, 5)),
    ("core.bgp_address", Kind::Address),
    ("core.bgp_asn", Kind::Range(0, 4_294_967_294)),
    ("core.bgp_routerid", Kind::Text),
    ("core.debug_address", Kind::Address),
    ("core.dns_address", Kind::Address),
    ("core.https_allowed_credentials", Kind::Bool),
    ("core.https_allowed_headers", Kind::Text),
    ("core.https_allowed_methods", Kind::Text),
    ("core.https_allowed_origin", Kind::Text),
    ("core.https_trusted_proxy", Kind::Text),
    ("core.metrics_address", Kind::Address),
    ("core.proxy_http", Kind::Text),
    ("core.proxy_https", Kind::Text),
    ("core.proxy_ignore_hosts", Kind::Text),
    ("core.shutdown_timeout", Kind::Int),
    ("core.trust_ca_certificates", Kind::Bool),
    ("images.auto_update_cached", Kind::Bool),
    ("images.auto_update_interval", Kind::Int),
    ("images.compression_algorithm", Kind::Compression),
    ("images.default_architecture", Kind::Architecture),
    ("images.remote_cache_expiry", Kind::Int),
    ("instances.nic.host_name", Kind::NicHostName),
    ("maas.api.key", Kind::Text),
    ("maas.api.url", Kind::Text),
    ("maas.machine", Kind::Text),
    ("network.ovn.integration_bridge", Kind::Text),
    ("network.ovn.northbound_connection", Kind::Text),
    ("rbac.agent.private_key", Kind::Text),
    ("rbac.agent.public_key", Kind::Text),
    ("rbac.agent.url", Kind::Text),
    ("rbac.agent.username", Kind::Text),
    ("rbac.api.expiry", Kind::Int),
    ("rbac.api.key", Kind::Text),
    ("rbac.api.url", Kind::Text),
    ("storage.backups_volume", Kind::PoolVolume),
    ("storage.images_volume", Kind::PoolVolume),
];

/// Checks `value` as LXD checks a key of kind `kind`; the reason when it does not fit.
fn check_kind(kind: Kind, value: &str) -> Result<(), String> {
    let int = || {
        value
            .parse::<i64>()
            .map_err(|_| format!("Invalid value for an integer {value:?}"))
    };
    match kind {
        Kind::Text => Ok(()),
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "false" | "0" | "no" | "off" => Ok(()),
            _ => Err(format!("Invalid value for a boolean {value:?}")),
        },
        Kind::Int => int().map(|_| ()),
        Kind::Range(min, max) => match int()? {
            n if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!(
                "Value isn't within valid range. Must be between {min} and {max}"
            )),
        },
        Kind::Compression => {
            let tool = value.split_whitespace().next().unwrap_or("");
            match tool {
                "bzip2" | "gzip" | "lzma" | "xz" | "zstd" | "none" => Ok(()),
                _ => Err(format!("Compression algorithm {value:?} isn't supported")),
            }
        }
        Kind::Address => https::parse_address(value)
            .map(|_| ())
            .map_err(|_| format!("Invalid address {value:?}")),
        Kind::Architecture => match value {
            "i686" | "x86_64" | "armv6l" | "armv7l" | "armv8l" | "aarch64" | "ppc" | "ppc64"
            | "ppc64le" | "s390x" | "mips" | "mips64" | "riscv32" | "riscv64" => Ok(()),
            _ => Err(format!("Architecture isn't supported: {value:?}")),
        },
        Kind::PoolVolume => match value.split_once('/') {
            Some((pool, vol)) if !pool.is_empty() && !vol.is_empty() && !vol.contains('/') => {
                Ok(())
            }
            _ => Err("Invalid syntax, expecting \"<pool>/<volume>\"".into()),
        },
        Kind::NicHostName => match value {
            "random" | "mac" => Ok(()),
            _ => Err(format!(
                "Invalid value {value:?}, expecting \"random\" or \"mac\""
            )),
        },
    }
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
        TRUST_PASSWORD => Ok(()),
        // Free-form user keys, as LXD 5.0.2 takes them.
        _ if key.starts_with("user.") => Ok(()),
        _ => match STORED_ONLY.iter().find(|(k, _)| *k == key) {
            Some((_, kind)) => check_kind(*kind, value).map_err(refuse),
            None => Err(refuse("unknown key".into())),
        },
    }
}

/// The server config as `GET /1.0` shows it: a clustered member shows its own address
/// under `core.https_address` and `cluster.https_address`.
pub async fn shown(d: &Daemon, mut config: ConfigMap) -> ApiResult<ConfigMap> {
    if let Some(v) = config.get_mut(TRUST_PASSWORD) {
        *v = PASSWORD_SET.into();
    }
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
        } else if k == TRUST_PASSWORD {
            // `true` is what GET shows for a password set: given back, it keeps it.
            let kept = current.get(&k).filter(|_| v == PASSWORD_SET).cloned();
            desired.insert(k, kept.unwrap_or_else(|| hash_password(&v)));
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
        let e = validate("core.trust_passwrd", "x").expect_err("unknown");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(validate(HTTPS_ADDRESS, "127.0.0.11:8443").is_ok());
        assert!(validate(HTTPS_ADDRESS, "not an address").is_err());
        let e = validate("images.auto_update_intervall", "6").expect_err("unknown");
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn trust_passwords_are_kept_hashed() {
        let stored = hash_password("s3cret");
        assert!(!stored.contains("s3cret"), "{stored}");
        assert_ne!(stored, hash_password("s3cret"), "salted");
        assert!(password_matches(&stored, "s3cret"));
        assert!(!password_matches(&stored, "s3creT"));
        assert!(!password_matches(&stored, ""));
        assert!(!password_matches("garbage", "s3cret"));
    }

    #[test]
    fn stored_only_keys_are_checked_as_lxd_checks_them() {
        for (key, good) in [
            ("images.auto_update_interval", "0"),
            ("images.remote_cache_expiry", "10"),
            ("images.compression_algorithm", "xz"),
            ("images.compression_algorithm", "zstd -19"),
            ("backups.compression_algorithm", "none"),
            ("core.https_allowed_origin", "*"),
            ("core.https_allowed_credentials", "true"),
            ("cluster.max_standby", "5"),
            ("cluster.images_minimal_replica", "-1"),
            ("core.metrics_address", "127.0.8.9:9100"),
            ("images.default_architecture", "aarch64"),
            ("storage.images_volume", "default/images"),
            ("instances.nic.host_name", "mac"),
        ] {
            assert!(validate(key, good).is_ok(), "{key}={good}");
        }
        for (key, bad) in [
            ("images.auto_update_interval", "six"),
            ("images.remote_cache_expiry", "1.5"),
            ("images.compression_algorithm", "rar"),
            ("core.https_allowed_credentials", "maybe"),
            ("cluster.max_standby", "6"),
            ("cluster.images_minimal_replica", "-2"),
            ("core.metrics_address", "nowhere"),
            ("images.default_architecture", "vax"),
            ("storage.images_volume", "images"),
            ("instances.nic.host_name", "eth0"),
        ] {
            let e = validate(key, bad).expect_err(key);
            assert!(
                e.to_string().contains(&format!("cannot set '{key}'")),
                "{e}"
            );
        }
    }
}

//! Validation of instance names and config, before anything changes.

use api::ConfigMap;

use crate::error::{ApiError, ApiResult};

/// The values `cluster.evacuate` accepts (LXD 5.0.2's, in its order, then drover's
/// `force-stop`).
pub const EVACUATE_MODES: &[&str] = &["auto", "migrate", "live-migrate", "stop", "force-stop"];

/// Checks an instance name by LXD's rules: 1–63 characters, ASCII letters, digits and
/// hyphens, not starting with a digit or hyphen, not ending with a hyphen (LXD's words).
pub fn name(name: &str) -> ApiResult<()> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "Invalid instance name: {why}"
        )))
    };
    if name.is_empty() {
        return bad("Name must be 1-63 characters long");
    }
    if name.len() > 63 {
        return bad("Name must be 1-63 characters long");
    }
    // LXD 5.0.2's order and words: first and last character, then the character set.
    if name.starts_with('-') {
        return bad("Name must not start with \"-\" character");
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        return bad("Name must not start with a number");
    }
    if name.ends_with('-') {
        return bad("Name must not end with \"-\" character");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return bad("Name can only contain alphanumeric and hyphen characters");
    }
    Ok(())
}

/// A refused config value, in LXD 5.0.2's words where LXD has the key (`why` is what
/// LXD's validator says, e.g. `Invalid value for a boolean "maybe"`).
fn invalid(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Invalid config: {why}"))
}

fn check_bool(v: &str) -> ApiResult<()> {
    match v {
        "true" | "false" | "1" | "0" | "yes" | "no" | "on" | "off" | "" => Ok(()),
        _ => Err(invalid(format!("Invalid value for a boolean {v:?}"))),
    }
}

fn check_uint(v: &str) -> ApiResult<()> {
    if v.is_empty() || v.parse::<u64>().is_ok() {
        Ok(())
    } else {
        Err(invalid(format!("Invalid value for an integer {v:?}")))
    }
}

/// Parses a config boolean as LXD does (`true`, `1`, `yes`, `on`).
pub fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1" | "yes" | "on"))
}

/// Checks every key and value of an instance's config.
///
/// Known keys are checked by type; `user.*`, `environment.*`, `image.*` and `volatile.*`
/// accept anything; any other key is refused.
pub fn config(config: &ConfigMap) -> ApiResult<()> {
    for (k, v) in config {
        match k.as_str() {
            "boot.autostart"
            | "security.privileged"
            | "security.nesting"
            // LXD's VM firmware switch, common in VM recipes; drover boots the kernel
            // directly (no firmware), so it is accepted and has nothing to change.
            | "security.secureboot"
            | "migration.stateful" => check_bool(v)?,
            "boot.host_shutdown_timeout"
            | "boot.autostart.delay"
            | "boot.autostart.priority"
            | "boot.stop.priority"
            | "limits.processes" => check_uint(v)?,
            // Not an LXD 5.0 key: drover's own words.
            "boot.stop_signal" => {
                if !v.is_empty() && driver_oci::signal_from_name(v).is_none() {
                    return Err(invalid(format!(
                        "Invalid value for key {k:?} ({v:?}): unknown signal"
                    )));
                }
            }
            "cluster.evacuate" => {
                if !v.is_empty() && !EVACUATE_MODES.contains(&v.as_str()) {
                    return Err(invalid(format!(
                        "Invalid value {v:?} (not one of [{}])",
                        EVACUATE_MODES.join(" ")
                    )));
                }
            }
            "limits.memory" => {
                if !v.is_empty() && driver_oci::parse_memory_limit(v).is_err() {
                    return Err(invalid(format!("Invalid value: {v}")));
                }
            }
            "limits.cpu" => {
                if !v.is_empty() && driver_oci::parse_cpu_limit(v).is_err() {
                    return Err(invalid("Invalid CPU limit syntax"));
                }
            }
            "description" => {}
            k if k.starts_with("user.")
                || k.starts_with("environment.")
                || k.starts_with("image.")
                || k.starts_with("volatile.") => {}
            k => {
                return Err(ApiError::bad_request(format!(
                    "Invalid config: Unknown configuration key: {k}"
                )));
            }
        }
    }
    Ok(())
}

/// Checks an instance's devices: `disk` devices only — at most one root disk (LXD's `More
/// than one root device found`; pass the expanded devices too, so that a local root disk
/// beside the profile's one is caught) and host paths ([`host_disk`]) — and `none`.
pub fn devices(devices: &api::DeviceMap) -> ApiResult<()> {
    let mut root = None;
    let mut paths = std::collections::BTreeSet::new();
    for (name, dev) in devices {
        match dev.get("type").map(String::as_str) {
            Some("disk") => {
                disk_keys(name, dev)?;
                if dev.get("path").map(String::as_str) != Some("/") {
                    host_disk(name, dev)?;
                    let path = dev.get("path").map_or("", String::as_str);
                    let at = format!("/{}", path.trim_matches('/'));
                    if !paths.insert(at) {
                        return Err(ApiError::bad_request(format!(
                            "Invalid devices: Device validation failed for {name:?}: More than one disk device uses the same path {path:?}"
                        )));
                    }
                    continue;
                }
                if root.replace(name).is_some() {
                    return Err(ApiError::bad_request(
                        "Invalid devices: More than one root device found",
                    ));
                }
            }
            Some("none") => {}
            Some(t) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid devices: Device {name:?}: unsupported device type {t:?}"
                )));
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "Invalid devices: Device {name:?}: missing device type"
                )));
            }
        }
    }
    Ok(())
}

/// Every option LXD 5.0 knows for a `disk` device.
const LXD_DISK_KEYS: &[&str] = &[
    "boot.priority",
    "ceph.cluster_name",
    "ceph.user_name",
    "io.cache",
    "limits.max",
    "limits.read",
    "limits.write",
    "path",
    "pool",
    "propagation",
    "raw.mount.options",
    "readonly",
    "recursive",
    "required",
    "shift",
    "size",
    "size.state",
    "source",
    "type",
];

/// The options of a host-path disk that drover carries out; LXD's others are refused
/// rather than ignored (`recursive` only as `false`, what drover's bind mounts are).
const HOST_DISK_KEYS: &[&str] = &[
    "path",
    "readonly",
    "recursive",
    "required",
    "source",
    "type",
];

/// Refuses options LXD does not know for a disk device (its `Invalid device option`),
/// and, on a host-path disk, the LXD options drover does not carry out.
fn disk_keys(name: &str, dev: &api::ConfigMap) -> ApiResult<()> {
    let bad = |why: String| {
        Err(ApiError::bad_request(format!(
            "Invalid devices: Device validation failed for {name:?}: {why}"
        )))
    };
    let root = dev.get("path").map(String::as_str) == Some("/");
    for (key, value) in dev {
        if key.starts_with("user.") {
            continue;
        }
        if !LXD_DISK_KEYS.contains(&key.as_str()) {
            return bad(format!("Invalid device option {key:?}"));
        }
        if root || (HOST_DISK_KEYS.contains(&key.as_str()) && key != "recursive") {
            continue;
        }
        if key == "recursive" {
            match check_bool(value) {
                Err(_) => {
                    return bad(format!(
                        "Invalid value for device option {key:?}: Invalid value for a boolean {value:?}"
                    ));
                }
                Ok(()) if is_true(Some(value)) => {
                    return bad(
                        "recursive host disks are not supported by drover: its bind mounts do not include the mounts below the source".into(),
                    );
                }
                Ok(()) => continue,
            }
        }
        if key == "pool" {
            // Refused with its own reason by [`host_disk`].
            continue;
        }
        return bad(format!(
            "the disk option {key:?} is not supported by drover on a host-path disk"
        ));
    }
    Ok(())
}

/// Checks a disk device other than the root disk, in LXD's words: an absolute host
/// `source` and a `path` inside the instance (relative to its root when not absolute);
/// custom volumes (`pool`) are not supported.
fn host_disk(name: &str, dev: &api::ConfigMap) -> ApiResult<()> {
    let bad = |why: String| {
        Err(ApiError::bad_request(format!(
            "Invalid devices: Device validation failed for {name:?}: {why}"
        )))
    };
    if dev.get("pool").is_some_and(|p| !p.is_empty()) {
        return bad("custom storage volumes are not supported by drover".into());
    }
    let Some(source) = dev.get("source").filter(|s| !s.is_empty()) else {
        return bad("Disk entry is missing the required \"source\" or \"path\" property".into());
    };
    if dev.get("path").is_none_or(String::is_empty) {
        return bad("Disk entry is missing the required \"source\" or \"path\" property".into());
    }
    if !source.starts_with('/') {
        return bad(format!(
            "the source {source:?} must be an absolute host path"
        ));
    }
    for key in ["readonly", "required"] {
        if let Some(v) = dev.get(key)
            && check_bool(v).is_err()
        {
            return bad(format!(
                "Invalid value for device option {key:?}: Invalid value for a boolean {v:?}"
            ));
        }
    }
    Ok(())
}

/// Refuses a profile list naming a profile twice (`lxc profile add c1 p1` when `p1` is
/// already applied), in LXD's words.
///
/// # Errors
///
/// 400 `Duplicate profile found in request`.
pub fn profile_names(names: &[String]) -> ApiResult<()> {
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(ApiError::bad_request("Duplicate profile found in request"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lxd_rules() {
        for ok in ["c1", "web-01", "a", &"a".repeat(63)] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1c", "-c", "c-", "c_1", "c.1", "c 1", &"a".repeat(64)] {
            assert!(name(bad).is_err(), "{bad}");
        }
        let why = |n: &str| name(n).expect_err(n).message;
        assert_eq!(
            why("1_x"),
            "Invalid instance name: Name must not start with a number"
        );
        assert_eq!(
            why("-x"),
            r#"Invalid instance name: Name must not start with "-" character"#
        );
        assert_eq!(
            why("x_-"),
            r#"Invalid instance name: Name must not end with "-" character"#
        );
    }

    #[test]
    fn config_values_are_checked() {
        let cfg = |k: &str, v: &str| ConfigMap::from([(k.to_string(), v.to_string())]);
        assert!(config(&cfg("cluster.evacuate", "migrate")).is_ok());
        assert!(config(&cfg("limits.memory", "256MiB")).is_ok());
        assert!(config(&cfg("user.anything", "x")).is_ok());
        let e = config(&cfg("cluster.evacuate", "sometimes")).expect_err("bad mode");
        assert_eq!(
            e.message,
            r#"Invalid config: Invalid value "sometimes" (not one of [auto migrate live-migrate stop force-stop])"#
        );
        let e = config(&cfg("boot.autostart", "maybe")).expect_err("bad boolean");
        assert_eq!(
            e.message,
            r#"Invalid config: Invalid value for a boolean "maybe""#
        );
        let e = config(&cfg("limits.memory", "lots")).expect_err("bad memory");
        assert_eq!(e.message, "Invalid config: Invalid value: lots");
        assert!(config(&cfg("limits.memory", "lots")).is_err());
        assert!(config(&cfg("boot.autostart", "maybe")).is_err());
        assert!(config(&cfg("boot.host_shutdown_timeout", "-3")).is_err());
        assert!(config(&cfg("security.secureboot", "false")).is_ok());
        assert!(config(&cfg("security.secureboot", "maybe")).is_err());
        let e = config(&cfg("bogus.key", "1")).expect_err("unknown key");
        assert_eq!(
            e.message,
            "Invalid config: Unknown configuration key: bogus.key"
        );
    }

    #[test]
    fn disk_options_are_known_or_refused() {
        let dev = |pairs: &[(&str, &str)]| {
            let d: api::ConfigMap = pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            api::DeviceMap::from([("h".to_string(), d)])
        };
        let host = [("type", "disk"), ("source", "/srv"), ("path", "/mnt")];
        assert!(devices(&dev(&host)).is_ok());
        let with = |k: &'static str, v: &'static str| {
            let mut d = host.to_vec();
            d.push((k, v));
            devices(&dev(&d))
        };
        assert!(with("readonly", "true").is_ok());
        assert!(with("recursive", "false").is_ok());
        assert!(with("user.note", "x").is_ok());
        let e = with("bogus", "1").expect_err("unknown option");
        assert_eq!(
            e.message,
            "Invalid devices: Device validation failed for \"h\": Invalid device option \"bogus\""
        );
        let e = with("recursive", "true").expect_err("recursive");
        assert!(e.message.contains("recursive host disks"), "{}", e.message);
        assert!(with("recursive", "perhaps").is_err());
        let e = with("shift", "true").expect_err("not carried out");
        assert!(
            e.message.contains("\"shift\" is not supported"),
            "{}",
            e.message
        );
        let root = [("type", "disk"), ("path", "/"), ("pool", "default")];
        let mut sized = root.to_vec();
        sized.push(("size", "10GiB"));
        assert!(devices(&dev(&sized)).is_ok());
        let mut odd = root.to_vec();
        odd.push(("sise", "10GiB"));
        assert!(devices(&dev(&odd)).is_err());
    }
}

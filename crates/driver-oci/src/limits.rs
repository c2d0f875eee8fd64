//! Parsing of the LXD-style resource limits `limits.memory` and `limits.cpu`.
//!
//! The daemon validates config values with these functions before it stores them, and the
//! bundle generator uses them again when it turns the config into cgroup limits, so a value
//! that passed validation always produces the same limit.

use std::fmt;

/// Binary and decimal size suffixes LXD accepts, with their multipliers.
const SUFFIXES: &[(&str, u64)] = &[
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("pib", 1 << 50),
    ("eib", 1 << 60),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("eb", 1_000_000_000_000_000_000),
    ("b", 1),
];

/// The smallest memory limit accepted: below this, no init system starts.
pub const MIN_MEMORY_LIMIT: u64 = 4 << 20;

/// Parses an LXD `limits.memory` value into bytes.
///
/// Accepts plain bytes (`268435456`), decimal and binary suffixes (`512MB`, `256MiB`, `1GiB`;
/// suffixes are case-insensitive, an optional space before them is allowed) and a percentage
/// of the host's RAM (`50%`, read from `/proc/meminfo`). The result is at least
/// [`MIN_MEMORY_LIMIT`].
///
/// # Errors
///
/// A human-readable reason when the value is not a size, overflows, or is too small.
pub fn parse_memory_limit(value: &str) -> Result<u64, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty memory limit".into());
    }
    let bytes = if let Some(pct) = v.strip_suffix('%') {
        let pct: f64 = pct
            .trim()
            .parse()
            .map_err(|_| format!("invalid memory percentage {value:?}"))?;
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(format!("memory percentage {value:?} is not in (0, 100]"));
        }
        let total = host_memory_bytes().map_err(|e| format!("cannot read host memory: {e}"))?;
        // Precision loss is irrelevant at byte granularity of a percentage.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let b = (total as f64 * pct / 100.0) as u64;
        b
    } else {
        parse_byte_size(v).ok_or_else(|| format!("invalid memory limit {value:?}"))?
    };
    if bytes < MIN_MEMORY_LIMIT {
        return Err(format!(
            "memory limit {value:?} is below the minimum of {} MiB",
            MIN_MEMORY_LIMIT >> 20
        ));
    }
    Ok(bytes)
}

/// `123`, `123MiB`, `1 GB` → bytes; `None` when not a size or on overflow.
fn parse_byte_size(v: &str) -> Option<u64> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let suffix = suffix.trim().to_ascii_lowercase();
    if suffix.is_empty() {
        return Some(n);
    }
    let mult = SUFFIXES.iter().find(|(s, _)| *s == suffix)?.1;
    n.checked_mul(mult)
}

/// Total RAM of the host in bytes (`MemTotal` of `/proc/meminfo`).
fn host_memory_bytes() -> std::io::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other("no MemTotal in /proc/meminfo"))
}

/// A parsed `limits.cpu`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuLimit {
    /// A number of CPUs (`"2"`): enforced as a CFS quota of `n` × the period, so the
    /// instance may run on any CPU but uses at most `n` CPUs' worth of time.
    Count(u32),
    /// A set of CPUs (`"0-1"`, `"0,2"`, `"1-3,5"`): enforced as a cpuset, normalized to
    /// the cpuset syntax (`"0-1"`).
    Set(String),
}

impl fmt::Display for CpuLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuLimit::Count(n) => write!(f, "{n}"),
            CpuLimit::Set(s) => f.write_str(s),
        }
    }
}

/// The largest CPU id or count accepted.
const MAX_CPUS: u32 = 8192;

/// Parses an LXD `limits.cpu` value.
///
/// A plain number is a count ([`CpuLimit::Count`], at least 1). Anything with `-` or `,`
/// is a CPU set of ids and ranges ([`CpuLimit::Set`]); `"3,"`-style trailing commas are
/// tolerated. Whether the CPUs exist is checked by the runtime at start, not here, because
/// the instance may start on another member.
///
/// # Errors
///
/// A human-readable reason when the value is neither.
pub fn parse_cpu_limit(value: &str) -> Result<CpuLimit, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty cpu limit".into());
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        let n: u32 = v
            .parse()
            .map_err(|_| format!("invalid cpu count {value:?}"))?;
        if n == 0 || n > MAX_CPUS {
            return Err(format!("cpu count {value:?} is not in 1..={MAX_CPUS}"));
        }
        return Ok(CpuLimit::Count(n));
    }
    let mut parts = Vec::new();
    for item in v.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let parse_id = |s: &str| -> Result<u32, String> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid cpu set {value:?}"));
            }
            match s.parse::<u32>() {
                Ok(id) if id < MAX_CPUS => Ok(id),
                _ => Err(format!("cpu id {s:?} in {value:?} is out of range")),
            }
        };
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_id(a)?, parse_id(b)?);
                if a > b {
                    return Err(format!("invalid cpu range {item:?} in {value:?}"));
                }
                parts.push(if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                });
            }
            None => parts.push(parse_id(item)?.to_string()),
        }
    }
    if parts.is_empty() {
        return Err(format!("invalid cpu set {value:?}"));
    }
    Ok(CpuLimit::Set(parts.join(",")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_limit("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_memory_limit("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_memory_limit("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_memory_limit("512MB").unwrap(), 512_000_000);
        assert_eq!(parse_memory_limit("512mb").unwrap(), 512_000_000);
        assert_eq!(parse_memory_limit("268435456").unwrap(), 268_435_456);
        assert_eq!(parse_memory_limit(" 64 MiB ").unwrap(), 64 << 20);
        assert_eq!(parse_memory_limit("8388608B").unwrap(), 8 << 20);
    }

    #[test]
    fn memory_percentage_is_of_host_ram() {
        let total = host_memory_bytes().unwrap();
        let half = parse_memory_limit("50%").unwrap();
        assert!(half.abs_diff(total / 2) < 1024, "{half} vs {total}");
        assert_eq!(parse_memory_limit("100%").unwrap(), total);
    }

    #[test]
    fn memory_rejects_garbage() {
        for bad in [
            "",
            "lots",
            "MiB",
            "12XB",
            "-1",
            "1.5GiB",
            "0",
            "100",
            "0%",
            "101%",
            "x%",
            "99999999999EiB",
        ] {
            assert!(parse_memory_limit(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cpu_counts_and_sets() {
        assert_eq!(parse_cpu_limit("2").unwrap(), CpuLimit::Count(2));
        assert_eq!(parse_cpu_limit("0-1").unwrap(), CpuLimit::Set("0-1".into()));
        assert_eq!(parse_cpu_limit("0,1").unwrap(), CpuLimit::Set("0,1".into()));
        assert_eq!(
            parse_cpu_limit("1-3, 5").unwrap(),
            CpuLimit::Set("1-3,5".into())
        );
        assert_eq!(parse_cpu_limit("3,").unwrap(), CpuLimit::Set("3".into()));
        assert_eq!(parse_cpu_limit("2-2").unwrap(), CpuLimit::Set("2".into()));
        assert_eq!(CpuLimit::Count(4).to_string(), "4");
    }

    #[test]
    fn cpu_rejects_garbage() {
        for bad in [
            "", "0", "all", "1-", "-1", "3-1", "1,,x", ",", "1.5", "99999",
        ] {
            assert!(parse_cpu_limit(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

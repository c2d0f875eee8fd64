//! Reading `limits.memory` and `limits.cpu` as numbers.

/// Bytes of `limits.memory` (`"512MiB"`, `"4GB"`, `"1073741824"`, `"50%"` of `total`).
/// `None` when unset, unparsable, or a percentage of an unknown total.
pub fn memory_bytes(value: &str, total: Option<u64>) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Some(pct) = v.strip_suffix('%') {
        let pct: f64 = pct.trim().parse().ok()?;
        let total = total?;
        return Some((total as f64 * pct / 100.0) as u64);
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    Some((num * mult as f64) as u64)
}

/// CPUs of `limits.cpu`: a count (`"2"`) or a set (`"0-3,6"` is 5). `None` when unset or
/// unparsable.
pub fn cpu_count(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if !v.contains(['-', ',']) {
        return v.parse().ok();
    }
    let mut n = 0u64;
    for part in v.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<u64>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(memory_bytes("512MiB", None), Some(512 << 20));
        assert_eq!(memory_bytes("4GB", None), Some(4_000_000_000));
        assert_eq!(memory_bytes("1024", None), Some(1024));
        assert_eq!(memory_bytes("50%", Some(1000)), Some(500));
        assert_eq!(memory_bytes("50%", None), None);
        assert_eq!(memory_bytes("lots", None), None);
        assert_eq!(memory_bytes("", None), None);
    }

    #[test]
    fn cpu_sets() {
        assert_eq!(cpu_count("2"), Some(2));
        assert_eq!(cpu_count("0-3,6"), Some(5));
        assert_eq!(cpu_count("1,3"), Some(2));
        assert_eq!(cpu_count("3-1"), None);
        assert_eq!(cpu_count("x"), None);
    }
}

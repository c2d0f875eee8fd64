//! Percent-encoding for path segments, query values and `X-LXD-properties`.

use std::fmt::Write;

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Escape one path segment (`"a/b"` → `"a%2Fb"`).
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if unreserved(b) || matches!(b, b':' | b'@') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Escape a query component the way Go's `url.QueryEscape` does (space → `+`).
pub(crate) fn query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if unreserved(b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `k=v&k2=v2` with keys sorted, as Go's `url.Values.Encode`.
pub(crate) fn form<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query(k), query(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        assert_eq!(segment("c1"), "c1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
        assert_eq!(query("a b&c=d"), "a+b%26c%3Dd");
        let props: api::ConfigMap = [("os", "busy box"), ("description", "x=y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(form(&props), "description=x%3Dy&os=busy+box");
    }
}

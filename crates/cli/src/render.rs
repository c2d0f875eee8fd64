//! Output formats shared by the listing commands: lxc-style tables, CSV, JSON, YAML.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use serde::Serialize;

/// `-f/--format` of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An ASCII table like lxc's.
    #[default]
    Table,
    /// Comma-separated rows, no header (as lxc).
    Csv,
    /// The full records as JSON.
    Json,
    /// The full records as YAML.
    Yaml,
}

/// lxc's table look: `+`/`-`/`|` borders, a line between every row.
const LXC_PRESET: &str = "||--+-++|-+++++++++";

/// Render rows under centred headers as lxc does.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = Table::new();
    t.load_preset(LXC_PRESET)
        .set_content_arrangement(ContentArrangement::Disabled)
        .force_no_tty()
        .set_header(
            headers
                .iter()
                .map(|h| Cell::new(h).set_alignment(CellAlignment::Center)),
        );
    for row in rows {
        t.add_row(row.clone());
    }
    format!("{t}\n")
}

/// Render rows as CSV (RFC 4180 quoting, as Go's `encoding/csv`).
pub fn csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for row in rows {
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

fn csv_field(f: &str) -> String {
    let quote = f.contains([',', '"', '\n', '\r']) || f.starts_with(' ');
    if quote {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// YAML.
pub fn yaml<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    Ok(serde_yaml_ng::to_string(value)?)
}

/// Render `records` in `format`; `headers` and `row` define the table and CSV forms.
pub fn records<T: Serialize>(
    format: Format,
    records: &[T],
    headers: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Table => table(headers, &records.iter().map(&row).collect::<Vec<_>>()),
        Format::Csv => csv(&records.iter().map(&row).collect::<Vec<_>>()),
        Format::Json => json(records)?,
        Format::Yaml => yaml(records)?,
    })
}

/// Bytes as lxc prints them (`804.00KiB`, `1.25MiB`, `512B`).
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// An RFC 3339 UTC time as lxc's short form (`2026/11/24 07:09 UTC`); `None` for LXD's
/// zero time (`0001-01-01T00:00:00Z`) and for anything unparsable.
pub fn date(rfc3339: &str) -> Option<String> {
    let b = rfc3339.as_bytes();
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if rfc3339.starts_with("0001-") {
        return None;
    }
    Some(format!(
        "{}/{}/{} {} UTC",
        &rfc3339[0..4],
        &rfc3339[5..7],
        &rfc3339[8..10],
        &rfc3339[11..16]
    ))
}

/// `KEY=VALUE` → (`KEY`, `VALUE`).
pub fn key_value(s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => anyhow::bail!("bad key=value pair: {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_looks_like_lxc() {
        let out = table(
            &["NAME", "STATE"],
            &[
                vec!["c1".into(), "RUNNING".into()],
                vec!["c2".into(), "STOPPED".into()],
            ],
        );
        assert_eq!(
            out,
            "+------+---------+\n\
             | NAME |  STATE  |\n\
             +------+---------+\n\
             | c1   | RUNNING |\n\
             +------+---------+\n\
             | c2   | STOPPED |\n\
             +------+---------+\n"
        );
    }

    #[test]
    fn csv_quotes_like_go() {
        let out = csv(&[vec!["a".into(), "b,c".into(), "say \"hi\"".into()]]);
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\"\n");
    }

    #[test]
    fn sizes_and_dates() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(823296), "804.00KiB");
        assert_eq!(bytes(1314816), "1.25MiB");
        assert_eq!(
            date("2026-11-24T07:09:11.835546724Z").as_deref(),
            Some("2026/11/24 07:09 UTC")
        );
        assert_eq!(date("0001-01-01T00:00:00Z"), None);
        assert_eq!(date("garbage"), None);
    }

    #[test]
    fn key_values() {
        assert_eq!(
            key_value("a=b=c").expect("ok"),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(key_value("=x").is_err());
        assert!(key_value("x").is_err());
    }
}

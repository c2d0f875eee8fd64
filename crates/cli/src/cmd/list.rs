//! `drover list [-f table|csv|json|yaml] [FILTER...]`.

use api::{Instance, InstanceStatus};
use client::Client;

use crate::render::{self, Format};

/// Arguments of `list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short = 'f', long = "format", value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Filters: a name prefix, or `key=value` on `status`, `type`, `location` or a config key.
    pub filters: Vec<String>,
}

/// List instances with their state.
pub async fn run(client: &Client, args: ListArgs) -> anyhow::Result<()> {
    let (instances, server) = tokio::join!(client.instances_full(), client.server());
    let mut instances = instances?;
    let clustered = server
        .map(|s| s.environment.server_clustered)
        .unwrap_or(false);
    instances.retain(|i| args.filters.iter().all(|f| matches(i, f)));
    instances.sort_by(|a, b| a.name.cmp(&b.name));
    print!("{}", render_list(&instances, args.format, clustered)?);
    Ok(())
}

/// Whether an instance passes one filter.
pub fn matches(inst: &Instance, filter: &str) -> bool {
    match filter.split_once('=') {
        None => inst.name.starts_with(filter),
        Some((key, value)) => match key {
            "status" | "state" => status_name(inst.status).eq_ignore_ascii_case(value),
            "type" => inst.kind.eq_ignore_ascii_case(value),
            "location" => inst.location == value,
            "name" => inst.name == value,
            _ => inst.expanded_config.get(key).map(String::as_str) == Some(value),
        },
    }
}

/// The instance table, CSV, JSON or YAML.
pub fn render_list(
    instances: &[Instance],
    format: Format,
    clustered: bool,
) -> anyhow::Result<String> {
    let mut headers = vec!["NAME", "STATE", "IPV4", "IPV6", "TYPE", "SNAPSHOTS"];
    if clustered {
        headers.push("LOCATION");
    }
    render::records(format, instances, &headers, |i| row(i, clustered))
}

fn row(inst: &Instance, clustered: bool) -> Vec<String> {
    let mut kind = inst.kind.to_uppercase();
    if inst.ephemeral {
        kind.push_str(" (EPHEMERAL)");
    }
    let mut row = vec![
        inst.name.clone(),
        status_name(inst.status).to_uppercase(),
        addresses(inst, "inet"),
        addresses(inst, "inet6"),
        kind,
        inst.snapshots.as_ref().map_or(0, Vec::len).to_string(),
    ];
    if clustered {
        row.push(inst.location.clone());
    }
    row
}

/// `Running`, `Stopped`, ... as LXD names statuses.
pub fn status_name(s: InstanceStatus) -> &'static str {
    match s {
        InstanceStatus::Running => "Running",
        InstanceStatus::Stopped => "Stopped",
        InstanceStatus::Starting => "Starting",
        InstanceStatus::Stopping => "Stopping",
        InstanceStatus::Frozen => "Frozen",
        InstanceStatus::Error => "Error",
    }
}

/// Global addresses of `family` on non-loopback interfaces, one per line:
/// `10.0.3.12 (eth0)`.
fn addresses(inst: &Instance, family: &str) -> String {
    let Some(network) = inst.state.as_ref().and_then(|s| s.network.as_ref()) else {
        return String::new();
    };
    let mut out = Vec::new();
    for (iface, net) in network {
        if iface == "lo" || net["type"] == "loopback" {
            continue;
        }
        for addr in net["addresses"].as_array().into_iter().flatten() {
            if addr["family"] == family
                && addr["scope"] == "global"
                && let Some(a) = addr["address"].as_str()
            {
                out.push(format!("{a} ({iface})"));
            }
        }
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(name: &str, status: &str, location: &str, net: serde_json::Value) -> Instance {
        serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {}, "devices": {}, "ephemeral": name == "e1",
            "profiles": ["default"], "stateful": false, "description": "",
            "created_at": "2026-11-24T07:09:11Z", "expanded_config": {"user.tier": "web"},
            "expanded_devices": {}, "name": name, "status": status,
            "status_code": if status == "Running" { 103 } else { 102 },
            "last_used_at": "2026-11-24T07:09:12Z", "location": location, "type": "container",
            "project": "default", "snapshots": [],
            "state": {"status": status, "status_code": 103, "disk": {},
                      "memory": {"usage": 0, "usage_peak": 0, "swap_usage": 0, "swap_usage_peak": 0},
                      "network": net, "pid": 1, "processes": 1, "cpu": {"usage": 0}}
        }))
        .expect("instance")
    }

    fn sample() -> Vec<Instance> {
        let net = serde_json::json!({
            "lo": {"type": "loopback", "addresses": [{"family": "inet", "address": "127.0.0.1", "scope": "local"}]},
            "eth0": {"type": "broadcast", "addresses": [
                {"family": "inet", "address": "10.0.3.12", "netmask": "24", "scope": "global"},
                {"family": "inet6", "address": "fd42::12", "netmask": "64", "scope": "global"},
                {"family": "inet6", "address": "fe80::1", "netmask": "64", "scope": "link"}]}
        });
        vec![
            instance("c1", "Running", "m1", net),
            instance("e1", "Stopped", "m2", serde_json::Value::Null),
        ]
    }

    #[test]
    fn table_matches_lxc_layout() {
        let out = render_list(&sample(), Format::Table, false).expect("renders");
        let expected = "\
+------+---------+------------------+-----------------+-----------------------+-----------+
| NAME |  STATE  |       IPV4       |       IPV6      |          TYPE         | SNAPSHOTS |
+------+---------+------------------+-----------------+-----------------------+-----------+
| c1   | RUNNING | 10.0.3.12 (eth0) | fd42::12 (eth0) | CONTAINER             | 0         |
+------+---------+------------------+-----------------+-----------------------+-----------+
| e1   | STOPPED |                  |                 | CONTAINER (EPHEMERAL) | 0         |
+------+---------+------------------+-----------------+-----------------------+-----------+
";
        assert_eq!(out, expected);
    }

    #[test]
    fn clustered_table_has_location() {
        let out = render_list(&sample(), Format::Table, true).expect("renders");
        let header = out.lines().nth(1).expect("header");
        assert!(header.ends_with("| LOCATION |"), "{header}");
        assert!(out.contains("| m2       |"), "{out}");
    }

    #[test]
    fn csv_has_no_header() {
        let out = render_list(&sample(), Format::Csv, true).expect("renders");
        assert_eq!(
            out,
            "c1,RUNNING,10.0.3.12 (eth0),fd42::12 (eth0),CONTAINER,0,m1\n\
             e1,STOPPED,,,CONTAINER (EPHEMERAL),0,m2\n"
        );
    }

    #[test]
    fn json_and_yaml_are_full_records() {
        let out = render_list(&sample(), Format::Json, false).expect("renders");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v[0]["name"], "c1");
        assert_eq!(v[0]["status"], "Running");
        assert_eq!(v[1]["location"], "m2");
        let out = render_list(&sample(), Format::Yaml, false).expect("renders");
        assert!(out.starts_with("- architecture: x86_64\n"), "{out}");
        assert!(out.contains("  name: e1\n"), "{out}");
    }

    #[test]
    fn filters() {
        let all = sample();
        let pick = |f: &str| -> Vec<&str> {
            all.iter()
                .filter(|i| matches(i, f))
                .map(|i| i.name.as_str())
                .collect()
        };
        assert_eq!(pick("c"), vec!["c1"]);
        assert_eq!(pick("status=stopped"), vec!["e1"]);
        assert_eq!(pick("location=m1"), vec!["c1"]);
        assert_eq!(pick("user.tier=web"), vec!["c1", "e1"]);
        assert!(pick("user.tier=db").is_empty());
    }
}

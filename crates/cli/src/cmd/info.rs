//! `drover info NAME`: status and resources, laid out like `lxc info`.

use std::fmt::Write;

use api::{Instance, InstanceState};
use client::Client;

use super::list::status_name;
use crate::render::{bytes, date};

/// Arguments of `info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The instance.
    pub name: String,
}

/// Print the instance's info.
pub async fn run(client: &Client, args: InfoArgs) -> anyhow::Result<()> {
    let (inst, state) = tokio::join!(
        client.instance(&args.name),
        client.instance_state(&args.name)
    );
    print!("{}", render(&inst?, &state?));
    Ok(())
}

/// The `lxc info` text for an instance and its state.
pub fn render(inst: &Instance, state: &InstanceState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Name: {}", inst.name);
    if !inst.location.is_empty() && inst.location != "none" {
        let _ = writeln!(out, "Location: {}", inst.location);
    }
    let _ = writeln!(out, "Status: {}", status_name(state.status).to_uppercase());
    let kind = if inst.ephemeral {
        format!("{} (ephemeral)", inst.kind)
    } else {
        inst.kind.clone()
    };
    let _ = writeln!(out, "Type: {kind}");
    let _ = writeln!(out, "Architecture: {}", inst.architecture);
    if state.pid != 0 {
        let _ = writeln!(out, "PID: {}", state.pid);
    }
    if let Some(created) = date(&inst.created_at) {
        let _ = writeln!(out, "Created: {created}");
    }
    if let Some(used) = date(&inst.last_used_at) {
        let _ = writeln!(out, "Last Used: {used}");
    }
    if state.pid != 0 {
        let _ = writeln!(out, "\nResources:");
        let _ = writeln!(out, "  Processes: {}", state.processes);
        let _ = writeln!(out, "  CPU usage:");
        let _ = writeln!(
            out,
            "    CPU usage (in seconds): {}",
            state.cpu.usage / 1_000_000_000
        );
        let _ = writeln!(out, "  Memory usage:");
        let _ = writeln!(out, "    Memory (current): {}", bytes(state.memory.usage));
        if state.memory.usage_peak > 0 {
            let _ = writeln!(out, "    Memory (peak): {}", bytes(state.memory.usage_peak));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_instance_info() {
        let inst: Instance = serde_json::from_value(serde_json::json!({
            "architecture": "x86_64", "config": {}, "devices": {}, "ephemeral": false,
            "profiles": ["default"], "stateful": false, "description": "",
            "created_at": "2026-11-24T07:09:11.835546724Z", "expanded_config": {},
            "expanded_devices": {}, "name": "c1", "status": "Running", "status_code": 103,
            "last_used_at": "2026-11-24T07:09:12.1Z", "location": "m1", "type": "container",
            "project": "default"
        }))
        .expect("instance");
        let state: InstanceState = serde_json::from_value(serde_json::json!({
            "status": "Running", "status_code": 103, "disk": {},
            "memory": {"usage": 823296, "usage_peak": 1314816, "swap_usage": 0, "swap_usage_peak": 0},
            "network": null, "pid": 25414, "processes": 2, "cpu": {"usage": 8459316}
        }))
        .expect("state");
        assert_eq!(
            render(&inst, &state),
            "Name: c1\nLocation: m1\nStatus: RUNNING\nType: container\nArchitecture: x86_64\n\
             PID: 25414\nCreated: 2026/11/24 07:09 UTC\nLast Used: 2026/11/24 07:09 UTC\n\n\
             Resources:\n  Processes: 2\n  CPU usage:\n    CPU usage (in seconds): 0\n  \
             Memory usage:\n    Memory (current): 804.00KiB\n    Memory (peak): 1.25MiB\n"
        );
    }
}

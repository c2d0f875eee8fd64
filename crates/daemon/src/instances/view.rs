//! Building the API view of an instance from its record and its runtime status.

use api::instances::{InstanceStateCpu, InstanceStateMemory};
use api::{Instance, InstanceState, InstanceStatus};
use db::instances::InstanceRecord;
use sha2::Digest;

use super::{expand_config, expand_devices, instance_status, load_profiles, runtime_id};
use crate::error::ApiResult;
use crate::state::Daemon;

/// The ETag of an instance: a hash of what `PUT` replaces.
pub fn etag(rec: &InstanceRecord) -> String {
    let v = serde_json::json!([
        rec.architecture,
        rec.config,
        rec.devices,
        rec.ephemeral,
        rec.profiles,
        rec.description
    ]);
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))
}

/// `GET /1.0/instances/{name}`; with `with_state`, also the `state` (recursion=2).
pub async fn instance_view(
    d: &Daemon,
    rec: &InstanceRecord,
    with_state: bool,
) -> ApiResult<Instance> {
    let profiles = load_profiles(d, &rec.project, &rec.profiles)
        .await
        .unwrap_or_default();
    let status = instance_status(d, &runtime_id(&rec.project, &rec.name));
    let state = if with_state {
        Some(instance_state(d, rec).await?)
    } else {
        None
    };
    Ok(Instance {
        architecture: rec.architecture.clone(),
        config: rec.config.clone(),
        devices: rec.devices.clone(),
        ephemeral: rec.ephemeral,
        profiles: rec.profiles.clone(),
        stateful: false,
        description: rec.description.clone(),
        created_at: rec.created_at.clone(),
        expanded_config: expand_config(&rec.config, &profiles),
        expanded_devices: expand_devices(&rec.devices, &profiles),
        name: rec.name.clone(),
        status,
        status_code: status.code(),
        last_used_at: rec.last_used_at.clone(),
        location: rec.member.clone(),
        kind: rec.kind.clone(),
        project: rec.project.clone(),
        snapshots: with_state.then(Vec::new),
        backups: with_state.then(Vec::new),
        state,
    })
}

/// The log file `GET /1.0/instances/{name}/logs` lists for `rec`: LXD's `qemu.log` for
/// a VM (what `lxc info --show-log` reads), `lxc.log` for a container.
pub fn log_name(rec: &InstanceRecord) -> &'static str {
    if rec.kind == "virtual-machine" {
        "qemu.log"
    } else {
        "lxc.log"
    }
}

/// The log file `file` of `rec`: `lxc.log` is PID 1's console output since its last start
/// (empty if none), a VM's `qemu.log` what QEMU printed at its last start,
/// `exec_<id>.stdout`/`.stderr` the recorded output of an exec.
pub async fn log_file(d: &Daemon, rec: &InstanceRecord, file: &str) -> ApiResult<String> {
    let id = runtime_id(&rec.project, &rec.name);
    let dir = d.paths.run.join(&id);
    let path = match file {
        "lxc.log" => dir.join(driver_oci::CONSOLE_LOG),
        "qemu.log" if rec.kind == "virtual-machine" => {
            d.paths.state_dir.join("vms").join(&id).join("qemu.log")
        }
        f if f.starts_with("exec_")
            && (f.ends_with(".stdout") || f.ends_with(".stderr"))
            && !f.contains('/') =>
        {
            dir.join(f)
        }
        _ => return Err(crate::error::ApiError::not_found("Log file not found")),
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && (file == "lxc.log" || file == "qemu.log") =>
        {
            Ok(String::new())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(crate::error::ApiError::not_found("Log file not found"))
        }
        Err(e) => Err(crate::error::ApiError::internal(format!(
            "read {}: {e}",
            path.display()
        ))),
    }
}

/// `GET /1.0/instances/{name}/state`.
pub async fn instance_state(d: &Daemon, rec: &InstanceRecord) -> ApiResult<InstanceState> {
    let id = runtime_id(&rec.project, &rec.name);
    let status = instance_status(d, &id);
    let running = matches!(status, InstanceStatus::Running | InstanceStatus::Frozen);
    let (pid, usage) = if running {
        let pid = crate::state::lock(&d.running)
            .get(&id)
            .map(|r| r.pid)
            .unwrap_or(0);
        (pid, d.driver.usage(&id).await.unwrap_or_default())
    } else {
        (0, drivers::Usage::default())
    };
    let lo = serde_json::json!({
        "addresses": [{"family": "inet", "address": "127.0.0.1", "netmask": "8", "scope": "local"}],
        "counters": {"bytes_received": 0, "bytes_sent": 0, "packets_received": 0, "packets_sent": 0,
                     "errors_received": 0, "errors_sent": 0, "packets_dropped_outbound": 0, "packets_dropped_inbound": 0},
        "hwaddr": "", "host_name": "", "mtu": 65536, "state": "up", "type": "loopback"
    });
    Ok(InstanceState {
        status,
        status_code: status.code(),
        disk: Default::default(),
        memory: InstanceStateMemory {
            usage: usage.memory,
            usage_peak: usage.memory_peak,
            swap_usage: 0,
            swap_usage_peak: 0,
        },
        network: running.then(|| [("lo".to_string(), lo)].into()),
        pid: i64::from(pid),
        processes: usage.processes,
        cpu: InstanceStateCpu {
            usage: usage.cpu_ns,
        },
    })
}

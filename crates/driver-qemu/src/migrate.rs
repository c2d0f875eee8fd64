//! Live migration primitives: a target QEMU waiting with `-incoming defer`, and the source
//! side that sends the VM with bounded bandwidth and downtime and gives up (leaving the VM
//! running on the source) when it does not converge in time.

use std::time::{Duration, Instant};

use drivers::{DriverError, InstanceSpec, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::driver::QemuDriver;
use crate::vm::{StartMode, VmConfig};

/// How a migration is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigrationParams {
    /// `max-bandwidth`, bytes/s. QEMU 7.2's default (128 MiB/s) triples the time of a
    /// 1 GiB guest here; the default is effectively uncapped.
    pub max_bandwidth: u64,
    /// `downtime-limit`: the longest pause QEMU plans for the final stop-and-copy.
    pub downtime_limit: Duration,
    /// `auto-converge`: throttle a guest that dirties memory faster than it is sent.
    pub auto_converge: bool,
    /// Convergence deadline: past it the migration is cancelled and the VM keeps running
    /// on the source.
    pub deadline: Duration,
    /// Sends the disks too, in the same stream (QEMU's block migration: a bulk pass, then
    /// the blocks the guest dirtied, converging with RAM), for a target whose disk is a
    /// separate file of the same size. `false` on shared storage.
    pub block: bool,
}

impl Default for MigrationParams {
    fn default() -> MigrationParams {
        MigrationParams {
            max_bandwidth: 10 * 1024 * 1024 * 1024,
            downtime_limit: Duration::from_millis(50),
            auto_converge: true,
            deadline: Duration::from_secs(120),
            block: false,
        }
    }
}

/// Progress of an outgoing migration (from `query-migrate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationProgress {
    /// QEMU's status (`setup`, `active`, `device`, `completed`, ...).
    pub status: String,
    /// RAM bytes sent so far.
    pub transferred: u64,
    /// RAM bytes still to send.
    pub remaining: u64,
    /// Guest RAM, bytes.
    pub total: u64,
    /// Current rate, Mbit/s.
    pub mbps: f64,
    /// QEMU's expected downtime, ms.
    pub expected_downtime_ms: u64,
    /// Dirty-bitmap syncs so far.
    pub dirty_sync_count: u64,
    /// Disk bytes sent so far (block migration only).
    pub disk_transferred: u64,
    /// Disk bytes, all told (block migration only).
    pub disk_total: u64,
}

impl MigrationProgress {
    fn from_query(v: &Value) -> MigrationProgress {
        let ram = &v["ram"];
        MigrationProgress {
            status: v["status"].as_str().unwrap_or_default().to_owned(),
            transferred: ram["transferred"].as_u64().unwrap_or(0),
            remaining: ram["remaining"].as_u64().unwrap_or(0),
            total: ram["total"].as_u64().unwrap_or(0),
            mbps: ram["mbps"].as_f64().unwrap_or(0.0),
            expected_downtime_ms: v["expected-downtime"].as_u64().unwrap_or(0),
            dirty_sync_count: ram["dirty-sync-count"].as_u64().unwrap_or(0),
            disk_transferred: v["disk"]["transferred"].as_u64().unwrap_or(0),
            disk_total: v["disk"]["total"].as_u64().unwrap_or(0),
        }
    }
}

/// The result of a completed migration, as QEMU measured it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationStats {
    /// QEMU's `total-time`, ms.
    pub total_ms: u64,
    /// QEMU's `downtime`, ms (the guest was paused this long).
    pub downtime_ms: u64,
    /// QEMU's `setup-time`, ms.
    pub setup_ms: u64,
    /// RAM bytes sent.
    pub transferred: u64,
    /// Guest RAM, bytes.
    pub total: u64,
    /// Dirty-bitmap syncs.
    pub dirty_sync_count: u64,
    /// Wall-clock time from `migrate` to `completed` seen by the driver, ms.
    pub wall_ms: u64,
}

fn err(stderr: impl Into<String>) -> DriverError {
    DriverError::Runtime {
        runtime: "qemu".into(),
        verb: "migrate".into(),
        stderr: stderr.into(),
    }
}

impl QemuDriver {
    /// Starts the target QEMU of an incoming migration of `spec` (same machine as the
    /// source: memory, vCPUs, accelerator and CPU model), waiting with `-incoming defer`.
    pub async fn prepare_incoming(&self, spec: &InstanceSpec) -> Result<u32> {
        let config = VmConfig::from_instance(
            &spec.name,
            &spec.rootfs,
            &spec.config,
            self.spec_accel(spec).await,
        )?;
        self.launch(&spec.id, &config, StartMode::Incoming).await
    }

    /// Like [`QemuDriver::prepare_incoming`], from the source's own [`VmConfig`] (the disk,
    /// kernel and initrd paths must be valid here: a shared pool, or already copied).
    pub async fn prepare_incoming_config(&self, id: &str, config: &VmConfig) -> Result<u32> {
        self.launch(id, config, StartMode::Incoming).await
    }

    /// Like [`QemuDriver::prepare_incoming_config`], but the guest stays paused once it has
    /// arrived (see [`crate::vm::StartMode::IncomingPaused`]) until [`QemuDriver::resume`].
    pub async fn prepare_incoming_paused(&self, id: &str, config: &VmConfig) -> Result<u32> {
        self.launch(id, config, StartMode::IncomingPaused).await
    }

    /// Waits up to `timeout` until the incoming migration of VM `id` has arrived whole
    /// (QEMU left `inmigrate`) and returns the run state (`paused` for a target started
    /// paused, else `running`).
    ///
    /// # Errors
    ///
    /// QEMU exited (it does when the stream it loads breaks or is invalid), or it is still
    /// loading after `timeout`.
    pub async fn wait_arrived(&self, id: &str, timeout: Duration) -> Result<String> {
        let qmp = self.qmp(id).await.map_err(|_| {
            err(format!(
                "the incoming QEMU of {id} is gone (it exits when the stream breaks)"
            ))
        })?;
        let deadline = Instant::now() + timeout;
        loop {
            let status = match qmp.query_status().await {
                Ok(s) => s,
                Err(crate::qmp::QmpError::Disconnected) => {
                    return Err(err(format!(
                        "the incoming QEMU of {id} exited while loading the migration"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            if status != "inmigrate" {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "VM {id} is still loading the migration after {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Connects the host side of VM `id`'s agent port now, without waiting for the guest
    /// (see [`crate::agent::Agent::open`]): a migration target calls it before it resumes
    /// the guest, which then never sees the port closed, as on the source whose daemon was
    /// connected. Later execs use this connection.
    pub async fn attach_agent(&self, id: &str) -> Result<()> {
        let h = self.get(id).await?.ok_or(DriverError::NotRunning)?;
        let mut slot = h.agent.lock().await;
        if slot.as_ref().is_some_and(|a| !a.is_closed()) {
            return Ok(());
        }
        let agent = crate::agent::Agent::open(&h.paths.agent(), Duration::from_secs(5)).await?;
        *slot = Some(std::sync::Arc::new(agent));
        Ok(())
    }

    /// Resumes VM `id` when it is paused (a source after a failed or undone migration, a
    /// target once it owns the VM); returns whether it was paused. A VM that runs already is
    /// left alone.
    pub async fn resume(&self, id: &str) -> Result<bool> {
        let qmp = self.qmp(id).await?;
        let status = qmp.query_status().await?;
        match status.as_str() {
            "running" => Ok(false),
            "paused" | "postmigrate" | "finish-migrate" | "prelaunch" | "suspended" => {
                qmp.cont().await?;
                tracing::info!(id, from = %status, "VM resumed");
                Ok(true)
            }
            other => Err(err(format!("VM {id} cannot be resumed from state {other}"))),
        }
    }

    /// Ends the QEMU of VM `id` at once (`quit`, then SIGKILL) without a guest shutdown: a
    /// source whose VM now runs elsewhere, or a target of a migration that was undone. Does
    /// nothing when it does not run.
    pub async fn discard(&self, id: &str) -> Result<()> {
        if let Some(h) = self.get(id).await? {
            self.kill_vm(id, &h).await;
            tracing::info!(id, "QEMU ended (the VM runs elsewhere)");
        }
        Ok(())
    }

    /// Makes the target VM `id` listen for the migration stream on `uri`
    /// (`tcp:addr:port` or `unix:/path`).
    pub async fn accept_migration(&self, id: &str, uri: &str) -> Result<()> {
        let qmp = self.qmp(id).await?;
        qmp.migrate_incoming(uri).await?;
        Ok(())
    }

    /// Waits up to `timeout` until VM `id` runs (a migration target once the stream ended).
    pub async fn wait_running(&self, id: &str, timeout: Duration) -> Result<()> {
        let qmp = self.qmp(id).await?;
        let deadline = Instant::now() + timeout;
        loop {
            let status = qmp.query_status().await?;
            if status == "running" {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(err(format!("VM {id} is {status} after {timeout:?}")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends running VM `id` to `uri` with `params`, calling `progress` about every 50 ms.
    /// On success the source QEMU is left paused (`postmigrate`) for the caller to stop once
    /// the target runs. When the migration fails, or does not converge within
    /// `params.deadline` (then it is cancelled), the VM keeps running here and the error
    /// says why.
    pub async fn migrate_out(
        &self,
        id: &str,
        uri: &str,
        params: &MigrationParams,
        mut progress: impl FnMut(&MigrationProgress) + Send,
    ) -> Result<MigrationStats> {
        let qmp = self.qmp(id).await?;
        qmp.migrate_set_capabilities(&[
            ("auto-converge", params.auto_converge),
            ("events", true),
            ("block", params.block),
            ("zero-blocks", params.block),
        ])
        .await?;
        qmp.migrate_set_parameters(json!({
            "max-bandwidth": params.max_bandwidth,
            "downtime-limit": params.downtime_limit.as_millis() as u64,
        }))
        .await?;
        // QEMU announces each status change (`events` capability): the wait below ends at
        // once on one, so the completion is seen without the polling interval (the guest
        // stays paused until the caller acts on it).
        let mut events = qmp.subscribe();
        let start = Instant::now();
        qmp.migrate(uri).await?;
        let mut last_report = Instant::now();
        let failure = loop {
            let _ =
                tokio::time::timeout(Duration::from_millis(10), status_change(&mut events)).await;
            let q = qmp.query_migrate().await?;
            let p = MigrationProgress::from_query(&q);
            if last_report.elapsed() >= Duration::from_millis(50) || p.status == "completed" {
                progress(&p);
                last_report = Instant::now();
            }
            match p.status.as_str() {
                "completed" => return Ok(stats(&completed(&qmp, q).await, start)),
                "failed" | "cancelled" => {
                    break format!(
                        "{}: {}",
                        p.status,
                        q["error-desc"].as_str().unwrap_or("no reason given")
                    );
                }
                _ => {}
            }
            if start.elapsed() >= params.deadline {
                qmp.migrate_cancel().await?;
                let end = Instant::now() + Duration::from_secs(10);
                loop {
                    let q = qmp.query_migrate().await?;
                    match q["status"].as_str().unwrap_or_default() {
                        // It finished while being cancelled: it is done.
                        "completed" => return Ok(stats(&completed(&qmp, q).await, start)),
                        "cancelled" | "failed" => break,
                        _ if Instant::now() >= end => break,
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
                break format!(
                    "did not converge within {} ms ({} of {} MiB sent); cancelled",
                    params.deadline.as_millis(),
                    p.transferred >> 20,
                    p.total >> 20
                );
            }
        };
        // Whatever happened, the VM goes on running here.
        match qmp.query_status().await? {
            s if s == "running" => {}
            s => {
                tracing::warn!(id, status = %s, "resuming the VM after a failed migration");
                qmp.cont().await?;
            }
        }
        Err(err(format!(
            "{failure}; the VM keeps running on the source"
        )))
    }
}

/// Waits for the next `MIGRATION` event (a status change); returns at once when the event
/// stream is gone or lagged (the caller asks QEMU anyway).
async fn status_change(events: &mut tokio::sync::broadcast::Receiver<crate::qmp::QmpEvent>) {
    loop {
        match events.recv().await {
            Ok(e) if e.event == "MIGRATION" => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// QEMU flips the status to `completed` a moment before it computes `total-time` and
/// `downtime` (under its main lock, a fraction of a ms later): asks again (for up to a
/// second) until they are there. The guest waits for this, so the interval is short.
async fn completed(qmp: &crate::qmp::Qmp, mut q: Value) -> Value {
    let end = Instant::now() + Duration::from_secs(1);
    while q["total-time"].as_u64().unwrap_or(0) == 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(1)).await;
        match qmp.query_migrate().await {
            Ok(again) => q = again,
            Err(_) => break,
        }
    }
    q
}

fn stats(q: &Value, start: Instant) -> MigrationStats {
    MigrationStats {
        total_ms: q["total-time"].as_u64().unwrap_or(0),
        downtime_ms: q["downtime"].as_u64().unwrap_or(0),
        setup_ms: q["setup-time"].as_u64().unwrap_or(0),
        transferred: q["ram"]["transferred"].as_u64().unwrap_or(0),
        total: q["ram"]["total"].as_u64().unwrap_or(0),
        dirty_sync_count: q["ram"]["dirty-sync-count"].as_u64().unwrap_or(0),
        wall_ms: start.elapsed().as_millis() as u64,
    }
}

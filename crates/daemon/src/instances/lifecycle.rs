//! Start, stop, restart, freeze, unfreeze, and re-attaching after a daemon restart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use api::{ConfigMap, InstanceStatePut, InstanceStatus, OperationClass};
use db::instances::InstanceRecord;
use db::profiles::ProfileRecord;
use drivers::{InstanceSpec, RuntimeStatus, StopOutcome};

use super::validate::is_true;
use super::{
    expand_config, load_profiles, missing_profile, read_profiles, read_root_pool, runtime_id, url,
};
use crate::error::{ApiError, ApiResult};
use crate::state::{Daemon, Running, lock};

/// Default of `boot.host_shutdown_timeout`, seconds.
const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;

/// SIGPWR: what LXD sends a container's init for a clean stop.
const DEFAULT_STOP_SIGNAL: i32 = libc::SIGPWR;

/// `/proc/<pid>/stat` start time, or `None` when the pid is gone or a zombie.
fn proc_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 22 overall is the 20th after the state field.
    fields.nth(18)?.parse().ok()
}

/// The status of instance `id` as this daemon knows it: running if its PID 1 lives.
pub fn runtime_status(d: &Daemon, id: &str) -> InstanceStatus {
    let known = lock(&d.running).get(id).copied();
    match known {
        Some(r) if proc_start_time(r.pid) == Some(r.start_time) => InstanceStatus::Running,
        // The exit watcher removes the entry under the instance lock.
        Some(_) | None => InstanceStatus::Stopped,
    }
}

/// The status LXD shows of instance `id`: [`runtime_status`], `Frozen` while it runs frozen.
/// A frozen instance still counts as running everywhere else (a delete refuses it, a stop
/// stops it).
pub fn instance_status(d: &Daemon, id: &str) -> InstanceStatus {
    match runtime_status(d, id) {
        InstanceStatus::Running if lock(&d.frozen).contains(id) => InstanceStatus::Frozen,
        status => status,
    }
}

/// Whether instance `name` of `project` runs frozen on this member.
pub fn is_frozen(d: &Daemon, project: &str, name: &str) -> bool {
    instance_status(d, &runtime_id(project, name)) == InstanceStatus::Frozen
}

/// Records that `rec` runs (not frozen) with PID 1 `pid` and watches it for its exit.
pub(crate) fn record_running(d: &Daemon, rec: &InstanceRecord, pid: u32) {
    if let Some(start_time) = proc_start_time(pid) {
        let running = Running { pid, start_time };
        let id = runtime_id(&rec.project, &rec.name);
        lock(&d.frozen).remove(&id);
        lock(&d.running).insert(id, running);
        super::watch::watch(d, &rec.project, &rec.name, running);
    }
}

/// Shows `id` as running with PID 1 `pid`, without watching it: a VM that resumed here at
/// the end of a live move, before this member owns it ([`record_running`] follows once it
/// does). A PID 1 that dies meanwhile shows as stopped (its start time no longer matches).
pub(crate) fn show_running(d: &Daemon, id: &str, pid: u32) {
    if let Some(start_time) = proc_start_time(pid) {
        lock(&d.running).insert(id.to_string(), Running { pid, start_time });
    }
}

pub(super) async fn set_power(
    d: &Daemon,
    rec: &InstanceRecord,
    power: &str,
    started: bool,
) -> ApiResult<()> {
    d.write(db::Command::PatchInstanceConfig {
        project: rec.project.clone(),
        name: rec.name.clone(),
        changes: [(
            "volatile.last_state.power".to_string(),
            Some(power.to_string()),
        )]
        .into(),
        last_used_at: started.then(ops::now_rfc3339),
    })
    .await
}

/// Whether member `member`, in `state`, takes instance `config` (its own config): a member
/// in `created` state takes any; one being restored takes the instances its restore brings
/// back (`volatile.evacuate.origin` is that member) or starts again (last seen running);
/// any other takes none.
pub fn member_takes(state: api::MemberState, member: &str, config: &ConfigMap) -> bool {
    let get = |k: &str| config.get(k).map_or("", String::as_str);
    state.accepts_instances()
        || state == api::MemberState::Restoring
            && (get(cluster::ORIGIN_KEY) == member || get(cluster::LAST_POWER_KEY) == "RUNNING")
}

/// Refuses new work on a member that is not taking instances (evacuating, evacuated, ...).
pub async fn check_member_accepts(d: &Daemon) -> ApiResult<()> {
    let member = d.member();
    let rec = d.read(move |c| db::members::get(c, &member)).await?;
    match rec {
        Some(m) if !m.state.accepts_instances() => {
            Err(ApiError::forbidden("Cluster member is evacuated"))
        }
        _ => Ok(()),
    }
}

/// Starts `rec` and records it (the caller holds its lock).
pub(super) async fn start_instance(d: &Daemon, rec: &InstanceRecord) -> ApiResult<()> {
    start_instance_quiet(d, rec, None, false).await
}

/// Starts `rec`; with `quiet`, publishes no lifecycle event (a restart publishes its own).
///
/// The record (`volatile.last_state.power`, `last_used_at`) is written while the runtime
/// starts PID 1, not after: a replicated write costs an fsync, which would otherwise add to
/// every start. If the start fails, the previous record is put back.
///
/// `inputs` is what [`start_inputs`] returns when the caller already got it (under the same
/// hold of the instance lock); without it the start gets it first.
async fn start_instance_quiet(
    d: &Daemon,
    rec: &InstanceRecord,
    inputs: Option<StartInputs>,
    quiet: bool,
) -> ApiResult<()> {
    let (started, recorded) = tokio::join!(
        start_runtime(d, rec, inputs),
        set_power(d, rec, "RUNNING", true)
    );
    if let Err(e) = started {
        if recorded.is_ok() {
            restore_power(d, rec).await;
        }
        return Err(e);
    }
    recorded?;
    if !quiet {
        d.bus
            .lifecycle("instance-started", url(&rec.name), &rec.project, None);
    }
    Ok(())
}

/// Puts `volatile.last_state.power` back to what `rec` says, after a failed change.
async fn restore_power(d: &Daemon, rec: &InstanceRecord) {
    let previous = rec.config.get("volatile.last_state.power").cloned();
    let cmd = db::Command::PatchInstanceConfig {
        project: rec.project.clone(),
        name: rec.name.clone(),
        changes: [("volatile.last_state.power".to_string(), previous)].into(),
        last_used_at: Some(rec.last_used_at.clone()),
    };
    if let Err(e) = d.write(cmd).await {
        tracing::warn!(instance = %rec.name, error = %e.message, "last state not restored");
    }
}

/// What starting an instance needs: its expanded config, its root filesystem (mounted) and its
/// host-path disks,
/// or why it cannot start.
type StartInputs = ApiResult<(ConfigMap, PathBuf, Vec<drivers::BindMount>)>;

/// What the DB says about starting `rec`: the member (if known), the profiles (or the first
/// missing one) and the root disk's pool name with its record.
struct StartRecords {
    member: Option<db::members::MemberRecord>,
    profiles: Result<Vec<ProfileRecord>, String>,
    pool: Option<(String, Option<db::pools::PoolRecord>)>,
}

/// Reads [`StartRecords`] of `rec` on this member (`member`), from `d`'s record cache when
/// it has them. Call it under the store's lock (in [`db::Store::read`], with `c`).
fn read_start_records(
    d: &Daemon,
    c: &db::Connection,
    member: &str,
    rec: &InstanceRecord,
) -> db::Result<StartRecords> {
    // Under the store's lock: the generation of what `c` reads.
    let generation = d.store.config_generation();
    let cache = &d.records;
    let member = cache.member(c, generation, member)?;
    let profiles = cache.profiles(c, generation, &rec.project, &rec.profiles)?;
    let pool = read_root_pool(rec, &profiles, |name| cache.pool(c, generation, name))?;
    Ok(StartRecords {
        member,
        profiles,
        pool,
    })
}

/// Checks `found` in the order LXD checks it — this member takes instances, the profiles
/// exist, the root disk's pool works — then mounts the root filesystem and creates the run
/// directory. Blocking.
fn check_start_inputs(d: &Daemon, rec: &InstanceRecord, found: StartRecords) -> StartInputs {
    let StartRecords {
        member,
        profiles,
        pool,
    } = found;
    if member.is_some_and(|m| !member_takes(m.state, &m.name, &rec.config)) {
        return Err(ApiError::forbidden("Cluster member is evacuated"));
    }
    let profiles = profiles.map_err(missing_profile)?;
    let mounts =
        super::disks::start_mounts(&rec.kind, &super::expand_devices(&rec.devices, &profiles))?;
    let (name, pool) =
        pool.ok_or_else(|| ApiError::bad_request("Instance has no root disk device"))?;
    let source = crate::volumes::pool_source_checked(d, &name, pool)?;
    let rootfs = crate::volumes::rootfs_at(source, rec)?;
    let run_dir = d.paths.run.join(runtime_id(&rec.project, &rec.name));
    std::fs::create_dir_all(&run_dir)
        .map_err(|e| ApiError::internal(format!("create {}: {e}", run_dir.display())))?;
    Ok((expand_config(&rec.config, &profiles), rootfs, mounts))
}

/// What starting `rec` needs ([`check_start_inputs`]), in one blocking hand-off and one
/// hold of the DB.
async fn start_inputs(d: &Daemon, rec: &InstanceRecord) -> StartInputs {
    let (member, d2, rec) = (d.member(), d.clone(), rec.clone());
    tokio::task::spawn_blocking(move || {
        let found = d2
            .store
            .read(|c| read_start_records(&d2, c, &member, &rec))?;
        check_start_inputs(&d2, &rec, found)
    })
    .await?
}

/// Starts PID 1 of `rec`; records nothing. `inputs` as in [`start_instance_quiet`].
async fn start_runtime(
    d: &Daemon,
    rec: &InstanceRecord,
    inputs: Option<StartInputs>,
) -> ApiResult<()> {
    let id = runtime_id(&rec.project, &rec.name);
    if runtime_status(d, &id) == InstanceStatus::Running {
        return Err(ApiError::bad_request("The instance is already running"));
    }
    let run_dir = d.paths.run.join(&id);
    let (config, rootfs, mounts) = match inputs {
        Some(inputs) => inputs?,
        None => start_inputs(d, rec).await?,
    };
    let mut env = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        "container=lxc".to_string(),
    ];
    for (k, v) in &config {
        if let Some(var) = k.strip_prefix("environment.") {
            env.push(format!("{var}={v}"));
        }
    }
    let spec = InstanceSpec {
        id: id.clone(),
        name: rec.name.clone(),
        rootfs,
        run_dir,
        config,
        init: vec!["/sbin/init".to_string()],
        env,
        mounts,
    };
    let pid = d
        .driver
        .start(&spec)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to start instance: {e}")))?;
    record_running(d, rec, pid);
    tracing::info!(instance = %rec.name, pid, "instance started");
    Ok(())
}

/// LXD's error for a clean stop that its timeout ran out on (the instance still runs).
const SHUTDOWN_TIMED_OUT: &str =
    "Failed shutting down instance, status is \"Running\": context deadline exceeded";

/// How long a clean stop may take before the instance is killed, or before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StopWait {
    /// Kill at once (LXD: `force`, or `timeout: 0`).
    Kill,
    /// Wait this long for a clean stop, then fail and leave the instance running (LXD: a
    /// request's positive `timeout` without `force`).
    Clean(Duration),
    /// Wait the instance's `boot.host_shutdown_timeout` (default 30 s), then kill. LXD waits
    /// forever on a negative timeout; drover never leaves a stop hanging.
    HostShutdownTimeout,
}

impl StopWait {
    /// LXD's reading of a state request's `timeout` and `force`.
    pub(super) fn from_request(timeout: i64, force: bool) -> Self {
        match (force, timeout) {
            (true, _) | (false, 0) => Self::Kill,
            (false, t) if t > 0 => Self::Clean(Duration::from_secs(t.unsigned_abs())),
            _ => Self::HostShutdownTimeout,
        }
    }
}

/// Stops `rec` and records it (the caller holds its lock); with `quiet`, publishes no
/// lifecycle event (a restart publishes its own). As for a start, the record is written
/// while the runtime works, and put back if the stop fails.
pub(super) async fn stop_instance(
    d: &Daemon,
    rec: &InstanceRecord,
    wait: StopWait,
    quiet: bool,
) -> ApiResult<StopOutcome> {
    stop_instance_with(d, rec, None, wait, quiet).await
}

/// [`stop_instance`] with `rec`'s profiles when the caller already read them with it.
async fn stop_instance_with(
    d: &Daemon,
    rec: &InstanceRecord,
    profiles: Option<Vec<ProfileRecord>>,
    wait: StopWait,
    quiet: bool,
) -> ApiResult<StopOutcome> {
    // A clean stop of a frozen instance unfreezes it first (the driver does), which LXD
    // announces; a kill does not.
    let resumed = wait != StopWait::Kill && is_frozen(d, &rec.project, &rec.name);
    let (stopped, recorded) = tokio::join!(
        stop_runtime(d, rec, profiles, wait),
        set_power(d, rec, "STOPPED", false)
    );
    let outcome = match stopped {
        Ok(outcome) => outcome,
        Err(e) => {
            if recorded.is_ok() {
                restore_power(d, rec).await;
            }
            return Err(e);
        }
    };
    recorded?;
    if !quiet {
        if resumed {
            d.bus
                .lifecycle("instance-resumed", url(&rec.name), &rec.project, None);
        }
        let action = match outcome {
            StopOutcome::Clean => "instance-shutdown",
            _ => "instance-stopped",
        };
        d.bus.lifecycle(action, url(&rec.name), &rec.project, None);
    }
    Ok(outcome)
}

/// Stops PID 1 of `rec`; records nothing.
async fn stop_runtime(
    d: &Daemon,
    rec: &InstanceRecord,
    profiles: Option<Vec<ProfileRecord>>,
    wait: StopWait,
) -> ApiResult<StopOutcome> {
    let id = runtime_id(&rec.project, &rec.name);
    let profiles = match profiles {
        Some(profiles) => profiles,
        None => load_profiles(d, &rec.project, &rec.profiles)
            .await
            .unwrap_or_default(),
    };
    let config = expand_config(&rec.config, &profiles);
    let host_timeout = || {
        Duration::from_secs(
            config
                .get("boot.host_shutdown_timeout")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        )
    };
    let signal = config
        .get("boot.stop_signal")
        .or_else(|| config.get("image.stop_signal"))
        .and_then(|s| driver_oci::signal_from_name(s))
        .unwrap_or(DEFAULT_STOP_SIGNAL);
    let failed =
        |e: drivers::DriverError| ApiError::internal(format!("Failed to stop instance: {e}"));
    let outcome = match wait {
        StopWait::Kill => d.driver.stop(&id, signal, Duration::ZERO, true).await,
        StopWait::HostShutdownTimeout => d.driver.stop(&id, signal, host_timeout(), false).await,
        // As LXD: a clean stop given a timeout fails when the instance outlives it, and
        // leaves it running (the caller may then force it).
        StopWait::Clean(t) => match d.driver.shutdown(&id, signal, t).await.map_err(failed)? {
            Some(outcome) => Ok(outcome),
            None => {
                // It runs on, no longer frozen if it was: the driver thawed it to stop it.
                lock(&d.frozen).remove(&id);
                return Err(ApiError::internal(SHUTDOWN_TIMED_OUT));
            }
        },
    }
    .map_err(failed)?;
    lock(&d.running).remove(&id);
    lock(&d.frozen).remove(&id);
    tracing::info!(instance = %rec.name, ?outcome, "instance stopped");
    Ok(outcome)
}

/// What a state request asks for, checked against the instance's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Stop,
    Restart,
    Freeze,
    Unfreeze,
}

impl Action {
    fn parse(action: &str) -> ApiResult<Self> {
        match action {
            "start" => Ok(Self::Start),
            "stop" => Ok(Self::Stop),
            "restart" => Ok(Self::Restart),
            "freeze" => Ok(Self::Freeze),
            "unfreeze" => Ok(Self::Unfreeze),
            other => Err(ApiError::bad_request(format!("Unknown action: '{other}'"))),
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Start => "Starting instance",
            Self::Stop => "Stopping instance",
            Self::Restart => "Restarting instance",
            Self::Freeze => "Freezing instance",
            Self::Unfreeze => "Unfreezing instance",
        }
    }

    /// LXD 5.0.2's refusal when the status of an instance of type `kind` does not allow the
    /// action. A frozen instance counts as running but cannot restart; the freeze messages
    /// say "container" for a container, as LXD's container driver does.
    fn check(self, status: InstanceStatus, kind: &str) -> ApiResult<()> {
        use InstanceStatus::{Frozen, Running};
        let running = matches!(status, Running | Frozen);
        let what = if kind == "virtual-machine" {
            "instance"
        } else {
            "container"
        };
        let refusal = match (self, status) {
            (Self::Start, _) if running => "The instance is already running".to_string(),
            (Self::Stop, _) if !running => "The instance is already stopped".to_string(),
            (Self::Restart, Frozen) => "Instance is not running".to_string(),
            (Self::Restart, _) if !running => "The instance is already stopped".to_string(),
            (Self::Freeze | Self::Unfreeze, _) if !running => format!("The {what} isn't running"),
            (Self::Freeze, Frozen) => format!("The {what} is already frozen"),
            (Self::Unfreeze, Running) => format!("The {what} is already running"),
            _ => return Ok(()),
        };
        Err(ApiError::bad_request(refusal))
    }
}

/// `PUT /1.0/instances/{name}/state`: validates the request (its action, the member taking
/// instances), then runs the change as an operation, which checks the instance's status.
///
/// The operation acts on what is true under the instance lock, so that a change queued
/// behind another (a rename, a delete, a second stop) sees its effect. When the lock is free
/// the request takes it before reading the instance, and the operation inherits it with that
/// read; otherwise the operation reads the instance and checks its status again once it
/// holds the lock.
pub async fn change_state(
    d: &Daemon,
    project: &str,
    name: &str,
    req: InstanceStatePut,
) -> ApiResult<api::Operation> {
    Daemon::check_project(project)?;
    let id = runtime_id(project, name);
    let lock = d.instance_lock(&id);
    let held = lock.clone().try_lock_owned().ok();
    let parsed = Action::parse(&req.action);
    // Under the lock, a start of a stopped instance gets what it needs in this same read
    // (the operation then goes straight to the runtime): one hold of the DB, then the root
    // filesystem and the run directory.
    let prepare = held.is_some()
        && parsed.as_ref().is_ok_and(|a| *a == Action::Start)
        && !req.stateful
        && runtime_status(d, &id) != InstanceStatus::Running;
    let (p, n, member, d2) = (project.to_string(), name.to_string(), d.member(), d.clone());
    // The profiles too, for a stop (its signal and timeout). A start being prepared reads
    // the member and the profiles once, with its other records.
    let query = move |c: &db::Connection| -> db::Result<_> {
        let found = match db::instances::get(c, &p, &n)? {
            Some(rec) => {
                let start = if prepare {
                    Some(read_start_records(&d2, c, &member, &rec)?)
                } else {
                    None
                };
                let profiles = match &start {
                    Some(s) => s.profiles.clone().unwrap_or_default(),
                    None => read_profiles(c, &p, &rec.profiles)?.unwrap_or_default(),
                };
                Some((rec, profiles, start))
            }
            None => None,
        };
        let member = match found.as_ref().and_then(|(_, _, start)| start.as_ref()) {
            Some(start) => start.member.clone(),
            None => db::members::get(c, &member)?,
        };
        Ok((found, member))
    };
    // One short read (~0.1 ms), on this thread when nobody holds the DB; behind a write
    // (which may wait for the disk) the thread's other tasks are handed on first.
    let read = match d.store.try_read(&query) {
        Some(read) => read,
        None => {
            let store = d.store.clone();
            crate::state::blocking_in_place(move || store.read(query)).await?
        }
    };
    let (found, member) = read?;
    // A start's checks and files (a few calls on local files, a mount only on the first
    // start after a reboot), in place too.
    let found = found.map(|(rec, profiles, start)| {
        let inputs = start.map(|s| check_start_inputs(d, &rec, s));
        Checked {
            rec,
            profiles,
            inputs,
        }
    });
    let Some(found) = found else {
        return Err(ApiError::not_found("Instance not found"));
    };
    let action = parsed?;
    // LXD 5.0.2 refuses every action but stop on an evacuated member before it looks at
    // the instance (`lxc restart` of a stopped instance there says so too).
    if action != Action::Stop
        && member.is_some_and(|m| !member_takes(m.state, &m.name, &found.rec.config))
    {
        return Err(ApiError::forbidden("Cluster member is evacuated"));
    }
    if req.stateful {
        return Err(ApiError::bad_request(
            "Stateful stop and start are not supported",
        ));
    }
    let wait = StopWait::from_request(req.timeout, req.force);
    let resources = BTreeMap::from([("instances".to_string(), vec![url(name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, action.description(), resources, None);
    let record = op.record();
    let (d, project, name) = (d.clone(), project.to_string(), name.to_string());
    // A force stop while a clean stop waits for a VM's guest ends that wait (as LXD's does)
    // instead of queueing behind it for up to boot.host_shutdown_timeout.
    let interrupt = held.is_none() && action == Action::Stop && wait == StopWait::Kill;
    crate::state::spawn_started(async move {
        let interrupted = match (&d.vms, interrupt) {
            (Some(vms), true) => vms.interrupt_stop(&id).await,
            _ => false,
        };
        let (_guard, checked) = match held {
            // Read and checked above, under the lock: still true.
            Some(guard) => (guard, Some(found)),
            None => (lock.lock_owned().await, None),
        };
        if interrupted && runtime_status(&d, &id) == InstanceStatus::Stopped {
            return op.succeed(None);
        }
        match run_action(&d, &project, &name, action, wait, checked).await {
            Ok(()) => op.succeed(None),
            Err(e) => op.fail(e.message),
        }
    })
    .await;
    Ok(record)
}

/// An instance record and its profiles (none when one is missing), read together; for a
/// start, what it needs too.
struct Checked {
    rec: InstanceRecord,
    profiles: Vec<ProfileRecord>,
    inputs: Option<StartInputs>,
}

/// The body of a state operation; the caller holds the instance lock. `checked` is what
/// was read, and the action checked against, under that same hold of the lock.
async fn run_action(
    d: &Daemon,
    project: &str,
    name: &str,
    action: Action,
    wait: StopWait,
    checked: Option<Checked>,
) -> ApiResult<()> {
    let (rec, profiles, inputs) = match checked {
        Some(Checked {
            rec,
            profiles,
            inputs,
        }) => (rec, Some(profiles), inputs),
        None => (super::load(d, project, name).await?, None, None),
    };
    // Under the lock: an action the status does not allow fails its operation, as in LXD
    // 5.0.2 (the request itself is accepted: pylxd's `start()` of a running instance, which
    // does not wait, raises nothing).
    action.check(instance_status(d, &runtime_id(project, name)), &rec.kind)?;
    match action {
        Action::Start => start_instance_quiet(d, &rec, inputs, false).await,
        Action::Stop => {
            stop_instance_with(d, &rec, profiles, wait, false).await?;
            if rec.ephemeral {
                super::update::delete_now(d, &rec).await?;
            }
            Ok(())
        }
        Action::Restart => {
            stop_instance_with(d, &rec, profiles, wait, true).await?;
            // Reload: the stop changed volatile keys.
            let rec = super::load(d, project, name).await?;
            start_instance_quiet(d, &rec, None, true).await?;
            d.bus
                .lifecycle("instance-restarted", url(name), project, None);
            Ok(())
        }
        Action::Freeze => freeze_instance(d, &rec).await,
        Action::Unfreeze => unfreeze_instance(d, &rec).await,
    }
}

/// Freezes running `rec` (the caller holds its lock and checked its status). Its
/// `volatile.last_state.power` stays `RUNNING`, as LXD leaves it.
async fn freeze_instance(d: &Daemon, rec: &InstanceRecord) -> ApiResult<()> {
    let id = runtime_id(&rec.project, &rec.name);
    d.driver
        .freeze(&id)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to freeze instance: {e}")))?;
    lock(&d.frozen).insert(id);
    tracing::info!(instance = %rec.name, "instance frozen");
    d.bus
        .lifecycle("instance-paused", url(&rec.name), &rec.project, None);
    Ok(())
}

/// Unfreezes frozen `rec` (the caller holds its lock and checked its status).
async fn unfreeze_instance(d: &Daemon, rec: &InstanceRecord) -> ApiResult<()> {
    let id = runtime_id(&rec.project, &rec.name);
    d.driver
        .unfreeze(&id)
        .await
        .map_err(|e| ApiError::internal(format!("Failed to unfreeze instance: {e}")))?;
    lock(&d.frozen).remove(&id);
    tracing::info!(instance = %rec.name, "instance unfrozen");
    d.bus
        .lifecycle("instance-resumed", url(&rec.name), &rec.project, None);
    Ok(())
}

/// After a daemon (re)start: learn which instances still run; returns those that should
/// run and do not (`boot.autostart=true`, or unset and last seen running, as LXD does), for
/// [`autostart_all`].
///
/// Nothing here writes to the cluster DB: in a cluster a write of this member only returns
/// once this member has applied it, which needs its Raft endpoint (HTTPS) listening.
pub async fn reattach_all(d: &Daemon) -> ApiResult<Vec<InstanceRecord>> {
    crate::volumes::recover_all(d).await?;
    let member = d.member();
    let instances = d
        .read(move |c| db::instances::list_on_member(c, &member))
        .await?;
    let mut to_start = Vec::new();
    for rec in instances {
        let id = runtime_id(&rec.project, &rec.name);
        match d.driver.state(&id).await {
            Ok(RuntimeStatus::Running { pid }) => {
                record_running(d, &rec, pid);
                // Frozen it stays: neither started nor stopped, and shown Frozen.
                match d.driver.frozen(&id).await {
                    Ok(true) => {
                        lock(&d.frozen).insert(id);
                        tracing::info!(instance = %rec.name, pid, "re-attached to frozen instance");
                    }
                    Ok(false) => {
                        tracing::info!(instance = %rec.name, pid, "re-attached to running instance");
                    }
                    Err(e) => {
                        tracing::warn!(instance = %rec.name, pid, error = %e, "re-attached; frozen or not is unknown");
                    }
                }
            }
            Ok(RuntimeStatus::Stopped) => {
                let autostart = rec.config.get("boot.autostart");
                let last_running = rec
                    .config
                    .get("volatile.last_state.power")
                    .map(String::as_str)
                    == Some("RUNNING");
                let wanted = match autostart {
                    Some(_) => is_true(autostart),
                    None => last_running,
                };
                if wanted {
                    to_start.push(rec);
                }
            }
            Err(e) => tracing::warn!(instance = %rec.name, error = %e, "runtime state unknown"),
        }
    }
    Ok(to_start)
}

/// Starts the instances [`reattach_all`] found stopped that should run, one after the
/// other. In a cluster, call it once this member's HTTPS listener (its Raft endpoint)
/// serves: each start records `volatile.last_state.power` through the leader.
pub async fn autostart_all(d: &Daemon, to_start: Vec<InstanceRecord>) {
    for rec in to_start {
        let lock = d.instance_lock(&runtime_id(&rec.project, &rec.name));
        let _guard = lock.lock().await;
        match start_instance(d, &rec).await {
            Ok(()) => tracing::info!(instance = %rec.name, "autostarted"),
            Err(e) => tracing::warn!(instance = %rec.name, error = %e.message, "autostart failed"),
        }
    }
}

/// Stops instance `name` of `project` on this member for an evacuation, under its lock:
/// cleanly (`boot.host_shutdown_timeout`, then killed) or, with `force`, at once. Its
/// `volatile.last_state.power` stays `RUNNING`, as LXD leaves it, so that a restore starts
/// it again. Does nothing when it is not running (a step run again after a crash).
pub async fn stop_for_evacuation(
    d: &Daemon,
    project: &str,
    name: &str,
    force: bool,
) -> ApiResult<()> {
    let id = runtime_id(project, name);
    let lock = d.instance_lock(&id);
    let _guard = lock.lock().await;
    if runtime_status(d, &id) != InstanceStatus::Running {
        return Ok(());
    }
    let rec = super::load(d, project, name).await?;
    let wait = if force {
        StopWait::Kill
    } else {
        StopWait::HostShutdownTimeout
    };
    stop_instance(d, &rec, wait, false).await?;
    set_power(d, &rec, "RUNNING", false).await
}

/// Starts instance `name` of `project` on this member for a restore, under its lock. Does
/// nothing when it already runs.
pub async fn start_for_restore(d: &Daemon, project: &str, name: &str) -> ApiResult<()> {
    let id = runtime_id(project, name);
    let lock = d.instance_lock(&id);
    let _guard = lock.lock().await;
    if runtime_status(d, &id) == InstanceStatus::Running {
        return Ok(());
    }
    let rec = super::load(d, project, name).await?;
    start_instance(d, &rec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::MemberState;

    #[test]
    fn state_refusals_are_lxds_words() {
        use InstanceStatus::{Frozen, Running, Stopped};
        let refusal =
            |a: Action, s: InstanceStatus, kind: &str| a.check(s, kind).err().map(|e| e.message);
        let c = "container";
        assert_eq!(refusal(Action::Freeze, Running, c), None);
        assert_eq!(refusal(Action::Unfreeze, Frozen, c), None);
        assert_eq!(refusal(Action::Stop, Frozen, c), None);
        for (a, s, kind, want) in [
            (Action::Freeze, Stopped, c, "The container isn't running"),
            (Action::Unfreeze, Stopped, c, "The container isn't running"),
            (Action::Freeze, Frozen, c, "The container is already frozen"),
            (
                Action::Unfreeze,
                Running,
                c,
                "The container is already running",
            ),
            (Action::Start, Frozen, c, "The instance is already running"),
            (Action::Restart, Frozen, c, "Instance is not running"),
            (
                Action::Restart,
                Stopped,
                c,
                "The instance is already stopped",
            ),
            (
                Action::Freeze,
                Frozen,
                "virtual-machine",
                "The instance is already frozen",
            ),
        ] {
            assert_eq!(
                refusal(a, s, kind).as_deref(),
                Some(want),
                "{a:?} when {s:?}"
            );
        }
    }

    #[test]
    fn a_restoring_member_takes_only_what_its_restore_brings_back() {
        let cfg = |pairs: &[(&str, &str)]| -> ConfigMap {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let none = cfg(&[]);
        let home = cfg(&[("volatile.evacuate.origin", "m1")]);
        let elsewhere = cfg(&[("volatile.evacuate.origin", "m2")]);
        let was_running = cfg(&[("volatile.last_state.power", "RUNNING")]);
        assert!(member_takes(MemberState::Created, "m1", &none));
        assert!(member_takes(MemberState::Restoring, "m1", &home));
        assert!(member_takes(MemberState::Restoring, "m1", &was_running));
        assert!(!member_takes(MemberState::Restoring, "m1", &none));
        assert!(!member_takes(MemberState::Restoring, "m1", &elsewhere));
        for s in [MemberState::Evacuated, MemberState::Evacuating] {
            assert!(!member_takes(s, "m1", &home));
            assert!(!member_takes(s, "m1", &was_running));
        }
    }
}

//! [`OciDriver`]: the [`InstanceDriver`] of system containers on crun or runc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drivers::{
    DriverError, ExecProcess, ExecSpec, ExecStdio, InstanceDriver, InstanceSpec, Result,
    RuntimeStatus, StopOutcome, Usage,
};
use tokio::sync::RwLock;

use crate::bundle::{DEFAULT_PATH, WrittenBundle, build_spec, write_bundle_cached};
use crate::cgroup::CgroupLayout;
use crate::exec::OciExec;
use crate::pid_watch::PidWatch;
use crate::runtime::{ContainerState, ExecArgs, Runtime, RuntimeKind};

/// File in `run_dir` that receives PID 1's stdout and stderr (and the runtime's messages).
pub const CONSOLE_LOG: &str = "console.log";

/// File in `run_dir` where the runtime writes PID 1's pid.
pub const PID_FILE: &str = "pid";

/// Default cgroup parent of instances (`/drover/<id>`).
pub const DEFAULT_CGROUP_PARENT: &str = "drover";

/// At most this many bundles are remembered ([`OciDriver`]'s `bundles`); past it the memory
/// starts over (a start then reads its bundle back once more).
const MAX_BUNDLES: usize = 4096;

/// How long a killed instance may take to die before the driver falls back to
/// `delete --force`.
const KILL_GRACE: Duration = Duration::from_secs(10);

/// System containers on one OCI runtime whose state lives in one `--root` directory.
///
/// It keeps no state of its own beyond configuration: everything is asked from the runtime
/// (whose state is in the root directory) or from `/proc` and the cgroup filesystem, so a
/// fresh `OciDriver` on the same root directory — after a daemon restart — sees and controls
/// the containers an earlier one started.
///
/// # Correctness
///
/// With crun on a hybrid-cgroup host, every instance must be handled from the same mount
/// view: the daemon calls [`crate::prepare_mount_namespace`] before starting tokio, and the
/// runtime's [`crate::Isolation`] is detected when the driver is built.
#[derive(Debug, Clone)]
pub struct OciDriver {
    runtime: Runtime,
    version: String,
    cgroups: CgroupLayout,
    /// Held shared while a container is created, exclusively while an empty cgroup parent is
    /// removed, so that the removal never races a `mkdir -p` of the runtime.
    cgroup_parent_lock: Arc<RwLock<()>>,
    /// PID 1 of the instances this driver saw running: a cache that saves a `state` call
    /// per stop or exec. An entry is used only while its process (pid + start time) lives;
    /// a miss asks the runtime, so a fresh driver works the same, only slower.
    pids: Arc<Mutex<HashMap<String, PidWatch>>>,
    /// The bundle each instance last started with and what it was built from: a start
    /// from the same input then checks its `config.json` with one `stat`, without building
    /// the spec again or handing the work to a blocking thread. A cache too: a miss builds
    /// the spec and reads the file, as a fresh driver does.
    bundles: Arc<Mutex<HashMap<String, KnownBundle>>>,
}

impl OciDriver {
    /// A driver over `kind` keeping runtime state in `root_dir`, without a probe (the
    /// version is asked with `--version`). Prefer [`crate::probe`] at start-up.
    ///
    /// # Errors
    ///
    /// [`DriverError::Runtime`] when the binary does not run.
    pub async fn new(kind: RuntimeKind, root_dir: impl Into<PathBuf>) -> Result<OciDriver> {
        let runtime = Runtime::new(kind, root_dir);
        let version = runtime.version().await?;
        Ok(OciDriver::from_parts(runtime, version))
    }

    /// A driver over an already configured runtime whose `--version` line is `version`.
    pub fn from_parts(runtime: Runtime, version: String) -> OciDriver {
        OciDriver {
            runtime,
            version,
            cgroups: CgroupLayout::new(DEFAULT_CGROUP_PARENT),
            cgroup_parent_lock: Arc::new(RwLock::new(())),
            pids: Arc::new(Mutex::new(HashMap::new())),
            bundles: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Puts instances in `/<parent>/<id>` instead of `/drover/<id>`. Daemons sharing a host
    /// must use distinct parents (and distinct root directories).
    #[must_use]
    pub fn with_cgroup_parent(mut self, parent: impl Into<String>) -> OciDriver {
        self.cgroups = CgroupLayout::new(parent);
        self
    }

    /// `"crun"` or `"runc"`.
    pub fn runtime_name(&self) -> &'static str {
        self.runtime.kind().name()
    }

    /// The runtime wrapper.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Where the instances' cgroups are.
    pub fn cgroups(&self) -> &CgroupLayout {
        &self.cgroups
    }

    /// `"<name> <version>"` from the version line (`"crun version 1.8.1"` → `"crun 1.8.1"`).
    fn short_version(&self) -> String {
        let name = self.runtime_name();
        let v = self
            .version
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or("unknown");
        format!("{name} {v}")
    }

    /// The runtime's view of `id`, cleaning up a container that is not running (created
    /// but never started, or exited) so that a later start works.
    async fn running(&self, id: &str) -> Result<Option<PidWatch>> {
        if let Some(w) = self.cached(id) {
            if w.alive() {
                return Ok(Some(w));
            }
            self.forget(id);
        }
        let Some(ContainerState { status, pid }) = self.runtime.state(id).await? else {
            return Ok(None);
        };
        if matches!(status.as_str(), "running" | "paused")
            && let Some(w) = i32::try_from(pid).ok().and_then(PidWatch::new)
        {
            self.remember(id, w);
            return Ok(Some(w));
        }
        tracing::debug!(
            instance = id,
            status,
            "removing a container that is not running"
        );
        self.runtime.delete(id, status != "stopped").await?;
        self.remove_cgroups(id).await;
        Ok(None)
    }

    fn pid_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, PidWatch>> {
        // The map stays consistent even if a holder panicked: every operation is one call.
        self.pids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bundle_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownBundle>> {
        self.bundles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, id: &str) -> Option<PidWatch> {
        self.pid_cache().get(id).copied()
    }

    fn remember(&self, id: &str, w: PidWatch) {
        self.pid_cache().insert(id.to_string(), w);
    }

    fn forget(&self, id: &str) {
        self.pid_cache().remove(id);
    }

    /// Removes the cgroup directories left after `id` was deleted.
    async fn remove_cgroups(&self, id: &str) {
        let guard = self.cgroup_parent_lock.try_write();
        self.cgroups.remove(id, guard.is_ok());
    }

    /// [`OciDriver::remove_cgroups`] after a stop, off the caller's path: the stop is done
    /// once the runtime deleted the container (which removes its cgroups itself); this only
    /// tidies what it may have left and the parent once empty.
    ///
    /// Only when the stopped container was the last one this driver knows running: while
    /// others run the parent cannot be removed, and the tidy-up would cost two `rmdir`s per
    /// hierarchy for nothing on every stop (CPU that 20 stops at once take from the runtime).
    ///
    /// Runs only while no container is being created (the exclusive side of
    /// `cgroup_parent_lock`, taken without waiting): a start of the same id could otherwise
    /// see the directory its runtime just created removed before PID 1 is moved into it.
    /// When a creation (or another tidy-up) is in flight it is skipped; a later stop does it.
    fn remove_cgroups_later(&self, id: &str) {
        if !self.pid_cache().is_empty() {
            return;
        }
        let Ok(guard) = self.cgroup_parent_lock.clone().try_write_owned() else {
            return;
        };
        let (cgroups, id) = (self.cgroups.clone(), id.to_string());
        tokio::task::spawn_blocking(move || {
            cgroups.remove(&id, true);
            drop(guard);
        });
    }

    /// Sends `signal` to PID 1 of `id` (watched by `w`) as `<runtime> kill` would, but
    /// through a pidfd: a syscall instead of a runtime process (a few ms on the stop's
    /// critical path), and no other process can receive it if PID 1 is gone and its pid
    /// reused. Falls back to `<runtime> kill` for what a pidfd cannot carry (real-time
    /// signals such as systemd's `SIGRTMIN+3`). Succeeds when PID 1 has already exited.
    async fn signal(&self, id: &str, w: &PidWatch, signal: i32) -> Result<()> {
        match w.signal(signal) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(instance = id, signal, error = %e, "signalling through the runtime");
                match self.runtime.kill(id, signal).await {
                    Err(e) if w.alive() => Err(e),
                    _ => Ok(()),
                }
            }
        }
    }

    /// Kills `id` (PID 1 watched by `w`) with SIGKILL and deletes it.
    async fn kill_and_delete(&self, id: &str, w: &PidWatch) -> Result<()> {
        self.signal(id, w, libc::SIGKILL).await?;
        if !w.wait_exit(KILL_GRACE).await {
            tracing::warn!(instance = id, pid = w.pid(), "pid 1 survived SIGKILL");
            return self.runtime.delete(id, true).await;
        }
        self.delete_stopped(id).await
    }

    /// Deletes `id` whose PID 1 has exited, and empties its pid file.
    async fn delete_stopped(&self, id: &str) -> Result<()> {
        if self.runtime.delete(id, false).await.is_err() {
            self.runtime.delete(id, true).await?;
        }
        self.empty_pid_file_of(id);
        Ok(())
    }

    /// Empties the pid file of `id`, deleted, when this driver started it (it knows its run
    /// directory): the next start then finds it empty and has nothing to do to it, on its
    /// critical path (see [`empty_pid_file`]). A start whose file was not emptied here (a
    /// fresh driver, an instance that exited by itself) empties it first.
    fn empty_pid_file_of(&self, id: &str) {
        let run_dir = self.bundle_cache().get(id).map(|k| k.input.run_dir.clone());
        if let Some(dir) = run_dir {
            empty_pid_file(&dir.join(PID_FILE));
        }
    }
}

/// A bundle [`OciDriver::start`] wrote or found: the input it was built from and the file.
#[derive(Debug, Clone)]
struct KnownBundle {
    input: InstanceSpec,
    cgroups_path: String,
    written: WrittenBundle,
}

impl KnownBundle {
    /// Whether a start of `spec` in `cgroups_path` would build this same bundle and its
    /// file is still the one written: then there is nothing to build, compare or write.
    ///
    /// The spec is a function of the input, except for a memory limit given as a share of
    /// the host's RAM (read from `/proc/meminfo` when built): such a start always rebuilds.
    fn serves(&self, spec: &InstanceSpec, cgroups_path: &str) -> bool {
        let relative_memory = spec
            .config
            .get("limits.memory")
            .is_some_and(|v| v.trim_end().ends_with('%'));
        !relative_memory
            && self.cgroups_path == cgroups_path
            && self.input == *spec
            && self.written.is_on_disk(&spec.run_dir)
    }
}

/// How long a stop waits for a just-started PID 1 to install its handler of the stop
/// signal before sending it.
const HANDLER_GRACE: Duration = Duration::from_millis(500);

/// Whether `pid` catches `signal` (its `SigCgt` mask in `/proc/<pid>/status`).
fn catches(pid: i32, signal: i32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))?
        .trim();
    let mask = u64::from_str_radix(mask, 16).ok()?;
    let bit = u32::try_from(signal.checked_sub(1)?).ok()?;
    Some(mask.checked_shr(bit)? & 1 == 1)
}

/// Waits up to `grace` until `pid` catches `signal`. PID 1 of a namespace ignores signals it
/// has no handler for, so a stop signal sent in the few milliseconds between its start and
/// its `trap` would be lost and the stop would last its whole timeout. An init that never
/// installs a handler only costs `grace` once.
async fn wait_signal_caught(pid: i32, signal: i32, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let mut pause = Duration::from_millis(1);
    while catches(pid, signal) == Some(false) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Empties the pid file of a previous start (if any), so that only the coming run can put
/// a pid in it, keeping the file itself.
///
/// Removing it instead made the runtime create a new inode on every start, and ext4's
/// inode allocator, scanning past the inodes deleted in the last seconds
/// (`recently_deleted`), charged about 0.3 ms of CPU for it to the runtime's process that
/// writes the pid (a perf profile of 320 starts; the bench's floor, whose pid file stays,
/// never paid it).
///
/// Emptying a file that holds a pid frees its block (ext4 allocates it when the runtime
/// closes the file it truncated and wrote: `auto_da_alloc`), about 0.2 ms here; the runtime
/// pays the same inside its run when it truncates a file that still holds one. So it is
/// done when the container is deleted, off the next start's path, and a start only checks
/// that the file is empty ([`empty_stale_pid_file`]).
fn empty_pid_file(path: &Path) {
    match std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot empty the old pid file");
            let _ = std::fs::remove_file(path);
        }
    }
}

/// [`empty_pid_file`] when the file holds anything: one `stat` when the last stop emptied it
/// (truncating an empty file still costs a journal update).
fn empty_stale_pid_file(path: &Path) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        empty_pid_file(path);
    }
}

#[async_trait::async_trait]
impl InstanceDriver for OciDriver {
    fn describe(&self) -> String {
        self.short_version()
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<u32> {
        if self.running(&spec.id).await?.is_some() {
            return Err(DriverError::AlreadyRunning);
        }
        let t0 = Instant::now();
        let pid_file = spec.run_dir.join(PID_FILE);
        let log = spec.run_dir.join(CONSOLE_LOG);
        let cgroups_path = self.cgroups.cgroups_path(&spec.id);
        let unchanged = self
            .bundle_cache()
            .get(&spec.id)
            .is_some_and(|k| k.serves(spec, &cgroups_path));
        if unchanged {
            // The usual start of an instance started before: its bundle stands (one `stat`
            // above). What is left are two small calls on a local directory, cheaper here
            // than the two thread wake-ups of a hand-off to a blocking thread.
            std::fs::create_dir_all(self.runtime.root())?;
            empty_stale_pid_file(&pid_file);
        } else {
            // The bundle (build, compare, maybe write), the state directory and the old pid
            // file: file work, in one blocking hand-off.
            let (input, root) = (spec.clone(), self.runtime.root().to_path_buf());
            let (stale_pid, bundles) = (pid_file.clone(), self.bundles.clone());
            tokio::task::spawn_blocking(move || -> Result<()> {
                let oci = build_spec(&input, &cgroups_path)?;
                let lock = || {
                    bundles
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                };
                // Taken out while the file is checked or written, so that no other start
                // waits.
                let last = lock().remove(&input.id).map(|k| k.written);
                let written = write_bundle_cached(&input.run_dir, oci, last)?;
                let mut known = lock();
                if known.len() >= MAX_BUNDLES {
                    known.clear();
                }
                known.insert(
                    input.id.clone(),
                    KnownBundle {
                        input,
                        cgroups_path,
                        written,
                    },
                );
                drop(known);
                std::fs::create_dir_all(root)?;
                empty_stale_pid_file(&stale_pid);
                Ok(())
            })
            .await
            .map_err(std::io::Error::other)??;
        }
        let res = {
            let _shared = self.cgroup_parent_lock.read().await;
            self.runtime
                .run_detached(&spec.id, &spec.run_dir, &pid_file, &log)
                .await
        };
        if let Err(e) = res {
            // A failed run may leave a created container behind.
            let _ = self.runtime.delete(&spec.id, true).await;
            self.remove_cgroups(&spec.id).await;
            return Err(e);
        }
        let pid = std::fs::read_to_string(&pid_file)?
            .trim()
            .parse::<u32>()
            .map_err(|e| {
                DriverError::Invalid(format!("bad pid file {}: {e}", pid_file.display()))
            })?;
        if let Some(w) = i32::try_from(pid).ok().and_then(PidWatch::new) {
            self.remember(&spec.id, w);
        }
        tracing::debug!(
            instance = %spec.id,
            pid,
            runtime = self.runtime_name(),
            ms = t0.elapsed().as_secs_f64() * 1e3,
            "instance started"
        );
        Ok(pid)
    }

    async fn stop(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
        force: bool,
    ) -> Result<StopOutcome> {
        if !force && !timeout.is_zero() {
            if let Some(outcome) = self.shutdown(id, signal, timeout).await? {
                return Ok(outcome);
            }
            tracing::info!(instance = id, ?timeout, signal, "stop timed out, killing");
        }
        let Some(w) = self.running(id).await? else {
            return Ok(StopOutcome::WasStopped);
        };
        if self.cgroups.frozen(id) {
            // Frozen processes take no signal, not even SIGKILL on a cgroup v1 freezer.
            tracing::info!(instance = id, "unfreezing to stop");
            self.runtime.resume(id).await?;
        }
        self.kill_and_delete(id, &w).await?;
        self.forget(id);
        self.remove_cgroups_later(id);
        Ok(StopOutcome::Killed)
    }

    async fn shutdown(
        &self,
        id: &str,
        signal: i32,
        timeout: Duration,
    ) -> Result<Option<StopOutcome>> {
        let Some(w) = self.running(id).await? else {
            return Ok(Some(StopOutcome::WasStopped));
        };
        if self.cgroups.frozen(id) {
            tracing::info!(instance = id, "unfreezing to stop");
            self.runtime.resume(id).await?;
        }
        wait_signal_caught(w.pid(), signal, HANDLER_GRACE).await;
        self.signal(id, &w, signal).await?;
        if !w.wait_exit(timeout).await {
            tracing::info!(
                instance = id,
                ?timeout,
                signal,
                "clean stop timed out; left running"
            );
            return Ok(None);
        }
        self.delete_stopped(id).await?;
        self.forget(id);
        self.remove_cgroups_later(id);
        Ok(Some(StopOutcome::Clean))
    }

    async fn state(&self, id: &str) -> Result<RuntimeStatus> {
        Ok(match self.running(id).await? {
            Some(w) => RuntimeStatus::Running {
                pid: u32::try_from(w.pid()).unwrap_or_default(),
            },
            None => RuntimeStatus::Stopped,
        })
    }

    async fn update_limits(
        &self,
        id: &str,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        if self.running(id).await?.is_none() {
            return Err(DriverError::NotRunning);
        }
        let resources = crate::bundle::limits_resources(config)?;
        self.runtime.update(id, &resources).await
    }

    async fn usage(&self, id: &str) -> Result<Usage> {
        Ok(self.cgroups.usage(id))
    }

    async fn exec(
        &self,
        id: &str,
        spec: &ExecSpec,
        stdio: ExecStdio,
    ) -> Result<Box<dyn ExecProcess>> {
        if spec.command.is_empty() {
            return Err(DriverError::Invalid("exec command is empty".into()));
        }
        let Some(w) = self.running(id).await? else {
            return Err(DriverError::NotRunning);
        };
        let cwd = if !spec.cwd.is_empty() {
            spec.cwd.clone()
        } else if spec.uid == 0
            && std::path::Path::new(&format!("/proc/{}/root/root", w.pid())).is_dir()
        {
            "/root".to_string()
        } else {
            "/".to_string()
        };
        let mut env = spec.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(DEFAULT_PATH.to_string());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                if spec.uid == 0 { "/root" } else { "/" }
            ));
        }
        let pid_file = crate::exec::pid_file_path();
        let args = ExecArgs {
            command: &spec.command,
            env: &env,
            cwd: &cwd,
            uid: spec.uid,
            gid: spec.gid,
            pid_file: Some(&pid_file),
        };
        let mut cmd = self.runtime.exec_command(id, &args);
        cmd.stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        let child = cmd.spawn().map_err(|e| DriverError::Runtime {
            runtime: self.runtime_name().into(),
            verb: "exec".into(),
            stderr: format!("cannot run: {e}"),
        })?;
        Ok(Box::new(
            OciExec::new(child, self.runtime_name()).with_pid_file(pid_file),
        ))
    }

    async fn freeze(&self, id: &str) -> Result<()> {
        if self.running(id).await?.is_none() {
            return Err(DriverError::NotRunning);
        }
        if self.cgroups.frozen(id) {
            return Ok(());
        }
        self.runtime.pause(id).await
    }

    async fn unfreeze(&self, id: &str) -> Result<()> {
        if self.running(id).await?.is_none() {
            return Err(DriverError::NotRunning);
        }
        if !self.frozen(id).await? {
            return Ok(());
        }
        self.runtime.resume(id).await
    }

    /// The runtime's own word: `state` says `paused`.
    async fn frozen(&self, id: &str) -> Result<bool> {
        if self.running(id).await?.is_none() {
            return Ok(false);
        }
        Ok(self
            .runtime
            .state(id)
            .await?
            .is_some_and(|s| s.status == "paused"))
    }

    async fn attach_mount(&self, id: &str, mount: &drivers::BindMount) -> Result<()> {
        let Some(w) = self.running(id).await? else {
            return Err(DriverError::NotRunning);
        };
        let (pid, mount) = (w.pid(), mount.clone());
        tokio::task::spawn_blocking(move || crate::hotplug::attach(pid, &mount))
            .await
            .map_err(|e| DriverError::Invalid(format!("the mount task failed: {e}")))?
    }

    async fn detach_mount(&self, id: &str, target: &str) -> Result<()> {
        let Some(w) = self.running(id).await? else {
            return Err(DriverError::NotRunning);
        };
        let (pid, target) = (w.pid(), target.to_string());
        tokio::task::spawn_blocking(move || crate::hotplug::detach(pid, &target))
            .await
            .map_err(|e| DriverError::Invalid(format!("the unmount task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_old_pid_file_is_emptied_in_place_and_an_empty_one_left_alone() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PID_FILE);
        for empty in [empty_pid_file, empty_stale_pid_file] {
            empty(&path);
            assert!(!path.exists(), "no file is made where there was none");
            std::fs::write(&path, "4194304\n").unwrap();
            let inode = std::fs::metadata(&path).unwrap().ino();
            empty(&path);
            let after = std::fs::metadata(&path).unwrap();
            assert_eq!((after.ino(), after.len()), (inode, 0));
            // Dated in the past: a truncation would make it now.
            let past = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(past)
                .unwrap();
            empty_stale_pid_file(&path);
            let again = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert_eq!(again, past, "an empty file is left alone");
            std::fs::remove_file(&path).unwrap();
        }
    }

    fn input(run_dir: &std::path::Path) -> InstanceSpec {
        InstanceSpec {
            id: "default_c1".into(),
            name: "c1".into(),
            rootfs: "/var/lib/drover/c1/rootfs".into(),
            run_dir: run_dir.to_path_buf(),
            config: std::collections::BTreeMap::new(),
            init: vec!["/sbin/init".into()],
            env: vec![],
            mounts: vec![],
        }
    }

    fn known(spec: &InstanceSpec) -> KnownBundle {
        let oci = build_spec(spec, "/drover/default_c1").unwrap();
        KnownBundle {
            input: spec.clone(),
            cgroups_path: "/drover/default_c1".into(),
            written: write_bundle_cached(&spec.run_dir, oci, None).unwrap(),
        }
    }

    #[test]
    fn a_known_bundle_serves_only_the_same_input_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = input(dir.path());
        let k = known(&spec);
        assert!(k.serves(&spec, "/drover/default_c1"));
        assert!(!k.serves(&spec, "/other/default_c1"));
        let mut limited = spec.clone();
        limited.config.insert("limits.cpu".into(), "1".into());
        assert!(!k.serves(&limited, "/drover/default_c1"));
        let mut mounted = spec.clone();
        mounted.mounts.push(drivers::BindMount {
            source: "/srv".into(),
            target: "/srv".into(),
            readonly: true,
        });
        assert!(!k.serves(&mounted, "/drover/default_c1"));
        // A share of the host's RAM is read when the spec is built: always rebuilt.
        let mut relative = spec.clone();
        relative.config.insert("limits.memory".into(), "50%".into());
        assert!(!known(&relative).serves(&relative, "/drover/default_c1"));
        // The file replaced (or removed) behind the driver's back.
        let path = dir.path().join("config.json");
        std::fs::remove_file(&path).unwrap();
        assert!(!k.serves(&spec, "/drover/default_c1"));
        std::fs::write(&path, b"{}").unwrap();
        assert!(!k.serves(&spec, "/drover/default_c1"));
    }

    #[test]
    fn describe_is_name_and_version() {
        let rt = Runtime::new(RuntimeKind::Crun, "/nonexistent");
        let d = OciDriver::from_parts(rt, "crun version 1.8.1".into());
        assert_eq!(d.describe(), "crun 1.8.1");
        assert_eq!(d.runtime_name(), "crun");
        let rt = Runtime::new(RuntimeKind::Runc, "/nonexistent");
        let d = OciDriver::from_parts(rt, "runc version 1.1.5+ds1".into());
        assert_eq!(d.describe(), "runc 1.1.5+ds1");
    }
}

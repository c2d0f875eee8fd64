//! The daemon's shared state: the services every handler reaches through.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use db::Store;
use drivers::InstanceDriver;

use crate::error::{ApiError, ApiResult};
use crate::exec::ExecSessions;

/// Paths and names fixed at start-up.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `$DROVER_DIR`.
    pub state_dir: PathBuf,
    /// `$DROVER_DIR/unix.socket`.
    pub socket: PathBuf,
    /// `$DROVER_DIR/images`: image files and their unpacked trees.
    pub images: PathBuf,
    /// `$DROVER_DIR/containers`: per-instance runtime files (bundle, console log).
    pub run: PathBuf,
    /// `$DROVER_DIR/storage-pools`: default place of pools.
    pub pools: PathBuf,
}

impl Paths {
    /// The layout under `state_dir`.
    pub fn new(state_dir: PathBuf) -> Self {
        Self {
            socket: state_dir.join("unix.socket"),
            images: state_dir.join("images"),
            run: state_dir.join("containers"),
            pools: state_dir.join("storage-pools"),
            state_dir,
        }
    }
}

/// A running instance as this daemon knows it: PID 1 and its start time (to tell a reused
/// pid from ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// PID 1 on the host.
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22 when we saw it start.
    pub start_time: u64,
}

/// Everything handlers reach. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Daemon {
    inner: Arc<Inner>,
}

/// The parts of [`Daemon`].
#[derive(Debug)]
pub struct Inner {
    /// Paths.
    pub paths: Paths,
    /// This member's name (`"none"` until clustered): read it with [`Daemon::member`].
    pub member: std::sync::RwLock<String>,
    /// The cluster DB, for reads. Writes go through `replicator`.
    pub store: Arc<Store>,
    /// This member's Raft node: every DB write is proposed through it. Replaced when the
    /// member joins a cluster: reach it with [`Daemon::replicator`].
    pub replicator: std::sync::RwLock<raft::Replicator>,
    /// Operations.
    pub ops: ops::Registry,
    /// Events.
    pub bus: ops::EventBus,
    /// The container runtime.
    pub driver: Arc<dyn InstanceDriver>,
    /// The VM driver (also behind `driver`), when QEMU is usable: live migration.
    pub vms: Option<driver_qemu::QemuDriver>,
    /// `"crun"` or `"runc"`.
    pub runtime_name: String,
    /// Image files.
    pub images: storage::ImageStore,
    /// Instances whose PID 1 this daemon knows, by runtime id.
    pub running: Mutex<HashMap<String, Running>>,
    /// Instances of `running` that are frozen (`lxc pause`), by runtime id.
    pub frozen: Mutex<HashSet<String>>,
    /// Names being created (reserved until their DB row exists).
    pub creating: Mutex<HashSet<String>>,
    /// One lock per instance, serializing its lifecycle changes.
    pub locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Exec sessions waiting for or using websockets.
    pub exec: ExecSessions,
    /// This member's certificate and HTTPS listener.
    pub https: crate::https::Https,
    /// Certificate add tokens not used yet.
    pub cert_tokens: crate::certificates::Tokens,
    /// Images being fetched from other members.
    pub image_fetches: crate::image_share::Fetches,
    /// The cluster certificate and what joining needs.
    pub cluster: crate::cluster::ClusterState,
    /// Member, profile and pool records read by starts, per config generation.
    pub records: crate::instances::records::RecordCache,
    /// The config generation (plus one; 0: none) at which this member's binary was last
    /// found not behind the cluster's schema ([`crate::cluster::version::check_writable`]).
    pub writable_at: std::sync::atomic::AtomicU64,
}

impl std::ops::Deref for Daemon {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Daemon {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Runs a DB read off the async executor.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite_conn::Connection) -> db::Result<T> + Send + 'static,
    ) -> ApiResult<T> {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || store.read(f)).await??)
    }

    /// Commits one DB command through the Raft leader and returns once it is applied.
    ///
    /// Refused while this member's binary is behind the cluster's schema
    /// ([`crate::cluster::version::check_writable`]).
    pub async fn write(&self, cmd: db::Command) -> ApiResult<()> {
        crate::cluster::version::check_writable(self).await?;
        Ok(self.replicator().propose(cmd).await?)
    }

    /// This member's Raft node (the current one: a join replaces it).
    pub fn replicator(&self) -> raft::Replicator {
        self.replicator
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// This member's name (`"none"` until clustered).
    pub fn member(&self) -> String {
        self.member
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Renames this member (clustering enabled, or joined); new operations carry the name.
    pub fn set_member(&self, name: &str) {
        *self
            .member
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name.to_string();
        self.bus.set_location(name);
    }

    /// The lock of instance `id`.
    pub fn instance_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(id.to_string()).or_default().clone()
    }

    /// Fails unless `project` is one drover has (only `default` so far).
    pub fn check_project(project: &str) -> ApiResult<()> {
        if project == "default" {
            Ok(())
        } else {
            Err(ApiError::not_found("Project not found"))
        }
    }
}

/// Locks a std mutex, ignoring poisoning (the data are plain maps, valid after a panic).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Re-export so callers need not name rusqlite.
pub mod rusqlite_conn {
    pub use db::Connection;
}

/// Runs `f`, short blocking work on the request's path (one hold of the DB, a few calls on
/// local files: ~0.3 ms), on this worker thread: `block_in_place` hands the thread's other
/// tasks to another worker first, so nothing waits behind it.
///
/// A hand-off to a blocking thread (`spawn_blocking`) costs two thread wake-ups, and on a
/// busy machine each may wait for a CPU: timed over 80 starts at load 9–13, the way there
/// and back took 0.07 ms at the median but 1.0–2.8 ms on average, more than the work. On a
/// current-thread runtime (tests) `block_in_place` is not allowed: there it is handed off.
pub(crate) async fn blocking_in_place<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        Ok(tokio::task::block_in_place(f))
    } else {
        tokio::task::spawn_blocking(f).await
    }
}

/// Runs `task` here up to its first wait, then spawns the rest: an operation's work begins
/// before the request that made it is answered, not after.
///
/// A spawned task runs once its spawner yields: after the handler built and wrote its
/// answer (~0.05 ms of a start's path, measured). A start's first steps end in the runtime's
/// `posix_spawn`; run here, the runtime starts PID 1 while the answer goes out. What `task`
/// registers in this first poll wakes this handler's task once, harmlessly: the spawned task
/// polls again at once and registers itself.
pub(crate) async fn spawn_started(task: impl Future<Output = ()> + Send + 'static) {
    let mut task = Box::pin(task);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(task.as_mut().poll(cx))).await;
    if first.is_pending() {
        tokio::spawn(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blocking_work_runs_on_a_current_thread_runtime() {
        assert_eq!(blocking_in_place(|| 7).await.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_started_task_runs_to_its_first_wait_before_the_caller_goes_on() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let steps = Arc::new(Mutex::new(Vec::new()));
        let seen = steps.clone();
        spawn_started(async move {
            lock(&seen).push("before the wait");
            let _ = rx.await;
            lock(&seen).push("after the wait");
        })
        .await;
        assert_eq!(*lock(&steps), ["before the wait"]);
        tx.send(()).expect("the task waits");
        for _ in 0..100 {
            if lock(&steps).len() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(*lock(&steps), ["before the wait", "after the wait"]);
    }

    #[tokio::test]
    async fn a_task_that_never_waits_finishes_in_place() {
        let steps = Arc::new(Mutex::new(0));
        let seen = steps.clone();
        spawn_started(async move { *lock(&seen) += 1 }).await;
        assert_eq!(*lock(&steps), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_work_runs_in_place_on_a_multi_thread_runtime() {
        let here = std::thread::current().id();
        let ran_on = blocking_in_place(|| std::thread::current().id()).await.ok();
        assert_eq!(ran_on, Some(here));
    }
}

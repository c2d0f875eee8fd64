//! The operations registry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::{Operation, OperationClass, OperationStatus};
use tokio::sync::watch;

use crate::{EventBus, now_rfc3339};

/// How long a finished operation stays visible.
const KEEP_FINISHED: Duration = Duration::from_secs(300);

struct Entry {
    tx: watch::Sender<Operation>,
    finished_at: Option<Instant>,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The operations, and the finished ones in the order they finished (so that pruning
/// looks only at those old enough to go, not at every operation on each create).
#[derive(Default)]
struct Ops {
    map: HashMap<String, Entry>,
    finished: VecDeque<(Instant, String)>,
}

impl Ops {
    /// Forgets the operations finished `KEEP_FINISHED` or more before `now`.
    fn prune(&mut self, now: Instant) {
        let expired =
            |(at, _): &mut (Instant, String)| now.saturating_duration_since(*at) >= KEEP_FINISHED;
        while let Some((at, id)) = self.finished.pop_front_if(expired) {
            // An id given again (a resumed evacuation's) belongs to the newer operation.
            if self.map.get(&id).is_some_and(|e| e.finished_at == Some(at)) {
                self.map.remove(&id);
            }
        }
    }
}

/// All operations of this member.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Ops>>,
    /// Where operations are published; its location (this member's name) is also the one
    /// stamped on new operations, so the two never disagree.
    bus: EventBus,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

/// Why a wait ended without a final status.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// No such operation.
    #[error("Operation not found")]
    NotFound,
}

impl Registry {
    /// An empty registry publishing on `bus`, stamping new operations with the bus's
    /// location ([`EventBus::set_location`] renames both).
    pub fn new(bus: EventBus) -> Self {
        Self {
            inner: Arc::default(),
            bus,
        }
    }

    /// The member name stamped on new operations.
    pub fn location(&self) -> String {
        self.bus.location()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates a running operation and returns its handle.
    pub fn create(
        &self,
        class: OperationClass,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
        metadata: Option<serde_json::Value>,
    ) -> OpHandle {
        let id = uuid::Uuid::new_v4().to_string();
        self.create_with_id(id, class, description, resources, metadata)
    }

    /// [`Registry::create`] under a given `id`: work that a restarted daemon carries on
    /// (an evacuation resumed from its journal) keeps the id clients already wait on.
    pub fn create_with_id(
        &self,
        id: String,
        class: OperationClass,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
        metadata: Option<serde_json::Value>,
    ) -> OpHandle {
        let now = now_rfc3339();
        let op = Operation {
            id,
            class,
            description: description.to_string(),
            created_at: now.clone(),
            updated_at: now,
            status: OperationStatus::Running,
            status_code: OperationStatus::Running.code(),
            resources: if resources.is_empty() {
                None
            } else {
                Some(resources)
            },
            metadata,
            may_cancel: false,
            err: String::new(),
            location: self.location(),
        };
        let (tx, _) = watch::channel(op.clone());
        {
            let mut ops = self.lock();
            ops.prune(Instant::now());
            ops.map.insert(
                op.id.clone(),
                Entry {
                    tx,
                    finished_at: None,
                    cancel: None,
                },
            );
        }
        // LXD announces a new operation twice: created (`Pending`), then started.
        if self.bus.has_listeners() {
            self.publish(&Operation {
                status: OperationStatus::Pending,
                status_code: OperationStatus::Pending.code(),
                ..op.clone()
            });
        }
        self.publish(&op);
        OpHandle {
            registry: self.clone(),
            id: op.id,
        }
    }

    fn publish(&self, op: &Operation) {
        if !self.bus.has_listeners() {
            return;
        }
        self.bus.publish(
            "operation",
            serde_json::to_value(op).unwrap_or(serde_json::Value::Null),
            Some("default"),
        );
    }

    /// Records an operation whose work is already done (LXD answers some synchronous
    /// changes, like `PUT /1.0/instances/{name}`, with an operation) and returns it, final.
    pub fn completed(
        &self,
        class: OperationClass,
        description: &str,
        resources: BTreeMap<String, Vec<String>>,
    ) -> Operation {
        let op = self.create(class, description, resources, None);
        let id = op.id().to_string();
        op.succeed(None);
        self.get(&id).unwrap_or_else(|| unreachable_record(&id))
    }

    /// The operation `id`.
    pub fn get(&self, id: &str) -> Option<Operation> {
        self.lock().map.get(id).map(|e| e.tx.borrow().clone())
    }

    /// All operations, oldest first.
    pub fn list(&self) -> Vec<Operation> {
        let mut ops: Vec<_> = self
            .lock()
            .map
            .values()
            .map(|e| e.tx.borrow().clone())
            .collect();
        ops.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        ops
    }

    /// Waits until `id` is final or `timeout` passes (`None`: forever), and returns its
    /// record then.
    pub async fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<Operation, WaitError> {
        let mut rx = self
            .lock()
            .map
            .get(id)
            .map(|e| e.tx.subscribe())
            .ok_or(WaitError::NotFound)?;
        let done = async {
            // The sender lives as long as the entry; if it is pruned we return what we have.
            let _ = rx.wait_for(|op| op.status.is_final()).await;
            rx.borrow().clone()
        };
        match timeout {
            Some(t) => match tokio::time::timeout(t, done).await {
                Ok(op) => Ok(op),
                Err(_) => self.get(id).ok_or(WaitError::NotFound),
            },
            None => Ok(done.await),
        }
    }

    /// Asks a cancellable operation to stop. Returns false if it cannot be cancelled.
    pub fn cancel(&self, id: &str) -> Result<bool, WaitError> {
        let mut ops = self.lock();
        let entry = ops.map.get_mut(id).ok_or(WaitError::NotFound)?;
        match entry.cancel.take() {
            Some(tx) => {
                let _ = tx.send(());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Operation)) {
        let snapshot = {
            let mut ops = self.lock();
            let ops = &mut *ops;
            let Some(entry) = ops.map.get_mut(id) else {
                return;
            };
            let mut finished = false;
            let mut changed = false;
            entry.tx.send_if_modified(|op| {
                if op.status.is_final() {
                    return false;
                }
                changed = true;
                f(op);
                op.updated_at = now_rfc3339();
                op.status_code = op.status.code();
                finished = op.status.is_final();
                true
            });
            if !changed {
                return;
            }
            if finished {
                let at = Instant::now();
                entry.finished_at = Some(at);
                entry.cancel = None;
                ops.finished.push_back((at, id.to_string()));
            }
            self.bus.has_listeners().then(|| entry.tx.borrow().clone())
        };
        if let Some(snapshot) = snapshot {
            self.publish(&snapshot);
        }
    }
}

/// The running side of one operation: report progress, then finish it exactly once.
///
/// Dropping a handle of an operation that is not final marks it failed, so a panicking or
/// forgotten task never leaves a client waiting forever.
#[derive(Debug)]
pub struct OpHandle {
    registry: Registry,
    id: String,
}

impl OpHandle {
    /// The operation id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `/1.0/operations/<id>`.
    pub fn url(&self) -> String {
        format!("/1.0/operations/{}", self.id)
    }

    /// The current record.
    pub fn record(&self) -> Operation {
        self.registry
            .get(&self.id)
            .unwrap_or_else(|| unreachable_record(&self.id))
    }

    /// Makes the operation cancellable; the returned receiver fires on `DELETE`.
    pub fn cancellable(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Some(e) = self.registry.lock().map.get_mut(&self.id) {
            e.cancel = Some(tx);
        }
        self.registry.update(&self.id, |op| op.may_cancel = true);
        rx
    }

    /// Replaces the progress metadata.
    pub fn set_metadata(&self, metadata: serde_json::Value) {
        self.registry
            .update(&self.id, |op| op.metadata = Some(metadata));
    }

    /// Finishes with success, optionally replacing the metadata.
    pub fn succeed(self, metadata: Option<serde_json::Value>) {
        self.registry.update(&self.id, |op| {
            op.status = OperationStatus::Success;
            if metadata.is_some() {
                op.metadata = metadata;
            }
        });
    }

    /// Finishes with failure `err`.
    pub fn fail(self, err: impl Into<String>) {
        let err = err.into();
        self.registry.update(&self.id, |op| {
            op.status = OperationStatus::Failure;
            op.err = err;
        });
    }

    /// Finishes as cancelled.
    pub fn cancelled(self) {
        self.registry.update(&self.id, |op| {
            op.status = OperationStatus::Cancelled;
            op.err = "Operation cancelled".into();
        });
    }
}

fn unreachable_record(id: &str) -> Operation {
    Operation {
        id: id.to_string(),
        class: OperationClass::Task,
        description: String::new(),
        created_at: String::new(),
        updated_at: String::new(),
        status: OperationStatus::Failure,
        status_code: OperationStatus::Failure.code(),
        resources: None,
        metadata: None,
        may_cancel: false,
        err: "operation record was pruned".into(),
        location: String::new(),
    }
}

impl Drop for OpHandle {
    fn drop(&mut self) {
        // No-op when already final (update ignores final operations).
        self.registry.update(&self.id, |op| {
            op.status = OperationStatus::Failure;
            op.err = "operation ended without a result".into();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_see_the_final_state_and_events_flow() {
        let bus = EventBus::new("none");
        let mut events = bus.subscribe();
        let reg = Registry::new(bus);
        let op = reg.create(
            OperationClass::Task,
            "Starting instance",
            BTreeMap::new(),
            None,
        );
        let id = op.id().to_string();

        let waiter = {
            let reg = reg.clone();
            let id = id.clone();
            tokio::spawn(async move { reg.wait(&id, Some(Duration::from_secs(10))).await })
        };
        op.set_metadata(serde_json::json!({"progress": "half"}));
        op.succeed(None);
        let done = waiter.await.expect("joins").expect("found");
        assert_eq!(done.status, OperationStatus::Success);
        assert_eq!(done.status_code, 200);
        assert_eq!(done.metadata, Some(serde_json::json!({"progress": "half"})));

        let mut statuses = Vec::new();
        while let Ok(ev) = events.try_recv() {
            assert_eq!(ev.kind, "operation");
            statuses.push(
                ev.metadata["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        assert_eq!(statuses, ["Pending", "Running", "Running", "Success"]);
    }

    #[tokio::test]
    async fn a_dropped_handle_fails_the_operation_and_timeouts_return_current() {
        let reg = Registry::new(EventBus::new("none"));
        let op = reg.create(OperationClass::Task, "x", BTreeMap::new(), None);
        let id = op.id().to_string();
        let running = reg
            .wait(&id, Some(Duration::from_millis(1)))
            .await
            .expect("found");
        assert_eq!(running.status, OperationStatus::Running);
        drop(op);
        let failed = reg.wait(&id, None).await.expect("found");
        assert_eq!(failed.status, OperationStatus::Failure);
        assert!(matches!(
            reg.wait("nope", None).await,
            Err(WaitError::NotFound)
        ));
    }

    #[tokio::test]
    async fn finished_operations_are_kept_their_time_and_no_longer() {
        let reg = Registry::new(EventBus::new("none"));
        let done = reg.create(OperationClass::Task, "done", BTreeMap::new(), None);
        let done_id = done.id().to_string();
        done.succeed(None);
        let running = reg.create(OperationClass::Task, "running", BTreeMap::new(), None);
        let later = reg.create(OperationClass::Task, "later", BTreeMap::new(), None);
        let later_id = later.id().to_string();
        later.succeed(None);
        let finished_at = |id: &str| reg.lock().map.get(id).and_then(|e| e.finished_at);
        let (Some(first), Some(second)) = (finished_at(&done_id), finished_at(&later_id)) else {
            panic!("both finished operations have a finish time");
        };
        assert!(first <= second);

        // Just before the first one's time is up: all stay.
        reg.lock()
            .prune(first + KEEP_FINISHED - Duration::from_millis(1));
        assert_eq!(reg.list().len(), 3);
        // The first one's time is up, not the second's; a running one never goes.
        reg.lock().prune(first + KEEP_FINISHED);
        assert!(reg.get(&done_id).is_none());
        assert!(reg.get(running.id()).is_some());
        if second > first {
            assert!(reg.get(&later_id).is_some());
        }
        reg.lock().prune(second + KEEP_FINISHED);
        assert!(reg.get(&later_id).is_none());
        assert_eq!(reg.list().len(), 1);
        assert!(reg.lock().finished.is_empty());
    }

    #[tokio::test]
    async fn a_reused_id_keeps_the_newer_operation() {
        let reg = Registry::new(EventBus::new("none"));
        let old = reg.create_with_id(
            "evac".into(),
            OperationClass::Task,
            "old",
            BTreeMap::new(),
            None,
        );
        old.succeed(None);
        let Some(at) = reg.lock().map.get("evac").and_then(|e| e.finished_at) else {
            panic!("the old operation finished");
        };
        // A resumed evacuation takes the id again while the old record is still kept.
        let new = reg.create_with_id(
            "evac".into(),
            OperationClass::Task,
            "new",
            BTreeMap::new(),
            None,
        );
        reg.lock().prune(at + KEEP_FINISHED);
        let kept = reg.get("evac").expect("the newer operation stays");
        assert_eq!(kept.description, "new");
        assert_eq!(kept.status, OperationStatus::Running);
        drop(new);
    }
}

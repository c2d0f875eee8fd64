//! A small asynchronous QMP client: one connection to a QEMU monitor socket, commands matched
//! to their replies by `id`, asynchronous events fanned out to subscribers. Every call has a
//! deadline.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, oneshot, watch};

/// Default deadline of one QMP command.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Socket I/O failed.
    #[error("QMP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// No answer within the deadline.
    #[error("QMP {command}: no answer within {timeout:?}")]
    Timeout {
        /// The command (or `connect`).
        command: String,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// The monitor closed the connection (QEMU exited).
    #[error("QMP connection closed (QEMU exited)")]
    Disconnected,
    /// QEMU refused the command.
    #[error("QMP {command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QMP error class (`GenericError`, ...).
        class: String,
        /// QEMU's description.
        desc: String,
    },
    /// Something that is not QMP came in.
    #[error("QMP protocol: {0}")]
    Protocol(String),
}

/// An asynchronous event from QEMU (`SHUTDOWN`, `MIGRATION`, `RESUME`, ...).
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// Event name.
    pub event: String,
    /// Its `data` (null when absent).
    pub data: Value,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, QmpError>>>>>;

/// A connected, negotiated QMP session. Cheap to share behind an `Arc`; calls may run
/// concurrently.
#[derive(Debug)]
pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Receiver<bool>,
    version: String,
    reader: tokio::task::AbortHandle,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The reader task holds the socket's read half: stop it, so the monitor (which serves
        // one client at a time) is free for the next connection.
        self.reader.abort();
    }
}

impl Qmp {
    /// Connects to the monitor at `path`, reads the greeting and negotiates capabilities,
    /// all within `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = tokio::time::timeout_at(deadline, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout {
                command: "connect".into(),
                timeout,
            })??;
        let (read, writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .map_err(|_| QmpError::Timeout {
                command: "greeting".into(),
                timeout,
            })??
            .ok_or(QmpError::Disconnected)?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| QmpError::Protocol(format!("greeting: {e}")))?;
        let v = &greeting["QMP"]["version"]["qemu"];
        if v.is_null() {
            return Err(QmpError::Protocol(format!(
                "not a QMP greeting: {greeting}"
            )));
        }
        let version = format!("{}.{}.{}", v["major"], v["minor"], v["micro"]);

        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(256);
        let (closed_tx, closed) = watch::channel(false);
        let reader = tokio::spawn(read_loop(lines, pending.clone(), events.clone(), closed_tx))
            .abort_handle();
        let qmp = Qmp {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            events,
            closed,
            version,
            reader,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        qmp.execute(
            "qmp_capabilities",
            None,
            left.max(Duration::from_millis(100)),
        )
        .await?;
        Ok(qmp)
    }

    /// QEMU's version from the greeting (`"7.2.22"`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether the connection is gone (QEMU exited or closed the monitor).
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the connection closes, at most `timeout`; true when it did.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let mut closed = self.closed.clone();
        tokio::time::timeout(timeout, closed.wait_for(|c| *c))
            .await
            .is_ok()
    }

    /// Subscribes to the events that arrive from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QmpEvent> {
        self.events.subscribe()
    }

    /// Runs `command` with `arguments` and returns its `return` value, or fails after
    /// `timeout`.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        if self.is_closed() {
            return Err(QmpError::Disconnected);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let sent = tokio::time::timeout(timeout, async {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await
        })
        .await;
        let fail = |e: QmpError| {
            lock(&self.pending).remove(&id);
            Err(e)
        };
        match sent {
            Err(_) => {
                return fail(QmpError::Timeout {
                    command: command.into(),
                    timeout,
                });
            }
            Ok(Err(e)) => return fail(e.into()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => fail(QmpError::Timeout {
                command: command.into(),
                timeout,
            }),
            Ok(Err(_)) => Err(QmpError::Disconnected),
            Ok(Ok(Err(QmpError::Command { class, desc, .. }))) => Err(QmpError::Command {
                command: command.into(),
                class,
                desc,
            }),
            Ok(Ok(r)) => r,
        }
    }

    /// `query-status`: the run state (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    pub async fn query_status(&self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None, QMP_TIMEOUT).await?;
        r["status"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| QmpError::Protocol(format!("query-status: {r}")))
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.execute("system_powerdown", None, QMP_TIMEOUT)
            .await
            .map(drop)
    }

    /// `quit`: QEMU exits at once. A connection closed before the answer counts as done.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.execute("quit", None, QMP_TIMEOUT).await {
            Ok(_) | Err(QmpError::Disconnected) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `stop`: pauses the guest's vCPUs (its run state becomes `paused`).
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.execute("stop", None, QMP_TIMEOUT).await.map(drop)
    }

    /// `cont`: resumes a paused guest.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.execute("cont", None, QMP_TIMEOUT).await.map(drop)
    }

    /// `migrate-set-parameters` with the given object.
    pub async fn migrate_set_parameters(&self, params: Value) -> Result<(), QmpError> {
        self.execute("migrate-set-parameters", Some(params), QMP_TIMEOUT)
            .await
            .map(drop)
    }

    /// `migrate-set-capabilities`: sets each `(capability, state)`.
    pub async fn migrate_set_capabilities(&self, caps: &[(&str, bool)]) -> Result<(), QmpError> {
        let list: Vec<Value> = caps
            .iter()
            .map(|(c, s)| json!({ "capability": c, "state": s }))
            .collect();
        self.execute(
            "migrate-set-capabilities",
            Some(json!({ "capabilities": list })),
            QMP_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// `migrate`: starts sending the VM to `uri` (`tcp:host:port`, `unix:/path`).
    pub async fn migrate(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", Some(json!({ "uri": uri })), QMP_TIMEOUT)
            .await
            .map(drop)
    }

    /// `migrate-incoming`: a QEMU started with `-incoming defer` listens on `uri`.
    pub async fn migrate_incoming(&self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri })), QMP_TIMEOUT)
            .await
            .map(drop)
    }

    /// `migrate_cancel`.
    pub async fn migrate_cancel(&self) -> Result<(), QmpError> {
        self.execute("migrate_cancel", None, QMP_TIMEOUT)
            .await
            .map(drop)
    }

    /// `query-migrate`: the raw answer (status, times, `ram` counters).
    pub async fn query_migrate(&self) -> Result<Value, QmpError> {
        self.execute("query-migrate", None, QMP_TIMEOUT).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn read_loop(
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    pending: Pending,
    events: broadcast::Sender<QmpEvent>,
    closed: watch::Sender<bool>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            tracing::debug!(%line, "QMP: unparsable line");
            continue;
        };
        if let Some(event) = msg["event"].as_str() {
            let _ = events.send(QmpEvent {
                event: event.to_owned(),
                data: msg["data"].clone(),
            });
            continue;
        }
        let Some(id) = msg["id"].as_u64() else {
            continue;
        };
        let Some(tx) = lock(&pending).remove(&id) else {
            continue;
        };
        let result = if let Some(err) = msg.get("error") {
            Err(QmpError::Command {
                command: String::new(),
                class: err["class"].as_str().unwrap_or("GenericError").to_owned(),
                desc: err["desc"].as_str().unwrap_or_default().to_owned(),
            })
        } else {
            Ok(msg.get("return").cloned().unwrap_or(Value::Null))
        };
        let _ = tx.send(result);
    }
    let _ = closed.send(true);
    // Fail whatever still waits: dropping the senders wakes them with Disconnected.
    lock(&pending).clear();
}

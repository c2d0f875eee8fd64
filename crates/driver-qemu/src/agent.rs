//! Host side of the guest exec agent (`images/busybox-vm/agent`), spoken over the
//! virtio-serial port `org.drover.agent`, which QEMU exposes as a unix socket.
//!
//! One line per message, fields separated by one space, payloads in base64:
//! host → guest `P id` (ping), `E id script` (run `sh script`), `I id data` (stdin),
//! `C id` (close stdin), `K id signal`; guest → host `P id`, `O id data` (stdout),
//! `R id data` (stderr), `X id code` (exit code, after all its output), `H agent` (hello).
//! Commands are multiplexed by id on the one connection.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

/// Name of the virtio-serial port the agent listens on.
pub const AGENT_PORT_NAME: &str = "org.drover.agent";

/// Errors talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Socket I/O failed.
    #[error("VM agent I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The agent did not answer within the deadline (still booting, or no agent in the image).
    #[error("VM agent: no answer within {0:?}")]
    Timeout(Duration),
    /// The agent did not answer a ping within the deadline: the guest is still booting, or
    /// its image runs no agent. Worded as LXD says it.
    #[error("VM agent isn't currently running (no answer within {}s)", .0.as_secs_f32().round())]
    NotRunning(Duration),
    /// The connection closed (the VM stopped).
    #[error("VM agent connection closed")]
    Disconnected,
}

/// What a running command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// Bytes on stdout.
    Stdout(Vec<u8>),
    /// Bytes on stderr.
    Stderr(Vec<u8>),
    /// The exit code; the last event of a command.
    Exit(i32),
}

type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<AgentEvent>>>>;
type Pings = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

/// A connection to the agent of one VM.
#[derive(Debug)]
pub struct Agent {
    out: mpsc::UnboundedSender<String>,
    routes: Routes,
    pings: Pings,
    next: AtomicU64,
    closed: watch::Receiver<bool>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for Agent {
    fn drop(&mut self) {
        // Close the socket now (QEMU's side accepts one client at a time), even while
        // command handles still hold senders.
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Agent {
    /// Connects to the agent socket at `path` (the QEMU side of the port; it accepts one
    /// client at a time) and waits until the agent answers a ping, at most `timeout`.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Agent, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let agent = Agent::open(path, timeout).await?;
        agent.wait_ready(deadline).await?;
        Ok(agent)
    }

    /// Connects to the agent socket at `path` within `timeout`, without waiting for the
    /// agent: for a guest that is paused (the target of a live migration, connected before
    /// it resumes so that the port's host side never looks closed to the guest).
    pub async fn open(path: &Path, timeout: Duration) -> Result<Agent, AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let stream = tokio::time::timeout_at(deadline, UnixStream::connect(path))
            .await
            .map_err(|_| AgentError::Timeout(timeout))??;
        let (read, mut write) = stream.into_split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let routes: Routes = Arc::default();
        let pings: Pings = Arc::default();
        let (closed_tx, closed) = watch::channel(false);
        let writer = tokio::spawn(async move {
            while let Some(line) = out_rx.recv().await {
                tracing::trace!(line = %line.chars().take(80).collect::<String>(), "VM agent: out");
                if write.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let reader = tokio::spawn(read_loop(read, routes.clone(), pings.clone(), closed_tx));
        // Ids differ between connections, so a late line of an earlier connection's command
        // never reaches a new one.
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
            & 0xffff_ffff_ffff;
        let agent = Agent {
            out,
            routes,
            pings,
            next: AtomicU64::new(base << 12),
            closed,
            tasks: [writer.abort_handle(), reader.abort_handle()],
        };
        Ok(agent)
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    fn id(&self) -> String {
        format!("{:x}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Pings every 250 ms until one answer comes back, until `deadline`. Before the guest
    /// opens the port, QEMU holds what the host writes, so early pings are answered late:
    /// any of them counts.
    async fn wait_ready(&self, deadline: tokio::time::Instant) -> Result<(), AgentError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let start = tokio::time::Instant::now();
        let mut ids = Vec::new();
        let result = loop {
            let id = self.id();
            let (ptx, prx) = oneshot::channel();
            lock(&self.pings).insert(id.clone(), ptx);
            ids.push(id.clone());
            let tx = tx.clone();
            tokio::spawn(async move {
                if prx.await.is_ok() {
                    let _ = tx.send(());
                }
            });
            if self.out.send(format!("P {id}\n")).is_err() {
                break Err(AgentError::Disconnected);
            }
            let tick = (tokio::time::Instant::now() + Duration::from_millis(250)).min(deadline);
            match tokio::time::timeout_at(tick, rx.recv()).await {
                Ok(Some(())) => break Ok(()),
                Ok(None) => break Err(AgentError::Disconnected),
                Err(_) if tick >= deadline => break Err(AgentError::NotRunning(deadline - start)),
                Err(_) => {}
            }
            if self.is_closed() {
                break Err(AgentError::Disconnected);
            }
        };
        let mut pings = lock(&self.pings);
        for id in ids {
            pings.remove(&id);
        }
        result
    }

    /// Starts `sh -c script` in the guest.
    pub fn spawn(&self, script: &str) -> Result<AgentExec, AgentError> {
        let id = self.id();
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.routes).insert(id.clone(), tx);
        let line = format!("E {id} {}\n", B64.encode(script));
        if self.is_closed() || self.out.send(line).is_err() {
            lock(&self.routes).remove(&id);
            return Err(AgentError::Disconnected);
        }
        Ok(AgentExec {
            id,
            out: self.out.clone(),
            rx,
        })
    }

    /// Runs `script` with no stdin and collects its output, at most `timeout`.
    pub async fn run(&self, script: &str, timeout: Duration) -> Result<Output, AgentError> {
        let mut exec = self.spawn(script)?;
        exec.close_stdin();
        let mut output = Output::default();
        let collect = async {
            while let Some(ev) = exec.next().await {
                match ev {
                    AgentEvent::Stdout(b) => output.stdout.extend_from_slice(&b),
                    AgentEvent::Stderr(b) => output.stderr.extend_from_slice(&b),
                    AgentEvent::Exit(code) => {
                        output.code = code;
                        return Ok(());
                    }
                }
            }
            Err(AgentError::Disconnected)
        };
        match tokio::time::timeout(timeout, collect).await {
            Ok(Ok(())) => Ok(output),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                exec.signal(9);
                Err(AgentError::Timeout(timeout))
            }
        }
    }
}

/// Collected output of [`Agent::run`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// All stdout bytes.
    pub stdout: Vec<u8>,
    /// All stderr bytes.
    pub stderr: Vec<u8>,
    /// Exit code (128 + N when killed by signal N).
    pub code: i32,
}

/// One command running in the guest.
#[derive(Debug)]
pub struct AgentExec {
    id: String,
    out: mpsc::UnboundedSender<String>,
    rx: mpsc::UnboundedReceiver<AgentEvent>,
}

impl AgentExec {
    /// Its id on the connection.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A handle that can signal the command or feed its stdin from another task.
    pub fn control(&self) -> AgentControl {
        AgentControl {
            id: self.id.clone(),
            out: self.out.clone(),
        }
    }

    /// Sends bytes to its stdin.
    pub fn write_stdin(&self, data: &[u8]) {
        self.control().write_stdin(data);
    }

    /// Closes its stdin.
    pub fn close_stdin(&self) {
        self.control().close_stdin();
    }

    /// Sends signal number `signal` to it.
    pub fn signal(&self, signal: i32) {
        self.control().signal(signal);
    }

    /// The next event; `None` when the connection closed before the exit code came.
    pub async fn next(&mut self) -> Option<AgentEvent> {
        self.rx.recv().await
    }
}

/// Stdin and signals of a command, usable from any task.
#[derive(Debug, Clone)]
pub struct AgentControl {
    id: String,
    out: mpsc::UnboundedSender<String>,
}

impl AgentControl {
    /// Sends bytes to its stdin (in chunks, one line each).
    pub fn write_stdin(&self, data: &[u8]) {
        for chunk in data.chunks(2048) {
            let _ = self
                .out
                .send(format!("I {} {}\n", self.id, B64.encode(chunk)));
        }
    }

    /// Closes its stdin.
    pub fn close_stdin(&self) {
        let _ = self.out.send(format!("C {}\n", self.id));
    }

    /// Sends signal number `signal`.
    pub fn signal(&self, signal: i32) {
        let _ = self.out.send(format!("K {} {signal}\n", self.id));
    }
}

async fn read_loop(
    read: tokio::net::unix::OwnedReadHalf,
    routes: Routes,
    pings: Pings,
    closed: watch::Sender<bool>,
) {
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::trace!(line = %line.chars().take(80).collect::<String>(), "VM agent: in");
        let mut f = line.trim_end().splitn(3, ' ');
        let (Some(verb), Some(id)) = (f.next(), f.next()) else {
            continue;
        };
        let arg = f.next().unwrap_or_default();
        let event = match verb {
            "P" => {
                if let Some(tx) = lock(&pings).remove(id) {
                    let _ = tx.send(());
                }
                continue;
            }
            "O" | "R" => {
                let Ok(bytes) = B64.decode(arg) else {
                    tracing::debug!(%line, "VM agent: bad base64");
                    continue;
                };
                if verb == "O" {
                    AgentEvent::Stdout(bytes)
                } else {
                    AgentEvent::Stderr(bytes)
                }
            }
            "X" => AgentEvent::Exit(arg.trim().parse().unwrap_or(-1)),
            _ => continue,
        };
        let done = matches!(event, AgentEvent::Exit(_));
        let mut r = lock(&routes);
        if let Some(tx) = r.get(id) {
            let _ = tx.send(event);
        }
        if done {
            r.remove(id);
        }
    }
    let _ = closed.send(true);
    lock(&routes).clear();
    lock(&pings).clear();
}

/// Quotes `s` for a POSIX shell (single quotes).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

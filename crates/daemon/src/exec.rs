//! `POST /1.0/instances/{name}/exec` with LXD's websocket protocol.
//!
//! The operation's metadata lists one secret per websocket: `0`, `1`, `2` and `control`
//! (non-interactive) or `0` and `control` (interactive, one pty for all three streams).
//! The client connects each with `GET /1.0/operations/{id}/websocket?secret=...`. Data go
//! as binary messages; an empty text message marks the end of a stream (in both
//! directions). When the command exits, its output is drained, every websocket is closed
//! and the operation ends with `metadata.return` = exit code.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::OperationClass;
use api::exec::{ExecControl, InstanceExecPost};
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::error::{ApiError, ApiResult};
use crate::instances::{self, runtime_id};
use crate::state::{Daemon, lock};

/// How long the client has to connect its websockets (LXD's figure).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long output may keep flowing after the command exited (a background process may
/// hold the pipes or the pty).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// One exec waiting for, or using, its websockets.
#[derive(Debug)]
pub(crate) struct Session {
    /// fd name (`"0"`, `"1"`, `"2"`, `"control"`) → secret.
    secrets: BTreeMap<String, String>,
    conns: Mutex<HashMap<String, WebSocket>>,
    connected: Notify,
}

/// Exec sessions by operation id.
#[derive(Debug, Default)]
pub struct ExecSessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl ExecSessions {
    /// Attaches websocket `ws` to the session of operation `op_id` if `secret` is one of its
    /// secrets. Returns false (and drops the socket) otherwise.
    pub fn attach(&self, op_id: &str, secret: &str, ws: WebSocket) -> bool {
        let Some(session) = lock(&self.map).get(op_id).cloned() else {
            return false;
        };
        let Some(fd) = session
            .secrets
            .iter()
            .find(|(_, s)| s.as_str() == secret)
            .map(|(f, _)| f.clone())
        else {
            return false;
        };
        let mut conns = lock(&session.conns);
        if conns.contains_key(&fd) {
            return false;
        }
        conns.insert(fd, ws);
        drop(conns);
        session.connected.notify_waiters();
        session.connected.notify_one();
        true
    }

    /// Registers a session of websockets `secrets` (fd name → secret) for operation
    /// `op_id`; the console uses the same websockets as exec.
    pub(crate) fn register(&self, op_id: &str, secrets: BTreeMap<String, String>) -> Arc<Session> {
        let session = Arc::new(Session {
            secrets,
            conns: Mutex::default(),
            connected: Notify::new(),
        });
        lock(&self.map).insert(op_id.to_string(), session.clone());
        session
    }

    /// Forgets the session of operation `op_id`.
    pub(crate) fn unregister(&self, op_id: &str) {
        lock(&self.map).remove(op_id);
    }

    /// Whether `secret` opens a websocket of operation `op_id` (checked before upgrading).
    pub fn knows(&self, op_id: &str, secret: &str) -> bool {
        lock(&self.map)
            .get(op_id)
            .is_some_and(|s| s.secrets.values().any(|v| v == secret))
    }
}

pub(crate) fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Starts an exec operation.
pub async fn exec(
    d: &Daemon,
    project: &str,
    name: &str,
    req: InstanceExecPost,
) -> ApiResult<api::Operation> {
    let rec = instances::load(d, project, name).await?;
    let id = runtime_id(project, name);
    match instances::instance_status(d, &id) {
        api::InstanceStatus::Running => {}
        api::InstanceStatus::Frozen => return Err(ApiError::bad_request("Instance is frozen")),
        _ => return Err(ApiError::bad_request("Instance is not running")),
    }
    if req.command.is_empty() {
        return Err(ApiError::bad_request("Command cannot be empty"));
    }
    let spec = exec_spec(d, &rec, &req).await;
    let missing = missing_command(d, &rec, &id, &spec).await;
    if !req.wait_for_websocket {
        return exec_without_websockets(d, &id, name, spec, req.record_output, missing);
    }
    let fds: &[&str] = if req.interactive {
        &["0", "control"]
    } else {
        &["0", "1", "2", "control"]
    };
    let secrets: BTreeMap<String, String> = fds.iter().map(|f| (f.to_string(), secret())).collect();
    let metadata = serde_json::json!({ "fds": secrets });
    let resources = BTreeMap::from([("instances".to_string(), vec![instances::url(name)])]);
    let op = d.ops.create(
        OperationClass::Websocket,
        "Executing command",
        resources,
        Some(metadata.clone()),
    );
    let record = op.record();
    let session = Arc::new(Session {
        secrets,
        conns: Mutex::default(),
        connected: Notify::new(),
    });
    lock(&d.exec.map).insert(op.id().to_string(), session.clone());

    let d = d.clone();
    tokio::spawn(async move {
        let op_id = op.id().to_string();
        let result = match missing {
            Some(code) => not_run(&session, &req).await.map(|()| code),
            None => run(&d, &id, &session, spec, &req).await,
        };
        lock(&d.exec.map).remove(&op_id);
        match result {
            Ok(code) => {
                let mut meta = metadata;
                meta["return"] = serde_json::json!(code);
                finish(op, code, meta);
            }
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

/// The command, environment and identity an exec runs with.
async fn exec_spec(
    d: &Daemon,
    rec: &db::instances::InstanceRecord,
    req: &InstanceExecPost,
) -> drivers::ExecSpec {
    let mut env: Vec<String> = vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        "HOME=/root".into(),
        "USER=root".into(),
        "LANG=C.UTF-8".into(),
    ];
    let profiles = instances::load_profiles(d, &rec.project, &rec.profiles)
        .await
        .unwrap_or_default();
    for (k, v) in instances::expand_config(&rec.config, &profiles) {
        if let Some(var) = k.strip_prefix("environment.") {
            env.push(format!("{var}={v}"));
        }
    }
    for (k, v) in &req.environment {
        env.retain(|e| !e.starts_with(&format!("{k}=")));
        env.push(format!("{k}={v}"));
    }
    if req.interactive && !req.environment.contains_key("TERM") {
        env.push("TERM=xterm".into());
    }
    drivers::ExecSpec {
        command: req.command.clone(),
        env,
        cwd: if req.cwd.is_empty() {
            "/root".into()
        } else {
            req.cwd.clone()
        },
        uid: req.user,
        gid: req.group,
    }
}

/// Ends an exec operation whose command exited with `code`: a success, unless `code` is
/// one LXD fails the operation for (127, 126), which keeps `metadata` (with `return`) so
/// that `lxc exec` still exits with the code.
fn finish(op: ops::OpHandle, code: i32, metadata: serde_json::Value) {
    match crate::command_lookup::failure(code) {
        Some(why) => {
            op.set_metadata(metadata);
            op.fail(why);
        }
        None => op.succeed(Some(metadata)),
    }
}

/// 127 or 126 when the command of `spec` cannot run in container `rec` (checked inside
/// its root before the runtime is asked, so the client gets LXD's answer instead of the
/// runtime's message); `None` to run it.
async fn missing_command(
    d: &Daemon,
    rec: &db::instances::InstanceRecord,
    id: &str,
    spec: &drivers::ExecSpec,
) -> Option<i32> {
    if rec.kind == "virtual-machine" {
        return None;
    }
    let drivers::RuntimeStatus::Running { pid } = d.driver.state(id).await.ok()? else {
        return None;
    };
    let (command, env, cwd) = (
        spec.command.first()?.clone(),
        spec.env.clone(),
        spec.cwd.clone(),
    );
    tokio::task::spawn_blocking(move || crate::command_lookup::check(pid, &command, &env, &cwd))
        .await
        .ok()
        .flatten()
}

/// Closes the websockets of a command that was not run (after they connected, as the
/// client expects to attach before the operation ends).
async fn not_run(session: &Arc<Session>, req: &InstanceExecPost) -> ApiResult<()> {
    let required: &[&str] = if req.interactive {
        &["0"]
    } else {
        &["0", "1", "2"]
    };
    wait_connected(session, required).await?;
    let mut closing = Vec::new();
    for fd in ["0", "1", "2", "control"] {
        if let Some(ws) = take(session, fd) {
            let (mut tx, rx) = ws.split();
            // The client reads the output sockets (and, with a terminal, "0"): they end with
            // the end-of-stream marker and the closing handshake; the others just close.
            let output = matches!(fd, "1" | "2") || (fd == "0" && req.interactive);
            closing.push(async move {
                if output {
                    let _ = tx.send(Message::Text(String::new().into())).await;
                    close_handshake(tx, rx).await;
                } else {
                    close(tx).await;
                }
            });
        }
    }
    futures::future::join_all(closing).await;
    Ok(())
}

/// `wait-for-websocket: false`: runs the command at once with stdin on /dev/null and its
/// output on /dev/null, or, with `record-output`, in files served under the instance's logs
/// (`metadata.output` names them). The operation (a task) ends with `metadata.return`.
fn exec_without_websockets(
    d: &Daemon,
    id: &str,
    name: &str,
    spec: drivers::ExecSpec,
    record_output: bool,
    missing: Option<i32>,
) -> ApiResult<api::Operation> {
    let resources = BTreeMap::from([("instances".to_string(), vec![instances::url(name)])]);
    let op = d
        .ops
        .create(OperationClass::Task, "Executing command", resources, None);
    let record = op.record();
    let (d, id, name) = (d.clone(), id.to_string(), name.to_string());
    tokio::spawn(async move {
        let files = record_output.then(|| {
            let base = format!("exec_{}", op.id());
            (format!("{base}.stdout"), format!("{base}.stderr"))
        });
        let result = async {
            let open = |file: Option<&String>| -> ApiResult<OwnedFd> {
                let f = match file {
                    Some(f) => std::fs::File::create(d.paths.run.join(&id).join(f)),
                    None => std::fs::OpenOptions::new().write(true).open("/dev/null"),
                };
                f.map(OwnedFd::from)
                    .map_err(|e| ApiError::internal(format!("exec output: {e}")))
            };
            let stdin = std::fs::File::open("/dev/null")
                .map(OwnedFd::from)
                .map_err(|e| ApiError::internal(format!("exec stdin: {e}")))?;
            let stdio = drivers::ExecStdio {
                stdin,
                stdout: open(files.as_ref().map(|f| &f.0))?,
                stderr: open(files.as_ref().map(|f| &f.1))?,
            };
            if let Some(code) = missing {
                return Ok(code);
            }
            supervise(d.driver.exec(&id, &spec, stdio).await?)
                .wait()
                .await
        };
        match result.await {
            Ok(code) => {
                let mut meta = serde_json::json!({ "return": code });
                if let Some((out, err)) = &files {
                    meta["output"] = serde_json::json!({
                        "1": format!("/1.0/instances/{name}/logs/{out}"),
                        "2": format!("/1.0/instances/{name}/logs/{err}"),
                    });
                }
                finish(op, code, meta);
            }
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

pub(crate) async fn wait_connected(session: &Session, required: &[&str]) -> ApiResult<()> {
    let all = || {
        let conns = lock(&session.conns);
        required.iter().all(|f| conns.contains_key(*f))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        loop {
            let notified = session.connected.notified();
            if all() {
                return;
            }
            notified.await;
        }
    })
    .await
    .map_err(|_| ApiError::bad_request("Timed out waiting for websockets to connect"))
}

pub(crate) fn take(session: &Session, fd: &str) -> Option<WebSocket> {
    lock(&session.conns).remove(fd)
}

fn pipe() -> ApiResult<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| ApiError::internal(format!("pipe: {e}")))
}

/// Runs the command once the websockets are there; returns its exit code.
async fn run(
    d: &Daemon,
    id: &str,
    session: &Arc<Session>,
    spec: drivers::ExecSpec,
    req: &InstanceExecPost,
) -> ApiResult<i32> {
    let required: &[&str] = if req.interactive {
        &["0"]
    } else {
        &["0", "1", "2"]
    };
    if req.wait_for_websocket {
        wait_connected(session, required).await?;
    }
    if req.interactive {
        run_interactive(d, id, session, spec, req).await
    } else {
        run_pipes(d, id, session, spec).await
    }
}

/// Copies websocket binary messages into `w` until a text message (end of stream), a close
/// or an error.
async fn ws_to_writer<W: tokio::io::AsyncWrite + Unpin>(
    mut rx: futures::stream::SplitStream<WebSocket>,
    mut w: W,
) {
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Binary(b) => {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
            Message::Text(_) | Message::Close(_) => break,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
    let _ = w.shutdown().await;
}

/// Sends what `r` yields as binary messages, then the end-of-stream text message.
async fn reader_to_ws<R: tokio::io::AsyncRead + Unpin>(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    r: R,
) {
    if copy_to_ws(tx, r).await {
        let _ = tx.send(Message::Text(String::new().into())).await;
    }
}

/// Sends what `r` yields as binary messages until it ends; `false` when the websocket
/// went away first.
pub(crate) async fn copy_to_ws<R: tokio::io::AsyncRead + Unpin>(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    mut r: R,
) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => {
                if tx
                    .send(Message::Binary(buf[..n].to_vec().into()))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
}

async fn close(mut tx: futures::stream::SplitSink<WebSocket, Message>) {
    let _ = tx.send(Message::Close(None)).await;
    let _ = tx.close().await;
}

/// How long a closing websocket waits for the client's own close frame.
const CLOSE_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// Closes an output websocket with the closing handshake: sends a close frame, then lets
/// the client answer with its own (within [`CLOSE_REPLY_TIMEOUT`]) before the connection
/// goes. A client that answers the end-of-stream marker with a close frame (pylxd) would
/// otherwise write into a connection already gone (`BrokenPipeError` on its stderr).
async fn close_handshake(
    tx: futures::stream::SplitSink<WebSocket, Message>,
    mut rx: futures::stream::SplitStream<WebSocket>,
) {
    close(tx).await;
    let _ = tokio::time::timeout(CLOSE_REPLY_TIMEOUT, async {
        while let Some(Ok(msg)) = rx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Handles control messages until the socket closes: signals go to the command,
/// window sizes to the pty (if any).
async fn control_loop(
    ws: WebSocket,
    signals: tokio::sync::mpsc::Sender<i32>,
    pty: Option<Arc<OwnedFd>>,
    done: Arc<Notify>,
) {
    let (mut tx, mut rx) = ws.split();
    loop {
        tokio::select! {
            _ = done.notified() => break,
            msg = rx.next() => {
                // The client went away before the command ended: kill it, as LXD does, so
                // nothing is left running for nobody.
                let Some(Ok(msg)) = msg else {
                    let _ = signals.send(libc::SIGKILL).await;
                    break;
                };
                let text = match msg {
                    Message::Text(t) => t.to_string(),
                    Message::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
                    Message::Close(_) => {
                        let _ = signals.send(libc::SIGKILL).await;
                        break;
                    }
                    _ => continue,
                };
                let Ok(ctl) = serde_json::from_str::<ExecControl>(&text) else { continue };
                match ctl.command.as_str() {
                    "signal" => {
                        let _ = signals.send(ctl.signal).await;
                    }
                    "window-resize" => {
                        if let Some(pty) = &pty {
                            let w = ctl.args.get("width").and_then(|v| v.parse().ok()).unwrap_or(80);
                            let h = ctl.args.get("height").and_then(|v| v.parse().ok()).unwrap_or(24);
                            let ws = rustix::termios::Winsize { ws_row: h, ws_col: w, ws_xpixel: 0, ws_ypixel: 0 };
                            let _ = rustix::termios::tcsetwinsize(pty.as_ref(), ws);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
}

/// A running command: signals go in through a channel, the exit code comes out of the task
/// that owns the process, so signalling never waits for the command to end.
struct Supervised {
    signals: tokio::sync::mpsc::Sender<i32>,
    exit: tokio::task::JoinHandle<ApiResult<i32>>,
}

fn supervise(mut process: Box<dyn drivers::ExecProcess>) -> Supervised {
    let (signals, mut rx) = tokio::sync::mpsc::channel::<i32>(16);
    let exit = tokio::spawn(async move {
        loop {
            // Waiting is cancel-safe: a signal interrupts it, then it resumes.
            let signal = tokio::select! {
                code = process.wait() => return code.map_err(ApiError::from),
                signal = rx.recv() => signal,
            };
            match signal {
                Some(signal) => {
                    if let Err(e) = process.signal(signal) {
                        tracing::debug!(signal, error = %e, "exec signal not delivered");
                    }
                }
                None => return process.wait().await.map_err(ApiError::from),
            }
        }
    });
    Supervised { signals, exit }
}

impl Supervised {
    async fn wait(self) -> ApiResult<i32> {
        self.exit.await?
    }
}

async fn run_pipes(
    d: &Daemon,
    id: &str,
    session: &Arc<Session>,
    spec: drivers::ExecSpec,
) -> ApiResult<i32> {
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = drivers::ExecStdio {
        stdin: in_r,
        stdout: out_w,
        stderr: err_w,
    };
    let process = supervise(d.driver.exec(id, &spec, stdio).await?);

    let stdin_w = tokio::net::unix::pipe::Sender::from_owned_fd(in_w)
        .map_err(|e| ApiError::internal(format!("stdin pipe: {e}")))?;
    let stdout_r = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r)
        .map_err(|e| ApiError::internal(format!("stdout pipe: {e}")))?;
    let stderr_r = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r)
        .map_err(|e| ApiError::internal(format!("stderr pipe: {e}")))?;

    let ws0 = take(session, "0");
    let ws1 = take(session, "1");
    let ws2 = take(session, "2");
    let stdin_task = ws0.map(|ws| {
        let (tx, rx) = ws.split();
        tokio::spawn(async move {
            ws_to_writer(rx, stdin_w).await;
            tx
        })
    });
    let out_task = ws1.map(|ws| {
        tokio::spawn(async move {
            let (mut tx, rx) = ws.split();
            reader_to_ws(&mut tx, stdout_r).await;
            (tx, rx)
        })
    });
    let err_task = ws2.map(|ws| {
        tokio::spawn(async move {
            let (mut tx, rx) = ws.split();
            reader_to_ws(&mut tx, stderr_r).await;
            (tx, rx)
        })
    });
    let done = Arc::new(Notify::new());
    let control = spawn_control(session, &process.signals, None, &done);

    let code = process.wait().await;
    // Output is drained to its end-of-stream marker before the sockets close; a background
    // process still holding the pipes must not keep the session open forever.
    let mut closing = Vec::new();
    for task in [out_task, err_task].into_iter().flatten() {
        if let Ok(Ok((tx, rx))) = tokio::time::timeout(DRAIN_TIMEOUT, task).await {
            closing.push(close_handshake(tx, rx));
        }
    }
    futures::future::join_all(closing).await;
    if let Some(task) = stdin_task {
        task.abort();
    }
    finish_control(control, &done).await;
    code
}

fn spawn_control(
    session: &Arc<Session>,
    signals: &tokio::sync::mpsc::Sender<i32>,
    pty: Option<Arc<OwnedFd>>,
    done: &Arc<Notify>,
) -> tokio::task::JoinHandle<()> {
    let session = session.clone();
    let signals = signals.clone();
    let done = done.clone();
    tokio::spawn(async move {
        // The control socket may connect after the command started.
        let ws = loop {
            let notified = session.connected.notified();
            if let Some(ws) = take(&session, "control") {
                break ws;
            }
            tokio::select! {
                _ = notified => {}
                _ = done.notified() => return,
            }
        };
        control_loop(ws, signals, pty, done).await;
    })
}

async fn finish_control(control: tokio::task::JoinHandle<()>, done: &Arc<Notify>) {
    done.notify_waiters();
    done.notify_one();
    let _ = tokio::time::timeout(Duration::from_secs(2), control).await;
}

/// Opens a pty pair: inside the container's own devpts when it has one (so `tty` and
/// `ttyname` work in there, as in LXD), else on the host's.
fn open_pty(d: &Daemon, id: &str) -> ApiResult<(OwnedFd, OwnedFd)> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    let container_devpts = lock(&d.running)
        .get(id)
        .map(|r| std::path::PathBuf::from(format!("/proc/{}/root/dev/pts", r.pid)));
    let opened = container_devpts.and_then(|dir| {
        rustix::fs::open(dir.join("ptmx"), flags, Mode::empty())
            .ok()
            .map(|m| (m, dir))
    });
    let (master, dir) = match opened {
        Some((master, dir)) => (master, Some(dir)),
        None => {
            let master = rustix::pty::openpt(
                rustix::pty::OpenptFlags::RDWR
                    | rustix::pty::OpenptFlags::NOCTTY
                    | rustix::pty::OpenptFlags::CLOEXEC,
            )
            .map_err(|e| ApiError::internal(format!("openpt: {e}")))?;
            (master, None)
        }
    };
    rustix::pty::grantpt(&master).map_err(|e| ApiError::internal(format!("grantpt: {e}")))?;
    rustix::pty::unlockpt(&master).map_err(|e| ApiError::internal(format!("unlockpt: {e}")))?;
    let name = rustix::pty::ptsname(&master, Vec::new())
        .map_err(|e| ApiError::internal(format!("ptsname: {e}")))?;
    let name = name.to_string_lossy().into_owned();
    // ptsname names /dev/pts/N; in the container's devpts the number is the same.
    let slave_path = match dir {
        Some(dir) => dir.join(name.rsplit('/').next().unwrap_or_default()),
        None => std::path::PathBuf::from(name),
    };
    let slave = rustix::fs::open(&slave_path, flags, Mode::empty())
        .map_err(|e| ApiError::internal(format!("open {}: {e}", slave_path.display())))?;
    Ok((master, slave))
}

async fn run_interactive(
    d: &Daemon,
    id: &str,
    session: &Arc<Session>,
    spec: drivers::ExecSpec,
    req: &InstanceExecPost,
) -> ApiResult<i32> {
    let (pty, slave) = open_pty(d, id)?;
    let (w, h) = (
        if req.width > 0 { req.width } else { 80 },
        if req.height > 0 { req.height } else { 24 },
    );
    let _ = rustix::termios::tcsetwinsize(
        &pty,
        rustix::termios::Winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    );
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| ApiError::internal(format!("dup: {e}")))
    };
    let stdio = drivers::ExecStdio {
        stdin: dup(&slave)?,
        stdout: dup(&slave)?,
        stderr: slave,
    };
    let process = supervise(d.driver.exec(id, &spec, stdio).await?);

    let pty = Arc::new(pty);
    let reader = tokio::fs::File::from_std(std::fs::File::from(dup(&pty)?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(dup(&pty)?));
    let ws0 = take(session, "0");
    let done = Arc::new(Notify::new());
    let control = spawn_control(session, &process.signals, Some(pty.clone()), &done);
    let mirror = ws0.map(|ws| {
        let (mut tx, rx) = ws.split();
        let input = tokio::spawn(ws_to_writer(rx, writer));
        let output = tokio::spawn(async move {
            // Reading a pty master gives EIO once the last slave is closed.
            reader_to_ws(&mut tx, reader).await;
            tx
        });
        (input, output)
    });
    let code = process.wait().await;
    if let Some((input, mut output)) = mirror {
        // Give the output a moment to drain after the command exited; a background process
        // holding the pty must not keep the session open forever (aborting the copy drops
        // the socket, so the client sees the end).
        match tokio::time::timeout(DRAIN_TIMEOUT, &mut output).await {
            Ok(Ok(tx)) => close(tx).await,
            _ => output.abort(),
        }
        input.abort();
    }
    finish_control(control, &done).await;
    code
}

//! `POST /1.0/instances/{name}/exec` and its websockets, as LXD's client drives them.
//!
//! The exec operation's `metadata.fds` holds one secret per websocket:
//! `{"0", "1", "2", "control"}` for a non-interactive command, `{"0", "control"}` for an
//! interactive one (one socket carries the terminal both ways). Each is opened at
//! `/1.0/operations/{id}/websocket?secret=<secret>`.
//!
//! Framing (LXD 5.0): data travels in binary messages. The sender of a stream ends it with
//! an empty text message (the "barrier"); a close frame also ends it. So the client sends
//! stdin on socket `0` and a barrier at stdin EOF; the daemon sends a barrier or closes
//! sockets `1`/`2` (or `0` when interactive) when the command's output ends, and then
//! finishes the operation with `metadata.return` = the exit code. Control messages are
//! JSON [`ExecControl`] in text messages.

use std::io;

use api::Operation;
use api::exec::{ExecControl, InstanceExecPost};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Sink, SinkExt, Stream, StreamExt};
use hyper::Method;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::urlenc::{query, segment};
use crate::{Client, Error, Result};

/// Where an exec's input comes from and its output goes.
pub struct ExecIo {
    /// Chunks of stdin; `None` means empty stdin (a barrier is sent at once).
    pub stdin: Option<BoxStream<'static, io::Result<Bytes>>>,
    /// Receives stdout (and, when interactive, the terminal's whole output).
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// Receives stderr (unused when interactive).
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// Control messages to forward (`window-resize`, `signal`).
    pub control: Option<mpsc::Receiver<ExecControl>>,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("stdin", &self.stdin.is_some())
            .field("control", &self.control.is_some())
            .finish_non_exhaustive()
    }
}

/// The websocket secrets of an exec operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecFds {
    /// Socket `0`: stdin (and the terminal output when interactive).
    pub stdin: String,
    /// Socket `1` (non-interactive only).
    pub stdout: Option<String>,
    /// Socket `2` (non-interactive only).
    pub stderr: Option<String>,
    /// The control socket.
    pub control: Option<String>,
}

impl ExecFds {
    /// Read `metadata.fds` of an exec operation.
    pub fn from_operation(op: &Operation) -> Result<Self> {
        let fds = op
            .metadata
            .as_ref()
            .and_then(|m| m.get("fds"))
            .and_then(|f| f.as_object())
            .ok_or_else(|| Error::Protocol("exec operation has no metadata.fds".into()))?;
        let get = |k: &str| fds.get(k).and_then(|v| v.as_str()).map(str::to_string);
        Ok(Self {
            stdin: get("0").ok_or_else(|| Error::Protocol("exec operation has no fd 0".into()))?,
            stdout: get("1"),
            stderr: get("2"),
            control: get("control"),
        })
    }

    /// Whether the session is interactive (one socket for the terminal).
    pub fn interactive(&self) -> bool {
        self.stdout.is_none()
    }
}

/// What one message on a data websocket means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFrame {
    /// Bytes of the stream.
    Data(Bytes),
    /// The stream ended (barrier text message or close frame).
    End,
    /// Nothing for the stream (ping, pong, empty binary).
    Skip,
}

/// Classify a message received on a data websocket.
pub fn classify(msg: &Message) -> DataFrame {
    match msg {
        Message::Binary(b) if b.is_empty() => DataFrame::Skip,
        Message::Binary(b) => DataFrame::Data(b.clone()),
        Message::Text(_) | Message::Close(_) => DataFrame::End,
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => DataFrame::Skip,
    }
}

/// The message that ends a stream we send (LXD's barrier: an empty text message).
pub fn barrier() -> Message {
    Message::text("")
}

/// The text message carrying a control command.
pub fn control_message(ctl: &ExecControl) -> Result<Message> {
    Ok(Message::text(serde_json::to_string(ctl)?))
}

/// A `window-resize` control command.
pub fn window_resize(width: u16, height: u16) -> ExecControl {
    ExecControl {
        command: "window-resize".into(),
        args: [
            ("width".to_string(), width.to_string()),
            ("height".to_string(), height.to_string()),
        ]
        .into_iter()
        .collect(),
        signal: 0,
    }
}

/// A `signal` control command.
pub fn signal(signal: i32) -> ExecControl {
    ExecControl {
        command: "signal".into(),
        signal,
        ..Default::default()
    }
}

/// The command's exit code from a finished exec operation (`metadata.return`).
pub fn exit_code(op: &Operation) -> Result<i32> {
    op.metadata
        .as_ref()
        .and_then(|m| m.get("return"))
        .and_then(|r| r.as_i64())
        .and_then(|r| i32::try_from(r).ok())
        .ok_or_else(|| Error::Protocol("exec operation has no metadata.return".into()))
}

impl Client {
    /// Run a command in an instance with its stdio wired to `io`; returns its exit code.
    ///
    /// `req.wait_for_websocket` is forced on. Returns once the output streams ended and the
    /// operation finished.
    pub async fn exec(&self, name: &str, req: &InstanceExecPost, io: ExecIo) -> Result<i32> {
        let mut req = req.clone();
        req.wait_for_websocket = true;
        let path = format!("/1.0/instances/{}/exec", segment(name));
        let op = self.op(Method::POST, &path, Some(&req)).await?;
        let fds = ExecFds::from_operation(&op)?;
        let base = format!("/1.0/operations/{}/websocket?secret=", segment(&op.id));
        let connect = |secret: &str| {
            let path = format!("{base}{}", query(secret));
            async move { self.websocket(&path).await }
        };

        // Connect in the order LXD's client does: control, then 0, 1, 2.
        let control_ws = match &fds.control {
            Some(s) => Some(connect(s).await?),
            None => None,
        };
        let ws0 = connect(&fds.stdin).await?;
        let ws1 = match &fds.stdout {
            Some(s) => Some(connect(s).await?),
            None => None,
        };
        let ws2 = match &fds.stderr {
            Some(s) => Some(connect(s).await?),
            None => None,
        };

        let ExecIo {
            stdin,
            mut stdout,
            mut stderr,
            control,
        } = io;
        let (sink0, stream0) = ws0.split();
        let stdin_task = tokio::spawn(pump_stdin(sink0, stdin));
        let control_task = control_ws.map(|ws| tokio::spawn(pump_control(ws, control)));

        let output = async {
            match (ws1, ws2) {
                (None, _) => drain(stream0, &mut stdout).await,
                (Some(out), err) => {
                    let errs = async {
                        match err {
                            Some(e) => drain(e, &mut stderr).await,
                            None => Ok(()),
                        }
                    };
                    let (a, b) = tokio::join!(drain(out, &mut stdout), errs);
                    a.and(b)
                }
            }
        };
        let (out, done) = tokio::join!(output, self.wait_done(&op));
        stdin_task.abort();
        if let Some(t) = control_task {
            t.abort();
        }
        out?;
        exit_code(&done?)
    }
}

/// Send stdin as binary messages, then the barrier.
async fn pump_stdin<S>(mut sink: S, stdin: Option<BoxStream<'static, io::Result<Bytes>>>)
where
    S: Sink<Message> + Unpin,
{
    if let Some(mut input) = stdin {
        while let Some(Ok(chunk)) = input.next().await {
            if chunk.is_empty() {
                continue;
            }
            if sink.send(Message::Binary(chunk)).await.is_err() {
                return;
            }
        }
    }
    let _ = sink.send(barrier()).await;
}

/// Forward control commands; keep reading the socket so pings and close are answered.
async fn pump_control(ws: crate::transport::Ws, rx: Option<mpsc::Receiver<ExecControl>>) {
    let (mut sink, mut stream) = ws.split();
    let Some(mut rx) = rx else {
        while let Some(Ok(_)) = stream.next().await {}
        return;
    };
    loop {
        tokio::select! {
            ctl = rx.recv() => {
                let Some(ctl) = ctl else { break };
                let Ok(msg) = control_message(&ctl) else { continue };
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
            incoming = stream.next() => {
                if !matches!(incoming, Some(Ok(_))) {
                    break;
                }
            }
        }
    }
}

/// Copy a data websocket into `out` until the stream ends. A dropped connection ends the
/// stream too, as in LXD's client.
async fn drain<S, E>(mut stream: S, out: &mut (dyn AsyncWrite + Send + Unpin)) -> Result<()>
where
    S: Stream<Item = std::result::Result<Message, E>> + Unpin,
{
    while let Some(Ok(msg)) = stream.next().await {
        match classify(&msg) {
            DataFrame::Data(b) => {
                out.write_all(&b).await?;
                out.flush().await?;
            }
            DataFrame::End => break,
            DataFrame::Skip => {}
        }
    }
    out.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(metadata: serde_json::Value) -> Operation {
        serde_json::from_value(serde_json::json!({
            "id": "op1", "class": "websocket", "description": "Executing command",
            "created_at": "", "updated_at": "", "status": "Running", "status_code": 103,
            "resources": null, "metadata": metadata, "may_cancel": false, "err": "",
            "location": "none"
        }))
        .expect("operation")
    }

    #[test]
    fn fds_of_both_session_kinds() {
        let plain = op(serde_json::json!({"fds": {"0": "a", "1": "b", "2": "c", "control": "d"}}));
        let fds = ExecFds::from_operation(&plain).expect("fds");
        assert!(!fds.interactive());
        assert_eq!(fds.stderr.as_deref(), Some("c"));
        let tty = op(serde_json::json!({"fds": {"0": "a", "control": "d"}}));
        let fds = ExecFds::from_operation(&tty).expect("fds");
        assert!(fds.interactive());
        assert_eq!(fds.control.as_deref(), Some("d"));
        assert!(ExecFds::from_operation(&op(serde_json::json!({}))).is_err());
    }

    #[test]
    fn framing_follows_lxd() {
        assert_eq!(
            classify(&Message::binary(b"hi".to_vec())),
            DataFrame::Data(Bytes::from_static(b"hi"))
        );
        assert_eq!(classify(&Message::text("")), DataFrame::End);
        assert_eq!(classify(&Message::Close(None)), DataFrame::End);
        assert_eq!(classify(&Message::Ping(Bytes::new())), DataFrame::Skip);
        assert_eq!(barrier(), Message::text(""));
    }

    #[test]
    fn control_messages_are_lxd_json() {
        let msg = control_message(&window_resize(80, 24)).expect("json");
        let v: serde_json::Value =
            serde_json::from_str(msg.to_text().expect("text")).expect("parses");
        assert_eq!(v["command"], "window-resize");
        assert_eq!(v["args"]["width"], "80");
        assert_eq!(v["args"]["height"], "24");
        let msg = control_message(&signal(15)).expect("json");
        let v: serde_json::Value =
            serde_json::from_str(msg.to_text().expect("text")).expect("parses");
        assert_eq!(v["command"], "signal");
        assert_eq!(v["signal"], 15);
    }

    #[test]
    fn exit_code_from_return() {
        assert_eq!(
            exit_code(&op(serde_json::json!({"return": 3}))).expect("code"),
            3
        );
        assert!(exit_code(&op(serde_json::json!({"fds": {}}))).is_err());
    }
}

//! The client against a fake daemon (axum on a temporary unix socket).
//!
//! What does this test do?
//! - decodes sync envelopes and maps error envelopes to `Error::Api` with LXD's message;
//! - waits for async operations through `/wait`, success and failure;
//! - runs a non-interactive and an interactive exec through the websocket protocol
//!   (stdin + barrier, stdout/stderr, control messages, exit code from `metadata.return`);
//! - reads events from the events websocket;
//! - uploads unified and split images with the headers and parts `lxc` sends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use api::exec::InstanceExecPost;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use drover_client::{Client, Error, ExecIo, ImageUpload};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, watch};

const DEADLINE: Duration = Duration::from_secs(10);

/// Bits of exec progress the fake's `/wait` waits for.
const STDOUT_SENT: u32 = 1;
const STDERR_SENT: u32 = 2;
const CONTROL_SEEN: u32 = 4;

#[derive(Clone)]
struct Fake {
    stdin: watch::Sender<Option<Vec<u8>>>,
    progress: watch::Sender<u32>,
    controls: Arc<Mutex<Vec<Value>>>,
    uploads: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

fn sync(metadata: Value) -> Json<Value> {
    Json(
        json!({"type": "sync", "status": "Success", "status_code": 200, "operation": "",
                "error_code": 0, "error": "", "metadata": metadata}),
    )
}

fn error(code: u16, msg: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"type": "error", "status": "", "status_code": 0, "operation": "",
                      "error_code": code, "error": msg, "metadata": null});
    (status, Json(body)).into_response()
}

fn op(id: &str, class: &str, status: &str, metadata: Value, err: &str) -> Value {
    let code = match status {
        "Success" => 200,
        "Failure" => 400,
        _ => 103,
    };
    json!({"id": id, "class": class, "description": "test", "created_at": "2026-11-24T07:09:14Z",
           "updated_at": "2026-11-24T07:09:14Z", "status": status, "status_code": code,
           "resources": null, "metadata": metadata, "may_cancel": false, "err": err,
           "location": "none"})
}

fn async_op(operation: Value) -> Response {
    let id = operation["id"].as_str().unwrap_or_default().to_string();
    let body = json!({"type": "async", "status": "Operation created", "status_code": 100,
                      "operation": format!("/1.0/operations/{id}"), "error_code": 0, "error": "",
                      "metadata": operation});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn instance(name: &str) -> Value {
    json!({"architecture": "x86_64", "config": {"limits.memory": "256MiB"}, "devices": {},
           "ephemeral": false, "profiles": ["default"], "stateful": false, "description": "",
           "created_at": "2026-11-24T07:09:11Z", "expanded_config": {}, "expanded_devices": {},
           "name": name, "status": "Running", "status_code": 103,
           "last_used_at": "2026-11-24T07:09:12Z", "location": "none", "type": "container",
           "project": "default"})
}

async fn get_instance(Path(name): Path<String>) -> Response {
    if name == "c1" {
        ([("ETag", "\"abc\"")], sync(instance(&name))).into_response()
    } else {
        error(404, "Instance not found")
    }
}

async fn put_state(Path(name): Path<String>, Json(body): Json<Value>) -> Response {
    match (name.as_str(), body["action"].as_str()) {
        ("c1", Some("start")) => async_op(op("op-start", "task", "Running", Value::Null, "")),
        ("broken", _) => async_op(op("op-broken", "task", "Running", Value::Null, "")),
        _ => error(400, "Unknown action"),
    }
}

async fn post_exec(Path(name): Path<String>, Json(body): Json<Value>) -> Response {
    assert_eq!(
        body["wait-for-websocket"], true,
        "client must wait for websockets"
    );
    let fds = if body["interactive"] == true {
        json!({"0": "t0", "control": "tc"})
    } else {
        json!({"0": "s0", "1": "s1", "2": "s2", "control": "sc"})
    };
    let id = if name == "tty" { "op-tty" } else { "op-exec" };
    async_op(op(id, "websocket", "Running", json!({"fds": fds}), ""))
}

async fn wait(State(fake): State<Fake>, Path(id): Path<String>) -> Response {
    match id.as_str() {
        "op-start" => sync(op(&id, "task", "Success", Value::Null, "")).into_response(),
        "op-broken" => sync(op(
            &id,
            "task",
            "Failure",
            Value::Null,
            "Failed to start instance",
        ))
        .into_response(),
        "op-exec" => {
            let mut rx = fake.progress.subscribe();
            let all = STDOUT_SENT | STDERR_SENT | CONTROL_SEEN;
            let _ = rx.wait_for(|p| *p & all == all).await;
            sync(op(&id, "websocket", "Success", json!({"return": 3}), "")).into_response()
        }
        "op-tty" => {
            let mut rx = fake.progress.subscribe();
            let _ = rx.wait_for(|p| *p & STDOUT_SENT != 0).await;
            sync(op(&id, "websocket", "Success", json!({"return": 0}), "")).into_response()
        }
        "op-image" => sync(op(
            &id,
            "task",
            "Success",
            json!({"fingerprint": "f00d"}),
            "",
        ))
        .into_response(),
        _ => error(404, "Operation not found"),
    }
}

#[derive(serde::Deserialize)]
struct Secret {
    secret: String,
}

async fn op_websocket(
    State(fake): State<Fake>,
    Query(q): Query<Secret>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| exec_socket(fake, q.secret, socket))
}

/// Read binary messages until the barrier; `None` if the socket broke first.
async fn read_stream(socket: &mut WebSocket) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Binary(b) => data.extend_from_slice(&b),
            Message::Text(_) | Message::Close(_) => return Some(data),
            _ => {}
        }
    }
    None
}

async fn exec_socket(fake: Fake, secret: String, mut socket: WebSocket) {
    match secret.as_str() {
        "s0" => {
            let data = read_stream(&mut socket).await.unwrap_or_default();
            fake.stdin.send_replace(Some(data));
        }
        "s1" => {
            let mut rx = fake.stdin.subscribe();
            let data = match rx.wait_for(|d| d.is_some()).await {
                Ok(d) => d.clone().unwrap_or_default(),
                Err(_) => return,
            };
            let _ = socket
                .send(Message::Binary(data.to_ascii_uppercase().into()))
                .await;
            let _ = socket.send(Message::Text("".into())).await;
            fake.progress.send_modify(|p| *p |= STDOUT_SENT);
        }
        "s2" => {
            let _ = socket
                .send(Message::Binary(Bytes::from_static(b"warn\n")))
                .await;
            let _ = socket.send(Message::Close(None)).await;
            fake.progress.send_modify(|p| *p |= STDERR_SENT);
        }
        "sc" | "tc" => {
            while let Some(Ok(msg)) = socket.recv().await {
                if let Message::Text(t) = msg {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    fake.controls.lock().await.push(v);
                    fake.progress.send_modify(|p| *p |= CONTROL_SEEN);
                }
            }
        }
        "t0" => {
            // A terminal: echo the input back reversed, then close.
            let mut data = read_stream(&mut socket).await.unwrap_or_default();
            data.reverse();
            let _ = socket.send(Message::Binary(data.into())).await;
            let _ = socket.send(Message::Close(None)).await;
            fake.progress.send_modify(|p| *p |= STDOUT_SENT);
        }
        _ => {}
    }
}

async fn events(ws: WebSocketUpgrade, Query(q): Query<Value>) -> Response {
    let types = q["type"].as_str().unwrap_or_default().to_string();
    ws.on_upgrade(move |mut socket| async move {
        for action in ["instance-created", "instance-started"] {
            let ev = json!({"type": "lifecycle", "timestamp": "2026-11-24T07:09:15Z",
                            "location": "none", "project": "default",
                            "metadata": {"action": action, "source": "/1.0/instances/c1",
                                         "requested": types}});
            let _ = socket.send(Message::Text(ev.to_string().into())).await;
        }
        let _ = socket.send(Message::Close(None)).await;
    })
}

async fn upload(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    fake.uploads.lock().await.push((headers, body));
    async_op(op("op-image", "task", "Running", Value::Null, ""))
}

struct Harness {
    _dir: tempfile::TempDir,
    client: Client,
    fake: Fake,
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("unix.socket");
    let fake = Fake {
        stdin: watch::channel(None).0,
        progress: watch::channel(0).0,
        controls: Arc::default(),
        uploads: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/1.0",
            get(|| async { sync(json!({"api_version": "1.0"})) }),
        )
        .route("/1.0/instances/{name}", get(get_instance))
        .route("/1.0/instances/{name}/state", put(put_state))
        .route("/1.0/instances/{name}/exec", post(post_exec))
        .route("/1.0/operations/{id}/wait", get(wait))
        .route("/1.0/operations/{id}/websocket", get(op_websocket))
        .route("/1.0/events", get(events))
        .route("/1.0/images", post(upload))
        .with_state(fake.clone());
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    tokio::spawn(async move { axum::serve(listener, app).await });
    Harness {
        _dir: dir,
        client: Client::unix(path),
        fake,
    }
}

#[tokio::test]
async fn envelopes_and_errors() {
    let h = start().await;
    let (inst, etag) = h.client.instance_with_etag("c1").await.expect("get c1");
    assert_eq!(inst.name, "c1");
    assert_eq!(inst.config["limits.memory"], "256MiB");
    assert_eq!(etag.as_deref(), Some("abc"));

    let err = h.client.instance("nope").await.expect_err("404");
    assert!(matches!(err, Error::Api { status: 404, .. }));
    assert_eq!(err.to_string(), "Instance not found");

    let gone = Client::unix(h._dir.path().join("missing.socket"));
    let err = gone.instance("c1").await.expect_err("no socket");
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn operations_wait_for_success_and_failure() {
    let h = start().await;
    let put = api::InstanceStatePut {
        action: "start".into(),
        timeout: -1,
        force: false,
        stateful: false,
    };
    let op = h
        .client
        .update_instance_state("c1", &put)
        .await
        .expect("op");
    assert_eq!(op.id, "op-start");
    let done = h.client.wait_done(&op).await.expect("success");
    assert_eq!(done.status, api::OperationStatus::Success);

    let op = h
        .client
        .update_instance_state("broken", &put)
        .await
        .expect("op");
    let err = h.client.wait_done(&op).await.expect_err("failure");
    assert!(matches!(err, Error::OperationFailed { .. }));
    assert_eq!(err.to_string(), "Failed to start instance");
}

fn capture() -> (tokio::io::DuplexStream, Box<tokio::io::DuplexStream>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    (a, Box::new(b))
}

async fn read_all(mut r: tokio::io::DuplexStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, r.read_to_end(&mut out))
        .await
        .expect("output ends in time")
        .expect("reads");
    out
}

#[tokio::test]
async fn exec_round_trip_non_interactive() {
    let h = start().await;
    let (out_r, out_w) = capture();
    let (err_r, err_w) = capture();
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    ctl_tx
        .send(drover_client::exec::window_resize(100, 30))
        .await
        .expect("queued");
    let stdin = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"hello ")),
        Ok(Bytes::from_static(b"world\n")),
    ])
    .boxed();
    let io = ExecIo {
        stdin: Some(stdin),
        stdout: out_w,
        stderr: err_w,
        control: Some(ctl_rx),
    };
    let req = InstanceExecPost {
        command: vec!["tr".into(), "a-z".into(), "A-Z".into()],
        ..Default::default()
    };
    let code = tokio::time::timeout(DEADLINE, h.client.exec("c1", &req, io))
        .await
        .expect("exec ends in time")
        .expect("exec works");
    assert_eq!(code, 3);
    assert_eq!(read_all(out_r).await, b"HELLO WORLD\n");
    assert_eq!(read_all(err_r).await, b"warn\n");
    let controls = h.fake.controls.lock().await.clone();
    assert_eq!(controls[0]["command"], "window-resize");
    assert_eq!(controls[0]["args"]["width"], "100");
}

#[tokio::test]
async fn exec_round_trip_interactive() {
    let h = start().await;
    let (out_r, out_w) = capture();
    let (_err_r, err_w) = capture();
    let io = ExecIo {
        stdin: Some(futures::stream::iter(vec![Ok(Bytes::from_static(b"abc"))]).boxed()),
        stdout: out_w,
        stderr: err_w,
        control: None,
    };
    let req = InstanceExecPost {
        command: vec!["sh".into()],
        interactive: true,
        ..Default::default()
    };
    let code = tokio::time::timeout(DEADLINE, h.client.exec("tty", &req, io))
        .await
        .expect("exec ends in time")
        .expect("exec works");
    assert_eq!(code, 0);
    assert_eq!(read_all(out_r).await, b"cba");
}

#[tokio::test]
async fn events_stream() {
    let h = start().await;
    let stream = h.client.events(&["lifecycle"]).await.expect("subscribed");
    let events: Vec<_> = tokio::time::timeout(DEADLINE, stream.collect::<Vec<_>>())
        .await
        .expect("stream ends");
    let events: Vec<api::Event> = events.into_iter().map(|e| e.expect("event")).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].metadata["action"], "instance-started");
    assert_eq!(events[0].metadata["requested"], "lifecycle");
}

#[tokio::test]
async fn image_uploads_match_lxc() {
    let h = start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let unified = dir.path().join("busybox.tar.gz");
    std::fs::write(&unified, b"UNIFIED-TARBALL").expect("write");
    let mut upload = ImageUpload {
        metadata: unified,
        properties: [("os".to_string(), "busy box".to_string())].into(),
        ..Default::default()
    };
    let op = h.client.import_image(&upload).await.expect("upload");
    let done = h.client.wait_done(&op).await.expect("done");
    assert_eq!(done.metadata.expect("metadata")["fingerprint"], "f00d");

    let meta = dir.path().join("meta.tar.xz");
    let rootfs = dir.path().join("rootfs.squashfs");
    std::fs::write(&meta, b"META").expect("write");
    std::fs::write(&rootfs, b"ROOTFS").expect("write");
    upload.metadata = meta;
    upload.rootfs = Some(rootfs);
    upload.public = true;
    h.client.import_image(&upload).await.expect("split upload");

    let uploads = h.fake.uploads.lock().await.clone();
    let (headers, body) = &uploads[0];
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(headers["x-lxd-filename"], "busybox.tar.gz");
    assert_eq!(headers["x-lxd-properties"], "os=busy+box");
    assert!(headers.get("x-lxd-public").is_none());
    assert_eq!(&body[..], b"UNIFIED-TARBALL");

    let (headers, body) = &uploads[1];
    let ct = headers["content-type"].to_str().expect("ascii");
    let boundary = ct
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart");
    assert_eq!(headers["x-lxd-public"], "true");
    let text = String::from_utf8_lossy(body);
    let expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"meta.tar.xz\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nMETA\r\n--{boundary}\r\n\
         Content-Disposition: form-data; name=\"rootfs\"; filename=\"rootfs.squashfs\"\r\n\
         Content-Type: application/octet-stream\r\n\r\nROOTFS\r\n--{boundary}--\r\n"
    );
    assert_eq!(text, expected);
}

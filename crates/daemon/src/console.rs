//! `/1.0/instances/{name}/console` for virtual machines: `GET` returns what the serial
//! console printed (`lxc console --show-log`; for a container, what its PID 1 printed),
//! `POST` attaches to it with LXD's websocket
//! protocol (`lxc console`): operation metadata `fds` with secrets for `0` (data, both
//! directions, binary messages) and `control`; the data websocket is bridged to the VM's
//! serial console socket until either side closes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use api::OperationClass;
use axum::extract::ws::Message;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult};
use crate::exec::{secret, take, wait_connected};
use crate::instances::{self, runtime_id};
use crate::state::Daemon;

/// The VM runtime files of `id` (see `with_vms` in lib.rs).
fn vm_dir(d: &Daemon, id: &str) -> PathBuf {
    d.paths.state_dir.join("vms").join(id)
}

async fn vm_record(d: &Daemon, project: &str, name: &str) -> ApiResult<String> {
    let rec = instances::load(d, project, name).await?;
    if rec.kind != "virtual-machine" {
        return Err(ApiError::bad_request(
            "Attaching to a container's console is not supported by drover: use lxc exec (lxc console --show-log shows what it printed)",
        ));
    }
    Ok(runtime_id(project, name))
}

/// Everything the VM's serial console printed (kept across stops); for a container, what
/// its PID 1 printed (its `lxc.log`), as `lxc console --show-log` shows a container's.
pub async fn log(d: &Daemon, project: &str, name: &str) -> ApiResult<String> {
    let rec = instances::load(d, project, name).await?;
    if rec.kind != "virtual-machine" {
        return instances::log_file(d, &rec, "lxc.log").await;
    }
    let id = runtime_id(project, name);
    match tokio::fs::read(vm_dir(d, &id).join("console.log")).await {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ApiError::internal(format!("read the console log: {e}"))),
    }
}

/// Attaches to the serial console of a running VM.
pub async fn attach(d: &Daemon, project: &str, name: &str) -> ApiResult<api::Operation> {
    let id = vm_record(d, project, name).await?;
    if instances::runtime_status(d, &id) != api::InstanceStatus::Running {
        return Err(ApiError::bad_request("Instance is not running"));
    }
    let socket = vm_dir(d, &id).join("console.sock");
    let secrets: BTreeMap<String, String> = ["0", "control"]
        .iter()
        .map(|f| (f.to_string(), secret()))
        .collect();
    let metadata = serde_json::json!({ "fds": secrets });
    let resources = BTreeMap::from([("instances".to_string(), vec![instances::url(name)])]);
    let op = d.ops.create(
        OperationClass::Websocket,
        "Showing console",
        resources,
        Some(metadata),
    );
    let record = op.record();
    let session = d.exec.register(op.id(), secrets);
    let d = d.clone();
    tokio::spawn(async move {
        let op_id = op.id().to_string();
        let result = bridge(&session, &socket).await;
        d.exec.unregister(&op_id);
        match result {
            Ok(()) => op.succeed(None),
            Err(e) => op.fail(e.message),
        }
    });
    Ok(record)
}

async fn bridge(session: &crate::exec::Session, socket: &std::path::Path) -> ApiResult<()> {
    // As LXD's clients do, both are connected before any data flows; the control socket
    // closing is how `lxc console` detaches.
    wait_connected(session, &["0", "control"]).await?;
    let ws = take(session, "0").ok_or_else(|| ApiError::internal("console websocket gone"))?;
    let console = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| ApiError::internal(format!("connect to the VM console: {e}")))?;
    let (mut con_r, mut con_w) = console.into_split();
    let (mut tx, mut rx) = ws.split();
    // The control websocket carries window sizes, which a serial console has no use for:
    // keep it read so it is answered, and end with it.
    let control = take(session, "control");
    {
        let to_vm = async {
            while let Some(Ok(msg)) = rx.next().await {
                let data: &[u8] = match &msg {
                    Message::Binary(b) => b,
                    Message::Text(t) => t.as_bytes(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if con_w.write_all(data).await.is_err() {
                    break;
                }
            }
        };
        let from_vm = async {
            crate::exec::copy_to_ws(&mut tx, &mut con_r).await;
        };
        let control_done = async {
            match control {
                Some(ws) => {
                    let (_, mut crx) = ws.split();
                    while let Some(Ok(m)) = crx.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = to_vm => {}
            () = from_vm => {}
            () = control_done => {}
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}

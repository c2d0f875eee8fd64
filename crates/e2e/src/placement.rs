//! Instances and pools placed on particular members of a cluster, through the raw API as
//! `lxc` does it: `?target=` creates, member-local `dir` pools, waiting on an operation
//! as answered, where an instance is.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{Member, busybox_request, within};

/// Creates the `dir` pool `name` through `ms[0]`, each member `m{i}` with its own
/// directory `root/m{i}/name` (LXD's way: defined per member with `?target=`, then
/// created).
///
/// # Panics
///
/// When a request is refused (with the daemon's answer).
pub async fn local_pool(ms: &[Member], root: &std::path::Path, name: &str) {
    for i in 1..=ms.len() {
        let source = root.join(format!("m{i}")).join(name);
        let body = json!({"name": name, "driver": "dir",
            "config": {"source": source.display().to_string()}});
        let r = ms[0]
            .raw(
                "POST",
                &format!("/1.0/storage-pools?target=m{i}"),
                Some(&body.to_string()),
            )
            .await;
        assert!(r.status < 300, "define pool {name} on m{i}: {}", r.text);
    }
    let body = json!({"name": name, "driver": "dir", "config": {}});
    let r = ms[0]
        .raw("POST", "/1.0/storage-pools", Some(&body.to_string()))
        .await;
    assert!(r.status < 300, "create pool {name}: {}", r.text);
}

/// How long a create on a busy cluster may take.
const CREATE: Duration = Duration::from_secs(300);

/// Creates `name` from busybox with `config` on member `target` (through `m`), its root
/// disk on pool `pool`, started when `start`; waits until it exists.
///
/// # Panics
///
/// When the create is refused or fails.
pub async fn create_on(
    m: &Member,
    target: &str,
    name: &str,
    pool: &str,
    config: &[(&str, &str)],
    start: bool,
) {
    let mut req = busybox_request(name, config, start);
    req.devices.insert(
        "root".into(),
        [
            ("type".to_string(), "disk".to_string()),
            ("path".to_string(), "/".to_string()),
            ("pool".to_string(), pool.to_string()),
        ]
        .into(),
    );
    let body = serde_json::to_string(&req).expect("json");
    let r = m
        .raw(
            "POST",
            &format!("/1.0/instances?target={target}"),
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 202, "create {name}: {}", r.text);
    wait_op(m, r.metadata(), CREATE)
        .await
        .expect("create succeeds");
}

/// Waits (up to `timeout`) for the operation `op`, as a request answered it, through `m`:
/// its final record, or `Err((err, record))` when it failed (the record is `null` when
/// `m` could not answer the wait).
///
/// # Panics
///
/// When the operation is still running after `timeout`.
pub async fn wait_op(m: &Member, op: &Value, timeout: Duration) -> Result<Value, (String, Value)> {
    let id = op["id"].as_str().unwrap_or_default().to_string();
    let done = within("operation", timeout, async {
        loop {
            let r = m
                .raw(
                    "GET",
                    &format!("/1.0/operations/{id}/wait?timeout=30"),
                    None,
                )
                .await;
            if r.status != 200 {
                return Err((format!("wait {id}: {}", r.text), Value::Null));
            }
            let v = r.metadata().clone();
            if v["status_code"].as_i64() != Some(103) {
                return Ok(v);
            }
        }
    })
    .await?;
    if done["status"] == "Success" {
        Ok(done)
    } else {
        Err((done["err"].as_str().unwrap_or_default().to_string(), done))
    }
}

/// Where `name` is, by `m`'s `GET /1.0/instances/{name}`.
pub async fn location(m: &Member, name: &str) -> String {
    let r = m.raw("GET", &format!("/1.0/instances/{name}"), None).await;
    r.metadata()["location"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every instance as `m` lists it (`GET /1.0/instances?recursion=1`).
pub async fn instance_list(m: &Member) -> Vec<Value> {
    let r = m.raw("GET", "/1.0/instances?recursion=1", None).await;
    r.metadata().as_array().cloned().unwrap_or_default()
}

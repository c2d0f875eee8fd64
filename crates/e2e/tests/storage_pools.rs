//! Storage pools per member and the `shared-fs` driver, on a real three-member cluster
//! (loopback addresses 127.0.0.90–92).
//!
//! What does this test do?
//! - a `dir` pool defined with `?target=` on each member (its own `source`) is `Pending`
//!   until the final `POST`, which refuses while a member lacks its part and refuses
//!   member-specific keys; then it is `Created` on all three, `?target=` shows each
//!   member's own source
//! - an instance created on m2 with its root on the default pool lives in m2's own
//!   directory, and `GET /1.0/storage-pools/default/volumes?recursion=1` says `location: m2`
//! - a `shared-fs` pool: one `source` for all; an instance on m3 keeps its volume there,
//!   as a plain directory (no overlay on a shared filesystem), listed with `location: m3`
//! - bad requests (unknown driver, relative source, unknown target, a non member-specific
//!   key with a target) are refused and change nothing
#![allow(clippy::unwrap_used)]

use std::path::Path;

use drover_e2e::{Member, busybox_request, form_cluster};
use serde_json::{Value, json};

async fn post(m: &Member, path: &str, body: Value) -> drover_e2e::RawResponse {
    m.raw("POST", path, Some(&body.to_string())).await
}

async fn pool(m: &Member, path: &str) -> Value {
    let r = m.raw("GET", path, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.metadata().clone()
}

/// Waits until member `m` (which applies the replicated log a moment after the leader)
/// answers `path` with a body `ok` accepts; returns that body.
async fn pool_when(m: &Member, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        last = pool(m, path).await;
        if ok(&last) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{path} never became what was expected: {last}");
}

async fn volumes(m: &Member, pool: &str) -> Vec<Value> {
    let r = m
        .raw(
            "GET",
            &format!("/1.0/storage-pools/{pool}/volumes?recursion=1"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.metadata().as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_per_member_and_shared_fs() {
    let members: Vec<Member> = form_cluster(&["127.0.0.90", "127.0.0.91", "127.0.0.92"]).await;
    let [m1, m2, m3] = &members[..] else {
        panic!("three members")
    };
    let scratch = tempfile::tempdir().unwrap();
    let src = |m: &str| scratch.path().join(format!("p1-{m}")).display().to_string();

    tracing::info!("--- p1 defined on m1 and m2: pending, and not creatable yet");
    for m in ["m1", "m2"] {
        let r = post(
            m1,
            &format!("/1.0/storage-pools?target={m}"),
            json!({"name": "p1", "driver": "dir", "config": {"source": src(m)}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    pool_when(m2, "/1.0/storage-pools/p1", |p| p["status"] == "Pending").await;
    let r = post(
        m1,
        "/1.0/storage-pools?target=m1",
        json!({"name": "p1", "driver": "dir", "config": {"source": src("m1")}}),
    )
    .await;
    assert!(
        r.expect_error(400).contains("already defined on member"),
        "{}",
        r.text
    );
    let r = post(
        m1,
        "/1.0/storage-pools",
        json!({"name": "p1", "driver": "dir"}),
    )
    .await;
    assert_eq!(r.expect_error(400), "Pool not defined on nodes: m3");

    tracing::info!("--- defined on m3 too: created everywhere");
    let r = post(
        m1,
        "/1.0/storage-pools?target=m3",
        json!({"name": "p1", "driver": "dir", "config": {"source": src("m3")}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post(
        m1,
        "/1.0/storage-pools",
        json!({"name": "p1", "driver": "dir", "config": {"source": "/x"}}),
    )
    .await;
    assert!(
        r.expect_error(400).contains("cluster member specific"),
        "{}",
        r.text
    );
    let r = post(
        m1,
        "/1.0/storage-pools",
        json!({"name": "p1", "driver": "dir", "description": "per member"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for m in [m1, m2, m3] {
        let p = pool_when(m, "/1.0/storage-pools/p1", |p| p["status"] == "Created").await;
        assert_eq!(p["locations"], json!(["m1", "m2", "m3"]));
        assert!(p["config"].get("source").is_none(), "{p}");
    }
    for m in ["m1", "m2", "m3"] {
        let p = pool(m1, &format!("/1.0/storage-pools/p1?target={m}")).await;
        assert_eq!(p["config"]["source"], src(m));
    }
    assert!(
        Path::new(&src("m1")).join("containers").is_dir(),
        "m1 made its part"
    );

    tracing::info!("--- an instance on m2 lives in m2's own directory of the default pool");
    m1.import_busybox().await;
    let op = m1
        .client()
        .create_instance(&busybox_request("c2", &[], false), Some("m2"))
        .await
        .unwrap();
    m1.wait_op(&op).await.unwrap();
    assert!(
        m2.volume_dir("c2").is_dir(),
        "{}",
        m2.volume_dir("c2").display()
    );
    assert!(!m1.volume_dir("c2").exists());
    let v = pool_when(m3, "/1.0/storage-pools/default/volumes?recursion=1", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|v| v["name"] == "c2"))
    })
    .await;
    let c2 = v
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "c2")
        .unwrap();
    assert_eq!(
        (c2["location"].as_str(), c2["type"].as_str()),
        (Some("m2"), Some("container"))
    );
    assert_eq!(c2["used_by"], json!(["/1.0/instances/c2"]));
    let one = pool(m1, "/1.0/storage-pools/default/volumes/container/c2").await;
    assert_eq!(one["location"], "m2");
    let state = pool(m2, "/1.0/storage-pools/default/volumes/container/c2/state").await;
    let used = state["usage"]["used"].as_u64().unwrap();
    assert!(used > 0 && used < 1 << 20, "own changes only: {state}");
    let r = m1
        .raw(
            "GET",
            "/1.0/storage-pools/default/volumes/container/nope",
            None,
        )
        .await;
    assert_eq!(r.expect_error(404), "Storage volume not found");

    tracing::info!("--- a shared-fs pool: one source, volumes reachable by all");
    let shared = scratch.path().join("shared");
    let r = post(
        m1,
        "/1.0/storage-pools",
        json!({"name": "nfs", "driver": "shared-fs"}),
    )
    .await;
    assert!(r.expect_error(400).contains("needs a source"), "{}", r.text);
    let r = post(m1, "/1.0/storage-pools", json!({"name": "nfs", "driver": "shared-fs", "config": {"source": shared.display().to_string()}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut req = busybox_request("s3", &[], false);
    req.devices.insert(
        "root".into(),
        [("type", "disk"), ("path", "/"), ("pool", "nfs")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let op = m1.client().create_instance(&req, Some("m3")).await.unwrap();
    m1.wait_op(&op).await.unwrap();
    let vol = shared.join("containers/default_s3");
    assert!(
        vol.join("rootfs/bin").is_dir(),
        "a plain copy on the shared fs"
    );
    assert!(!vol.join("image").exists(), "never layered on a shared fs");
    let v = volumes(m1, "nfs").await;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0]["location"], "m3");
    let p = pool_when(m2, "/1.0/storage-pools/nfs", |p| p["status"] == "Created").await;
    assert_eq!(
        (p["driver"].as_str(), p["status"].as_str()),
        (Some("shared-fs"), Some("Created"))
    );

    tracing::info!("--- refusals change nothing");
    let before = pool(m1, "/1.0/storage-pools?recursion=1").await;
    for (path, body, want) in [
        (
            "/1.0/storage-pools",
            json!({"name": "z", "driver": "zfs"}),
            "not supported",
        ),
        (
            "/1.0/storage-pools",
            json!({"name": "z", "driver": "shared-fs", "config": {"source": "rel/dir"}}),
            "absolute",
        ),
        (
            "/1.0/storage-pools?target=m9",
            json!({"name": "z", "driver": "dir"}),
            "not found",
        ),
        (
            "/1.0/storage-pools?target=m1",
            json!({"name": "z", "driver": "dir", "config": {"user.a": "b"}}),
            "member-specific",
        ),
    ] {
        let r = post(m1, path, body).await;
        assert!(
            r.status >= 400 && r.text.contains(want),
            "{path}: {}",
            r.text
        );
    }
    assert_eq!(pool(m1, "/1.0/storage-pools?recursion=1").await, before);
}

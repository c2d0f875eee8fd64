//! Joining with `member_config` and leaving for good, as LXD 5.0.2's clients see them,
//! against real droverd members formed with `lxc cluster enable` / `lxc cluster add`.
//!
//! What does this test do?
//! - `GET /1.0/cluster` lists the `source` of each `dir` pool as a member-specific key
//! - a join whose `member_config` names an unknown pool, a relative source or leaves a
//!   listed key out is refused with nothing changed (the joiner still standalone)
//! - a join with every key answered records the joiner's own `source` of each pool and
//!   makes its directory
//!
//! Members listen on 127.0.5.x (free ports).

use std::time::Duration;

use drover_e2e::{Member, Output, free_address, require_lxc};
use serde_json::{Value, json};

/// The join token `lxc cluster add` printed.
fn token_of(out: &Output) -> String {
    drover_e2e::printed_token(out)
}

/// `PUT /1.0/cluster` on `joiner`, the body `lxd init` sends plus `member_config`; the
/// HTTP status and the body.
async fn put_join(
    joiner: &Member,
    name: &str,
    address: &str,
    via: &str,
    token: &str,
    member_config: Value,
) -> (u16, Value) {
    let der = tls::fetch_certificate(via.parse().expect("cluster address"))
        .await
        .expect("fetch the cluster certificate");
    let pem = tls::certificate_pem(&der);
    let body = drover_e2e::join_body(name, address, via, &pem, token, member_config);
    let r = joiner
        .raw("PUT", "/1.0/cluster", Some(&body.to_string()))
        .await;
    (r.status, r.body)
}

fn source_key(pool: &str, value: &str) -> Value {
    json!({
        "entity": "storage-pool",
        "name": pool,
        "key": "source",
        "value": value,
        "description": format!("\"source\" property for storage pool \"{pool}\""),
    })
}

async fn cluster_of(m: &Member) -> Value {
    let r = m.raw("GET", "/1.0/cluster", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["metadata"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_answers_member_config() {
    require_lxc();
    let m1 = Member::start().await;
    let m2 = Member::start().await;
    let a1 = free_address("127.0.5.1").to_string();
    let a2 = free_address("127.0.5.2").to_string();
    m1.lxc(&["config", "set", "core.https_address", &a1])
        .await
        .success();
    assert_eq!(cluster_of(&m1).await["member_config"], json!([]));
    m1.lxc(&["cluster", "enable", "m1"]).await.success();
    m1.lxc(&["storage", "create", "data", "dir"])
        .await
        .success();
    let got = cluster_of(&m1).await;
    assert_eq!(got["enabled"], true);
    assert_eq!(
        got["member_config"],
        json!([source_key("data", ""), source_key("default", "")]),
        "{got}"
    );

    let token = token_of(&m1.lxc(&["cluster", "add", "m2"]).await);
    let own = m2.state_dir().join("data-of-m2");
    let own = own.display().to_string();
    for (bad, why) in [
        (
            json!([source_key("default", ""), source_key("nope", "")]),
            "not found",
        ),
        (
            json!([
                source_key("default", ""),
                source_key("data", "relative/dir")
            ]),
            "absolute",
        ),
        (json!([source_key("default", "")]), "Missing member config"),
    ] {
        let (status, body) = put_join(&m2, "m2", &a2, &a1, &token, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{bad}: {error}");
        assert_eq!(cluster_of(&m2).await["enabled"], false, "{bad}");
    }
    let out = m1.lxc(&["cluster", "list", "-f", "csv"]).await;
    assert_eq!(out.success().stdout.lines().count(), 1, "{}", out.stdout);
    assert!(!std::path::Path::new(&own).exists());

    let (status, body) = put_join(
        &m2,
        "m2",
        &a2,
        &a1,
        &token,
        json!([source_key("default", ""), source_key("data", &own)]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(cluster_of(&m2).await["enabled"], true);
    assert!(std::path::Path::new(&own).is_dir(), "{own} was not made");
    let out = m1
        .lxc(&["storage", "get", "data", "source", "--target", "m2"])
        .await;
    assert_eq!(out.success().stdout.trim(), own);
    let out = m1
        .lxc(&["storage", "get", "default", "source", "--target", "m2"])
        .await;
    let default = m2.state_dir().join("storage-pools").join("default");
    assert_eq!(
        std::path::PathBuf::from(out.success().stdout.trim()),
        std::fs::canonicalize(default).expect("m2's default pool directory")
    );
}

/// `GET /1.0/cluster` of `m` once its daemon answers (it restarts itself when removed).
async fn cluster_when_up(m: &Member) -> Option<Value> {
    use futures::FutureExt;
    tokio::net::UnixStream::connect(m.socket()).await.ok()?;
    // The daemon may re-execute itself between the connect and the answer (the reset):
    // a connection cut then counts as "not up yet".
    std::panic::AssertUnwindSafe(cluster_of(m))
        .catch_unwind()
        .await
        .ok()
}

/// Waits until `m` restarted itself as a standalone server.
async fn wait_standalone(m: &Member, restarts: usize) {
    drover_e2e::wait_until("standalone again", Duration::from_secs(60), || async {
        m.log().matches("restarting as a standalone server").count() >= restarts
            && cluster_when_up(m)
                .await
                .is_some_and(|c| c["enabled"] == false && c["server_name"] == "")
    })
    .await;
}

/// The member names `m` lists.
async fn names(m: &Member) -> Vec<String> {
    let out = m.lxc(&["cluster", "list", "-f", "csv"]).await;
    out.success()
        .stdout
        .lines()
        .filter_map(|l| l.split(',').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_standalone_and_joins_again() {
    require_lxc();
    let m1 = Member::start().await;
    let mut m2 = Member::start().await;
    let m3 = Member::start().await;
    let a1 = free_address("127.0.5.11").to_string();
    let a2 = free_address("127.0.5.12").to_string();
    let a3 = free_address("127.0.5.13").to_string();
    m1.lxc(&["config", "set", "core.https_address", &a1])
        .await
        .success();
    m1.lxc(&["cluster", "enable", "m1"]).await.success();
    for (m, name, a) in [(&m2, "m2", &a2), (&m3, "m3", &a3)] {
        let token = token_of(&m1.lxc(&["cluster", "add", name]).await);
        let (status, body) = put_join(m, name, a, &a1, &token, Value::Null).await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(names(&m3).await, ["m1", "m2", "m3"]);

    tracing::info!("--- lxc cluster remove m3: m3 comes back standalone");
    m1.lxc(&["cluster", "remove", "m3"]).await.success();
    wait_standalone(&m3, 1).await;
    assert_eq!(names(&m1).await, ["m1", "m2"]);
    let out = m3.lxc(&["cluster", "list"]).await;
    assert!(
        !out.stdout.contains("m1"),
        "m3 still lists a cluster: {}",
        out.stdout
    );
    let out = m3.lxc(&["storage", "list", "-f", "csv"]).await;
    assert!(
        out.success().stdout.starts_with("default,"),
        "{}",
        out.stdout
    );

    tracing::info!("--- m3 joins again with a new token");
    let token = token_of(&m1.lxc(&["cluster", "add", "m3"]).await);
    let a3 = free_address("127.0.5.14").to_string();
    let (status, body) = put_join(&m3, "m3", &a3, &a1, &token, Value::Null).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(cluster_of(&m3).await["enabled"], true);
    assert_eq!(names(&m3).await, ["m1", "m2", "m3"]);

    tracing::info!("--- m2 down, lxc cluster remove m2 --force: it resets once back");
    m2.stop_daemon().await;
    m1.lxc(&["cluster", "remove", "m2", "--force", "--yes"])
        .await
        .success();
    assert_eq!(names(&m1).await, ["m1", "m3"]);
    m2.start_again().await;
    wait_standalone(&m2, 1).await;
    assert_eq!(names(&m3).await, ["m1", "m3"]);
}

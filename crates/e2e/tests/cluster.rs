//! Clustering: real droverd processes form a cluster with join tokens, LXD-style.
//!
//! Each test uses its own loopback addresses (127.0.0.3x) and free ports, so tests run in
//! parallel with each other and with the other HTTPS tests.

use std::time::Duration;

use base64::Engine;
use drover_e2e::{Member, RawResponse, enable, free_address, join_token, require_lxc, wait_until};
use serde_json::{Value, json};

/// How long a cluster may take to settle (joins, elections, catch-up).
const SETTLE: Duration = Duration::from_secs(90);

async fn call(m: &Member, method: &str, path: &str, body: Value) -> RawResponse {
    m.raw(method, path, Some(&body.to_string())).await
}

/// `POST /1.0/cluster/members` on `m`: the token operation's metadata, and the token
/// `lxc cluster add` would print (base64 of JSON, built from that metadata).
async fn issue_token(m: &Member, name: &str) -> (Value, String) {
    let r = call(
        m,
        "POST",
        "/1.0/cluster/members",
        json!({"server_name": name}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let op = r.metadata().clone();
    assert_eq!(op["class"], "token");
    assert_ne!(
        op["location"], "none",
        "the token operation names its member"
    );
    let meta = op["metadata"].clone();
    let mut keys: Vec<&String> = meta.as_object().expect("metadata object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "addresses",
            "expiresAt",
            "fingerprint",
            "secret",
            "serverName"
        ]
    );
    (op, join_token(&meta))
}

/// The body LXD 5.0.2's `lxd init --preseed` sends to the joiner's socket.
fn preseed(name: &str, address: &str, via: &str, certificate: &str, token: &str) -> Value {
    json!({
        "server_name": name,
        "enabled": true,
        "member_config": null,
        "cluster_address": via,
        "cluster_certificate": certificate,
        "server_address": address,
        "cluster_password": token,
    })
}

/// The cluster certificate as a joiner fetches it: over TLS from `address`, checked
/// against the token's fingerprint, as PEM.
async fn fetch_cluster_certificate(address: &str, fingerprint: &str) -> String {
    let der = tls::fetch_certificate(address.parse().expect("address"))
        .await
        .expect("fetch the cluster certificate");
    assert_eq!(tls::fingerprint(&der), fingerprint, "token fingerprint");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("ascii"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Joins `joiner` (as `name` on `address`) through `via` with a fresh token from `issuer`.
async fn join(issuer: &Member, via: &str, joiner: &Member, name: &str, address: &str) {
    let (op, token) = issue_token(issuer, name).await;
    let pem =
        fetch_cluster_certificate(via, op["metadata"]["fingerprint"].as_str().unwrap_or("")).await;
    let r = call(
        joiner,
        "PUT",
        "/1.0/cluster",
        preseed(name, address, via, &pem, &token),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
}

/// `GET /1.0/cluster/members?recursion=1` on `m`, by name.
async fn members(m: &Member) -> Vec<Value> {
    let r = m.raw("GET", "/1.0/cluster/members?recursion=1", None).await;
    r.metadata().as_array().cloned().unwrap_or_default()
}

/// Whether `m` lists exactly `expected` (name → status).
async fn lists(m: &Member, expected: &[(&str, &str)]) -> bool {
    let got: Vec<(String, String)> = members(m)
        .await
        .iter()
        .map(|v| {
            (
                v["server_name"].as_str().unwrap_or("").to_string(),
                v["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = expected
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    got == want
}

async fn has_profile(m: &Member, name: &str) -> bool {
    m.raw("GET", &format!("/1.0/profiles/{name}"), None)
        .await
        .status
        == 200
}

async fn create_profile(m: &Member, name: &str) {
    call(m, "POST", "/1.0/profiles", json!({"name": name}))
        .await
        .metadata();
}

/// What does this test do?
/// - three real droverd processes; `m1` gets an address and enables clustering: it is now
///   `m1`, clustered, serving the cluster certificate
/// - `m2` and `m3` join with tokens through LXD 5.0.2's preseed body
/// - every member lists the three `Online`, with one `database-leader`
/// - a profile created on a follower is visible on every member
/// - `lxc cluster list` against any member shows the three
/// - kill -9 `m3`: the others keep serving reads and writes, and show it `Offline` within
///   the (shortened) threshold
/// - restart `m3`: it catches up with what it missed and is `Online` again
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_form_a_cluster_and_survive_a_killed_member() {
    let m1 = Member::start().await;
    let m2 = Member::start().await;
    let mut m3 = Member::start().await;
    let a1 = free_address("127.0.0.31").to_string();
    let a2 = free_address("127.0.0.32").to_string();
    let a3 = free_address("127.0.0.33").to_string();

    tracing::info!("--- a standalone member is not clustered");
    let standalone = m1.raw("GET", "/1.0/cluster", None).await;
    assert_eq!(
        standalone.metadata()["enabled"],
        false,
        "{}",
        standalone.text
    );

    tracing::info!("--- enable clustering on m1");
    enable(&m1, &a1, "m1").await;
    let info = m1.raw("GET", "/1.0", None).await;
    let env = &info.metadata()["environment"];
    assert_eq!(env["server_clustered"], true, "{}", info.text);
    assert_eq!(env["server_name"], "m1");
    let cluster_fp = env["certificate_fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    let cluster = m1.raw("GET", "/1.0/cluster", None).await;
    assert_eq!(
        cluster.metadata(),
        &json!({"server_name": "m1", "enabled": true, "member_config": [{
            "entity": "storage-pool",
            "name": "default",
            "key": "source",
            "value": "",
            "description": "\"source\" property for storage pool \"default\"",
        }]})
    );
    call(
        &m1,
        "PATCH",
        "/1.0",
        json!({"config": {"cluster.offline_threshold": "4"}}),
    )
    .await
    .metadata();

    tracing::info!("--- m2 and m3 join with tokens");
    join(&m1, &a1, &m2, "m2", &a2).await;
    // m3's token comes from a follower, and m3 joins through it: the follower points it
    // to the leader.
    join(&m2, &a2, &m3, "m3", &a3).await;
    for m in [&m2, &m3] {
        let info = m.raw("GET", "/1.0", None).await;
        assert_eq!(
            info.metadata()["environment"]["certificate_fingerprint"],
            cluster_fp.as_str(),
            "every member serves the cluster certificate"
        );
    }

    tracing::info!("--- every member lists the three Online");
    let all_online = [("m1", "Online"), ("m2", "Online"), ("m3", "Online")];
    for m in [&m1, &m2, &m3] {
        wait_until("three members Online", SETTLE, || lists(m, &all_online)).await;
    }
    let listed = members(&m2).await;
    let leaders = listed
        .iter()
        .filter(|v| {
            v["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database-leader"))
        })
        .count();
    assert_eq!(leaders, 1, "{listed:?}");
    for v in &listed {
        assert_eq!(v["database"], true, "{v}");
        assert!(
            v["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database")),
            "every member votes (max_voters 3): {v}"
        );
        assert_eq!(v["message"], "Fully operational");
        assert_eq!(v["groups"], json!(["default"]));
        assert_eq!(v["failure_domain"], "default");
    }
    let m2_url = listed
        .iter()
        .find(|v| v["server_name"] == "m2")
        .map(|v| v["url"].clone());
    assert_eq!(m2_url, Some(json!(format!("https://{a2}"))));
    let one = m3.raw("GET", "/1.0/cluster/members/m1", None).await;
    assert_eq!(one.metadata()["server_name"], "m1", "{}", one.text);

    tracing::info!("--- a write on a follower is visible on every member");
    let leader = listed
        .iter()
        .find(|v| {
            v["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database-leader"))
        })
        .and_then(|v| v["server_name"].as_str())
        .unwrap_or_default()
        .to_string();
    let follower = if leader == "m2" { &m3 } else { &m2 };
    create_profile(follower, "from-follower").await;
    for m in [&m1, &m2, &m3] {
        wait_until("the profile everywhere", SETTLE, || {
            has_profile(m, "from-follower")
        })
        .await;
    }

    if require_lxc_available() {
        tracing::info!("--- lxc cluster list against any member");
        for m in [&m1, &m3] {
            let out = m.lxc(&["cluster", "list", "-f", "csv"]).await;
            out.success();
            let names: Vec<&str> = out
                .stdout
                .lines()
                .filter_map(|l| l.split(',').next())
                .collect();
            assert_eq!(names, ["m1", "m2", "m3"], "{}", out.stdout);
            tracing::info!(table = %out.stdout, "lxc cluster list");
            assert!(out.stdout.contains("ONLINE"), "{}", out.stdout);
        }
    }

    tracing::info!("--- kill -9 m3: the others keep serving reads and writes");
    m3.kill();
    create_profile(&m1, "while-m3-down").await;
    create_profile(&m2, "while-m3-down-2").await;
    for m in [&m1, &m2] {
        wait_until("the writes on both survivors", SETTLE, || async {
            has_profile(m, "while-m3-down").await && has_profile(m, "while-m3-down-2").await
        })
        .await;
    }
    let m3_offline = [("m1", "Online"), ("m2", "Online"), ("m3", "Offline")];
    for m in [&m1, &m2] {
        wait_until("m3 Offline", Duration::from_secs(30), || {
            lists(m, &m3_offline)
        })
        .await;
    }
    let down = members(&m1).await;
    let msg = down
        .iter()
        .find(|v| v["server_name"] == "m3")
        .and_then(|v| v["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(msg.starts_with("No heartbeat"), "{msg}");

    tracing::info!("--- restart m3: it catches up and is Online");
    m3.start_again().await;
    wait_until("m3 caught up", SETTLE, || async {
        has_profile(&m3, "while-m3-down").await && has_profile(&m3, "while-m3-down-2").await
    })
    .await;
    for m in [&m1, &m2, &m3] {
        wait_until("three members Online again", SETTLE, || {
            lists(m, &all_online)
        })
        .await;
    }
    let info = m3.raw("GET", "/1.0", None).await;
    assert_eq!(info.metadata()["environment"]["server_name"], "m3");
}

/// Whether `lxc` is installed (the lxc part of a test is skipped, loudly, without it).
fn require_lxc_available() -> bool {
    let found = std::process::Command::new("lxc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        require_lxc();
    } else {
        eprintln!("lxc not installed: skipping the lxc part");
    }
    found
}

/// What does this test do?
/// - `m1` enables clustering; a second daemon wants to join
/// - a token that expired, and a revoked one, are refused with a clear error; the joiner
///   stays standalone and the cluster still has one member
/// - a join whose cluster certificate is not the token's fails closed, before contacting
///   anyone, and so does one on an address the joiner cannot listen on; the leader refuses
///   a joiner of another schema or API version: the token still works afterwards
/// - the right certificate with that token joins
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_and_wrong_fingerprints_are_refused_and_change_nothing() {
    let m1 = Member::start().await;
    let j = Member::start().await;
    let a1 = free_address("127.0.0.34").to_string();
    let aj = free_address("127.0.0.35").to_string();
    tracing::info!("--- enabling clustering needs an https address");
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        json!({"server_name": "j", "enabled": true}),
    )
    .await;
    let err = r.expect_error(400);
    assert!(err.contains("core.https_address"), "{err}");

    enable(&m1, &a1, "m1").await;

    let unchanged = || async {
        assert!(
            lists(&m1, &[("m1", "Online")]).await,
            "{:?}",
            members(&m1).await
        );
        let c = j.raw("GET", "/1.0/cluster", None).await;
        assert_eq!(c.metadata()["enabled"], false, "{}", c.text);
    };

    tracing::info!("--- an expired token is refused");
    call(
        &m1,
        "PATCH",
        "/1.0",
        json!({"config": {"cluster.join_token_expiry": "1S"}}),
    )
    .await
    .metadata();
    let (op, token) = issue_token(&m1, "j").await;
    let fp = op["metadata"]["fingerprint"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let expires = op["metadata"]["expiresAt"]
        .as_str()
        .unwrap_or("")
        .to_string();
    wait_until("the token to expire", Duration::from_secs(10), || {
        let expires = expires.clone();
        async move { chrono_now() > expires }
    })
    .await;
    let pem = fetch_cluster_certificate(&a1, &fp).await;
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        preseed("j", &aj, &a1, &pem, &token),
    )
    .await;
    let err = r.expect_error(403);
    assert!(err.contains("expired"), "{err}");
    unchanged().await;
    call(
        &m1,
        "PATCH",
        "/1.0",
        json!({"config": {"cluster.join_token_expiry": "1H"}}),
    )
    .await
    .metadata();

    tracing::info!("--- a revoked token is refused");
    let (op, token) = issue_token(&m1, "j").await;
    let id = op["id"].as_str().expect("op id").to_string();
    m1.raw("DELETE", &format!("/1.0/operations/{id}"), None)
        .await
        .metadata();
    wait_until(
        "the token operation cancelled",
        Duration::from_secs(10),
        || async {
            m1.raw("GET", &format!("/1.0/operations/{id}"), None)
                .await
                .body["metadata"]["status"]
                == "Cancelled"
        },
    )
    .await;
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        preseed("j", &aj, &a1, &pem, &token),
    )
    .await;
    let err = r.expect_error(403);
    assert!(err.contains("No valid cluster join token"), "{err}");
    unchanged().await;

    tracing::info!("--- a certificate that is not the token's fails closed");
    let (op, token) = issue_token(&m1, "j").await;
    let impostor = tls::Identity::generate("impostor", &[]).expect("identity");
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        preseed("j", &aj, &a1, impostor.certificate_pem(), &token),
    )
    .await;
    let err = r.expect_error(400);
    assert!(err.contains("does not match"), "{err}");
    unchanged().await;

    tracing::info!("--- a joiner of another drover version is refused by the leader");
    let older = tls::Identity::generate("older@e2e", &[]).expect("identity");
    let direct = drover_e2e::HttpsClient::new(a1.parse().expect("addr"), Some(&older), &fp);
    let ask = json!({
        "secret": op["metadata"]["secret"],
        "name": "j",
        "address": aj,
        "architecture": "x86_64",
        "schema": 1,
        "api_extensions": 3,
    });
    let r = direct
        .request("POST", "/internal/cluster/join", Some(&ask.to_string()))
        .await;
    let err = r.expect_error(400);
    assert!(err.contains("version doesn't match"), "{err}");
    unchanged().await;

    tracing::info!("--- an address the joiner cannot listen on is refused first");
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        preseed("j", &a1, &a1, &pem, &token),
    )
    .await;
    let err = r.expect_error(400);
    assert!(err.contains("Cannot listen"), "{err}");
    unchanged().await;

    tracing::info!("--- the same token with the right certificate joins (as a standby)");
    call(
        &m1,
        "PATCH",
        "/1.0",
        json!({"config": {"cluster.max_voters": "1"}}),
    )
    .await
    .metadata();
    let r = call(
        &j,
        "PUT",
        "/1.0/cluster",
        preseed("j", &aj, &a1, &pem, &token),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text);
    for m in [&m1, &j] {
        wait_until("two members Online", SETTLE, || {
            lists(m, &[("m1", "Online"), ("j", "Online")])
        })
        .await;
    }
    let listed = members(&j).await;
    let standby = listed.iter().find(|v| v["server_name"] == "j").expect("j");
    assert_eq!(standby["roles"], json!(["database-standby"]), "{standby}");
    assert_eq!(standby["database"], false, "{standby}");
}

/// Now as RFC 3339 UTC with nanoseconds (compares as a string with `expiresAt`).
fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Runs the `drover` CLI against `m`.
async fn drover(m: &Member, args: &[&str]) -> std::process::Output {
    let bin = drover_e2e::droverd_bin().with_file_name("drover");
    let out = tokio::process::Command::new(&bin)
        .args(args)
        .env("DROVER_DIR", m.state_dir())
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    tracing::info!(
        args = ?args,
        code = ?out.status.code(),
        stdout = %String::from_utf8_lossy(&out.stdout),
        stderr = %String::from_utf8_lossy(&out.stderr),
        "drover"
    );
    out
}

/// What does this test do?
/// - `drover cluster enable m1` on a member with an HTTPS address
/// - `drover cluster add m2` prints a join token
/// - `drover cluster join <token> --address ...` on a second daemon fetches and checks the
///   cluster certificate and joins
/// - `drover cluster list` on both shows the two members ONLINE
/// - `drover cluster list-tokens` (and `lxc cluster list-tokens`) show a new token;
///   `drover cluster revoke-token` revokes it
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_forms_a_cluster() {
    let m1 = Member::start().await;
    let m2 = Member::start().await;
    let a1 = free_address("127.0.0.36").to_string();
    let a2 = free_address("127.0.0.37").to_string();
    call(
        &m1,
        "PATCH",
        "/1.0",
        json!({"config": {"core.https_address": a1}}),
    )
    .await
    .metadata();

    tracing::info!("--- drover cluster enable m1");
    assert!(
        drover(&m1, &["cluster", "enable", "m1"])
            .await
            .status
            .success()
    );

    tracing::info!("--- drover cluster add m2");
    let out = drover(&m1, &["cluster", "add", "m2"]).await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let token = stdout
        .lines()
        .nth(1)
        .expect("token line")
        .trim()
        .to_string();

    tracing::info!("--- drover cluster join on m2");
    let out = drover(&m2, &["cluster", "join", &token, "--address", &a2]).await;
    assert!(out.status.success());

    tracing::info!("--- drover cluster list on both");
    for m in [&m1, &m2] {
        wait_until("both ONLINE in drover cluster list", SETTLE, || async {
            let out = drover(m, &["cluster", "list", "-f", "csv"]).await;
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let rows: Vec<(String, String)> = text
                .lines()
                .map(|l| {
                    let cells: Vec<&str> = l.split(',').collect();
                    (
                        cells.first().copied().unwrap_or("").to_string(),
                        cells.iter().rev().nth(1).copied().unwrap_or("").to_string(),
                    )
                })
                .collect();
            rows == [
                ("m1".to_string(), "ONLINE".to_string()),
                ("m2".to_string(), "ONLINE".to_string()),
            ]
        })
        .await;
    }

    tracing::info!("--- list-tokens and revoke-token");
    assert!(
        drover(&m1, &["cluster", "add", "m3"])
            .await
            .status
            .success()
    );
    let out = drover(&m1, &["cluster", "list-tokens", "-f", "csv"]).await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.starts_with("m3,"), "{listed}");
    if require_lxc_available() {
        let out = m1.lxc(&["cluster", "list-tokens", "-f", "csv"]).await;
        assert!(out.success().stdout.starts_with("m3,"), "{}", out.stdout);
    }
    assert!(
        drover(&m1, &["cluster", "revoke-token", "m3"])
            .await
            .status
            .success()
    );
    wait_until("no pending token", Duration::from_secs(10), || async {
        drover(&m1, &["cluster", "list-tokens", "-f", "csv"])
            .await
            .stdout
            .is_empty()
    })
    .await;
}

/// Forms a cluster `m1`, `m2`, `m3` of three fresh daemons on `ips`; returns them (in
/// that order) once every one lists the three `Online`.
async fn form_three(ips: [&str; 3]) -> Vec<Member> {
    let ms = vec![
        Member::start().await,
        Member::start().await,
        Member::start().await,
    ];
    let addrs: Vec<String> = ips.iter().map(|ip| free_address(ip).to_string()).collect();
    enable(&ms[0], &addrs[0], "m1").await;
    call(
        &ms[0],
        "PATCH",
        "/1.0",
        json!({"config": {"cluster.offline_threshold": "4"}}),
    )
    .await
    .metadata();
    join(&ms[0], &addrs[0], &ms[1], "m2", &addrs[1]).await;
    join(&ms[0], &addrs[0], &ms[2], "m3", &addrs[2]).await;
    let all = [("m1", "Online"), ("m2", "Online"), ("m3", "Online")];
    for m in &ms {
        wait_until("three members Online", SETTLE, || lists(m, &all)).await;
    }
    ms
}

/// The member `m` reports as `database-leader`, if any.
async fn leader_seen_by(m: &Member) -> Option<String> {
    members(m)
        .await
        .iter()
        .find(|v| {
            v["roles"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x == "database-leader"))
        })
        .and_then(|v| v["server_name"].as_str().map(str::to_string))
}

/// Profile names on `m`, sorted.
async fn profile_names(m: &Member) -> Vec<String> {
    let r = m.raw("GET", "/1.0/profiles", None).await;
    let mut names: Vec<String> = r
        .metadata()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|v| {
            v.as_str()
                .map(|s| s.rsplit('/').next().unwrap_or("").to_string())
        })
        .collect();
    names.sort();
    names
}

/// What does this test do?
/// - forms a three-member cluster and writes on a follower
/// - kill -9 the leader: the two others elect a new leader among themselves and keep
///   taking writes
/// - the old leader, restarted, catches up: every member ends with the same profiles,
///   every committed write present
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_loses_no_write() {
    let mut ms = form_three(["127.0.0.38", "127.0.0.39", "127.0.0.30"]).await;
    let names = ["m1", "m2", "m3"];

    tracing::info!("--- writes before the crash");
    let old = leader_seen_by(&ms[1]).await.expect("a leader");
    let old_i = names.iter().position(|n| *n == old).expect("known member");
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old_i).collect();
    create_profile(&ms[survivors[0]], "before-1").await;
    create_profile(&ms[old_i], "before-2").await;

    tracing::info!(leader = %old, "--- kill -9 the leader");
    ms[old_i].kill();
    for &i in &survivors {
        wait_until("a new leader among the survivors", SETTLE, || async {
            leader_seen_by(&ms[i]).await.is_some_and(|l| l != old)
        })
        .await;
    }
    create_profile(&ms[survivors[0]], "after-1").await;
    create_profile(&ms[survivors[1]], "after-2").await;
    let expected: Vec<String> = ["after-1", "after-2", "before-1", "before-2", "default"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for &i in &survivors {
        wait_until("every write on the survivors", SETTLE, || async {
            profile_names(&ms[i]).await == expected
        })
        .await;
    }

    tracing::info!("--- the old leader comes back and catches up");
    ms[old_i].start_again().await;
    for m in &ms {
        wait_until("every write on every member", SETTLE, || async {
            profile_names(m).await == expected
        })
        .await;
    }
    let all = [("m1", "Online"), ("m2", "Online"), ("m3", "Online")];
    for m in &ms {
        wait_until("three members Online again", SETTLE, || lists(m, &all)).await;
    }
}

/// What does this test do?
/// - `lxc cluster enable m1` on a member with an HTTPS address
/// - `lxc cluster add m2` prints a token built from the token operation's metadata
/// - a daemon that has an instance is refused: a joiner must be empty
/// - an empty daemon joins with that token through LXD 5.0.2's own `lxd init --preseed`
/// - `lxc cluster list` against the joiner shows both ONLINE
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_enables_and_adds_and_a_busy_joiner_is_refused() {
    if !require_lxc_available() {
        return;
    }
    let m1 = Member::start().await;
    let busy = Member::start().await;
    let m2 = Member::start().await;
    let a1 = free_address("127.0.0.41").to_string();
    let a2 = free_address("127.0.0.42").to_string();
    m1.lxc(&["config", "set", "core.https_address", &a1])
        .await
        .success();

    tracing::info!("--- lxc cluster enable m1");
    let out = m1.lxc(&["cluster", "enable", "m1"]).await;
    out.success();
    assert!(out.stdout.contains("Clustering enabled"), "{}", out.stdout);

    tracing::info!("--- lxc cluster add m2");
    let out = m1.lxc(&["cluster", "add", "m2"]).await;
    out.success();
    let token = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("join token"))
        .nth(1)
        .expect("token line")
        .trim()
        .to_string();
    let info = m1.raw("GET", "/1.0", None).await;
    let fp = info.metadata()["environment"]["certificate_fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    let pem = fetch_cluster_certificate(&a1, &fp).await;

    tracing::info!("--- a daemon with an instance may not join");
    busy.import_busybox().await;
    let op = busy
        .create(&drover_e2e::busybox_request("c1", &[], false))
        .await
        .expect("create c1");
    busy.wait_op(&op).await.expect("c1 created");
    let r = call(
        &busy,
        "PUT",
        "/1.0/cluster",
        preseed(
            "m2",
            &free_address("127.0.0.43").to_string(),
            &a1,
            &pem,
            &token,
        ),
    )
    .await;
    let err = r.expect_error(400);
    assert!(err.contains("instance"), "{err}");
    assert!(lists(&m1, &[("m1", "Online")]).await);

    tracing::info!("--- an empty daemon joins with the lxc token, through lxd init --preseed");
    let lxd_found = std::process::Command::new("lxd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if lxd_found {
        let yaml = format!(
            "cluster:\n  enabled: true\n  server_name: m2\n  server_address: {a2}\n  cluster_token: {token}\n"
        );
        let mut init = tokio::process::Command::new("lxd");
        init.args(["init", "--preseed"])
            .env("LXD_DIR", m2.state_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = init.spawn().expect("run lxd init");
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin
                .write_all(yaml.as_bytes())
                .await
                .expect("write preseed");
        }
        let out = child.wait_with_output().await.expect("lxd init");
        assert!(
            out.status.success(),
            "lxd init --preseed failed\n--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("lxd not installed: joining with its request body instead");
        let r = call(
            &m2,
            "PUT",
            "/1.0/cluster",
            preseed("m2", &a2, &a1, &pem, &token),
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.text);
    }

    tracing::info!("--- lxc config on a member: shared keys change, its address does not");
    m2.lxc(&["config", "set", "cluster.offline_threshold", "5"])
        .await
        .success();
    let err = m2
        .lxc(&["config", "set", "core.https_address", &a1])
        .await
        .failure()
        .to_string();
    assert!(err.contains("clustered member"), "{err}");
    let shown = m2.lxc(&["config", "get", "core.https_address"]).await;
    assert_eq!(shown.success().stdout.trim(), a2);
    wait_until(
        "lxc cluster list on m2 shows both ONLINE",
        SETTLE,
        || async {
            let out = m2.lxc(&["cluster", "list", "-f", "csv"]).await;
            let rows: Vec<&str> = out.stdout.lines().collect();
            out.code == 0
                && rows.len() == 2
                && rows[0].starts_with("m1,")
                && rows[1].starts_with("m2,")
                && rows.iter().all(|r| r.contains(",ONLINE,"))
        },
    )
    .await;
}

/// What does this test do?
/// - forms a three-member cluster and writes a profile
/// - kill -9 every member (a power cut)
/// - restarts them one by one: the first serves reads without a quorum, and once a
///   second is back the cluster elects a leader and takes writes again
/// - every member ends with every write, and lists the three `Online`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restarts_after_a_power_cut() {
    let mut ms = form_three(["127.0.0.44", "127.0.0.45", "127.0.0.46"]).await;
    create_profile(&ms[1], "before-cut").await;
    for m in &ms {
        wait_until("the profile everywhere", SETTLE, || {
            has_profile(m, "before-cut")
        })
        .await;
    }

    tracing::info!("--- power cut: kill -9 every member");
    for m in &mut ms {
        m.kill();
    }

    tracing::info!("--- m1 alone serves reads");
    ms[0].start_again().await;
    assert!(has_profile(&ms[0], "before-cut").await);

    tracing::info!("--- m2 back: a quorum, writes work");
    ms[1].start_again().await;
    create_profile(&ms[1], "after-cut").await;
    ms[2].start_again().await;
    let all = [("m1", "Online"), ("m2", "Online"), ("m3", "Online")];
    for m in &ms {
        wait_until("every write everywhere", SETTLE, || async {
            has_profile(m, "after-cut").await && has_profile(m, "before-cut").await
        })
        .await;
        wait_until("three members Online", SETTLE, || lists(m, &all)).await;
    }
}

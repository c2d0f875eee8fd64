//! An operator's day with LXD's own `lxc` 5.0.2 (and `lxd init --preseed`) against three
//! real droverd members: the cluster is formed through the API only, the way LXD's tools
//! form one, then used the way an operator uses a LXD cluster.
//!
//! What does this test do?
//! - `lxc config set core.https_address`, `lxc cluster enable m1`, `lxc cluster add m2`
//!   prints a token; m2 joins with `lxd init --preseed` (LXD's own tool, when installed) and
//!   m3 with the `PUT /1.0/cluster` body `lxd init` sends; `lxc cluster list` on every
//!   member shows three ONLINE members, `lxc cluster show m2` LXD's YAML; a token revoked
//!   with `lxc cluster revoke-token` is no longer listed
//! - `lxc cluster set/get/unset m2 scheduler.instance`: unset removes the key, as in LXD;
//!   `lxc cluster edit m2` with a partial YAML; `lxc info --target m2` and `lxc config get
//!   core.https_address --target m3` answer for that member
//! - `lxc launch busybox scn1 --target m2`, `lxc list` from every member, `lxc info`,
//!   `lxc exec` and `lxc file push/pull/delete` through members that do not hold it (an
//!   absolute symlink in the instance stays in the instance)
//! - `lxc move scn1 --target m3` stopped; running without `--stateless` refused and still
//!   running; `--stateless` moves it running
//! - `lxc cluster evacuate m1 --force` (EVACUATED, launch on it refused, the instance runs
//!   elsewhere), `lxc cluster restore m1 --force` (ONLINE, the instance back home, running)
//! - a client certificate token from `lxc config trust add` on m1 is accepted by m2
//!   (`lxc remote add` over HTTPS), and the remote lists the cluster
//! - `lxc cluster remove m3` of an empty member
//!
//! Members listen on 127.0.0.24–26 (free ports).

use std::time::Duration;

use drover_e2e::{
    CLUSTER_SETTLE, HttpsClient, Member, Output, free_address, lxc_member_states, lxc_remote,
    require_lxc, wait_until,
};

/// The `lxc list -f csv` row of `name` as `m` sees it, if any.
async fn row(m: &Member, name: &str) -> Option<String> {
    let out = m.lxc(&["list", "-f", "csv"]).await;
    out.success();
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .map(str::to_string)
}

/// The join token `lxc cluster add` printed.
fn token_of(out: &Output) -> String {
    drover_e2e::printed_token(out)
}

/// Whether LXD's daemon binary (for `lxd init --preseed`) is installed.
fn lxd_installed() -> bool {
    std::process::Command::new("lxd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Joins `joiner` as `name` on `address` with `token`, with `lxd init --preseed`.
async fn join_with_preseed(joiner: &Member, name: &str, address: &str, token: &str) {
    let preseed = format!(
        "cluster:\n  enabled: true\n  server_name: {name}\n  server_address: {address}\n  cluster_token: {token}\n"
    );
    let mut cmd = tokio::process::Command::new("lxd");
    cmd.args(["init", "--preseed"])
        .env("LXD_DIR", joiner.state_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run lxd init --preseed");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(preseed.as_bytes()).await.expect("preseed");
    }
    let out = drover_e2e::within(
        "lxd init --preseed",
        Duration::from_secs(60),
        child.wait_with_output(),
    )
    .await
    .expect("lxd init --preseed finishes");
    assert!(
        out.status.success(),
        "lxd init --preseed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Joins `joiner` with the body `lxd init --preseed` sends, over its unix socket.
async fn join_with_put(joiner: &Member, name: &str, address: &str, via: &str, token: &str) {
    let der = tls::fetch_certificate(via.parse().expect("cluster address"))
        .await
        .expect("fetch the cluster certificate");
    let body = drover_e2e::join_body(
        name,
        address,
        via,
        &tls::certificate_pem(&der),
        token,
        serde_json::Value::Null,
    );
    let r = joiner
        .raw("PUT", "/1.0/cluster", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["metadata"]["id"].as_str().expect("operation id");
    let done = joiner
        .raw(
            "GET",
            &format!("/1.0/operations/{id}/wait?timeout=60"),
            None,
        )
        .await;
    assert_eq!(done.metadata()["status"], "Success", "{}", done.text);
}

/// Waits until `m` lists `want` members, all in state `state`.
async fn all_members(m: &Member, want: usize, state: &str) {
    wait_until(
        &format!("{want} members {state}"),
        CLUSTER_SETTLE,
        || async {
            let list = lxc_member_states(m).await;
            list.len() == want && list.iter().all(|(_, s)| s == state)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_runs_a_cluster_with_lxc() {
    require_lxc();
    let m1 = Member::start().await;
    let m2 = Member::start().await;
    let m3 = Member::start().await;
    let a1 = free_address("127.0.0.24").to_string();
    let a2 = free_address("127.0.0.25").to_string();
    let a3 = free_address("127.0.0.26").to_string();

    tracing::info!("--- lxc config set core.https_address, lxc cluster enable m1");
    m1.lxc(&["config", "set", "core.https_address", &a1])
        .await
        .success();
    let out = m1.lxc(&["cluster", "enable", "m1"]).await;
    assert!(
        out.success().stdout.contains("Clustering enabled"),
        "{}",
        out.stdout
    );

    tracing::info!("--- lxc cluster add m2 / m3, joins");
    let out = m1.lxc(&["cluster", "add", "m2"]).await;
    assert!(
        out.stdout.contains("Member m2 join token:"),
        "{}",
        out.stdout
    );
    let t2 = token_of(&out);
    if lxd_installed() {
        join_with_preseed(&m2, "m2", &a2, &t2).await;
    } else {
        tracing::warn!("lxd is not installed: m2 joins with the PUT lxd init would send");
        join_with_put(&m2, "m2", &a2, &a1, &t2).await;
    }
    let t3 = token_of(&m1.lxc(&["cluster", "add", "m3"]).await);
    join_with_put(&m3, "m3", &a3, &a1, &t3).await;
    for m in [&m1, &m2, &m3] {
        all_members(m, 3, "ONLINE").await;
    }
    let out = m3.lxc(&["cluster", "show", "m2"]).await;
    out.success();
    for line in [
        "server_name: m2",
        "status: Online",
        "database: true",
        "- default",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains(&format!("url: https://{a2}")),
        "{}",
        out.stdout
    );
    let out = m1.lxc(&["cluster", "list-tokens", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "", "both tokens were used");
    m2.lxc(&["cluster", "add", "m9"]).await.success();
    let out = m1.lxc(&["cluster", "list-tokens", "-f", "csv"]).await;
    assert!(out.success().stdout.starts_with("m9,"), "{}", out.stdout);
    m3.lxc(&["cluster", "revoke-token", "m9"]).await.success();
    let out = m1.lxc(&["cluster", "list-tokens", "-f", "csv"]).await;
    assert_eq!(out.success().stdout, "", "a revoked token is gone at once");

    tracing::info!("--- lxc cluster set/get/unset m2 scheduler.instance");
    m1.lxc(&["cluster", "set", "m2", "scheduler.instance", "manual"])
        .await
        .success();
    let out = m2
        .lxc(&["cluster", "get", "m2", "scheduler.instance"])
        .await;
    assert_eq!(out.success().stdout, "manual\n");
    m1.lxc(&["cluster", "unset", "m2", "scheduler.instance"])
        .await
        .success();
    let err = m1
        .lxc(&["cluster", "get", "m2", "scheduler.instance"])
        .await;
    assert!(
        err.failure().contains("does not exist"),
        "unset removed the key: {}",
        err.stderr
    );
    let out = m1
        .lxc(&["cluster", "set", "m2", "scheduler.instance", "sometimes"])
        .await;
    assert!(
        out.failure()
            .contains(r#"Invalid cluster configuration key "scheduler.instance" value"#),
        "{}",
        out.stderr
    );

    tracing::info!("--- lxc cluster edit with a partial YAML, lxc info/config --target");
    m1.lxc_stdin(
        &["cluster", "edit", "m2"],
        b"description: the second\ngroups:\n- default\n",
    )
    .await
    .success();
    let out = m3.lxc(&["cluster", "show", "m2"]).await;
    assert!(
        out.success().stdout.contains("description: the second"),
        "{}",
        out.stdout
    );
    let out = m1.lxc(&["info", "--target", "m2"]).await;
    assert!(
        out.success().stdout.contains("server_name: m2"),
        "{}",
        out.stdout
    );
    let out = m1
        .lxc(&["config", "get", "core.https_address", "--target", "m3"])
        .await;
    assert_eq!(out.success().stdout.trim(), a3);
    // An untrusted HTTPS client's ?target= is not carried over the (trusted) member link.
    let r = m1.raw("GET", "/1.0", None).await;
    let pin = r.metadata()["environment"]["certificate_fingerprint"]
        .as_str()
        .expect("the cluster certificate fingerprint")
        .to_string();
    let anonymous = HttpsClient::new(a1.parse().expect("an address"), None, &pin);
    let r = anonymous.request("GET", "/1.0?target=m2", None).await;
    assert_eq!(r.metadata()["auth"], "untrusted", "{}", r.text);

    tracing::info!("--- lxc image import, lxc launch --target m2, list/info/exec anywhere");
    let image = tokio::task::spawn_blocking(drover_e2e::busybox_image)
        .await
        .expect("build the busybox image");
    m1.lxc(&[
        "image",
        "import",
        image.to_str().expect("utf-8"),
        "--alias",
        "busybox",
    ])
    .await
    .success();
    m1.lxc(&["launch", "busybox", "scn1", "--target", "m2"])
        .await
        .success();
    for m in [&m1, &m2, &m3] {
        let r = row(m, "scn1").await.expect("scn1 listed");
        assert!(r.starts_with("scn1,RUNNING,"), "{r}");
        assert!(r.ends_with(",m2"), "{r}");
    }
    let out = m3.lxc(&["info", "scn1"]).await;
    out.success();
    for line in ["Name: scn1", "Status: RUNNING", "Location: m2"] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    let out = m3
        .lxc(&["exec", "scn1", "--", "cat", "/etc/hostname"])
        .await;
    assert_eq!(out.success().stdout, "scn1\n");

    tracing::info!("--- lxc file push/pull/delete through members that do not hold it");
    let local = tempfile::tempdir().expect("a local dir");
    let note = local.path().join("note.txt");
    std::fs::write(&note, "from the operator\n").expect("write a local file");
    m3.lxc(&[
        "file",
        "push",
        note.to_str().expect("utf-8"),
        "scn1/root/note.txt",
        "--mode",
        "0640",
    ])
    .await
    .success();
    let out = m2
        .lxc(&[
            "exec",
            "scn1",
            "--",
            "stat",
            "-c",
            "%a %u",
            "/root/note.txt",
        ])
        .await;
    assert_eq!(out.success().stdout, "640 0\n");
    let out = m1.lxc(&["file", "pull", "scn1/root/note.txt", "-"]).await;
    assert_eq!(out.success().stdout, "from the operator\n");
    // An absolute symlink in the instance resolves inside the instance, never on the host.
    m2.lxc(&["exec", "scn1", "--", "ln", "-s", "/", "/root/up"])
        .await
        .success();
    let out = m3
        .lxc(&["file", "pull", "scn1/root/up/etc/hostname", "-"])
        .await;
    assert_eq!(out.success().stdout, "scn1\n");
    m1.lxc(&["file", "delete", "scn1/root/note.txt"])
        .await
        .success();
    let out = m3.lxc(&["file", "pull", "scn1/root/note.txt", "-"]).await;
    assert!(out.failure().contains("Error: Not Found"), "{}", out.stderr);

    tracing::info!("--- lxc move: stopped, running refused, running --stateless");
    m1.lxc(&["stop", "scn1"]).await.success();
    m1.lxc(&["move", "scn1", "--target", "m3"]).await.success();
    let r = row(&m2, "scn1").await.expect("scn1 listed");
    assert!(r.starts_with("scn1,STOPPED,") && r.ends_with(",m3"), "{r}");
    m2.lxc(&["start", "scn1"]).await.success();
    let out = m1.lxc(&["move", "scn1", "--target", "m1"]).await;
    assert!(out.failure().contains("CRIU"), "{}", out.stderr);
    let r = row(&m1, "scn1").await.expect("scn1 listed");
    assert!(r.starts_with("scn1,RUNNING,") && r.ends_with(",m3"), "{r}");
    m1.lxc(&["move", "scn1", "--target", "m1", "--stateless"])
        .await
        .success();
    let r = row(&m3, "scn1").await.expect("scn1 listed");
    assert!(r.starts_with("scn1,RUNNING,") && r.ends_with(",m1"), "{r}");

    tracing::info!("--- lxc cluster evacuate m1 --force, then restore");
    let out = m2.lxc(&["cluster", "evacuate", "m1", "--force"]).await;
    out.success();
    let states = lxc_member_states(&m3).await;
    assert!(
        states.contains(&("m1".to_string(), "EVACUATED".to_string())),
        "{states:?}"
    );
    let r = row(&m1, "scn1").await.expect("scn1 listed");
    assert!(
        r.starts_with("scn1,RUNNING,") && !r.ends_with(",m1"),
        "evacuated and running elsewhere: {r}"
    );
    let out = m1
        .lxc(&["launch", "busybox", "scn2", "--target", "m1"])
        .await;
    assert!(
        out.failure().contains("Cluster member is evacuated"),
        "{}",
        out.stderr
    );
    m3.lxc(&["cluster", "restore", "m1", "--force"])
        .await
        .success();
    all_members(&m2, 3, "ONLINE").await;
    let r = row(&m2, "scn1").await.expect("scn1 listed");
    assert!(
        r.starts_with("scn1,RUNNING,") && r.ends_with(",m1"),
        "back home: {r}"
    );
    let out = m3.lxc(&["cluster", "restore", "m1", "--force"]).await;
    assert!(out.failure().contains("already restored"), "{}", out.stderr);

    tracing::info!("--- a trust token of m1 redeemed through m2 (lxc remote add)");
    let out = m1
        .lxc(&["config", "trust", "add", "--name", "operator"])
        .await;
    let token = token_of(&out);
    let conf = tempfile::tempdir().expect("a client config dir");
    let out = lxc_remote(
        conf.path(),
        &[
            "remote",
            "add",
            "cl",
            &format!("https://{a2}"),
            "--password",
            &token,
            "--accept-certificate",
        ],
    )
    .await;
    out.success();
    let out = lxc_remote(conf.path(), &["list", "cl:", "-f", "csv"]).await;
    assert!(
        out.success().stdout.contains("scn1,RUNNING,"),
        "{}",
        out.stdout
    );
    let out = lxc_remote(conf.path(), &["cluster", "list", "cl:", "-f", "csv"]).await;
    assert_eq!(out.success().stdout.lines().count(), 3, "{}", out.stdout);
    let out = m2.lxc(&["config", "trust", "list", "-f", "csv"]).await;
    assert!(out.success().stdout.contains("operator"), "{}", out.stdout);

    tracing::info!("--- lxc cluster remove m3 (empty)");
    m1.lxc(&["delete", "--force", "scn1"]).await.success();
    m2.lxc(&["cluster", "remove", "m3"]).await.success();
    all_members(&m1, 2, "ONLINE").await;
}

/// What does this test do?
///
/// One member, `lxc profile` the way an operator uses it: create and set a profile, launch
/// with it, adding it twice refused, rename it (the instance follows), delete refused while used and for
/// `default`, removed from the instance then deleted; every refusal in LXD's words and
/// changing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_renamed_and_deleted_with_lxc() {
    require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;

    m.lxc(&["profile", "create", "small"]).await.success();
    m.lxc(&["profile", "set", "small", "limits.memory", "64MiB"])
        .await
        .success();
    m.lxc(&["launch", "busybox", "scnp1", "-p", "default", "-p", "small"])
        .await
        .success();
    let out = m
        .lxc(&["config", "get", "scnp1", "limits.memory", "--expanded"])
        .await;
    assert_eq!(out.success().stdout, "64MiB\n");

    tracing::info!("--- refusals change nothing");
    let out = m.lxc(&["profile", "add", "scnp1", "small"]).await;
    assert!(
        out.failure().contains("Duplicate profile found in request"),
        "{}",
        out.stderr
    );
    let out = m.lxc(&["profile", "delete", "default"]).await;
    assert!(
        out.failure()
            .contains(r#"The "default" profile cannot be deleted"#),
        "{}",
        out.stderr
    );
    let out = m.lxc(&["profile", "rename", "default", "other"]).await;
    assert!(
        out.failure()
            .contains(r#"The "default" profile cannot be renamed"#),
        "{}",
        out.stderr
    );
    let out = m.lxc(&["profile", "delete", "small"]).await;
    assert!(
        out.failure().contains("Profile is currently in use"),
        "{}",
        out.stderr
    );
    m.lxc(&["profile", "create", "taken"]).await.success();
    let out = m.lxc(&["profile", "rename", "small", "taken"]).await;
    assert!(
        out.failure().contains(r#"Name "taken" already in use"#),
        "{}",
        out.stderr
    );
    let out = m.lxc(&["profile", "delete", "nosuch"]).await;
    assert!(out.failure().contains("not found"), "{}", out.stderr);

    tracing::info!("--- rename: the instance follows");
    m.lxc(&["profile", "rename", "small", "tiny"])
        .await
        .success();
    let out = m.lxc(&["config", "show", "scnp1"]).await;
    assert!(out.success().stdout.contains("- tiny"), "{}", out.stdout);
    let out = m.lxc(&["profile", "show", "tiny"]).await;
    assert!(
        out.success().stdout.contains("/1.0/instances/scnp1"),
        "{}",
        out.stdout
    );
    let out = m
        .lxc(&["config", "get", "scnp1", "limits.memory", "--expanded"])
        .await;
    assert_eq!(out.success().stdout, "64MiB\n");
    m.lxc(&["restart", "--force", "scnp1"]).await.success();

    tracing::info!("--- delete once unused");
    m.lxc(&["profile", "remove", "scnp1", "tiny"])
        .await
        .success();
    m.lxc(&["profile", "delete", "tiny"]).await.success();
    m.lxc(&["profile", "delete", "taken"]).await.success();
    let out = m.lxc(&["profile", "list", "-f", "csv"]).await;
    let names: Vec<&str> = out
        .success()
        .stdout
        .lines()
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(names, ["default"], "{}", out.stdout);
    m.lxc(&["delete", "--force", "scnp1"]).await.success();
}

/// What does this test do?
///
/// One member, `lxc storage`: create a `dir` pool, `lxc storage set/unset` a user key (its
/// `source` cannot change), launch on it, `lxc storage delete` is
/// refused while the instance is there (and for `default`, which the default profile
/// uses), then deletes the pool and its directory once the instance is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_pools_are_deleted_with_lxc() {
    require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    m.lxc(&["storage", "create", "scratch", "dir"])
        .await
        .success();
    let dir = m.state_dir().join("storage-pools/scratch");
    assert!(dir.is_dir(), "{} exists", dir.display());
    m.lxc(&["storage", "set", "scratch", "user.owner", "ops"])
        .await
        .success();
    let out = m.lxc(&["storage", "get", "scratch", "user.owner"]).await;
    assert_eq!(out.success().stdout, "ops\n");
    let out = m
        .lxc(&["storage", "set", "scratch", "source", "/elsewhere"])
        .await;
    assert!(
        out.failure().contains("cannot be changed"),
        "{}",
        out.stderr
    );
    m.lxc(&["storage", "unset", "scratch", "user.owner"])
        .await
        .success();
    let out = m.lxc(&["storage", "show", "scratch"]).await;
    assert!(
        !out.success().stdout.contains("user.owner"),
        "{}",
        out.stdout
    );
    let out = m.lxc(&["storage", "get", "scratch", "source"]).await;
    assert_eq!(out.success().stdout.trim(), dir.to_str().expect("utf-8"));
    m.lxc(&["launch", "busybox", "scns1", "-s", "scratch"])
        .await
        .success();
    for pool in ["scratch", "default"] {
        let out = m.lxc(&["storage", "delete", pool]).await;
        assert!(
            out.failure()
                .contains("The storage pool is currently in use"),
            "{}",
            out.stderr
        );
    }
    m.lxc(&["delete", "--force", "scns1"]).await.success();
    m.lxc(&["storage", "delete", "scratch"]).await.success();
    let out = m.lxc(&["storage", "list", "-f", "csv"]).await;
    assert!(!out.success().stdout.contains("scratch"), "{}", out.stdout);
    assert!(!dir.exists(), "{} removed", dir.display());
    let out = m.lxc(&["storage", "delete", "scratch"]).await;
    assert!(
        out.failure().contains("Storage pool not found"),
        "{}",
        out.stderr
    );
}

//! Exec beyond the happy path: signals, clients that vanish, no websockets.

use std::time::{Duration, Instant};

use drover_e2e::{Member, wait_until};

/// What does this test do?
///
/// 1. `lxc exec e1 -- sleep 30` under `timeout -s INT 2`: lxc forwards SIGINT over the
///    control socket; the command ends within seconds, not after 30.
/// 2. A client killed mid-exec (`sleep 1000`): the command is killed too and the operation
///    ends; nothing keeps running in the instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_command_and_abandoned_commands_die() {
    drover_e2e::require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    m.launch("sig1", &[]).await;

    tracing::info!("--- SIGINT through lxc's control socket");
    let t0 = Instant::now();
    let mut cmd = m.lxc_command(&["exec", "sig1", "--", "sleep", "30"]);
    let mut timeout = tokio::process::Command::new("timeout");
    timeout
        .args(["-s", "INT", "2"])
        .arg(cmd.as_std().get_program())
        .args(cmd.as_std().get_args());
    for (k, v) in cmd.as_std().get_envs() {
        match v {
            Some(v) => timeout.env(k, v),
            None => timeout.env_remove(k),
        };
    }
    let _ = cmd.kill_on_drop(true);
    let _ = timeout.status().await.expect("run timeout lxc exec");
    let ps = || async { m.exec("sig1", &["ps"]).await.expect("ps").stdout };
    wait_until("sleep 30 to end", Duration::from_secs(10), || async {
        !ps().await.contains("sleep 30")
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "the signal did not reach sleep"
    );

    tracing::info!("--- a client killed mid-exec");
    let mut child = m
        .lxc_command(&["exec", "sig1", "--", "sleep", "1000"])
        .spawn()
        .expect("spawn lxc exec");
    wait_until("sleep 1000 to run", Duration::from_secs(10), || async {
        ps().await.contains("sleep 1000")
    })
    .await;
    child.kill().await.expect("kill lxc");
    wait_until(
        "sleep 1000 to be killed",
        Duration::from_secs(10),
        || async { !ps().await.contains("sleep 1000") },
    )
    .await;
}

/// What does this test do?
///
/// 1. `wait-for-websocket: false` with `record-output`: the command runs at once, the task
///    operation ends with its exit code and names its output files; they hold its output.
/// 2. Without `record-output` the command still runs to its end (its output goes nowhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_websockets_runs_and_records() {
    let m = Member::start().await;
    m.import_busybox().await;
    m.launch("rec1", &[]).await;

    tracing::info!("--- record-output");
    let r = m
        .raw(
            "POST",
            "/1.0/instances/rec1/exec",
            Some(r#"{"command": ["sh", "-c", "echo out; echo err >&2; exit 5"], "wait-for-websocket": false, "record-output": true}"#),
        )
        .await;
    let op: api::Operation = serde_json::from_value(r.metadata().clone()).expect("operation");
    let done = m.wait_op(&op).await.expect("exec finishes");
    let meta = done.metadata.expect("metadata");
    assert_eq!(meta["return"], 5);
    let stdout_url = meta["output"]["1"]
        .as_str()
        .expect("stdout file")
        .to_string();
    let out = m.raw("GET", &stdout_url, None).await;
    assert_eq!(out.status, 200);
    assert_eq!(out.text, "out\n");

    tracing::info!("--- no record-output: still runs to the end");
    let r = m
        .raw(
            "POST",
            "/1.0/instances/rec1/exec",
            Some(r#"{"command": ["sh", "-c", "echo hi; touch /tmp/marker"], "wait-for-websocket": false}"#),
        )
        .await;
    let op: api::Operation = serde_json::from_value(r.metadata().clone()).expect("operation");
    let done = m.wait_op(&op).await.expect("exec finishes");
    assert_eq!(done.metadata.expect("metadata")["return"], 0);
    let check = m
        .exec("rec1", &["test", "-f", "/tmp/marker"])
        .await
        .expect("exec test");
    assert_eq!(check.code, 0, "the command did not run to its end");
}

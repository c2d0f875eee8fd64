//! Requests that race on a real droverd: nothing half-made, nothing hidden, nothing left.

use std::time::Duration;

use api::InstanceStatus;
use drover_e2e::{Member, busybox_request, wait_until};

/// Names of the containers the runtime knows under this daemon's root.
async fn runtime_containers(m: &Member) -> Vec<String> {
    let root = m.state_dir().join("runtime");
    let out = m
        .command(
            m.runtime(),
            &["--root", &root.display().to_string(), "list", "-q"],
        )
        .await;
    out.stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// What does this test do?
///
/// 1. Creates 8 instances from the image at once (what "launch N at once" clients do).
/// 2. Every create succeeds; every instance has its volume; no temporary directory is left
///    in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_all_succeed() {
    let m = Member::start().await;
    m.import_busybox().await;

    tracing::info!("--- create par1..par8 at once");
    let creates = (1..=8).map(|i| {
        let m = &m;
        async move {
            m.create(&busybox_request(&format!("par{i}"), &[], false))
                .await
        }
    });
    for (i, r) in futures::future::join_all(creates)
        .await
        .into_iter()
        .enumerate()
    {
        r.unwrap_or_else(|e| panic!("create par{}: {e}", i + 1));
    }
    let names = m.client().instance_names().await.expect("list");
    assert_eq!(names.len(), 8, "{names:?}");
    let entries = m.volume_entries();
    assert_eq!(entries.len(), 8, "volumes: {entries:?}");
    assert!(
        entries.iter().all(|e| !e.starts_with(".tmp")),
        "leftovers: {entries:?}"
    );
}

/// What does this test do?
///
/// 1. Races a start against a rename of the same stopped instance, five times.
/// 2. Whatever wins, the API and the runtime agree: every container the runtime runs is an
///    instance the API shows Running under the same name, and nothing runs on a renamed
///    volume unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_rename_never_hide_a_container() {
    let m = Member::start().await;
    m.import_busybox().await;
    let c = m.client();
    for i in 1..=5 {
        let (old, new) = (format!("rs{i}"), format!("rn{i}"));
        m.create(&busybox_request(&old, &[], false))
            .await
            .expect("create");
        tracing::info!("--- race start and rename of {old}");
        let start = async {
            let req = api::InstanceStatePut {
                action: "start".into(),
                timeout: -1,
                force: false,
                stateful: false,
            };
            match c.update_instance_state(&old, &req).await {
                Ok(op) => m.wait_op(&op).await.map(drop),
                Err(e) => Err(e),
            }
        };
        let (path, body) = (
            format!("/1.0/instances/{old}"),
            format!(r#"{{"name": "{new}"}}"#),
        );
        let rename = m.raw("POST", &path, Some(&body));
        let (_started, renamed) = tokio::join!(start, rename);
        if renamed.status == 202 {
            let op: api::Operation =
                serde_json::from_value(renamed.metadata().clone()).expect("operation");
            let _ = m.wait_op(&op).await;
        }
    }
    let running: Vec<String> = c
        .instances_full()
        .await
        .expect("list")
        .into_iter()
        .filter(|i| i.status == InstanceStatus::Running)
        .map(|i| format!("default_{}", i.name))
        .collect();
    let mut in_runtime = runtime_containers(&m).await;
    in_runtime.sort();
    let mut running_sorted = running.clone();
    running_sorted.sort();
    assert_eq!(in_runtime, running_sorted, "runtime and API disagree");
}

/// What does this test do?
///
/// 1. Launches `off1` and the ephemeral `off2`.
/// 2. Powers both off from inside.
/// 3. The daemon notices: `off1` is Stopped with last state STOPPED (so it is not
///    autostarted later), the runtime holds no leftover, and `off2` is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_powers_off_inside_is_seen_stopped() {
    let m = Member::start().await;
    m.import_busybox().await;
    let c = m.client();
    m.launch("off1", &[]).await;
    let mut req = busybox_request("off2", &[], true);
    req.ephemeral = true;
    m.create(&req).await.expect("launch off2");

    tracing::info!("--- poweroff inside both");
    for name in ["off1", "off2"] {
        // The exec may end with the instance: its result does not matter.
        let _ = m.exec(name, &["kill", "-TERM", "1"]).await;
    }
    wait_until(
        "off1 to be recorded stopped",
        Duration::from_secs(20),
        || async {
            c.instance("off1").await.is_ok_and(|i| {
                i.status == InstanceStatus::Stopped
                    && i.config
                        .get("volatile.last_state.power")
                        .map(String::as_str)
                        == Some("STOPPED")
            })
        },
    )
    .await;
    wait_until(
        "ephemeral off2 to be deleted",
        Duration::from_secs(20),
        || async { c.instance("off2").await.is_err_and(|e| e.is_not_found()) },
    )
    .await;
    assert_eq!(runtime_containers(&m).await, Vec::<String>::new());

    tracing::info!("--- after a daemon restart, off1 stays stopped");
    let mut m = m;
    m.restart().await;
    assert_eq!(m.status("off1").await, InstanceStatus::Stopped);
}

//! Evacuation and restore as LXD 5.0.2's `lxc` drives them, where drover used to answer
//! differently from a real LXD 5.0.2 cluster (compared side by side, same commands):
//!
//! - an instance that a second evacuation moves on (m2 → X, then X → Y) goes home to m2
//!   when m2 is restored, as in LXD (drover took it for one moved by hand and left it);
//! - with every member evacuated, a launch without a target fails with LXD's 400 `No
//!   suitable cluster member could be found` (drover adds each member's reason);
//! - the only member of a cluster, and either member of a two-member cluster, can be
//!   evacuated with `lxc cluster evacuate` (drover refused both for quorum, and the 5.0.2
//!   client cannot send `force`);
//! - `lxc restart` of a stopped instance on an evacuated member: `Cluster member is
//!   evacuated`, as LXD says for every action but stop (drover said it is not running);
//!   elsewhere LXD's `The instance is already stopped`;
//! - on a standalone server: evacuating answers `Cluster member not found`, `lxc cluster
//!   show` says `Server is not clustered`, `lxc launch --target` says `Target only allowed
//!   when clustered` and creates nothing.
//!
//! - `lxc monitor --type=operation` shows a new operation `Pending` too, as LXD does.
//!
//! Members listen on 127.0.42.11–16 (free ports).

use std::time::Duration;

use drover_e2e::{
    Member, form_cluster, free_address, lxc_member_states, lxc_state_location as row, require_lxc,
    wait_until,
};

/// `lxc ARGS` on `m` fails, saying `text`.
async fn refused(m: &Member, args: &[&str], text: &str) {
    let out = m.lxc(args).await;
    assert!(out.failure().contains(text), "{args:?}: {}", out.stderr);
}

/// `lxc cluster evacuate|restore NAME --force` through `via` succeeds.
async fn job(via: &Member, action: &str, name: &str) {
    let out = via.lxc(&["cluster", action, name, "--force"]).await;
    out.success();
}

/// A launch nowhere to go: `lxc launch` fails, and the API answers LXD's 400.
async fn nowhere_to_launch(m: &Member, name: &str) {
    refused(
        m,
        &["launch", "busybox", name],
        "Error: No suitable cluster member could be found",
    )
    .await;
    let body = serde_json::json!({
        "name": name,
        "source": {"type": "image", "alias": "busybox"},
    });
    let r = m
        .raw("POST", "/1.0/instances", Some(&body.to_string()))
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("No suitable cluster member could be found")),
        "{}",
        r.text
    );
    let out = m.lxc(&["list", "-f", "csv", "-c", "n"]).await;
    assert!(
        !out.success().stdout.lines().any(|l| l == name),
        "{}",
        out.stdout
    );
}

/// What does this test do?
///
/// Three members formed through the API; `ce1` (running) and `ce2` (stopped) on m2.
/// `lxc cluster evacuate m2` moves them; evacuating the member `ce1` landed on (X, asked
/// through X itself) moves it on to the last member Y; evacuating Y stops it there (every
/// member EVACUATED, a launch without target refused in LXD's words). Restoring Y starts
/// it, restoring X changes nothing, restoring m2 brings `ce1` home running and `ce2`
/// stopped, with no `volatile.evacuate.origin` left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twice_evacuated_instance_goes_home() {
    require_lxc();
    let ms = form_cluster(&["127.0.42.11", "127.0.42.12", "127.0.42.13"]).await;
    let by_name = |n: &str| &ms[n[1..].parse::<usize>().expect("mN") - 1];
    let m1 = &ms[0];
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "ce1", "--target", "m2"])
        .await
        .success();
    m1.lxc(&["init", "busybox", "ce2", "--target", "m2"])
        .await
        .success();

    tracing::info!("--- evacuate m2, then where ce1 went, then the last member");
    job(m1, "evacuate", "m2").await;
    let (state, x) = row(m1, "ce1").await;
    assert_eq!(state, "RUNNING");
    assert_ne!(x, "m2");
    assert_eq!(row(m1, "ce2").await.0, "STOPPED");
    job(by_name(&x), "evacuate", &x).await;
    let (state, y) = row(m1, "ce1").await;
    assert_eq!(state, "RUNNING", "moved on, running");
    assert!(y != x && y != "m2", "ce1 on {y}");
    job(m1, "evacuate", &y).await;
    assert_eq!(row(m1, "ce1").await, ("STOPPED".to_string(), y.clone()));
    let all = lxc_member_states(by_name(&x)).await;
    assert!(all.iter().all(|(_, s)| s == "EVACUATED"), "{all:?}");
    nowhere_to_launch(by_name(&y), "ce3").await;

    tracing::info!("--- restore {y}, {x}, then m2: ce1 goes home");
    job(m1, "restore", &y).await;
    assert_eq!(row(m1, "ce1").await, ("RUNNING".to_string(), y.clone()));
    job(m1, "restore", &x).await;
    assert_eq!(row(m1, "ce1").await, ("RUNNING".to_string(), y.clone()));
    job(by_name(&y), "restore", "m2").await;
    assert_eq!(row(m1, "ce1").await, ("RUNNING".into(), "m2".into()));
    assert_eq!(row(m1, "ce2").await, ("STOPPED".into(), "m2".into()));
    let all = lxc_member_states(m1).await;
    assert!(all.iter().all(|(_, s)| s == "ONLINE"), "{all:?}");
    let out = m1
        .lxc(&["config", "get", "ce1", "volatile.evacuate.origin"])
        .await;
    assert_eq!(out.success().stdout.trim(), "", "the origin is cleared");
    m1.lxc(&["delete", "--force", "ce1", "ce2"]).await.success();
}

/// What does this test do?
///
/// One member, standalone: `lxc cluster evacuate` answers `Cluster member not found`,
/// `lxc cluster show` `Server is not clustered`, `lxc launch --target` `Target only
/// allowed when clustered` (nothing created). Then `lxc cluster enable solo`:
/// `lxc cluster evacuate solo --force` stops `cs1` in place (EVACUATED); `lxc restart`
/// and `lxc start` there are refused with `Cluster member is evacuated` (a stop is not
/// refused for it), a launch is refused in LXD's words, `lxc cluster restore solo --force` starts `cs1` again and
/// leaves the stopped `cs2` stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_member_evacuates_like_lxd() {
    require_lxc();
    let mut m = Member::start().await;
    m.import_busybox().await;
    m.lxc(&["launch", "busybox", "cs1"]).await.success();
    m.lxc(&["init", "busybox", "cs2"]).await.success();

    tracing::info!("--- standalone: LXD's refusals");
    refused(
        &m,
        &["cluster", "evacuate", "solo", "--force"],
        "Failed to update cluster member state: Cluster member not found",
    )
    .await;
    refused(
        &m,
        &["cluster", "show", "solo"],
        "Error: Server is not clustered",
    )
    .await;
    refused(
        &m,
        &["launch", "busybox", "cs3", "--target", "solo"],
        "Error: Target only allowed when clustered",
    )
    .await;
    let out = m.lxc(&["list", "-f", "csv", "-c", "n"]).await;
    assert_eq!(out.success().stdout, "cs1\ncs2\n");

    tracing::info!("--- a one-member cluster evacuates and restores");
    let address = free_address("127.0.42.14").to_string();
    m.lxc(&["config", "set", "core.https_address", &address])
        .await
        .success();
    m.lxc(&["cluster", "enable", "solo"]).await.success();
    let out = m.lxc(&["cluster", "evacuate", "solo", "--force"]).await;
    assert!(
        out.success()
            .stdout
            .contains(r#"Evacuating cluster member: Stopping "cs1" in project "default""#),
        "{}",
        out.stdout
    );
    assert_eq!(
        lxc_member_states(&m).await,
        [("solo".into(), "EVACUATED".into())]
    );
    assert_eq!(row(&m, "cs1").await, ("STOPPED".into(), "solo".into()));
    for args in [["restart", "cs1"], ["start", "cs2"]] {
        refused(&m, &args, "Error: Cluster member is evacuated").await;
    }
    refused(&m, &["stop", "cs1"], "The instance is already stopped").await;
    nowhere_to_launch(&m, "cs3").await;
    let out = m.lxc(&["cluster", "restore", "solo", "--force"]).await;
    assert!(
        out.success()
            .stdout
            .contains(r#"Restoring cluster member: Starting "cs1" in project "default""#),
        "{}",
        out.stdout
    );
    assert_eq!(
        lxc_member_states(&m).await,
        [("solo".into(), "ONLINE".into())]
    );
    assert_eq!(row(&m, "cs1").await, ("RUNNING".into(), "solo".into()));
    assert_eq!(row(&m, "cs2").await, ("STOPPED".into(), "solo".into()));
    refused(&m, &["restart", "cs2"], "The instance is already stopped").await;

    tracing::info!("--- the member still leads after a restart while evacuated");
    job(&m, "evacuate", "solo").await;
    m.restart().await;
    wait_until("solo answers", Duration::from_secs(60), || async {
        m.lxc(&["cluster", "list", "-f", "csv"]).await.code == 0
    })
    .await;
    job(&m, "restore", "solo").await;
    assert_eq!(row(&m, "cs1").await, ("RUNNING".into(), "solo".into()));
    m.lxc(&["delete", "--force", "cs1", "cs2"]).await.success();
}

/// What does this test do?
///
/// Two members formed through the API (two voters): `lxc cluster evacuate m1` moves the
/// running `cd1` to m2 — `lxc monitor --type=operation` shows the evacuation's operation
/// `Pending` once (as LXD announces a new one), `Running` and `Success` — and `lxc cluster restore m1` brings it
/// back running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_of_two_members_evacuates() {
    require_lxc();
    let ms = form_cluster(&["127.0.42.15", "127.0.42.16"]).await;
    let (m1, m2) = (&ms[0], &ms[1]);
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "cd1", "--target", "m1"])
        .await
        .success();
    let mut monitor = m2
        .lxc_command(&["monitor", "--type=operation", "-f", "json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn lxc monitor");
    let seen = drover_e2e::collect_output(monitor.stdout.take().expect("piped stdout"));
    let events = || {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect::<Vec<_>>()
    };
    let mut tick = 0;
    wait_until("lxc monitor live", Duration::from_secs(20), || {
        tick += 1;
        let value = tick.to_string();
        async move {
            m1.lxc(&["config", "set", "cd1", "user.tick", &value])
                .await
                .success();
            !events().is_empty()
        }
    })
    .await;
    job(m2, "evacuate", "m1").await;
    wait_until(
        "the evacuation's events",
        Duration::from_secs(20),
        || async {
            events().iter().any(|e| {
                e["metadata"]["description"] == "Evacuating cluster member"
                    && e["metadata"]["status"] == "Success"
            })
        },
    )
    .await;
    // lxc hands each event to its printer on a goroutine of its own: their order on its
    // output is not the order they came in (LXD's own Pending shows up after Running too).
    let statuses: Vec<String> = events()
        .iter()
        .filter(|e| e["metadata"]["description"] == "Evacuating cluster member")
        .map(|e| {
            e["metadata"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let count = |s: &str| statuses.iter().filter(|x| *x == s).count();
    assert_eq!(count("Pending"), 1, "{statuses:?}");
    assert!(count("Running") >= 1, "{statuses:?}");
    assert_eq!(count("Success"), 1, "{statuses:?}");
    assert_eq!(row(m2, "cd1").await, ("RUNNING".into(), "m2".into()));
    let all = lxc_member_states(m1).await;
    assert_eq!(
        all,
        [
            ("m1".to_string(), "EVACUATED".to_string()),
            ("m2".to_string(), "ONLINE".to_string())
        ]
    );
    job(m2, "restore", "m1").await;
    assert_eq!(row(m1, "cd1").await, ("RUNNING".into(), "m1".into()));
    m2.lxc(&["delete", "--force", "cd1"]).await.success();
}

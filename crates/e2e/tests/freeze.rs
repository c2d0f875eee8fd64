//! Freezing and unfreezing instances (`lxc pause`, `lxc start` of a frozen one, LXD's
//! `freeze`/`unfreeze` actions) on a real droverd with real containers and the real `lxc`
//! 5.0.2 client; one VM when QEMU is installed. The refusals are LXD 5.0.2's words, seen on
//! a real LXD 5.0.2 cluster.
//!
//! Instance names start with `fz`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use api::InstanceStatus;
use drover_e2e::{KillVms, Member, import_busybox_vm, qemu_installed, require_lxc, require_pylxd};

/// Runs `lxc args` on `m`, which must fail with `want` in its error.
async fn refused(m: &Member, args: &[&str], want: &str) {
    let out = m.lxc(args).await;
    assert!(out.failure().contains(want), "lxc {args:?}: {}", out.stderr);
}

/// The `lxc list -f csv -c ns` row of `name` (name, state).
async fn row(m: &Member, name: &str) -> String {
    listed(m, name, "ns").await
}

/// The `lxc list -f csv -c <columns>` row of `name`.
async fn listed(m: &Member, name: &str, columns: &str) -> String {
    let out = m.lxc(&["list", "-f", "csv", "-c", columns]).await;
    out.success();
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name},")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", out.stdout))
        .to_string()
}

/// A stream of `m`'s lifecycle events from now on.
async fn lifecycle_events(m: &Member) -> client::EventStream {
    m.client()
        .events(&["lifecycle"])
        .await
        .expect("subscribe to events")
}

/// Waits (5 s at most) for lifecycle event `action` of instance `name`.
async fn expect_event(events: &mut client::EventStream, action: &str, name: &str) {
    drover_e2e::expect_lifecycle(events, action, name, Duration::from_secs(5)).await;
}

/// The action of the next lifecycle event of instance `name` (5 s at most).
async fn next_event_of(events: &mut client::EventStream, name: &str) -> String {
    use futures::StreamExt;
    let source = format!("/1.0/instances/{name}");
    drover_e2e::within("a lifecycle event", Duration::from_secs(5), async {
        loop {
            let ev = events
                .next()
                .await
                .expect("event stream open")
                .expect("event stream works");
            if ev.kind == "lifecycle" && ev.metadata["source"] == source.as_str() {
                return ev.metadata["action"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
            }
        }
    })
    .await
}

/// `PUT /1.0/instances/{name}/state` with `action`, which must fail (in the request or its
/// operation) with `want` in its error.
async fn action_refused(m: &Member, name: &str, action: &str, want: &str) {
    let e = m.change_state(name, action, false).await.err();
    assert!(
        e.as_ref().is_some_and(|e| e.to_string().contains(want)),
        "{action} of {name}: {e:?}"
    );
}

/// The counter that the background loop started by [`start_ticking`] writes, read through
/// PID 1's root (`pid`) from the host.
fn tick(pid: i64) -> u64 {
    std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/root/root/tick")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the counter of the container whose PID 1 is `pid` moves within 700 ms. It must
/// be there (a counter that cannot be read does not pass for one that stands still).
async fn ticking(pid: i64) -> bool {
    let before = tick(pid);
    assert!(before > 0, "no counter under /proc/{pid}/root/root/tick");
    tokio::time::sleep(Duration::from_millis(700)).await;
    tick(pid) != before
}

/// Starts a loop in `name` counting in `/root/tick` every 100 ms, and waits for its first
/// count.
async fn start_ticking(m: &Member, name: &str) {
    let script = "(i=0; while :; do i=$((i+1)); echo $i > /root/tick; sleep 0.1; done) \
                  >/dev/null 2>&1 </dev/null &";
    m.lxc(&["exec", name, "--", "sh", "-c", script])
        .await
        .success();
    let pid = m.pid(name).await;
    drover_e2e::wait_until("the first count", Duration::from_secs(10), || async {
        tick(pid) > 0
    })
    .await;
}

/// The status and status code of `name` in `GET /1.0/instances/{name}`, in the
/// recursion=2 list and in `/state`.
async fn statuses(m: &Member, name: &str) -> Vec<(String, i64)> {
    let pick = |v: &serde_json::Value| {
        (
            v["status"].as_str().unwrap_or_default().to_string(),
            v["status_code"].as_i64().unwrap_or_default(),
        )
    };
    let one = m.raw("GET", &format!("/1.0/instances/{name}"), None).await;
    let state = m
        .raw("GET", &format!("/1.0/instances/{name}/state"), None)
        .await;
    let list = m.raw("GET", "/1.0/instances?recursion=2", None).await;
    let listed = list
        .metadata()
        .as_array()
        .and_then(|a| a.iter().find(|i| i["name"] == name))
        .cloned()
        .unwrap_or_default();
    vec![
        pick(one.metadata()),
        pick(&listed),
        pick(&listed["state"]),
        pick(state.metadata()),
    ]
}

/// What does this test do?
/// - launches `fz1` and starts a counter in it; `lxc pause fz1`: `lxc list` says FROZEN,
///   the API says `Frozen`/110 (instance, recursion list, its state, `/state`), the counter
///   stops, PID 1 is the same, `volatile.last_state.power` stays RUNNING (as on LXD)
/// - refused in LXD 5.0.2's words, the instance still frozen: a second `lxc pause`
///   (`The container is already frozen`), `lxc exec` (`Instance is frozen`), `lxc restart`
///   (`Instance is not running`), an API `start` (`The instance is already running`)
/// - `lxc start fz1` unfreezes it (what the client does for a frozen instance): RUNNING,
///   same PID 1, the counter moves; an API `unfreeze` now fails (`The container is already
///   running`)
/// - a frozen `fz1` stopped with `lxc stop` stops cleanly (`instance-shutdown`, well within
///   the 30 s shutdown timeout); then `lxc pause` and an API `unfreeze` of the stopped
///   instance fail (`The container isn't running`)
/// - a frozen `fz1` stopped with `lxc stop --force` is stopped
/// - a frozen `fz1` across a daemon restart: re-attached frozen (same PID 1, still
///   Frozen, the counter still), then `lxc start` unfreezes it
/// - `lxc delete --force` of a frozen instance deletes it
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lxc_pause_start_stop_and_refusals() {
    require_lxc();
    let mut m = Member::start().await;
    m.import_busybox().await;
    m.lxc(&["launch", "busybox", "fz1"]).await.success();
    start_ticking(&m, "fz1").await;
    let pid = m.pid("fz1").await;
    assert!(ticking(pid).await, "the counter does not move");

    tracing::info!("--- lxc pause");
    let mut events = lifecycle_events(&m).await;
    m.lxc(&["pause", "fz1"]).await.success();
    expect_event(&mut events, "instance-paused", "fz1").await;
    assert_eq!(row(&m, "fz1").await, "fz1,FROZEN");
    assert_eq!(statuses(&m, "fz1").await, vec![("Frozen".into(), 110); 4]);
    assert!(!ticking(pid).await, "a frozen container ran");
    assert_eq!(m.pid("fz1").await, pid);
    let out = m
        .lxc(&["config", "get", "fz1", "volatile.last_state.power"])
        .await;
    assert_eq!(out.success().stdout, "RUNNING\n");

    tracing::info!("--- refusals while frozen");
    refused(&m, &["pause", "fz1"], "The container is already frozen").await;
    refused(&m, &["exec", "fz1", "--", "true"], "Instance is frozen").await;
    refused(&m, &["restart", "fz1"], "Instance is not running").await;
    action_refused(&m, "fz1", "start", "The instance is already running").await;
    assert_eq!(row(&m, "fz1").await, "fz1,FROZEN");
    assert!(!ticking(pid).await, "a refusal unfroze it");

    tracing::info!("--- lxc start unfreezes");
    m.lxc(&["start", "fz1"]).await.success();
    expect_event(&mut events, "instance-resumed", "fz1").await;
    assert_eq!(row(&m, "fz1").await, "fz1,RUNNING");
    assert_eq!(statuses(&m, "fz1").await, vec![("Running".into(), 103); 4]);
    assert_eq!(m.pid("fz1").await, pid);
    assert!(ticking(pid).await, "an unfrozen container stays still");
    action_refused(&m, "fz1", "unfreeze", "The container is already running").await;

    tracing::info!("--- lxc stop of a frozen container is clean");
    m.lxc(&["pause", "fz1"]).await.success();
    expect_event(&mut events, "instance-paused", "fz1").await;
    let t = Instant::now();
    m.lxc(&["stop", "fz1"]).await.success();
    let took = t.elapsed();
    // LXD 5.0.2 says the same: resumed, then shutdown.
    expect_event(&mut events, "instance-resumed", "fz1").await;
    expect_event(&mut events, "instance-shutdown", "fz1").await;
    assert!(took < Duration::from_secs(15), "clean stop took {took:?}");
    assert_eq!(row(&m, "fz1").await, "fz1,STOPPED");
    refused(&m, &["pause", "fz1"], "The container isn't running").await;
    action_refused(&m, "fz1", "unfreeze", "The container isn't running").await;

    tracing::info!("--- lxc stop --force of a frozen container");
    m.lxc(&["start", "fz1"]).await.success();
    m.lxc(&["pause", "fz1"]).await.success();
    m.lxc(&["stop", "--force", "fz1"]).await.success();
    assert_eq!(row(&m, "fz1").await, "fz1,STOPPED");
    // Killed, not resumed: the next event of fz1 after the pause says so (as on LXD).
    expect_event(&mut events, "instance-paused", "fz1").await;
    let next = next_event_of(&mut events, "fz1").await;
    assert_eq!(next, "instance-stopped");

    tracing::info!("--- a daemon restart keeps a frozen container frozen");
    m.lxc(&["start", "fz1"]).await.success();
    start_ticking(&m, "fz1").await;
    let pid = m.pid("fz1").await;
    m.lxc(&["pause", "fz1"]).await.success();
    m.restart().await;
    assert!(
        m.log().contains("re-attached to frozen instance"),
        "the daemon logs the re-attach"
    );
    assert_eq!(m.status("fz1").await, InstanceStatus::Frozen);
    assert_eq!(m.pid("fz1").await, pid, "re-attached, same PID 1");
    assert_eq!(row(&m, "fz1").await, "fz1,FROZEN");
    assert!(!ticking(pid).await, "the restart unfroze it");
    m.lxc(&["start", "fz1"]).await.success();
    assert!(ticking(pid).await, "still frozen after lxc start");

    tracing::info!("--- lxc delete --force of a frozen container");
    m.lxc(&["pause", "fz1"]).await.success();
    m.lxc(&["delete", "--force", "fz1"]).await.success();
    let out = m.lxc(&["list", "-f", "csv"]).await;
    assert!(!out.success().stdout.contains("fz1"), "{}", out.stdout);
}

/// What does this test do?
/// - two members (127.0.41.1–2); `fzev1` launched on m1 with a counter in it, then
///   `lxc pause fzev1`
/// - `lxc cluster evacuate m1 --force` does what LXD 5.0.2 does with a frozen container
///   (seen on the reference cluster: unfreeze, clean shutdown, move, start): fzev1 shuts
///   down cleanly (`instance-shutdown`, within seconds, not a kill after the 30 s shutdown
///   timeout) and runs on m2, not frozen, its counter moving, `volatile.last_state.power`
///   RUNNING
/// - `lxc cluster restore m1 --force` brings it home, running
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuating_a_frozen_container_shuts_it_down_and_moves_it() {
    require_lxc();
    let members = drover_e2e::form_cluster(&["127.0.41.1", "127.0.41.2"]).await;
    let (m1, m2) = (&members[0], &members[1]);
    m1.import_busybox().await;
    m1.lxc(&["launch", "busybox", "fzev1", "--target", "m1"])
        .await
        .success();
    m1.lxc(&["pause", "fzev1"]).await.success();
    assert_eq!(located(m2, "fzev1").await, "fzev1,FROZEN,m1");

    tracing::info!("--- lxc cluster evacuate m1 --force");
    let mut events = lifecycle_events(m1).await;
    let t = Instant::now();
    m2.lxc(&["cluster", "evacuate", "m1", "--force"])
        .await
        .success();
    let took = t.elapsed();
    expect_event(&mut events, "instance-shutdown", "fzev1").await;
    assert!(took < Duration::from_secs(25), "evacuation took {took:?}");
    assert_eq!(located(m1, "fzev1").await, "fzev1,RUNNING,m2");
    start_ticking(m2, "fzev1").await;
    assert!(ticking(m2.pid("fzev1").await).await, "not running on m2");
    let out = m2
        .lxc(&["config", "get", "fzev1", "volatile.last_state.power"])
        .await;
    assert_eq!(out.success().stdout, "RUNNING\n");

    tracing::info!("--- lxc cluster restore m1 --force");
    m2.lxc(&["cluster", "restore", "m1", "--force"])
        .await
        .success();
    assert_eq!(located(m2, "fzev1").await, "fzev1,RUNNING,m1");
    m1.lxc(&["delete", "--force", "fzev1"]).await.success();
}

/// The `lxc list -f csv -c nsL` row of `name` (name, state, location).
async fn located(m: &Member, name: &str) -> String {
    listed(m, name, "nsL").await
}

/// The guest's uptime in seconds (`/proc/uptime` inside `name`).
async fn guest_uptime(m: &Member, name: &str) -> f64 {
    let out = m.lxc(&["exec", name, "--", "cat", "/proc/uptime"]).await;
    out.success()
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime of {name}: {}", out.stdout))
}

/// Waits until the agent of VM `name` answers an exec through `m` (2 min at most).
async fn wait_agent(m: &Member, name: &str) {
    let booted = Instant::now();
    loop {
        let out = m.lxc(&["exec", name, "--", "true"]).await;
        if out.code == 0 {
            return;
        }
        assert!(
            booted.elapsed() < Duration::from_secs(120),
            "{name}'s agent never answered: {}",
            out.stderr
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// What does this test do?
/// - two members (127.0.41.3–4); VM `fzvm` (QEMU, TCG here) launched on m1, its agent up
/// - `lxc pause fzvm`: FROZEN, `Frozen`/110; for 4 s the guest's clock stands still (QMP
///   `stop`: its uptime grows by well under the wall time once it runs again); exec and a
///   second pause refused
/// - `lxc start fzvm` unfreezes it (QMP `cont`): RUNNING, exec works
/// - frozen across a restart of m1's daemon: re-attached frozen (the same QEMU, still
///   Frozen), then `lxc start` unfreezes it and exec works
/// - frozen, `lxc move fzvm --target m2` (a live move) is refused and it stays frozen on m1
/// - frozen, `lxc cluster evacuate m1 --force` moves it stopped, not live: resumed and shut
///   down cleanly (`instance-resumed`, `instance-shutdown`), then running on m2
/// - frozen again on m2, `lxc stop` stops it cleanly (`instance-resumed`, then
///   `instance-shutdown`: the guest saw the power button, so it was resumed first)
///
/// Skipped, saying so, when qemu-system-x86_64 is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_pause_start_move_and_evacuate() {
    if !qemu_installed() {
        eprintln!("SKIPPED vm_pause_start_move_and_evacuate: qemu-system-x86_64 is not installed");
        return;
    }
    require_lxc();
    let mut ms = drover_e2e::form_cluster(&["127.0.41.3", "127.0.41.4"]).await;
    let _kill = KillVms::of(&ms);
    import_busybox_vm(&ms[0]).await;
    let m = &ms[0];
    m.lxc(&[
        "launch",
        "busybox-vm",
        "fzvm",
        "--vm",
        "--target",
        "m1",
        "-c",
        "limits.memory=192MiB",
    ])
    .await
    .success();
    wait_agent(m, "fzvm").await;

    tracing::info!("--- lxc pause of a VM");
    let before = guest_uptime(m, "fzvm").await;
    let wall = Instant::now();
    m.lxc(&["pause", "fzvm"]).await.success();
    assert_eq!(row(m, "fzvm").await, "fzvm,FROZEN");
    assert_eq!(statuses(m, "fzvm").await, vec![("Frozen".into(), 110); 4]);
    refused(m, &["exec", "fzvm", "--", "true"], "Instance is frozen").await;
    refused(m, &["pause", "fzvm"], "The instance is already frozen").await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    tracing::info!("--- lxc start of a frozen VM");
    m.lxc(&["start", "fzvm"]).await.success();
    assert_eq!(row(m, "fzvm").await, "fzvm,RUNNING");
    let after = guest_uptime(m, "fzvm").await;
    let wall = wall.elapsed().as_secs_f64();
    assert!(
        after - before < wall - 2.5,
        "the guest ran while frozen: its uptime grew {:.1} s in {wall:.1} s",
        after - before
    );

    tracing::info!("--- a daemon restart keeps a frozen VM frozen");
    m.lxc(&["pause", "fzvm"]).await.success();
    let pid = m.pid("fzvm").await;
    ms[0].restart().await;
    let (m1, m2) = (&ms[0], &ms[1]);
    assert!(
        m1.log().contains("re-attached to frozen instance"),
        "the daemon logs the re-attach"
    );
    assert_eq!(m1.status("fzvm").await, InstanceStatus::Frozen);
    assert_eq!(m1.pid("fzvm").await, pid, "the same QEMU");
    m1.lxc(&["start", "fzvm"]).await.success();
    m1.lxc(&["exec", "fzvm", "--", "true"]).await.success();

    tracing::info!("--- a frozen VM does not move live");
    m1.lxc(&["pause", "fzvm"]).await.success();
    refused(
        m2,
        &["move", "fzvm", "--target", "m2"],
        "A frozen instance cannot move live",
    )
    .await;
    assert_eq!(located(m2, "fzvm").await, "fzvm,FROZEN,m1");

    tracing::info!("--- evacuating m1 moves the frozen VM stopped");
    let mut events = lifecycle_events(m1).await;
    m2.lxc(&["cluster", "evacuate", "m1", "--force"])
        .await
        .success();
    expect_event(&mut events, "instance-resumed", "fzvm").await;
    expect_event(&mut events, "instance-shutdown", "fzvm").await;
    assert_eq!(located(m2, "fzvm").await, "fzvm,RUNNING,m2");
    wait_agent(m2, "fzvm").await;

    tracing::info!("--- lxc stop of a frozen VM");
    m2.lxc(&["pause", "fzvm"]).await.success();
    let mut events = lifecycle_events(m2).await;
    m2.lxc(&["stop", "fzvm"]).await.success();
    expect_event(&mut events, "instance-resumed", "fzvm").await;
    expect_event(&mut events, "instance-shutdown", "fzvm").await;
    assert_eq!(row(m2, "fzvm").await, "fzvm,STOPPED");
    m2.lxc(&["delete", "fzvm"]).await.success();
}

/// What does this test do?
///
/// Runs `crates/e2e/python/pylxd_freeze.py <socket> <busybox image>`, which through pylxd
/// freezes a running container (`freeze(wait=True)`: Frozen/110, same PID 1), is refused a
/// second freeze, unfreezes it (Running) and is refused a second unfreeze, stops it frozen
/// (Stopped), is refused a freeze of the stopped one (LXD 5.0.2's words each time), and
/// deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pylxd_freeze_and_unfreeze() {
    require_pylxd();
    let m = Member::start().await;
    m.run_pylxd_script("pylxd_freeze.py", "pylxd freeze: all steps passed")
        .await;
}

//! An instance's life through the API, on a real droverd with real containers.
//!
//! Instance names are unique across the e2e suite: daemons of parallel tests share the host's
//! cgroup parent (`/drover/<project>_<name>`), so equal names would share cgroups.

use std::time::{Duration, Instant};

use api::InstanceStatus;
use api::instances::InstanceSource;
use drover_e2e::{Member, busybox_request, expect_lifecycle, wait_until};

const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What does this test do?
///
/// 1. Launches `life1` (create + start in one request) from the busybox image, with
///    `boot.host_shutdown_timeout=30`; it is Running with a PID 1.
/// 2. Exec: `cat /etc/hostname` prints `life1` (the image template was rendered) with exit
///    code 0; a command exiting 3 returns 3 and its stderr.
/// 3. Clean stop: finishes in well under the 30 s timeout and the lifecycle event is
///    `instance-shutdown` (init stopped on SIGPWR, not killed).
/// 4. Start: Running again, with a new PID 1.
/// 5. Restart: still Running, PID 1 changed.
/// 6. Force stop: Stopped, the event is `instance-stopped`.
/// 7. Delete: the record is gone (404, not listed) and so is the volume directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_lives_from_launch_to_delete() {
    let m = Member::start().await;
    m.import_busybox().await;
    let c = m.client();
    let mut events = c.events(&["lifecycle"]).await.expect("subscribe to events");

    tracing::info!("--- launch life1");
    m.launch("life1", &[("boot.host_shutdown_timeout", "30")])
        .await;
    expect_lifecycle(&mut events, "instance-created", "life1", EVENT_TIMEOUT).await;
    expect_lifecycle(&mut events, "instance-started", "life1", EVENT_TIMEOUT).await;
    assert_eq!(m.status("life1").await, InstanceStatus::Running);
    let pid1 = m.pid("life1").await;
    assert!(pid1 > 1, "running instance has a host pid, got {pid1}");
    assert!(m.volume_dir("life1").join("rootfs").is_dir());

    tracing::info!("--- exec: hostname from the template, exit codes");
    let out = m
        .exec("life1", &["cat", "/etc/hostname"])
        .await
        .expect("exec cat");
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(out.stdout, "life1\n");
    let out = m
        .exec("life1", &["sh", "-c", "echo oops >&2; exit 3"])
        .await
        .expect("exec exit 3");
    assert_eq!(out.code, 3);
    assert_eq!(out.stderr, "oops\n");
    assert_eq!(out.stdout, "");

    tracing::info!("--- clean stop");
    let t0 = Instant::now();
    m.change_state("life1", "stop", false)
        .await
        .expect("clean stop");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a clean stop of busybox takes milliseconds, took {took:?}"
    );
    expect_lifecycle(&mut events, "instance-shutdown", "life1", EVENT_TIMEOUT).await;
    assert_eq!(m.status("life1").await, InstanceStatus::Stopped);
    let inst = c.instance("life1").await.expect("get life1");
    assert_eq!(inst.config["volatile.last_state.power"], "STOPPED");

    tracing::info!("--- start again");
    m.change_state("life1", "start", false)
        .await
        .expect("start");
    expect_lifecycle(&mut events, "instance-started", "life1", EVENT_TIMEOUT).await;
    assert_eq!(m.status("life1").await, InstanceStatus::Running);
    let pid2 = m.pid("life1").await;
    assert_ne!(pid2, pid1, "a new start has a new PID 1");

    tracing::info!("--- restart");
    m.change_state("life1", "restart", false)
        .await
        .expect("restart");
    assert_eq!(m.status("life1").await, InstanceStatus::Running);
    let pid3 = m.pid("life1").await;
    assert_ne!(pid3, pid2, "restart replaces PID 1");

    tracing::info!("--- force stop");
    m.change_state("life1", "stop", true)
        .await
        .expect("force stop");
    expect_lifecycle(&mut events, "instance-stopped", "life1", EVENT_TIMEOUT).await;
    assert_eq!(m.status("life1").await, InstanceStatus::Stopped);

    tracing::info!("--- delete");
    m.delete("life1").await.expect("delete");
    expect_lifecycle(&mut events, "instance-deleted", "life1", EVENT_TIMEOUT).await;
    let err = c.instance("life1").await.expect_err("life1 is gone");
    assert!(err.is_not_found(), "{err}");
    assert_eq!(
        c.instance_names().await.expect("list"),
        Vec::<String>::new()
    );
    assert!(
        !m.volume_dir("life1").exists(),
        "volume dir {} left behind",
        m.volume_dir("life1").display()
    );
    assert_eq!(m.volume_entries(), Vec::<String>::new());
}

/// What does this test do?
///
/// 1. Creates `none1` with `source: {type: none}`: no image needed.
/// 2. It exists, is Stopped, has no `volatile.base_image`, and its volume holds an empty
///    rootfs.
/// 3. Deletes it: record and volume gone.
#[tokio::test]
async fn an_instance_from_source_none_has_an_empty_rootfs() {
    let m = Member::start().await;
    let c = m.client();

    tracing::info!("--- create none1 from nothing");
    let req = api::InstancesPost {
        name: "none1".into(),
        source: InstanceSource {
            kind: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    m.create(&req).await.expect("create from source none");
    let inst = c.instance("none1").await.expect("get none1");
    assert_eq!(inst.status, InstanceStatus::Stopped);
    assert_eq!(inst.kind, "container");
    assert!(
        !inst.config.contains_key("volatile.base_image"),
        "{:?}",
        inst.config
    );
    let rootfs = m.volume_dir("none1").join("rootfs");
    assert!(rootfs.is_dir(), "{} missing", rootfs.display());
    assert_eq!(
        std::fs::read_dir(&rootfs).expect("read rootfs").count(),
        0,
        "rootfs of a source-none instance is empty"
    );

    tracing::info!("--- delete none1");
    m.delete("none1").await.expect("delete");
    assert!(c.instance("none1").await.expect_err("gone").is_not_found());
    assert!(!m.volume_dir("none1").exists());
}

/// What does this test do?
///
/// 1. Launches the ephemeral instance `eph1`.
/// 2. Stops it cleanly.
/// 3. It disappears on its own: the record (404) and the volume directory.
#[tokio::test]
async fn an_ephemeral_instance_disappears_after_stop() {
    let m = Member::start().await;
    m.import_busybox().await;
    let c = m.client();

    tracing::info!("--- launch ephemeral eph1");
    let mut req = busybox_request("eph1", &[], true);
    req.ephemeral = true;
    m.create(&req).await.expect("launch eph1");
    assert_eq!(m.status("eph1").await, InstanceStatus::Running);
    assert!(c.instance("eph1").await.expect("get").ephemeral);

    tracing::info!("--- stop eph1: it deletes itself");
    m.change_state("eph1", "stop", false).await.expect("stop");
    wait_until("eph1 to disappear", Duration::from_secs(20), || async {
        c.instance("eph1").await.is_err_and(|e| e.is_not_found())
    })
    .await;
    wait_until("eph1's volume to go", Duration::from_secs(20), || async {
        !m.volume_dir("eph1").exists()
    })
    .await;
    assert_eq!(
        c.instance_names().await.expect("list"),
        Vec::<String>::new()
    );
}

fn memory_limit_of(pid: i64) -> u64 {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read cgroup");
    let path = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .expect("memory cgroup of the instance");
    let file = format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("read {file}: {e}"))
        .trim()
        .parse()
        .expect("a number")
}

/// What does this test do?
///
/// 1. Launches `lim1` with `limits.memory=128MiB`: its cgroup says so.
/// 2. PATCHes `limits.memory=64MiB` while it runs: the cgroup changes at once, as in LXD.
/// 3. A bad value is refused and changes neither the record nor the cgroup.
/// 4. Unsetting the key lifts the limit.
#[tokio::test]
async fn memory_limits_apply_to_a_running_instance() {
    let m = Member::start().await;
    m.import_busybox().await;

    tracing::info!("--- launch lim1 with 128MiB");
    m.launch("lim1", &[("limits.memory", "128MiB")]).await;
    let pid = m.pid("lim1").await;
    assert_eq!(memory_limit_of(pid), 128 << 20);

    tracing::info!("--- PATCH 64MiB while running");
    let r = m
        .raw(
            "PATCH",
            "/1.0/instances/lim1",
            Some(r#"{"config": {"limits.memory": "64MiB"}}"#),
        )
        .await;
    r.metadata();
    assert_eq!(memory_limit_of(pid), 64 << 20);

    tracing::info!("--- a bad value changes nothing");
    let r = m
        .raw(
            "PATCH",
            "/1.0/instances/lim1",
            Some(r#"{"config": {"limits.memory": "lots"}}"#),
        )
        .await;
    r.expect_error(400);
    assert_eq!(memory_limit_of(pid), 64 << 20);
    let inst = m.client().instance("lim1").await.expect("get lim1");
    assert_eq!(
        inst.config.get("limits.memory").map(String::as_str),
        Some("64MiB")
    );

    tracing::info!("--- unset lifts the limit");
    let mut config = inst.config.clone();
    config.remove("limits.memory");
    let body =
        serde_json::json!({"config": config, "devices": inst.devices, "profiles": inst.profiles});
    m.raw("PUT", "/1.0/instances/lim1", Some(&body.to_string()))
        .await
        .metadata();
    assert!(memory_limit_of(pid) > 1 << 40, "no limit after unset");
    m.change_state("lim1", "stop", true)
        .await
        .expect("force stop");
}

/// Runs `lxc args`, which must fail with LXD's error for a clean stop that ran out of time.
async fn timed_out(m: &Member, args: &[&str]) {
    let out = m.lxc(args).await;
    let err = out.failure();
    assert!(
        err.contains(
            r#"Failed shutting down instance, status is "Running": context deadline exceeded"#
        ),
        "{err}"
    );
}

/// What does this test do?
///
/// A stop given a timeout, as LXD 5.0.2 answers it, through LXD's own `lxc` client:
/// 1. `life-stubborn`'s init ignores its stop signal (`boot.stop_signal=SIGWINCH`):
///    `lxc stop --timeout 2` fails after about 2 s with LXD's message (`Failed shutting
///    down instance, status is "Running": context deadline exceeded`) and the container
///    still runs, the same PID 1, `volatile.last_state.power` still `RUNNING`;
///    `lxc restart --timeout 2` fails the same way and leaves it running too; frozen
///    (`lxc pause`), the same stop thaws it to signal it and leaves it running, not frozen.
/// 2. `lxc stop --force` then stops it at once.
/// 3. Without a timeout (`lxc stop`), the same init is killed once
///    `boot.host_shutdown_timeout` (2 s here) runs out: drover's bound where LXD waits for
///    ever, as before.
/// 4. `life-meek` stops on its signal: `lxc stop --timeout 10` succeeds well before 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_timeout_fails_and_leaves_the_instance_running() {
    drover_e2e::require_lxc();
    let m = Member::start().await;
    m.import_busybox().await;
    m.launch(
        "life-stubborn",
        &[
            ("boot.stop_signal", "SIGWINCH"),
            ("boot.host_shutdown_timeout", "2"),
        ],
    )
    .await;
    let pid1 = m.pid("life-stubborn").await;
    let power = || async {
        m.lxc(&[
            "config",
            "get",
            "life-stubborn",
            "volatile.last_state.power",
        ])
        .await
        .success()
        .stdout
        .trim()
        .to_string()
    };

    tracing::info!("--- lxc stop --timeout 2 of an init that ignores the signal");
    let t = Instant::now();
    timed_out(&m, &["stop", "life-stubborn", "--timeout", "2"]).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "failed after {took:?}");
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Running);
    assert_eq!(m.pid("life-stubborn").await, pid1);
    assert_eq!(power().await, "RUNNING");

    tracing::info!("--- lxc restart --timeout 2: the same");
    timed_out(&m, &["restart", "life-stubborn", "--timeout", "2"]).await;
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Running);
    assert_eq!(m.pid("life-stubborn").await, pid1);

    tracing::info!("--- lxc stop --timeout 2 of it frozen: thawed to be stopped, it runs on");
    m.lxc(&["pause", "life-stubborn"]).await.success();
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Frozen);
    timed_out(&m, &["stop", "life-stubborn", "--timeout", "2"]).await;
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Running);

    tracing::info!("--- lxc stop --force");
    let t = Instant::now();
    m.lxc(&["stop", "life-stubborn", "--force"]).await.success();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Stopped);
    assert_eq!(power().await, "STOPPED");

    tracing::info!("--- lxc stop without a timeout: killed after boot.host_shutdown_timeout");
    m.lxc(&["start", "life-stubborn"]).await.success();
    let t = Instant::now();
    m.lxc(&["stop", "life-stubborn"]).await.success();
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "stopped after {took:?}");
    assert_eq!(m.status("life-stubborn").await, InstanceStatus::Stopped);

    tracing::info!("--- lxc stop --timeout 10 of an init that stops");
    m.launch("life-meek", &[]).await;
    let t = Instant::now();
    m.lxc(&["stop", "life-meek", "--timeout", "10"])
        .await
        .success();
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert_eq!(m.status("life-meek").await, InstanceStatus::Stopped);
}

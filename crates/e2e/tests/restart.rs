//! Restarting droverd: running instances are re-attached, stopped ones are autostarted as
//! LXD does.
//!
//! Instance names are unique across the e2e suite (daemons share the cgroup parent).

use std::time::Duration;

use api::InstanceStatus;
use drover_e2e::{Member, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether host process `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// SIGKILLs PID 1 of an instance from outside (a crash) and waits until it is gone.
async fn crash(pid: i64) {
    let p = Pid::from_raw(i32::try_from(pid).expect("pid fits i32"));
    kill(p, Signal::SIGKILL).expect("kill PID 1");
    wait_until(
        &format!("pid {pid} to die"),
        Duration::from_secs(10),
        || async { dead(pid) },
    )
    .await;
}

/// What does this test do?
///
/// 1. Launches `rs-a` and `rs-b` and notes their PID 1.
/// 2. Restarts droverd (SIGTERM, start on the same state dir).
/// 3. Both are Running with the same PID 1: re-attached, not restarted.
/// 4. The re-attached instances are fully usable: exec works, a clean stop is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_instances_are_reattached_after_a_daemon_restart() {
    let mut m = Member::start().await;
    m.import_busybox().await;

    tracing::info!("--- launch rs-a and rs-b");
    m.launch("rs-a", &[]).await;
    m.launch("rs-b", &[]).await;
    let pid_a = m.pid("rs-a").await;
    let pid_b = m.pid("rs-b").await;

    tracing::info!("--- restart droverd with both running");
    m.restart().await;
    assert_eq!(m.status("rs-a").await, InstanceStatus::Running);
    assert_eq!(m.status("rs-b").await, InstanceStatus::Running);
    assert_eq!(m.pid("rs-a").await, pid_a, "rs-a re-attached, same PID 1");
    assert_eq!(m.pid("rs-b").await, pid_b, "rs-b re-attached, same PID 1");
    assert!(
        m.log().contains("re-attached to running instance"),
        "the daemon logs the re-attach"
    );

    tracing::info!("--- the re-attached instances work");
    let out = m
        .exec("rs-a", &["cat", "/etc/hostname"])
        .await
        .expect("exec after restart");
    assert_eq!((out.code, out.stdout.as_str()), (0, "rs-a\n"));
    let mut events = m
        .client()
        .events(&["lifecycle"])
        .await
        .expect("subscribe to events");
    m.change_state("rs-b", "stop", false)
        .await
        .expect("stop after restart");
    drover_e2e::expect_lifecycle(
        &mut events,
        "instance-shutdown",
        "rs-b",
        Duration::from_secs(30),
    )
    .await;
    assert!(dead(pid_b), "rs-b's PID 1 is gone");
    assert_eq!(m.status("rs-b").await, InstanceStatus::Stopped);
}

/// What does this test do?
///
/// LXD's rule on daemon start: an instance that is not running is started when
/// `boot.autostart=true`, or when `boot.autostart` is unset and it was last seen running
/// (`volatile.last_state.power=RUNNING`); `boot.autostart=false` ones are never started.
///
/// 1. Launches four instances:
///    - `as-crash` (autostart unset), left running;
///    - `as-on` (`boot.autostart=true`), then stopped through the API;
///    - `as-off` (`boot.autostart=false`), left running;
///    - `as-idle` (autostart unset), then stopped through the API.
/// 2. Stops droverd, then kills PID 1 of `as-crash` and `as-off` (a crash while the daemon
///    is down: their last state stays RUNNING).
/// 3. Starts droverd: `as-crash` (last seen running) and `as-on` (autostart) run again with
///    new PIDs; `as-off` and `as-idle` stay stopped.
/// 4. The autostarted ones are usable (exec).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_start_autostarts_the_instances_lxd_would() {
    let mut m = Member::start().await;
    m.import_busybox().await;
    let c = m.client();

    tracing::info!("--- launch as-crash, as-on, as-off, as-idle");
    m.launch("as-crash", &[]).await;
    m.launch("as-on", &[("boot.autostart", "true")]).await;
    m.launch("as-off", &[("boot.autostart", "false")]).await;
    m.launch("as-idle", &[]).await;
    m.change_state("as-on", "stop", false)
        .await
        .expect("stop as-on");
    m.change_state("as-idle", "stop", false)
        .await
        .expect("stop as-idle");
    let crash_pid = m.pid("as-crash").await;
    let off_pid = m.pid("as-off").await;
    for (name, power) in [
        ("as-crash", "RUNNING"),
        ("as-on", "STOPPED"),
        ("as-off", "RUNNING"),
        ("as-idle", "STOPPED"),
    ] {
        let inst = c.instance(name).await.expect("get instance");
        assert_eq!(
            inst.config
                .get("volatile.last_state.power")
                .map(String::as_str),
            Some(power),
            "{name}"
        );
    }

    tracing::info!("--- stop droverd, crash as-crash and as-off while it is down");
    m.stop_daemon().await;
    crash(crash_pid).await;
    crash(off_pid).await;

    tracing::info!("--- start droverd");
    m.restart().await;
    assert_eq!(
        m.status("as-crash").await,
        InstanceStatus::Running,
        "unset autostart + last state RUNNING: started"
    );
    assert_eq!(
        m.status("as-on").await,
        InstanceStatus::Running,
        "boot.autostart=true: started"
    );
    assert_eq!(
        m.status("as-off").await,
        InstanceStatus::Stopped,
        "boot.autostart=false: not started"
    );
    assert_eq!(
        m.status("as-idle").await,
        InstanceStatus::Stopped,
        "unset autostart + last state STOPPED: not started"
    );
    assert_ne!(
        m.pid("as-crash").await,
        crash_pid,
        "as-crash got a new PID 1"
    );

    tracing::info!("--- the autostarted instances work");
    for name in ["as-crash", "as-on"] {
        let out = m
            .exec(name, &["cat", "/etc/hostname"])
            .await
            .expect("exec in an autostarted instance");
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_eq!(out.stdout, format!("{name}\n"));
    }
}

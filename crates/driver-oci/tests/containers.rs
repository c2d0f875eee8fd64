//! Real system containers on crun and runc, driven through [`InstanceDriver`].
//!
//! Needs root, `/bin/busybox` and the runtimes named by `DROVER_TEST_RUNTIMES` (default
//! `crun,runc`); a missing required runtime fails the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    STUBBORN_INIT, TRAPPING_INIT, World, exec, init_tracing, runtime_under_test, start_ready,
    wait_until,
};
use drivers::{DriverError, ExecSpec, ExecStdio, InstanceDriver, RuntimeStatus, StopOutcome};
use drover_driver_oci::{RuntimeKind, signal_from_name};

/// What does this test do?
/// - starts a busybox system container with memory and cpu limits, sees it Running
/// - refuses a second start
/// - execs `hostname`, `cat /etc/hostname`, a failing command, and checks the default cwd
/// - finds the limits in the instance's cgroups and non-zero usage
/// - re-attaches from a new driver on the same root dir (as after a daemon restart)
/// - stops it cleanly with SIGPWR, well inside the timeout; then it is Stopped, a second
///   stop says WasStopped, and the cgroups are gone
/// - starts it again (its pid file still holds the old pid: the driver that stopped it did
///   not start it) with the new PID 1 read, and force-stops it: Killed, its pid file empty,
///   and soon after the emptied cgroup parent is removed
async fn lifecycle(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance(
        "c1",
        TRAPPING_INIT,
        &[("limits.memory", "64MiB"), ("limits.cpu", "1")],
    );

    tracing::info!("--- start");
    let pid = start_ready(&driver, &spec).await;
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Running { pid }
    );
    assert!(matches!(
        driver.start(&spec).await,
        Err(DriverError::AlreadyRunning)
    ));

    tracing::info!("--- exec");
    let r = exec(&driver, &spec.id, &["hostname"]).await;
    assert_eq!((r.code, r.stdout.trim()), (0, "c1"), "{r:?}");
    let r = exec(&driver, &spec.id, &["cat", "/etc/hostname"]).await;
    assert_eq!((r.code, r.stdout.as_str()), (0, "c1\n"), "{r:?}");
    let r = exec(&driver, &spec.id, &["sh", "-c", "echo oops >&2; exit 3"]).await;
    assert_eq!((r.code, r.stderr.as_str()), (3, "oops\n"), "{r:?}");
    let r = exec(&driver, &spec.id, &["pwd"]).await;
    assert_eq!(r.stdout.trim(), "/root", "{r:?}");
    let r = exec(
        &driver,
        &spec.id,
        &[
            "sh",
            "-c",
            "ls /dev; mount -t proc proc /tmp && echo mounted",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
    ] {
        assert!(
            r.stdout.lines().any(|l| l == dev),
            "/dev/{dev} missing: {r:?}"
        );
    }
    assert!(r.stdout.contains("mounted"), "{r:?}");

    tracing::info!("--- limits and usage");
    let cg = driver.cgroups();
    let limit = std::fs::read_to_string(cg.dir("memory", &spec.id).join("memory.limit_in_bytes"))
        .expect("memory cgroup of the instance");
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    let quota = std::fs::read_to_string(cg.dir("cpu", &spec.id).join("cpu.cfs_quota_us")).unwrap();
    assert_eq!(quota.trim(), "100000");
    let usage = driver.usage(&spec.id).await.unwrap();
    assert!(
        usage.memory > 0 && usage.memory_peak >= usage.memory,
        "{usage:?}"
    );
    assert!(usage.cpu_ns > 0 && usage.processes >= 2, "{usage:?}");

    tracing::info!("--- re-attach from a new driver");
    let again = world.driver().await;
    assert_eq!(
        again.state(&spec.id).await.unwrap(),
        RuntimeStatus::Running { pid }
    );

    tracing::info!("--- clean stop");
    let sigpwr = signal_from_name("SIGPWR").unwrap();
    let t0 = Instant::now();
    let outcome = again
        .stop(&spec.id, sigpwr, Duration::from_secs(10), false)
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(outcome, StopOutcome::Clean);
    assert!(took < Duration::from_secs(2), "clean stop took {took:?}");
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Stopped
    );
    assert_eq!(
        driver
            .stop(&spec.id, sigpwr, Duration::from_secs(1), false)
            .await
            .unwrap(),
        StopOutcome::WasStopped
    );
    assert!(
        !cg.dir("memory", &spec.id).exists(),
        "instance cgroup left behind"
    );
    let log = std::fs::read_to_string(spec.run_dir.join("console.log")).unwrap();
    assert!(
        log.contains("init: ready") && log.contains("init: stop signal"),
        "{log}"
    );
    assert!(matches!(
        exec_err(&driver, &spec.id).await,
        Some(DriverError::NotRunning)
    ));

    tracing::info!("--- restart, then force stop");
    let pid_file = spec.run_dir.join(drover_driver_oci::PID_FILE);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        pid.to_string(),
        "a driver that did not start it leaves the pid file as it was"
    );
    let second = start_ready(&driver, &spec).await;
    assert_ne!(second, pid);
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Running { pid: second }
    );
    let outcome = driver
        .stop(&spec.id, libc::SIGTERM, Duration::from_secs(10), true)
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::Killed);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        "",
        "the stop empties the pid file"
    );
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Stopped
    );
    // Tidied after the stop returned, off its path.
    let parent = cg.dir("memory", "");
    wait_until(
        &format!("empty cgroup parent {} removed", world.cgroup_parent),
        Duration::from_secs(5),
        || !parent.exists(),
    )
    .await;
}

async fn exec_err(driver: &drover_driver_oci::OciDriver, id: &str) -> Option<DriverError> {
    let null = || -> std::os::fd::OwnedFd { std::fs::File::open("/dev/null").unwrap().into() };
    let stdio = ExecStdio {
        stdin: null(),
        stdout: null(),
        stderr: null(),
    };
    let spec = ExecSpec {
        command: vec!["true".into()],
        ..Default::default()
    };
    driver.exec(id, &spec, stdio).await.err()
}

/// What does this test do?
/// - starts a container whose init ignores SIGTERM
/// - stops it with a short timeout: Killed, not before the timeout, soon after it
async fn stubborn_init_is_killed(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance("stubborn", STUBBORN_INIT, &[]);
    start_ready(&driver, &spec).await;

    tracing::info!("--- stop with a 300 ms timeout");
    let timeout = Duration::from_millis(300);
    let t0 = Instant::now();
    let outcome = driver
        .stop(&spec.id, libc::SIGTERM, timeout, false)
        .await
        .unwrap();
    let took = t0.elapsed();
    assert_eq!(outcome, StopOutcome::Killed);
    assert!(
        took >= timeout && took < Duration::from_secs(5),
        "took {took:?}"
    );
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Stopped
    );
}

/// What does this test do?
/// - execs a long `sleep`, signals it with SIGTERM through the exec handle
/// - the exit code reports the signal (128 + 15)
/// - a container whose init exits by itself is seen Stopped (and deleted)
/// - so is a container left in "created", and then it starts again
async fn exec_signal_and_exited_init(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance("sig", TRAPPING_INIT, &[]);
    start_ready(&driver, &spec).await;

    tracing::info!("--- exec sleep, then SIGTERM it");
    let null = || -> std::os::fd::OwnedFd { std::fs::File::open("/dev/null").unwrap().into() };
    let marker = spec.rootfs.join("tmp/started");
    let es = ExecSpec {
        command: vec![
            "sh".into(),
            "-c".into(),
            "touch /tmp/started; exec sleep 30".into(),
        ],
        ..Default::default()
    };
    let stdio = ExecStdio {
        stdin: null(),
        stdout: null(),
        stderr: null(),
    };
    let mut p = driver.exec(&spec.id, &es, stdio).await.unwrap();
    wait_until("exec started", Duration::from_secs(10), || marker.exists()).await;
    // `touch` ran just before `exec sleep`: wait until the sleep is what runs.
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                std::fs::read_to_string(e.path().join("cmdline"))
                    .is_ok_and(|c| c == "sleep\u{0}30\u{0}")
            })
    };
    wait_until("sleep 30 running", Duration::from_secs(10), sleeping).await;
    p.signal(libc::SIGTERM).unwrap();
    let code = tokio::time::timeout(Duration::from_secs(10), p.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(code, 128 + libc::SIGTERM);

    tracing::info!("--- init exits by itself");
    let r = exec(&driver, &spec.id, &["kill", "-TERM", "1"]).await;
    // When PID 1 exits first, the kernel SIGKILLs the rest of its pid namespace, `kill`
    // included: 128 + 9.
    assert!(r.code == 0 || r.code == 128 + libc::SIGKILL, "{r:?}");
    let pid = match driver.state(&spec.id).await.unwrap() {
        RuntimeStatus::Running { pid } => Some(pid),
        RuntimeStatus::Stopped => None,
    };
    if let Some(pid) = pid {
        let w = drover_driver_oci::PidWatch::new(i32::try_from(pid).unwrap());
        if let Some(w) = w {
            assert!(w.wait_exit(Duration::from_secs(10)).await);
        }
    }
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Stopped
    );
    assert!(
        !driver.runtime().knows(&spec.id),
        "exited container not cleaned up"
    );

    tracing::info!("--- a created-but-never-started leftover is cleaned up by state");
    let rt = driver.runtime();
    let log = spec.run_dir.join("console.log");
    rt.create(&spec.id, &spec.run_dir, &spec.run_dir.join("pid"), &log)
        .await
        .unwrap();
    assert_eq!(rt.state(&spec.id).await.unwrap().unwrap().status, "created");
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Stopped
    );
    assert!(!rt.knows(&spec.id), "created container not cleaned up");

    tracing::info!("--- and it starts again");
    start_ready(&driver, &spec).await;
    assert_eq!(
        driver
            .stop(&spec.id, libc::SIGTERM, Duration::from_secs(10), false)
            .await
            .unwrap(),
        StopOutcome::Clean
    );
}

/// What does this test do?
/// - a cpu set limit lands in the cpuset cgroup
async fn cpuset_limit(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance("pinned", TRAPPING_INIT, &[("limits.cpu", "0")]);
    // "0" is a count of zero: rejected before anything runs.
    assert!(matches!(
        driver.start(&spec).await,
        Err(DriverError::Invalid(_))
    ));
    let mut spec = spec;
    spec.config.insert("limits.cpu".into(), "0-0".into());
    start_ready(&driver, &spec).await;
    let cpus =
        std::fs::read_to_string(driver.cgroups().dir("cpuset", &spec.id).join("cpuset.cpus"))
            .unwrap();
    assert_eq!(cpus.trim(), "0");
    driver
        .stop(&spec.id, libc::SIGTERM, Duration::from_secs(10), false)
        .await
        .unwrap();
}

/// An init that takes a while to install its handler, as a shell init does for a moment.
const SLOW_TRAPPING_INIT: &str = r#"#!/bin/sh
sleep 0.2
trap 'exit 0' TERM PWR
while true; do sleep 1 & wait $!; done
"#;

/// What does this test do?
/// - stops a container right after its start, before its init installed the handler of the
///   stop signal (PID 1 of a namespace ignores unhandled signals): the stop still ends
///   cleanly and quickly instead of lasting its whole timeout
async fn stop_right_after_start_is_clean(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance("early", SLOW_TRAPPING_INIT, &[]);
    driver.start(&spec).await.unwrap();
    let t0 = Instant::now();
    let outcome = driver
        .stop(&spec.id, libc::SIGPWR, Duration::from_secs(20), false)
        .await
        .unwrap();
    assert_eq!(outcome, StopOutcome::Clean);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
}

macro_rules! for_both_runtimes {
    ($($story:ident),* $(,)?) => {
        mod crun {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    super::$story(drover_driver_oci::RuntimeKind::Crun).await;
                }
            )*
        }
        mod runc {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    super::$story(drover_driver_oci::RuntimeKind::Runc).await;
                }
            )*
        }
    };
}

for_both_runtimes!(
    lifecycle,
    stubborn_init_is_killed,
    exec_signal_and_exited_init,
    cpuset_limit,
    stop_right_after_start_is_clean,
);

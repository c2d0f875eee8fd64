//! The daemon's path: runtime calls from a process whose mount namespace has no hybrid
//! cgroup2 mount (what `prepare_mount_namespace` sets up), so crun runs directly.
//!
//! A test harness is multithreaded and cannot move itself, so the test re-executes its own
//! binary inside `unshare -m` with the mount removed, and the child does the work. It also
//! prints start and stop times of both runtimes on this path (run with `--no-capture`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{TRAPPING_INIT, World, init_tracing, runtime_under_test, start_ready};
use drivers::{InstanceDriver, RuntimeStatus, StopOutcome};
use drover_driver_oci::{HYBRID_CGROUP2, Isolation, RuntimeKind, hybrid_cgroup2_mounted, probe};

const CHILD_ENV: &str = "DROVER_OCI_DAEMON_PATH_CHILD";

/// What does this test do?
/// - re-runs itself in a private mount namespace without the cgroup2 mount
/// - there: crun is probed with direct (unwrapped) calls and chosen
/// - starts and stops containers on both runtimes and prints the median times
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crun_runs_directly_in_a_private_mount_namespace() {
    init_tracing();
    if std::env::var_os(CHILD_ENV).is_some() {
        child().await;
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!("umount -l {HYBRID_CGROUP2} 2>/dev/null; exec \"$0\" \"$@\"");
    let status = tokio::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(exe)
        .args([
            "--exact",
            "crun_runs_directly_in_a_private_mount_namespace",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(120), status)
        .await
        .expect("child test finished within 120 s")
        .unwrap();
    assert!(status.success(), "child test failed: {status}");
}

async fn child() {
    assert!(
        !hybrid_cgroup2_mounted(),
        "child still sees {HYBRID_CGROUP2}"
    );
    assert_eq!(Isolation::detect(RuntimeKind::Crun), Isolation::Direct);
    let dir = tempfile::tempdir().unwrap();
    if runtime_under_test(RuntimeKind::Crun) {
        tracing::info!("--- probe crun on the direct path");
        let driver = probe(
            RuntimeKind::Crun,
            dir.path().join("rt"),
            dir.path().join("scratch"),
        )
        .await
        .unwrap();
        assert_eq!(driver.runtime_name(), "crun");
        assert_eq!(driver.runtime().isolation(), Isolation::Direct);
    }
    for kind in [RuntimeKind::Crun, RuntimeKind::Runc] {
        if !runtime_under_test(kind) {
            continue;
        }
        tracing::info!("--- timing {kind}");
        let world = World::new(kind);
        let driver = world.driver().await;
        assert_eq!(driver.runtime().isolation(), Isolation::Direct);
        let spec = world.instance("timed", TRAPPING_INIT, &[("limits.memory", "128MiB")]);
        let (mut starts, mut stops) = (Vec::new(), Vec::new());
        for _ in 0..10 {
            let t0 = Instant::now();
            let pid = start_ready(&driver, &spec).await;
            starts.push(t0.elapsed());
            assert_eq!(
                driver.state(&spec.id).await.unwrap(),
                RuntimeStatus::Running { pid }
            );
            let t0 = Instant::now();
            let outcome = driver
                .stop(&spec.id, libc::SIGPWR, Duration::from_secs(10), false)
                .await
                .unwrap();
            stops.push(t0.elapsed());
            assert_eq!(outcome, StopOutcome::Clean);
        }
        starts.sort();
        stops.sort();
        eprintln!(
            "TIMING {kind} (direct): start→init ready median {:?} (min {:?}), clean stop median {:?} (min {:?})",
            starts[5], starts[0], stops[5], stops[0]
        );
    }
}

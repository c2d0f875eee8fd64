//! Freezing and unfreezing real system containers on crun and runc (`<runtime> pause` and
//! `resume`), driven through [`InstanceDriver`].
//!
//! Needs root, `/bin/busybox` and the runtimes named by `DROVER_TEST_RUNTIMES` (default
//! `crun,runc`); a missing required runtime fails the tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{World, init_tracing, runtime_under_test, start_ready};
use drivers::{DriverError, InstanceDriver, RuntimeStatus, StopOutcome};
use drover_driver_oci::{OciDriver, RuntimeKind};

/// An init that counts in `/tick` every 50 ms and exits on SIGPWR/SIGTERM.
const TICKING_INIT: &str = r#"#!/bin/sh
trap 'exit 0' TERM PWR
i=0
: > /ready
while true; do i=$((i+1)); echo $i > /tick; sleep 0.05 & wait $!; done
"#;

fn tick(rootfs: &Path) -> u64 {
    std::fs::read_to_string(rootfs.join("tick"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the counter in `/tick` moves within 600 ms.
async fn ticking(rootfs: &Path) -> bool {
    let before = tick(rootfs);
    tokio::time::sleep(Duration::from_millis(600)).await;
    tick(rootfs) != before
}

/// Freezes running `id` and stops it (SIGPWR, 20 s, `force`): the stop ends as `want`
/// within 10 s, and then it is Stopped.
async fn stop_frozen(driver: &OciDriver, id: &str, force: bool, want: StopOutcome) {
    driver.freeze(id).await.unwrap();
    let t0 = Instant::now();
    let outcome = driver
        .stop(id, libc::SIGPWR, Duration::from_secs(20), force)
        .await
        .unwrap();
    assert_eq!(outcome, want);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert_eq!(driver.state(id).await.unwrap(), RuntimeStatus::Stopped);
}

/// What does this test do?
/// - starts a container whose init counts in a file; freezes it: the runtime says it is
///   frozen, the counter stops, the instance still shows Running with the same PID 1
/// - a second freeze succeeds (idempotent), and so does a fresh driver on the same root
///   (as after a daemon restart): it too sees the container frozen
/// - unfreezes it: the counter moves again; a second unfreeze succeeds
/// - freezes it and stops it cleanly: init gets the signal (the driver unfreezes first),
///   the stop is Clean and quick
/// - starts it again, freezes it and force-stops it: Killed, and then Stopped
/// - freeze and unfreeze of a stopped container answer NotRunning
async fn freeze_unfreeze_and_stop(kind: RuntimeKind) {
    if !runtime_under_test(kind) {
        return;
    }
    init_tracing();
    let world = World::new(kind);
    let driver = world.driver().await;
    let spec = world.instance("ice", TICKING_INIT, &[]);
    let pid = start_ready(&driver, &spec).await;
    assert!(ticking(&spec.rootfs).await, "the counter does not move");
    assert!(!driver.frozen(&spec.id).await.unwrap());

    tracing::info!("--- freeze");
    driver.freeze(&spec.id).await.unwrap();
    assert!(driver.frozen(&spec.id).await.unwrap());
    assert!(!ticking(&spec.rootfs).await, "a frozen container ran");
    assert_eq!(
        driver.state(&spec.id).await.unwrap(),
        RuntimeStatus::Running { pid }
    );
    driver.freeze(&spec.id).await.unwrap();
    let fresh = world.driver().await;
    assert!(fresh.frozen(&spec.id).await.unwrap());

    tracing::info!("--- unfreeze");
    fresh.unfreeze(&spec.id).await.unwrap();
    assert!(!driver.frozen(&spec.id).await.unwrap());
    assert!(
        ticking(&spec.rootfs).await,
        "an unfrozen container stays still"
    );
    driver.unfreeze(&spec.id).await.unwrap();

    tracing::info!("--- clean stop of a frozen container");
    stop_frozen(&driver, &spec.id, false, StopOutcome::Clean).await;
    assert!(matches!(
        driver.freeze(&spec.id).await,
        Err(DriverError::NotRunning)
    ));
    assert!(matches!(
        driver.unfreeze(&spec.id).await,
        Err(DriverError::NotRunning)
    ));
    assert!(!driver.frozen(&spec.id).await.unwrap());

    tracing::info!("--- forced stop of a frozen container");
    start_ready(&driver, &spec).await;
    stop_frozen(&driver, &spec.id, true, StopOutcome::Killed).await;
}

mod crun {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn freeze_unfreeze_and_stop() {
        super::freeze_unfreeze_and_stop(drover_driver_oci::RuntimeKind::Crun).await;
    }
}

mod runc {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn freeze_unfreeze_and_stop() {
        super::freeze_unfreeze_and_stop(drover_driver_oci::RuntimeKind::Runc).await;
    }
}

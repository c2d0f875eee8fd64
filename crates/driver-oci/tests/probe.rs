//! Start-up probing: a real tiny container decides which runtime the driver uses.
#![allow(clippy::unwrap_used)]

mod common;

use common::{init_tracing, runtime_under_test};
use drivers::{DriverError, InstanceDriver};
use drover_driver_oci::{Isolation, Runtime, RuntimeKind, probe, probe_runtimes};

/// What does this test do?
/// - probes each runtime as the preferred one; it is chosen, named and versioned
/// - crun in this (host-namespace) test process is wrapped in unshare, runc is not
#[tokio::test]
async fn preferred_runtime_is_chosen() {
    init_tracing();
    for kind in [RuntimeKind::Crun, RuntimeKind::Runc] {
        if !runtime_under_test(kind) {
            continue;
        }
        tracing::info!("--- probe {kind}");
        let dir = tempfile::tempdir().unwrap();
        let driver = probe(kind, dir.path().join("runtime"), dir.path().join("scratch"))
            .await
            .unwrap();
        assert_eq!(driver.runtime_name(), kind.name());
        let describe = driver.describe();
        assert!(describe.starts_with(&format!("{kind} ")), "{describe}");
        assert!(
            describe.contains(|c: char| c.is_ascii_digit()),
            "{describe}"
        );
        assert_eq!(driver.runtime().isolation(), Isolation::detect(kind));
        if kind == RuntimeKind::Runc {
            assert_eq!(driver.runtime().isolation(), Isolation::Direct);
        }
        // The probe container is gone.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("runtime"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "probe left {left:?}");
    }
}

/// What does this test do?
/// - a preferred runtime that does not run makes the probe fall back to the other one
/// - with no working runtime at all, the error names both
#[tokio::test]
async fn falls_back_when_preferred_fails() {
    init_tracing();
    if !runtime_under_test(RuntimeKind::Runc) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("runtime");
    let broken = Runtime::new(RuntimeKind::Crun, &root).with_binary("/nonexistent/crun");
    let driver = probe_runtimes(
        vec![broken.clone(), Runtime::new(RuntimeKind::Runc, &root)],
        &dir.path().join("scratch"),
    )
    .await
    .unwrap();
    assert_eq!(driver.runtime_name(), "runc");

    let also_broken = Runtime::new(RuntimeKind::Runc, &root).with_binary("/nonexistent/runc");
    let err = probe_runtimes(vec![broken, also_broken], &dir.path().join("scratch"))
        .await
        .unwrap_err();
    match err {
        DriverError::Runtime {
            runtime, stderr, ..
        } => {
            assert_eq!(runtime, "crun and runc");
            assert!(
                stderr.contains("crun:") && stderr.contains("runc:"),
                "{stderr}"
            );
        }
        other => panic!("unexpected error {other}"),
    }
}

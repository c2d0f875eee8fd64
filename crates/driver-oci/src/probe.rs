//! Choosing the runtime at start-up by running a real container.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drivers::{DriverError, InstanceDriver, InstanceSpec, Result, StopOutcome};

use crate::driver::OciDriver;
use crate::runtime::{Runtime, RuntimeKind};

/// The static busybox the probe container is made of.
pub const BUSYBOX: &str = "/bin/busybox";

/// How long the probe container may take to run `true` and exit.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds a working runtime: `preferred` first, then the other one.
///
/// A runtime works when it runs a real tiny container — a rootfs of [`BUSYBOX`] in
/// `scratch_dir`, PID 1 `busybox true`, with the same spec as instances — to its exit. When
/// [`BUSYBOX`] is missing, `--version` alone decides (logged as a warning). State goes to
/// `root_dir` (the driver's `--root`); the probe container is deleted afterwards. Logs which
/// runtime is used and why.
///
/// Call it from the daemon after [`crate::prepare_mount_namespace`] (which must run before
/// tokio starts), so that crun's calls take the direct path.
///
/// # Errors
///
/// [`DriverError::Runtime`] naming both runtimes' failures when neither works.
pub async fn probe(
    preferred: RuntimeKind,
    root_dir: impl Into<PathBuf>,
    scratch_dir: impl AsRef<Path>,
) -> Result<OciDriver> {
    let root_dir = root_dir.into();
    let candidates = vec![
        Runtime::new(preferred, &root_dir).sealed().await,
        Runtime::new(preferred.other(), &root_dir).sealed().await,
    ];
    probe_runtimes(candidates, scratch_dir.as_ref()).await
}

/// [`probe`] over explicit candidates, in order of preference (the first is the preferred
/// one); for runtimes at unusual paths or with other timeouts.
///
/// # Errors
///
/// [`DriverError::Runtime`] naming every candidate's failure when none works.
pub async fn probe_runtimes(candidates: Vec<Runtime>, scratch_dir: &Path) -> Result<OciDriver> {
    let names: Vec<&str> = candidates.iter().map(|r| r.kind().name()).collect();
    let all = names.join(" and ");
    let preferred = names.first().copied().unwrap_or("none");
    let mut failures = Vec::new();
    for runtime in candidates {
        let kind = runtime.kind();
        let t0 = Instant::now();
        match probe_one(runtime, scratch_dir).await {
            Ok(driver) => {
                let why = if failures.is_empty() {
                    "preferred runtime works".to_string()
                } else {
                    format!(
                        "preferred runtime {preferred} failed: {}",
                        failures.join("; ")
                    )
                };
                tracing::info!(
                    runtime = %driver.describe(),
                    isolation = ?driver.runtime().isolation(),
                    sealed_binary = driver.runtime().is_sealed(),
                    probe_ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                    why,
                    "oci runtime selected"
                );
                return Ok(driver);
            }
            Err(e) => {
                tracing::warn!(runtime = %kind, error = %e, "oci runtime probe failed");
                failures.push(format!("{kind}: {e}"));
            }
        }
    }
    Err(DriverError::Runtime {
        runtime: all,
        verb: "probe".into(),
        stderr: failures.join("; "),
    })
}

async fn probe_one(runtime: Runtime, scratch: &Path) -> Result<OciDriver> {
    let kind = runtime.kind();
    let version = runtime.version().await?;
    let driver = OciDriver::from_parts(runtime, version);
    if !Path::new(BUSYBOX).exists() {
        tracing::warn!(runtime = %kind, "no {BUSYBOX}: runtime accepted on --version alone");
        return Ok(driver);
    }
    let dir = scratch.join(format!("probe-{kind}"));
    let rootfs = dir.join("rootfs");
    make_probe_rootfs(&rootfs)?;
    let spec = InstanceSpec {
        id: format!("drover-probe-{kind}-{}", std::process::id()),
        name: "probe".into(),
        rootfs,
        run_dir: dir.join("run"),
        config: BTreeMap::new(),
        init: vec!["/bin/busybox".into(), "true".into()],
        env: Vec::new(),
        mounts: Vec::new(),
    };
    // A leftover of a crashed earlier probe with the same pid would block the start.
    driver
        .stop(&spec.id, libc::SIGKILL, Duration::ZERO, true)
        .await?;
    let started = driver.start(&spec).await;
    let outcome = match started {
        Ok(pid) => {
            let exited = match i32::try_from(pid)
                .ok()
                .and_then(crate::pid_watch::PidWatch::new)
            {
                Some(w) => w.wait_exit(PROBE_TIMEOUT).await,
                None => true,
            };
            let stop = driver
                .stop(&spec.id, libc::SIGKILL, Duration::ZERO, true)
                .await;
            if !exited {
                Err(DriverError::Invalid("probe container did not exit".into()))
            } else {
                stop.map(|o| debug_assert!(o != StopOutcome::Clean))
            }
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map(|()| driver)
}

/// `rootfs/bin/busybox` plus the directories the spec mounts on.
fn make_probe_rootfs(rootfs: &Path) -> std::io::Result<()> {
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    let target = rootfs.join("bin/busybox");
    if !target.exists() {
        std::fs::copy(BUSYBOX, &target)?;
    }
    Ok(())
}

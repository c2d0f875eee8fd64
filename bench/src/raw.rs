//! The floor: the same containers driven by the OCI runtime directly, with no manager.
//!
//! Same runtime binary and isolation as droverd (this process moves into the same kind of
//! private mount namespace before it starts any thread, see `main`), bundles made by the
//! same builder ([`driver_oci::bundle::build_spec`]) from the same kind of instance spec
//! droverd uses (PID 1 `/sbin/init`, the same environment), on a copy of a rootfs droverd
//! made from the busybox image. The bundle is written before the clock starts: the floor
//! is the runtime's own work.
//!
//! - start = `<runtime> run --detach --pid-file …` + reading the pid file;
//! - clean stop = SIGPWR through `<runtime> kill`, waiting for PID 1 to exit (a pidfd, so
//!   no polling delay), `<runtime> delete`.
//!
//! The binary runs either as it is on disk (what a script calling the runtime gets: crun
//! then copies itself on each call, its CVE-2019-5736 guard) or from a sealed in-memory copy
//! made once, as droverd runs it ([`Runtime::sealed`]), which crun takes as that copy.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use driver_oci::bundle::{build_spec, write_bundle};
use driver_oci::cgroup::CgroupLayout;
use driver_oci::{Runtime, RuntimeKind};
use drivers::InstanceSpec;
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Cgroup parent of the floor's containers (droverd uses `drover`).
const CGROUP_PARENT: &str = "drover-bench-raw";

/// Longest a clean stop may take before the floor gives up.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One raw container: its id and bundle.
#[derive(Debug)]
struct RawContainer {
    id: String,
    bundle: PathBuf,
}

/// N containers on one runtime, in one `--root`.
#[derive(Debug)]
pub struct RawFloor {
    runtime: Runtime,
    cgroups: CgroupLayout,
    containers: Vec<RawContainer>,
}

impl RawFloor {
    /// Prepares one container per `(id, source rootfs)`: copies the rootfs (`cp -a`) and
    /// writes the bundle under `base/<id>`; runtime state goes to `base/runtime`.
    ///
    /// With `sealed`, the runtime runs from a sealed in-memory copy of its binary, as
    /// droverd runs it ([`Runtime::sealed`]); an error if that copy cannot be made or run
    /// (e.g. isolation other than `Direct`), so that this floor never silently measures the
    /// stock binary. Without, the binary on disk runs, as a script calling it would.
    pub async fn prepare(
        kind: RuntimeKind,
        sealed: bool,
        base: &Path,
        sources: &[(String, PathBuf)],
    ) -> Result<RawFloor> {
        let mut runtime = Runtime::new(kind, base.join("runtime"));
        if sealed {
            runtime = runtime.sealed().await;
            if !runtime.is_sealed() {
                bail!(
                    "the {kind} binary cannot run from a sealed in-memory copy (isolation {:?}; \
                     it needs Direct isolation, memfd_create with sealing and executable \
                     memfds), so there is no raw_sealed floor",
                    runtime.isolation()
                );
            }
        }
        std::fs::create_dir_all(runtime.root())?;
        let cgroups = CgroupLayout::new(CGROUP_PARENT);
        let mut containers = Vec::new();
        for (id, source) in sources {
            let dir = base.join(id);
            std::fs::create_dir_all(&dir)?;
            let rootfs = dir.join("rootfs");
            let out = tokio::process::Command::new("cp")
                .arg("-a")
                .arg(source)
                .arg(&rootfs)
                .output()
                .await?;
            if !out.status.success() {
                bail!(
                    "cp -a {} {}: {}",
                    source.display(),
                    rootfs.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let bundle = dir.join("bundle");
            let spec = InstanceSpec {
                id: id.clone(),
                name: id.clone(),
                rootfs,
                run_dir: bundle.clone(),
                config: BTreeMap::new(),
                init: vec!["/sbin/init".to_string()],
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                    "container=lxc".into(),
                ],
                mounts: vec![],
            };
            let oci = build_spec(&spec, &cgroups.cgroups_path(id))?;
            write_bundle(&bundle, &oci)?;
            containers.push(RawContainer {
                id: id.clone(),
                bundle,
            });
        }
        Ok(RawFloor {
            runtime,
            cgroups,
            containers,
        })
    }

    /// How many containers.
    pub fn len(&self) -> usize {
        self.containers.len()
    }

    /// The runtime wrapper (its isolation is what the JSON reports).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn container(&self, i: usize) -> Result<&RawContainer> {
        self.containers
            .get(i)
            .ok_or_else(|| anyhow!("no raw container {i}"))
    }

    /// Starts container `i`; returns PID 1's pid.
    pub async fn start(&self, i: usize) -> Result<i32> {
        let c = self.container(i)?;
        let pid_file = c.bundle.join("pid");
        let log = c.bundle.join("console.log");
        self.runtime
            .run_detached(&c.id, &c.bundle, &pid_file, &log)
            .await
            .with_context(|| format!("start {}", c.id))?;
        let pid = tokio::fs::read_to_string(&pid_file).await?;
        pid.trim()
            .parse()
            .with_context(|| format!("bad pid file {}", pid_file.display()))
    }

    /// Cleanly stops container `i` whose PID 1 is `pid`: SIGPWR, wait for the exit, delete.
    pub async fn stop(&self, i: usize, pid: i32) -> Result<()> {
        let c = self.container(i)?;
        let pidfd = Pid::from_raw(pid)
            .ok_or_else(|| anyhow!("bad pid {pid}"))
            .and_then(|p| {
                pidfd_open(p, PidfdFlags::NONBLOCK).with_context(|| format!("pidfd of {pid}"))
            })?;
        self.runtime
            .kill(&c.id, libc::SIGPWR)
            .await
            .with_context(|| format!("kill {}", c.id))?;
        wait_exit(pidfd)
            .await
            .with_context(|| format!("wait for {} (pid {pid}) to exit", c.id))?;
        self.runtime
            .delete(&c.id, false)
            .await
            .with_context(|| format!("delete {}", c.id))?;
        Ok(())
    }

    /// Removes whatever is left (after an error): `delete --force` of every container,
    /// their cgroups and the cgroup parent.
    pub async fn cleanup(&self) {
        for c in &self.containers {
            let _ = self.runtime.delete(&c.id, true).await;
            self.cgroups.remove(&c.id, false);
        }
        if let Some(c) = self.containers.first() {
            self.cgroups.remove(&c.id, true);
        }
    }
}

/// Waits until the process behind `pidfd` exits (the pidfd turns readable).
async fn wait_exit(pidfd: OwnedFd) -> Result<()> {
    // Deprecated because a generic `T: AsRawFd` may close or swap its fd while registered;
    // an `OwnedFd` owned by the `AsyncFd` cannot, which is the contract the safe
    // replacement (`unsafe fn register_with_interest`) asks callers to promise.
    #[allow(deprecated)]
    let fd = AsyncFd::with_interest(pidfd, Interest::READABLE)?;
    tokio::time::timeout(STOP_TIMEOUT, fd.readable())
        .await
        .map_err(|_| anyhow!("still running after {STOP_TIMEOUT:?}"))??
        .retain_ready();
    Ok(())
}

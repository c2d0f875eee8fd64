//! Shared helpers of the integration tests: busybox root filesystems, runtime selection,
//! exec with captured output, and waiting on conditions with deadlines.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drivers::{ExecSpec, ExecStdio, InstanceDriver, InstanceSpec};
use drover_driver_oci::{OciDriver, RuntimeKind};
use tokio::io::AsyncReadExt;

/// Applets linked into the test rootfs.
const APPLETS: &[&str] = &[
    "sh", "sleep", "cat", "hostname", "true", "false", "echo", "kill", "mount", "ls", "id", "pwd",
];

/// An init that stops cleanly on SIGTERM or SIGPWR.
pub const TRAPPING_INIT: &str = r#"#!/bin/sh
trap 'echo "init: stop signal"; exit 0' TERM PWR
echo "init: ready"
: > /ready
while true; do sleep 1 & wait $!; done
"#;

/// An init that ignores the stop signals.
pub const STUBBORN_INIT: &str = r#"#!/bin/sh
trap '' TERM PWR
: > /ready
while true; do sleep 1 & wait $!; done
"#;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("drover_driver_oci=debug")
        .try_init();
}

/// The runtimes the tests must cover: `DROVER_TEST_RUNTIMES` (default `crun,runc`).
fn required() -> Vec<String> {
    std::env::var("DROVER_TEST_RUNTIMES")
        .unwrap_or_else(|_| "crun,runc".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn installed(kind: RuntimeKind) -> bool {
    std::process::Command::new(kind.name())
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a test for `kind` should run. Fails (never skips silently) when a required
/// runtime is missing or the tests do not run as root.
pub fn runtime_under_test(kind: RuntimeKind) -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the driver-oci integration tests need root (they run real containers)"
    );
    assert!(
        Path::new("/bin/busybox").exists(),
        "the driver-oci integration tests need /bin/busybox (apt-get install busybox-static)"
    );
    let is_required = required().iter().any(|r| r == kind.name());
    if installed(kind) {
        return true;
    }
    assert!(
        !is_required,
        "{kind} is not installed but DROVER_TEST_RUNTIMES (default crun,runc) requires it: \
         install it (apt-get install {kind}) or set DROVER_TEST_RUNTIMES"
    );
    eprintln!("NOT TESTED: {kind} is not installed and not required by DROVER_TEST_RUNTIMES");
    false
}

/// One test's world: a temp dir with a runtime root, run dirs and root filesystems.
pub struct World {
    pub dir: tempfile::TempDir,
    pub kind: RuntimeKind,
    pub cgroup_parent: String,
}

impl World {
    pub fn new(kind: RuntimeKind) -> World {
        World {
            dir: tempfile::tempdir().unwrap(),
            kind,
            cgroup_parent: format!("drover-test-{}-{}", kind, std::process::id()),
        }
    }

    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("runtime")
    }

    /// A fresh driver on this world's root dir (as after a daemon restart).
    pub async fn driver(&self) -> OciDriver {
        OciDriver::new(self.kind, self.root_dir())
            .await
            .expect("runtime --version")
            .with_cgroup_parent(self.cgroup_parent.clone())
    }

    /// A busybox rootfs for instance `name` with `init` as /sbin/init.
    pub fn instance(&self, name: &str, init: &str, config: &[(&str, &str)]) -> InstanceSpec {
        let base = self.dir.path().join(name);
        let rootfs = base.join("rootfs");
        for d in [
            "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "run",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        write_exe(&rootfs.join("sbin/init"), init);
        std::fs::write(rootfs.join("etc/hostname"), format!("{name}\n")).unwrap();
        InstanceSpec {
            id: format!("test_{name}"),
            name: name.into(),
            rootfs,
            run_dir: base.join("run"),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            init: vec!["/sbin/init".into()],
            env: vec![],
            mounts: vec![],
        }
    }
}

/// A failed test leaves its containers behind (its runtime state goes with the temp dir):
/// kill whatever still runs in this world's cgroups and remove them.
impl Drop for World {
    fn drop(&mut self) {
        let parents: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path().join(&self.cgroup_parent))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(5);
        for parent in &parents {
            let Ok(children) = std::fs::read_dir(parent) else {
                continue;
            };
            for child in children
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
            {
                loop {
                    let procs =
                        std::fs::read_to_string(child.join("cgroup.procs")).unwrap_or_default();
                    let pids: Vec<i32> = procs
                        .lines()
                        .filter_map(|l| l.trim().parse().ok())
                        .collect();
                    if pids.is_empty() || Instant::now() > deadline {
                        break;
                    }
                    for pid in pids {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    // Cleanup after a failure, not a test condition.
                    std::thread::sleep(Duration::from_millis(5));
                }
                let _ = std::fs::remove_dir(&child);
            }
            let _ = std::fs::remove_dir(parent);
        }
    }
}

fn write_exe(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts `spec` and waits until its init reports ready (`/ready` in the rootfs).
pub async fn start_ready(driver: &OciDriver, spec: &InstanceSpec) -> u32 {
    let ready = spec.rootfs.join("ready");
    let _ = std::fs::remove_file(&ready);
    let pid = driver.start(spec).await.expect("start");
    wait_until("init ready", Duration::from_secs(10), || ready.exists()).await;
    pid
}

/// Polls `cond` until it holds; panics with `what` after `deadline`.
pub async fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Output of an exec.
#[derive(Debug)]
pub struct ExecResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
}

async fn read_all(fd: OwnedFd) -> String {
    let mut f = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut s = String::new();
    f.read_to_string(&mut s).await.unwrap();
    s
}

/// Runs `command` in `id` and collects its output (deadline 30 s).
pub async fn exec(driver: &OciDriver, id: &str, command: &[&str]) -> ExecResult {
    let (out_r, out_w) = pipe();
    let (err_r, err_w) = pipe();
    let stdin: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let spec = ExecSpec {
        command: command.iter().map(|s| (*s).to_string()).collect(),
        ..Default::default()
    };
    let stdio = ExecStdio {
        stdin,
        stdout: out_w,
        stderr: err_w,
    };
    let mut p = driver.exec(id, &spec, stdio).await.expect("exec");
    let run = async {
        let (stdout, stderr) = tokio::join!(read_all(out_r), read_all(err_r));
        let code = p.wait().await.expect("exec wait");
        ExecResult {
            code,
            stdout,
            stderr,
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("exec finished within 30 s")
}

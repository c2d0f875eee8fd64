//! A private `droverd` for one benchmark: a release build in a temporary state directory,
//! with the busybox image imported as `busybox`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::api::Api;

/// How long droverd may take to answer `GET /1.0` (it probes the runtime first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (parent of `bench/`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The droverd binary to benchmark: `explicit` as given, or the workspace's release build,
/// built (or found up to date) with `cargo build --release -p drover-daemon` first, so that
/// a stale binary is never measured.
pub async fn binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!("droverd binary {} does not exist", p.display());
        }
        return Ok(p);
    }
    let ws = workspace_dir();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building droverd: cargo build --release -p drover-daemon");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "drover-daemon"])
        .current_dir(&ws)
        .status()
        .await
        .context("run cargo build for droverd")?;
    if !status.success() {
        bail!("cargo build --release -p drover-daemon failed ({status})");
    }
    let bin = ws.join("target/release/droverd");
    if !bin.is_file() {
        bail!("no {} after the build", bin.display());
    }
    Ok(bin)
}

/// Builds the busybox image with `images/busybox/build.sh` into `out`.
pub async fn build_busybox_image(out: &Path) -> Result<()> {
    let script = workspace_dir().join("images/busybox/build.sh");
    let output = Command::new("sh")
        .arg(&script)
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("run {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}): {}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// A running droverd that is stopped (SIGTERM, then SIGKILL) when [`Droverd::shutdown`]
/// runs or, as a last resort, when dropped.
#[derive(Debug)]
pub struct Droverd {
    child: Child,
    dir: PathBuf,
    api: Api,
    /// `GET /1.0` once it answered.
    pub server: Value,
}

impl Droverd {
    /// Starts `bin` with `DROVER_DIR=dir` (stderr to `dir/droverd.log`) and waits until it
    /// answers.
    pub async fn start(bin: &Path, dir: &Path) -> Result<Droverd> {
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("droverd.log"))?;
        let child = Command::new(bin)
            .env("DROVER_DIR", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        let api = Api::new(dir.join("unix.socket"));
        let mut d = Droverd {
            child,
            dir: dir.to_path_buf(),
            api,
            server: Value::Null,
        };
        let t0 = Instant::now();
        loop {
            if let Some(status) = d.child.try_wait()? {
                bail!(
                    "droverd exited ({status}) before answering; log: {}",
                    d.log_tail()
                );
            }
            if d.api.socket().exists()
                && let Ok(server) = d.api.get("/1.0").await
            {
                d.server = server;
                return Ok(d);
            }
            if t0.elapsed() > READY_TIMEOUT {
                bail!(
                    "droverd did not answer within {READY_TIMEOUT:?}; log: {}",
                    d.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The API client.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The state directory (`DROVER_DIR`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `environment.container_runtime` (`crun`).
    pub fn runtime(&self) -> Result<String> {
        self.server["environment"]["container_runtime"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("GET /1.0 has no environment.container_runtime"))
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// CPU time droverd itself used so far (user + system, ms; its children, the runtime
    /// processes, not counted), from `/proc/<pid>/stat`.
    pub fn cpu_ms(&self) -> Option<f64> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the state (field 3).
        let mut f = rest.split(' ').skip(11);
        let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100);
        Some(ticks as f64 * 1000.0 / hz as f64)
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("droverd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Stops the daemon: SIGTERM, up to 10 s, then SIGKILL.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

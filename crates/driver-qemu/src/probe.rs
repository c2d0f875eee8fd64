//! Which accelerator runs guests here: KVM only when a real tiny guest boots to userspace
//! with it within a deadline (a `/dev/kvm` that answers is not enough: under KVM-PVM stock
//! kernels hang in early boot), else TCG.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::vm::Accel;

/// What the guest's initramfs prints on the console when booted with `drover.probe`.
pub const PROBE_MARKER: &str = "DROVER-USERSPACE-READY";

/// The accelerator chosen and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelProbe {
    /// The accelerator to use.
    pub accel: Accel,
    /// Why (for the log and `GET /1.0`).
    pub detail: String,
}

impl AccelProbe {
    /// TCG without probing, with `why`.
    pub fn tcg(why: impl Into<String>) -> AccelProbe {
        AccelProbe {
            accel: Accel::Tcg,
            detail: why.into(),
        }
    }
}

/// Boots `kernel` + `initrd` (the busybox-vm image's) under KVM with `-cpu host` and waits
/// up to `timeout` for [`PROBE_MARKER`] on the serial console. KVM when it comes, TCG
/// otherwise, saying why.
pub async fn probe_accel(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    timeout: Duration,
) -> AccelProbe {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return AccelProbe::tcg(format!("TCG: /dev/kvm is not usable ({e})"));
    }
    let dir = std::env::temp_dir().join(format!(
        "drover-kvm-probe-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return AccelProbe::tcg(format!("TCG: cannot make a probe directory ({e})"));
    }
    let log = dir.join("console.log");
    let result = boot(qemu, kernel, initrd, &log, timeout).await;
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(elapsed) => AccelProbe {
            accel: Accel::Kvm,
            detail: format!(
                "KVM: a guest reached userspace in {} ms",
                elapsed.as_millis()
            ),
        },
        Err(why) => AccelProbe::tcg(format!("TCG: KVM probe failed: {why}")),
    }
}

async fn boot(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    log: &Path,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new(qemu)
        .args([
            "-machine",
            "pc,accel=kvm",
            "-cpu",
            "host",
            "-m",
            "128M",
            "-smp",
            "1",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1 drover.probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", qemu.display()))?;
    let seen = || std::fs::read_to_string(log).is_ok_and(|s| s.contains(PROBE_MARKER));
    loop {
        if seen() {
            let elapsed = start.elapsed();
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Ok(elapsed);
        }
        if let Ok(Some(status)) = child.try_wait() {
            if seen() {
                return Ok(start.elapsed());
            }
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            let last = err.lines().last().unwrap_or("").trim().to_owned();
            return Err(format!("QEMU exited ({status}) before userspace: {last}"));
        }
        if start.elapsed() >= timeout {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(format!(
                "no userspace within {} ms (the guest hangs under this KVM)",
                timeout.as_millis()
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

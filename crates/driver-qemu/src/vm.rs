//! The machine: its configuration, its files, the QEMU command line, and the process.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drivers::{DriverError, Result};
use serde::{Deserialize, Serialize};

use crate::agent::AGENT_PORT_NAME;

/// The root disk inside an instance volume (raw).
pub const DISK_FILE: &str = "root.img";
/// The guest kernel inside an instance volume.
pub const KERNEL_FILE: &str = "boot/vmlinuz";
/// The guest initramfs inside an instance volume.
pub const INITRD_FILE: &str = "boot/initrd.img";
/// Memory of a VM without `limits.memory` (LXD's default).
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
/// Smallest memory a VM may have (the Debian kernel needs about 100 MiB to boot).
pub const MIN_MEMORY_MIB: u64 = 128;

/// Which accelerator runs guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation (`-cpu host`).
    Kvm,
    /// Software emulation (`-cpu qemu64`).
    Tcg,
}

impl Accel {
    /// QEMU's name (`kvm`, `tcg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// The CPU model used with this accelerator. A migration needs the same on both ends.
    pub fn cpu_model(self) -> &'static str {
        match self {
            Accel::Kvm => "host",
            Accel::Tcg => "qemu64",
        }
    }

    /// KiB of guest RAM added past `limits.memory` for this accelerator.
    ///
    /// Under TCG, QEMU 7.2 loses guest stores during a live migration when its RAM block is a
    /// multiple of 256 KiB. Its migration dirty bitmap is then synced 64 pages at a time by a
    /// path that clears the dirty bits without re-arming the write tracking in the vCPUs'
    /// TLBs, so once a page is sent while the guest runs, later stores to it are neither
    /// tracked nor sent. The target resumes with stale memory: a user process reads old
    /// values, the kernel oopses (QEMU fixed this in 9.0, commit 03bfc2188f). A RAM block one
    /// page pair longer takes the page-by-page path, which re-arms the tracking. It costs
    /// one TLB scan per dirty page at each sync (about 80 ms more set-up for 256 MiB, while
    /// the guest runs). KVM tracks writes in the kernel and needs nothing.
    pub fn ram_pad_kib(self) -> u64 {
        match self {
            Accel::Kvm => 0,
            Accel::Tcg => 8,
        }
    }
}

/// Everything that defines one VM's QEMU process. Stored next to its runtime files, so that
/// a re-attach, or a migration target, uses exactly the same machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// Instance name (QEMU's `-name`).
    pub name: String,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u32,
    /// Accelerator.
    pub accel: Accel,
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Guest initramfs.
    pub initrd: PathBuf,
    /// Raw root disk.
    pub disk: PathBuf,
    /// Extra kernel command line words.
    pub cmdline_extra: String,
    /// KiB of RAM past `memory_mib` ([`Accel::ram_pad_kib`] when the VM started). Kept
    /// with the machine, so that a migration target sizes its RAM as the source did; a VM
    /// started before this existed has none.
    #[serde(default)]
    pub ram_pad_kib: u64,
}

impl VmConfig {
    /// The machine of an instance: files from its volume `volume` (see [`DISK_FILE`],
    /// [`KERNEL_FILE`], [`INITRD_FILE`]), size from `limits.memory` / `limits.cpu`.
    pub fn from_instance(
        name: &str,
        volume: &Path,
        config: &BTreeMap<String, String>,
        accel: Accel,
    ) -> Result<VmConfig> {
        let memory_mib = match config.get("limits.memory").map(|s| s.trim()) {
            None | Some("") => DEFAULT_MEMORY_MIB,
            Some(v) => parse_memory_mib(v)?,
        };
        if memory_mib < MIN_MEMORY_MIB {
            return Err(DriverError::Invalid(format!(
                "limits.memory {memory_mib}MiB is too small for a VM (at least {MIN_MEMORY_MIB}MiB)"
            )));
        }
        let cpus = match config.get("limits.cpu").map(|s| s.trim()) {
            None | Some("") => 1,
            Some(v) => parse_cpu_count(v)?,
        };
        let cfg = VmConfig {
            name: name.to_owned(),
            memory_mib,
            cpus,
            accel,
            kernel: volume.join(KERNEL_FILE),
            initrd: volume.join(INITRD_FILE),
            disk: volume.join(DISK_FILE),
            cmdline_extra: config
                .get("raw.kernel_cmdline")
                .cloned()
                .unwrap_or_default(),
            ram_pad_kib: accel.ram_pad_kib(),
        };
        for (what, p) in [
            ("root disk", &cfg.disk),
            ("kernel", &cfg.kernel),
            ("initrd", &cfg.initrd),
        ] {
            if !p.is_file() {
                return Err(DriverError::Invalid(format!(
                    "VM {what} {} not found (is this a virtual-machine image?)",
                    p.display()
                )));
            }
        }
        Ok(cfg)
    }
}

/// Parses `limits.memory` for a VM (`256MiB`, `1GiB`, `512MB`, up to `EiB`, bytes) into MiB.
pub fn parse_memory_mib(v: &str) -> Result<u64> {
    let bad = || DriverError::Invalid(format!("invalid limits.memory {v:?} for a VM"));
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        // LXD's units go on to peta and exa: such a VM is refused as too large, not as
        // a value nobody can read.
        "PB" => 1e15,
        "EB" => 1e18,
        "PiB" => 1024.0_f64.powi(5),
        "EiB" => 1024.0_f64.powi(6),
        _ => return Err(bad()),
    };
    let mib = (num * mult / (1024.0 * 1024.0)).floor();
    if !mib.is_finite() || mib < 1.0 {
        return Err(bad());
    }
    Ok(mib as u64)
}

/// Parses `limits.cpu` for a VM: a count (`2`) or a set (`0-1`, `0,2`) whose size counts.
pub fn parse_cpu_count(v: &str) -> Result<u32> {
    let bad = || DriverError::Invalid(format!("invalid limits.cpu {v:?}"));
    if let Ok(n) = v.parse::<u32>() {
        return if n == 0 { Err(bad()) } else { Ok(n) };
    }
    let mut n = 0u32;
    for part in v.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if b < a {
                    return Err(bad());
                }
                n += b - a + 1;
            }
            None => {
                part.trim().parse::<u32>().map_err(|_| bad())?;
                n += 1;
            }
        }
    }
    Ok(n.max(1))
}

/// The runtime files of one VM, in its own directory.
#[derive(Debug, Clone)]
pub struct VmPaths {
    /// The directory.
    pub dir: PathBuf,
}

impl VmPaths {
    /// The QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// The agent's virtio-serial socket.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    /// The serial console socket (interactive).
    pub fn console(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    /// Everything the serial console printed.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    /// QEMU's pid file.
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// The [`VmConfig`] QEMU runs with (JSON).
    pub fn config(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    /// What QEMU printed while starting (its `qemu.log`, as LXD names it).
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }

    /// Checks that the sockets fit in `sun_path` (108 bytes).
    pub fn check(&self) -> Result<()> {
        let len = self.console().as_os_str().len();
        if len >= 108 {
            return Err(DriverError::Invalid(format!(
                "VM runtime directory {} is too long for unix sockets",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Where the source QEMU of an outgoing migration connects (the daemon listens).
    pub fn migrate_out(&self) -> PathBuf {
        self.dir.join("mig-out.sock")
    }
    /// Where the target QEMU of an incoming migration listens.
    pub fn migrate_in(&self) -> PathBuf {
        self.dir.join("mig-in.sock")
    }

    /// Removes the sockets and the pid file (not the logs).
    pub fn clean(&self) {
        for p in [
            self.qmp(),
            self.agent(),
            self.console(),
            self.pidfile(),
            self.migrate_out(),
            self.migrate_in(),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// ` drover.hostname=NAME` for the kernel command line, from which the image's init sets
/// the guest's hostname (the instance's name, as LXD's VMs have it); empty when `name`
/// is no valid hostname.
fn hostname_arg(name: &str) -> String {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if valid {
        format!(" drover.hostname={name}")
    } else {
        String::new()
    }
}

/// How a QEMU process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Boots the guest.
    Boot,
    /// Waits for a migration (`-incoming defer`, then `migrate-incoming`) and runs the
    /// guest as soon as it has arrived.
    Incoming,
    /// Waits for a migration and stays paused once it has arrived (`-S`), until `cont`:
    /// the caller decides when the guest runs here (after the ownership switch of a move).
    IncomingPaused,
}

/// The QEMU command line (without the binary) of `cfg` with files in `paths`. With
/// `incoming`, QEMU waits for a migration (`-incoming defer`, then `migrate-incoming`).
pub fn qemu_args(cfg: &VmConfig, paths: &VmPaths, incoming: bool) -> Vec<OsString> {
    let mode = if incoming {
        StartMode::Incoming
    } else {
        StartMode::Boot
    };
    qemu_args_for(cfg, paths, mode)
}

/// The QEMU command line (without the binary) of `cfg` with files in `paths`, started in
/// `mode`.
pub fn qemu_args_for(cfg: &VmConfig, paths: &VmPaths, mode: StartMode) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: String| a.push(s.into());
    let p = |p: PathBuf| p.to_string_lossy().into_owned();
    push("-name".into());
    push(format!(
        "guest={},debug-threads=on",
        cfg.name.replace(',', ",,")
    ));
    push("-machine".into());
    push(format!("pc,accel={}", cfg.accel.as_str()));
    push("-cpu".into());
    push(cfg.accel.cpu_model().into());
    push("-m".into());
    push(match cfg.ram_pad_kib {
        0 => format!("{}M", cfg.memory_mib),
        pad => format!("{}K", cfg.memory_mib * 1024 + pad),
    });
    push("-smp".into());
    push(cfg.cpus.to_string());
    for s in [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ] {
        push(s.into());
    }
    push("-kernel".into());
    push(p(cfg.kernel.clone()));
    push("-initrd".into());
    push(p(cfg.initrd.clone()));
    push("-append".into());
    push(
        format!(
            "console=ttyS0 quiet panic=-1 root=/dev/vda{} {}",
            hostname_arg(&cfg.name),
            cfg.cmdline_extra
        )
        .trim()
        .to_owned(),
    );
    push("-drive".into());
    push(format!(
        "file={},format=raw,if=virtio,cache=writeback",
        p(cfg.disk.clone()).replace(',', ",,")
    ));
    push("-chardev".into());
    push(format!(
        "socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
        p(paths.console()),
        p(paths.console_log())
    ));
    push("-serial".into());
    push("chardev:console".into());
    push("-device".into());
    push("virtio-serial-pci,id=vser0".into());
    push("-chardev".into());
    push(format!(
        "socket,id=agent,path={},server=on,wait=off",
        p(paths.agent())
    ));
    push("-device".into());
    push(format!(
        "virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT_NAME}"
    ));
    push("-qmp".into());
    push(format!("unix:{},server=on,wait=off", p(paths.qmp())));
    push("-pidfile".into());
    push(p(paths.pidfile()));
    push("-daemonize".into());
    if mode == StartMode::IncomingPaused {
        push("-S".into());
    }
    if mode != StartMode::Boot {
        push("-incoming".into());
        push("defer".into());
    }
    a
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The pid in the pid file of `paths`, if it names a live QEMU of exactly this VM (its
/// command line carries this VM's QMP socket: a recycled pid never matches).
pub fn running_pid(paths: &VmPaths) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(paths.pidfile())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = paths.qmp().to_string_lossy().into_owned();
    let has = cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(&needle));
    (has && alive(pid)).then_some(pid)
}

/// Waits up to `timeout` for `pid` to exit; true when it did.
pub async fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SIGKILLs `pid`.
pub fn kill(pid: u32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

/// Memory (RSS, bytes) and CPU time (ns) of `pid` as the host sees them.
pub fn process_usage(pid: u32) -> (i64, i64) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After ")": state is field 3; utime 14, stime 15 (1-based over the whole line).
            let ut: i64 = f.get(11)?.parse().ok()?;
            let st: i64 = f.get(12)?.parse().ok()?;
            Some(ut + st)
        })
        .unwrap_or(0);
    let hz = rustix::param::clock_ticks_per_second().max(1) as i64;
    (rss, cpu * (1_000_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory_mib("256MiB").ok(), Some(256));
        assert_eq!(parse_memory_mib("1GiB").ok(), Some(1024));
        assert_eq!(parse_memory_mib("512MB").ok(), Some(488));
        assert_eq!(parse_memory_mib("268435456").ok(), Some(256));
        assert_eq!(parse_memory_mib("1PiB").ok(), Some(1 << 30));
        assert_eq!(parse_memory_mib("1EiB").ok(), Some(1 << 40));
        assert!(parse_memory_mib("50%").is_err());
        assert!(parse_memory_mib("lots").is_err());
        assert!(parse_memory_mib("0").is_err());
    }

    #[test]
    fn cpu_counts() {
        assert_eq!(parse_cpu_count("2").ok(), Some(2));
        assert_eq!(parse_cpu_count("0-3").ok(), Some(4));
        assert_eq!(parse_cpu_count("0,2").ok(), Some(2));
        assert!(parse_cpu_count("0").is_err());
        assert!(parse_cpu_count("x").is_err());
    }

    #[test]
    fn command_line() {
        let cfg = VmConfig {
            name: "v1".into(),
            memory_mib: 256,
            cpus: 1,
            accel: Accel::Tcg,
            kernel: "/v/boot/vmlinuz".into(),
            initrd: "/v/boot/initrd.img".into(),
            disk: "/v/root.img".into(),
            cmdline_extra: String::new(),
            ram_pad_kib: 0,
        };
        let paths = VmPaths {
            dir: "/r/v1".into(),
        };
        let args: Vec<String> = qemu_args(&cfg, &paths, true)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert!(line.contains("-machine pc,accel=tcg -cpu qemu64 -m 256M -smp 1"));
        assert!(line.contains("-qmp unix:/r/v1/qmp.sock,server=on,wait=off"));
        assert!(
            line.contains("root=/dev/vda drover.hostname=v1 -drive"),
            "{line}"
        );
        assert_eq!(hostname_arg("bad name"), "");
        assert_eq!(hostname_arg("-v"), "");
        assert!(line.ends_with("-daemonize -incoming defer"));
        let paused: Vec<String> = qemu_args_for(&cfg, &paths, StartMode::IncomingPaused)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(paused.join(" ").ends_with("-daemonize -S -incoming defer"));
        // A padded TCG machine: its RAM block is not a multiple of 256 KiB.
        let padded = VmConfig {
            ram_pad_kib: Accel::Tcg.ram_pad_kib(),
            ..cfg
        };
        let line = qemu_args(&padded, &paths, true)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains("-m 262152K -smp 1"), "{line}");
        assert_eq!(Accel::Kvm.ram_pad_kib(), 0);
    }

    #[test]
    fn a_machine_recorded_before_the_pad_has_none() {
        let old = r#"{"name":"v1","memory_mib":256,"cpus":1,"accel":"tcg","kernel":"/k","initrd":"/i","disk":"/d","cmdline_extra":""}"#;
        let cfg: VmConfig = serde_json::from_str(old).expect("old machine");
        assert_eq!(cfg.ram_pad_kib, 0);
    }
}

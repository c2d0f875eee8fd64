//! OCI bundle generation: an [`InstanceSpec`] becomes the `config.json` of a system
//! container.
//!
//! The container is privileged in the LXD sense (root, no user namespace) but isolated:
//! own pid, mount, uts, ipc and network namespaces (the network namespace holds only `lo`),
//! a fresh `/dev` with the standard devices, `/proc` with the usual masked paths, `/sys`
//! read-only, and the LXD capability set (all the host has but `sys_module`, `sys_time`, `sys_rawio`,
//! `mac_admin`, `mac_override`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use drivers::{DriverError, InstanceSpec, Result};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::limits::{CpuLimit, parse_cpu_limit, parse_memory_limit};

/// Name of the bundle's config file inside `run_dir`.
pub const CONFIG_FILE: &str = "config.json";

/// Adds the cgroup limits of `config` (`limits.memory`, `limits.cpu`) to `resources`.
pub fn apply_limits(
    mut resources: LinuxResourcesBuilder,
    config: &std::collections::BTreeMap<String, String>,
) -> Result<LinuxResourcesBuilder> {
    if let Some(v) = config.get("limits.memory").filter(|v| !v.trim().is_empty()) {
        let bytes = parse_memory_limit(v).map_err(DriverError::Invalid)?;
        let bytes = i64::try_from(bytes)
            .map_err(|_| DriverError::Invalid(format!("memory limit {v:?} is too large")))?;
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(bytes)
                .build()
                .map_err(oci_err)?,
        );
    }
    if let Some(v) = config.get("limits.cpu").filter(|v| !v.trim().is_empty()) {
        let cpu = match parse_cpu_limit(v).map_err(DriverError::Invalid)? {
            CpuLimit::Count(n) => LinuxCpuBuilder::default()
                .period(CPU_PERIOD_US)
                .quota(i64::from(n) * CPU_PERIOD_US as i64),
            CpuLimit::Set(set) => LinuxCpuBuilder::default().cpus(set),
        };
        resources = resources.cpu(cpu.build().map_err(oci_err)?);
    }

    Ok(resources)
}

/// The cgroup limits of `config` alone, for `<runtime> update --resources`. A limit that is
/// absent is lifted (memory `-1`, cpu quota `-1`).
pub fn limits_resources(
    config: &std::collections::BTreeMap<String, String>,
) -> Result<oci_spec::runtime::LinuxResources> {
    let unlimited = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1)
                .build()
                .map_err(oci_err)?,
        )
        // A quota of every CPU lifts the limit; some runtimes refuse -1 here.
        .cpu(
            LinuxCpuBuilder::default()
                .period(CPU_PERIOD_US)
                .quota(host_cpus() * CPU_PERIOD_US as i64)
                .build()
                .map_err(oci_err)?,
        );
    apply_limits(unlimited, config)?.build().map_err(oci_err)
}

fn host_cpus() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| i64::try_from(n.get()).unwrap_or(1))
}

/// CFS period used for `limits.cpu` counts, in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;

/// `PATH` given to PID 1 when the instance's environment has none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Capabilities a system container keeps: everything the kernel knows except these.
const DROPPED_CAPS: &[Capability] = &[
    Capability::SysModule,
    Capability::SysTime,
    Capability::SysRawio,
    Capability::MacAdmin,
    Capability::MacOverride,
];

/// Every capability oci-spec names, with its bit number (up to `CAP_CHECKPOINT_RESTORE`).
const ALL_CAPS: &[(Capability, u32)] = &[
    (Capability::Chown, 0),
    (Capability::DacOverride, 1),
    (Capability::DacReadSearch, 2),
    (Capability::Fowner, 3),
    (Capability::Fsetid, 4),
    (Capability::Kill, 5),
    (Capability::Setgid, 6),
    (Capability::Setuid, 7),
    (Capability::Setpcap, 8),
    (Capability::LinuxImmutable, 9),
    (Capability::NetBindService, 10),
    (Capability::NetBroadcast, 11),
    (Capability::NetAdmin, 12),
    (Capability::NetRaw, 13),
    (Capability::IpcLock, 14),
    (Capability::IpcOwner, 15),
    (Capability::SysModule, 16),
    (Capability::SysRawio, 17),
    (Capability::SysChroot, 18),
    (Capability::SysPtrace, 19),
    (Capability::SysPacct, 20),
    (Capability::SysAdmin, 21),
    (Capability::SysBoot, 22),
    (Capability::SysNice, 23),
    (Capability::SysResource, 24),
    (Capability::SysTime, 25),
    (Capability::SysTtyConfig, 26),
    (Capability::Mknod, 27),
    (Capability::Lease, 28),
    (Capability::AuditWrite, 29),
    (Capability::AuditControl, 30),
    (Capability::Setfcap, 31),
    (Capability::MacOverride, 32),
    (Capability::MacAdmin, 33),
    (Capability::Syslog, 34),
    (Capability::WakeAlarm, 35),
    (Capability::BlockSuspend, 36),
    (Capability::AuditRead, 37),
    (Capability::Perfmon, 38),
    (Capability::Bpf, 39),
    (Capability::CheckpointRestore, 40),
];

/// Character devices every instance gets: (path, major, minor).
const STANDARD_DEVICES: &[(&str, i64, i64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Parts of `/proc` and `/sys` hidden from the instance.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// Parts of `/proc` the instance may read but not write (host-wide knobs).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn oci_err(e: impl std::fmt::Display) -> DriverError {
    DriverError::Invalid(format!("cannot build the oci spec: {e}"))
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| (*s).to_string()).collect::<Vec<_>>())
        .build()
        .map_err(oci_err)
}

fn mounts() -> Result<Vec<Mount>> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// `base` followed by a bind mount of each host path in `binds` (LXD's disk devices).
///
/// One bind mount each, not a recursive one (LXD's default `recursive=false`): the
/// filesystems mounted below a source are not shown, so `ro` covers everything the
/// container sees of it (a recursive bind's submounts stay writable under `ro`).
fn with_binds(mut base: Vec<Mount>, binds: &[drivers::BindMount]) -> Result<Vec<Mount>> {
    for b in binds {
        let source = b.source.to_str().ok_or_else(|| {
            DriverError::Invalid(format!("source {} is not UTF-8", b.source.display()))
        })?;
        let mode = if b.readonly { "ro" } else { "rw" };
        base.push(mount(&b.target, "bind", source, &["bind", mode])?);
    }
    Ok(base)
}

fn devices() -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut nodes = Vec::new();
    let mut rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(oci_err)?,
    ];
    let allow = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().map_err(oci_err)
    };
    for &(path, major, minor) in STANDARD_DEVICES {
        nodes.push(
            LinuxDeviceBuilder::default()
                .path(path)
                .typ(LinuxDeviceType::C)
                .major(major)
                .minor(minor)
                .file_mode(0o666u32)
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(oci_err)?,
        );
        rules.push(allow(LinuxDeviceType::C, Some(major), Some(minor), "rwm")?);
    }
    // mknod of anything (as LXD allows), the console, /dev/ptmx and the pty slaves.
    rules.push(allow(LinuxDeviceType::C, None, None, "m")?);
    rules.push(allow(LinuxDeviceType::B, None, None, "m")?);
    rules.push(allow(LinuxDeviceType::C, Some(5), Some(1), "rwm")?);
    rules.push(allow(LinuxDeviceType::C, Some(5), Some(2), "rwm")?);
    rules.push(allow(LinuxDeviceType::C, Some(136), None, "rwm")?);
    Ok((nodes, rules))
}

/// The capability set of a system container on a host whose bounding set is `host_bounding`
/// (a bit mask as in `CapBnd` of `/proc/self/status`): all capabilities but the dropped
/// ones, and none the host lacks (the runtime's `capset` would fail on those).
pub fn capabilities(host_bounding: u64) -> HashSet<Capability> {
    ALL_CAPS
        .iter()
        .filter(|(c, bit)| !DROPPED_CAPS.contains(c) && host_bounding & (1u64 << bit) != 0)
        .map(|(c, _)| *c)
        .collect()
}

/// The bounding capability set of this process (all bits when unreadable), read once: a
/// process's bounding set only ever shrinks, and drover never drops from its own.
pub fn host_bounding_set() -> u64 {
    static BOUNDING: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BOUNDING.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    })
}

/// Builds the OCI spec of a system container.
///
/// `cgroups_path` is the runtime-relative cgroup (`/drover/<id>`). Limits come from
/// `limits.memory` and `limits.cpu` of `spec.config` (see [`crate::limits`]).
///
/// # Errors
///
/// [`DriverError::Invalid`] for an empty `init`, a relative rootfs or a bad limit.
pub fn build_spec(spec: &InstanceSpec, cgroups_path: &str) -> Result<Spec> {
    if spec.init.is_empty() {
        return Err(DriverError::Invalid("init command is empty".into()));
    }
    if !spec.rootfs.is_absolute() {
        return Err(DriverError::Invalid(format!(
            "rootfs {} is not an absolute path",
            spec.rootfs.display()
        )));
    }
    let mut env = spec.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    let caps = capabilities(host_bounding_set());
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(oci_err)?,
        )
        .args(spec.init.clone())
        .env(env)
        .cwd("/")
        .no_new_privileges(false)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()
                .map_err(oci_err)?,
        )
        .build()
        .map_err(oci_err)?;

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        LinuxNamespaceBuilder::default()
            .typ(typ)
            .build()
            .map_err(oci_err)
    })
    .collect::<Result<Vec<_>>>()?;

    let (nodes, device_rules) = devices()?;
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    resources = apply_limits(resources, &spec.config)?;

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(nodes)
        .resources(resources.build().map_err(oci_err)?)
        .cgroups_path(PathBuf::from(cgroups_path))
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| (*s).to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| (*s).to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(oci_err)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(spec.rootfs.clone())
                .readonly(false)
                .build()
                .map_err(oci_err)?,
        )
        .hostname(spec.name.clone())
        .process(process)
        .mounts(with_binds(mounts()?, &spec.mounts)?)
        .linux(linux)
        .build()
        .map_err(oci_err)
}

/// Writes `spec` as `<run_dir>/config.json` (creating `run_dir`), unless it already holds
/// that spec: a reader never sees a half-written file (while it is replaced, none).
///
/// "Holds that spec" compares specs, not bytes: the capability sets (and sysctl, annotation
/// maps) are hash sets whose JSON order differs from one build of the same spec to the next.
///
/// # Errors
///
/// I/O errors of the directory or the file.
pub fn write_bundle(run_dir: &Path, spec: &Spec) -> Result<PathBuf> {
    std::fs::create_dir_all(run_dir)?;
    let path = run_dir.join(CONFIG_FILE);
    let tmp = run_dir.join(".config.json.tmp");
    // The same instance usually starts with the same bundle: reading it back costs less than
    // creating an inode, and spares the rename below.
    let unchanged = std::fs::read(&path)
        .ok()
        .and_then(|old| serde_json::from_slice::<Spec>(&old).ok())
        .is_some_and(|old| old == *spec);
    if unchanged {
        return Ok(path);
    }
    let json = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    // Renaming onto an existing file makes ext4 (auto_da_alloc) start writing the new data
    // back at once, on the start's critical path; nothing but the runtime, called after this
    // returns, reads the file.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The identity of a file as `stat` gives it: a different file, or the same one changed,
/// differs in at least one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// A `config.json` that [`write_bundle_cached`] wrote or read back: the spec it holds and
/// the file's identity at that time.
#[derive(Debug, Clone)]
pub struct WrittenBundle {
    spec: Spec,
    stamp: FileStamp,
}

impl WrittenBundle {
    /// Whether `<run_dir>/config.json` is still the file this describes (one `stat`).
    pub fn is_on_disk(&self, run_dir: &Path) -> bool {
        FileStamp::of(&run_dir.join(CONFIG_FILE)) == Some(self.stamp)
    }
}

/// [`write_bundle`], remembering what the file holds: when `last` (an earlier result for
/// the same `run_dir`) holds `spec` and the file is still the one it describes (same
/// device, inode, size and modification time), the file is neither read nor written. That
/// costs one `stat` instead of reading and parsing the spec back on every start of an
/// instance. Returns the description of the file now.
///
/// # Errors
///
/// As [`write_bundle`].
pub fn write_bundle_cached(
    run_dir: &Path,
    spec: Spec,
    last: Option<WrittenBundle>,
) -> Result<WrittenBundle> {
    let path = run_dir.join(CONFIG_FILE);
    if let Some(last) = last
        && last.spec == spec
        && FileStamp::of(&path) == Some(last.stamp)
    {
        return Ok(last);
    }
    write_bundle(run_dir, &spec)?;
    let stamp = FileStamp::of(&path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is gone after it was written", path.display()),
        )
    })?;
    Ok(WrittenBundle { spec, stamp })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn instance(config: &[(&str, &str)]) -> InstanceSpec {
        InstanceSpec {
            id: "default_c1".into(),
            name: "c1".into(),
            rootfs: "/var/lib/drover/c1/rootfs".into(),
            run_dir: "/run/drover/c1".into(),
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<BTreeMap<_, _>>(),
            init: vec!["/sbin/init".into()],
            env: vec![],
            mounts: vec![],
        }
    }

    fn json(config: &[(&str, &str)]) -> serde_json::Value {
        serde_json::to_value(build_spec(&instance(config), "/drover/default_c1").unwrap()).unwrap()
    }

    #[test]
    fn system_container_shape() {
        let j = json(&[]);
        assert_eq!(j["hostname"], "c1");
        assert_eq!(j["root"]["path"], "/var/lib/drover/c1/rootfs");
        assert_eq!(j["root"]["readonly"], false);
        assert_eq!(j["process"]["args"][0], "/sbin/init");
        assert_eq!(j["process"]["terminal"], false);
        assert_eq!(j["process"]["user"]["uid"], 0);
        assert!(
            j["process"]["env"][0]
                .as_str()
                .unwrap()
                .starts_with("PATH=")
        );
        let ns: Vec<&str> = j["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "network"]);
        assert!(j["uidMappings"].is_null() && j["linux"]["uidMappings"].is_null());
        let mounts: Vec<&str> = j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for m in ["/proc", "/sys", "/dev", "/dev/pts", "/dev/shm"] {
            assert!(mounts.contains(&m), "{m} missing from {mounts:?}");
        }
        let devs: Vec<&str> = j["linux"]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect();
        assert_eq!(devs.len(), 6);
        assert!(devs.contains(&"/dev/urandom") && devs.contains(&"/dev/tty"));
        assert_eq!(j["linux"]["cgroupsPath"], "/drover/default_c1");
        assert!(j["linux"]["resources"]["memory"].is_null());
        let caps = j["process"]["capabilities"]["bounding"].as_array().unwrap();
        let has = |c: &str| caps.iter().any(|v| v == c);
        assert!(has("CAP_SYS_ADMIN") && has("CAP_KILL") && has("CAP_NET_ADMIN"));
        assert!(!has("CAP_SYS_MODULE") && !has("CAP_SYS_TIME"));
    }

    #[test]
    fn capabilities_follow_the_host() {
        let all = capabilities(u64::MAX);
        assert_eq!(all.len(), ALL_CAPS.len() - DROPPED_CAPS.len());
        let without_resource = capabilities(!(1 << 24));
        assert!(all.contains(&Capability::SysResource));
        assert!(!without_resource.contains(&Capability::SysResource));
    }

    #[test]
    fn limits_become_resources() {
        let j = json(&[("limits.memory", "256MiB"), ("limits.cpu", "2")]);
        assert_eq!(j["linux"]["resources"]["memory"]["limit"], 256 << 20);
        assert_eq!(j["linux"]["resources"]["cpu"]["quota"], 200_000);
        assert_eq!(j["linux"]["resources"]["cpu"]["period"], 100_000);
        let j = json(&[("limits.cpu", "0,1")]);
        assert_eq!(j["linux"]["resources"]["cpu"]["cpus"], "0,1");
    }

    #[test]
    fn host_paths_become_bind_mounts() {
        let mut i = instance(&[]);
        i.mounts = vec![drivers::BindMount {
            source: "/srv/data".into(),
            target: "/mnt/data".into(),
            readonly: true,
        }];
        let j = serde_json::to_value(build_spec(&i, "/drover/default_c1").unwrap()).unwrap();
        let last = j["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["destination"], "/mnt/data");
        assert_eq!(last["source"], "/srv/data");
        assert_eq!(last["type"], "bind");
        assert_eq!(last["options"], serde_json::json!(["bind", "ro"]));
    }

    #[test]
    fn rejects_bad_input() {
        let bad = build_spec(&instance(&[("limits.memory", "lots")]), "/x");
        assert!(matches!(bad, Err(DriverError::Invalid(_))));
        let mut i = instance(&[]);
        i.init.clear();
        assert!(build_spec(&i, "/x").is_err());
        let mut i = instance(&[]);
        i.rootfs = "rootfs".into();
        assert!(build_spec(&i, "/x").is_err());
    }

    #[test]
    fn bundle_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let spec = build_spec(&instance(&[]), "/drover/x").unwrap();
        let path = write_bundle(&run, &spec).unwrap();
        let back = Spec::load(&path).unwrap();
        assert_eq!(back, spec);
    }

    /// The same instance's spec, built again (its capability sets iterate in another order),
    /// leaves the file alone; a changed spec replaces it.
    #[test]
    fn an_unchanged_bundle_is_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let first = build_spec(&instance(&[]), "/drover/x").unwrap();
        let path = write_bundle(&run, &first).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        for _ in 0..5 {
            let again = build_spec(&instance(&[]), "/drover/x").unwrap();
            write_bundle(&run, &again).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        }
        let changed = build_spec(&instance(&[("limits.memory", "64MiB")]), "/drover/x").unwrap();
        write_bundle(&run, &changed).unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(Spec::load(&path).unwrap(), changed);
    }

    /// What the cache answers: nothing read or written while the spec and the file stay; a
    /// write when the spec changed, or when the file was removed or replaced behind its back.
    #[test]
    fn the_cached_write_trusts_only_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let path = run.join(CONFIG_FILE);
        let spec = || build_spec(&instance(&[]), "/drover/x").unwrap();
        let written = write_bundle_cached(&run, spec(), None).unwrap();
        let stamp = written.stamp;
        let same = write_bundle_cached(&run, spec(), Some(written)).unwrap();
        assert_eq!(same.stamp, stamp);
        assert_eq!(FileStamp::of(&path), Some(stamp));

        let changed = build_spec(&instance(&[("limits.memory", "64MiB")]), "/drover/x").unwrap();
        let now = write_bundle_cached(&run, changed.clone(), Some(same)).unwrap();
        assert_ne!(now.stamp, stamp);
        assert_eq!(Spec::load(&path).unwrap(), changed);

        // Removed (the instance's run directory deleted): written again.
        std::fs::remove_dir_all(&run).unwrap();
        let again = write_bundle_cached(&run, changed.clone(), Some(now)).unwrap();
        assert_eq!(Spec::load(&path).unwrap(), changed);

        // Replaced by another file: not trusted, the spec is written back.
        std::fs::write(&path, b"{}").unwrap();
        write_bundle_cached(&run, changed.clone(), Some(again)).unwrap();
        assert_eq!(Spec::load(&path).unwrap(), changed);
    }
}

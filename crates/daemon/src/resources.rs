//! The resources service: what this member has (CPU, memory, the machine) and how full a
//! storage pool is on it, read from `/proc`, `/sys` and `statvfs`, as LXD reports them.

use std::collections::BTreeMap;
use std::path::Path;

use api::resources::{
    Cpu, CpuCore, CpuSocket, CpuThread, Memory, Resources, StoragePoolResources, System, Usage,
};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// This member's resources.
pub async fn member() -> ApiResult<Resources> {
    tokio::task::spawn_blocking(|| {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo")
            .map_err(|e| ApiError::internal(format!("read /proc/cpuinfo: {e}")))?;
        let meminfo = std::fs::read_to_string("/proc/meminfo")
            .map_err(|e| ApiError::internal(format!("read /proc/meminfo: {e}")))?;
        Ok(Resources {
            cpu: cpu(&cpuinfo),
            memory: memory(&meminfo),
            system: system(Path::new("/sys/class/dmi/id"), &cpuinfo),
            ..Resources::default()
        })
    })
    .await?
}

/// How full pool `name` is on this member.
pub async fn pool(d: &Daemon, name: &str) -> ApiResult<StoragePoolResources> {
    let n = name.to_string();
    let rec = d.read(move |c| db::pools::get(c, &n)).await?;
    let source = crate::volumes::pool_source_checked(d, name, rec)?;
    tokio::task::spawn_blocking(move || {
        let st = nix::sys::statvfs::statvfs(&source)
            .map_err(|e| ApiError::internal(format!("statvfs {}: {e}", source.display())))?;
        let frsize = st.fragment_size();
        let (blocks, free) = (st.blocks(), st.blocks_free());
        let (files, ffree) = (st.files(), st.files_free());
        Ok(StoragePoolResources {
            space: Usage {
                used: blocks.saturating_sub(free) * frsize,
                total: blocks * frsize,
            },
            inodes: Usage {
                used: files.saturating_sub(ffree),
                total: files,
            },
        })
    })
    .await?
}

/// One `key: value` block of `/proc/cpuinfo` per processor.
fn processors(cpuinfo: &str) -> Vec<BTreeMap<&str, &str>> {
    cpuinfo
        .split("\n\n")
        .map(|block| {
            block
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|p| p.contains_key("processor"))
        .collect()
}

/// Sockets, cores and threads from `/proc/cpuinfo`.
fn cpu(cpuinfo: &str) -> Cpu {
    let num = |p: &BTreeMap<&str, &str>, k: &str| p.get(k).and_then(|v| v.parse::<u64>().ok());
    let mut sockets: BTreeMap<u64, CpuSocket> = BTreeMap::new();
    let procs = processors(cpuinfo);
    for p in &procs {
        let id = num(p, "processor").unwrap_or(0);
        let socket_id = num(p, "physical id").unwrap_or(0);
        let core_id = num(p, "core id").unwrap_or(id);
        let mhz = p
            .get("cpu MHz")
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0, |f| f as u64);
        let socket = sockets.entry(socket_id).or_insert_with(|| CpuSocket {
            name: p.get("model name").unwrap_or(&"").to_string(),
            vendor: p.get("vendor_id").unwrap_or(&"").to_string(),
            socket: socket_id,
            cores: Vec::new(),
            frequency: mhz,
        });
        let core = match socket.cores.iter().position(|c| c.core == core_id) {
            Some(i) => &mut socket.cores[i],
            None => {
                socket.cores.push(CpuCore {
                    core: core_id,
                    die: 0,
                    threads: Vec::new(),
                    frequency: mhz,
                });
                let last = socket.cores.len() - 1;
                &mut socket.cores[last]
            }
        };
        core.threads.push(CpuThread {
            id: i64::try_from(id).unwrap_or(0),
            numa_node: 0,
            thread: core.threads.len() as u64,
            online: true,
            isolated: false,
        });
    }
    Cpu {
        architecture: std::env::consts::ARCH.to_string(),
        sockets: sockets.into_values().collect(),
        total: procs.len() as u64,
    }
}

/// Total and used memory (and huge pages) from `/proc/meminfo`.
fn memory(meminfo: &str) -> Memory {
    let field = |k: &str| {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let total = field("MemTotal") * 1024;
    let available = field("MemAvailable") * 1024;
    let huge_size = field("Hugepagesize") * 1024;
    let huge_total = field("HugePages_Total");
    Memory {
        hugepages_total: huge_total * huge_size,
        hugepages_used: huge_total.saturating_sub(field("HugePages_Free")) * huge_size,
        hugepages_size: huge_size,
        used: total.saturating_sub(available),
        total,
    }
}

/// The machine from DMI under `dmi` (files an unprivileged read may not reach stay empty);
/// a VM when the CPU flags say a hypervisor runs it.
fn system(dmi: &Path, cpuinfo: &str) -> System {
    let read = |f: &str| {
        std::fs::read_to_string(dmi.join(f))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let virtual_machine = processors(cpuinfo)
        .first()
        .and_then(|p| p.get("flags").copied())
        .is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
    System {
        uuid: read("product_uuid"),
        vendor: read("sys_vendor"),
        product: read("product_name"),
        family: read("product_family"),
        version: read("product_version"),
        sku: read("product_sku"),
        serial: read("product_serial"),
        kind: if virtual_machine {
            "virtual-machine"
        } else {
            "physical"
        }
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
        cpu MHz\t\t: 2596.124\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu hypervisor\n\n\
        processor\t: 1\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
        cpu MHz\t\t: 2596.124\nphysical id\t: 0\ncore id\t\t: 1\nflags\t\t: fpu hypervisor\n\n\
        processor\t: 2\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\
        cpu MHz\t\t: 2596.124\nphysical id\t: 0\ncore id\t\t: 1\nflags\t\t: fpu hypervisor\n";

    /// What does this test do?
    /// - three processors on one socket, two of them threads of core 1, become one socket
    ///   with two cores and three threads, each thread with its kernel CPU number
    #[test]
    fn cpuinfo_becomes_sockets_cores_and_threads() {
        let cpu = cpu(CPUINFO);
        assert_eq!(cpu.total, 3);
        assert_eq!(cpu.sockets.len(), 1);
        let s = &cpu.sockets[0];
        assert_eq!(
            (s.name.as_str(), s.vendor.as_str()),
            ("AMD EPYC", "AuthenticAMD")
        );
        assert_eq!(s.frequency, 2596);
        let threads: Vec<Vec<i64>> = s
            .cores
            .iter()
            .map(|c| c.threads.iter().map(|t| t.id).collect())
            .collect();
        assert_eq!(threads, [vec![0], vec![1, 2]]);
        assert_eq!(s.cores[1].threads[1].thread, 1);
    }

    /// What does this test do?
    /// - memory in bytes: used is total less available; huge pages counted by their size
    #[test]
    fn meminfo_becomes_bytes() {
        let m = memory(
            "MemTotal:       1000 kB\nMemFree:  100 kB\nMemAvailable:    400 kB\n\
             HugePages_Total:       4\nHugePages_Free:        1\nHugepagesize:       2048 kB\n",
        );
        assert_eq!((m.total, m.used), (1_024_000, 614_400));
        assert_eq!(m.hugepages_size, 2_097_152);
        assert_eq!(
            (m.hugepages_total, m.hugepages_used),
            (4 * 2_097_152, 3 * 2_097_152)
        );
        let sys = system(Path::new("/nonexistent"), CPUINFO);
        assert_eq!(sys.kind, "virtual-machine");
    }
}

//! The instance cgroups the runtime creates: where they are, what they use, and removing
//! what the runtime leaves behind.
//!
//! The runtime is given `cgroupsPath = /<parent>/<id>`, which it creates under every
//! controller of cgroup v1 (`/sys/fs/cgroup/<controller>/<parent>/<id>`) or under the
//! cgroup2 root on pure-v2 hosts. It removes `<id>` on delete but leaves `<parent>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use drivers::Usage;

/// The cgroup filesystem root.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroups of instances below one parent (`/drover`).
#[derive(Debug, Clone)]
pub struct CgroupLayout {
    root: PathBuf,
    parent: String,
    /// The mounted hierarchies, listed on first use (controllers are mounted at boot).
    hierarchies: Arc<OnceLock<Vec<PathBuf>>>,
}

impl CgroupLayout {
    /// Instances live in `/<parent>/<id>`.
    pub fn new(parent: impl Into<String>) -> CgroupLayout {
        CgroupLayout {
            root: PathBuf::from(CGROUP_ROOT),
            parent: parent.into().trim_matches('/').to_string(),
            hierarchies: Arc::default(),
        }
    }

    /// The parent's name (`drover`).
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The runtime's `cgroupsPath` of `id`.
    pub fn cgroups_path(&self, id: &str) -> String {
        format!("/{}/{id}", self.parent)
    }

    /// Directory of `id` under one v1 controller mount (or the v2 root for `""`).
    pub fn dir(&self, controller: &str, id: &str) -> PathBuf {
        self.root.join(controller).join(&self.parent).join(id)
    }

    fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").exists()
    }

    /// Memory, CPU time and process count of `id`, each 0 when unreadable.
    pub fn usage(&self, id: &str) -> Usage {
        let num = |p: PathBuf| -> i64 {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        if self.is_v2() {
            let dir = self.dir("", id);
            let cpu_us = std::fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse::<i64>().ok())
                })
                .unwrap_or(0);
            return Usage {
                memory: num(dir.join("memory.current")),
                memory_peak: num(dir.join("memory.peak")),
                cpu_ns: cpu_us.saturating_mul(1000),
                processes: num(dir.join("pids.current")),
            };
        }
        let mem = self.dir("memory", id);
        let cpuacct = ["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]
            .iter()
            .map(|c| self.dir(c, id))
            .find(|d| d.exists())
            .unwrap_or_else(|| self.dir("cpuacct", id));
        let pids = self.dir("pids", id);
        let processes = if pids.join("pids.current").exists() {
            num(pids.join("pids.current"))
        } else {
            count_lines(&mem.join("cgroup.procs"))
        };
        Usage {
            memory: num(mem.join("memory.usage_in_bytes")),
            memory_peak: num(mem.join("memory.max_usage_in_bytes")),
            cpu_ns: num(cpuacct.join("cpuacct.usage")),
            processes,
        }
    }

    /// Whether `id`'s cgroup is frozen or freezing (what `<runtime> pause` does): the v1
    /// `freezer.state`, or the v2 `cgroup.freeze`. `false` when unreadable (no such cgroup).
    pub fn frozen(&self, id: &str) -> bool {
        if self.is_v2() {
            return std::fs::read_to_string(self.dir("", id).join("cgroup.freeze"))
                .is_ok_and(|s| s.trim() == "1");
        }
        std::fs::read_to_string(self.dir("freezer", id).join("freezer.state"))
            .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING"))
    }

    /// Removes `id`'s cgroup directories the runtime left (they are empty once the instance
    /// stopped) and, when `parent_too`, the parent directories if they are empty. Best
    /// effort: errors (a busy or non-empty directory) are ignored.
    pub fn remove(&self, id: &str, parent_too: bool) {
        for base in self.hierarchies.get_or_init(|| self.hierarchies()) {
            let parent = base.join(&self.parent);
            let _ = std::fs::remove_dir(parent.join(id));
            if parent_too {
                let _ = std::fs::remove_dir(&parent);
            }
        }
    }

    /// Every mounted hierarchy root: the v2 root, or each v1 controller directory.
    fn hierarchies(&self) -> Vec<PathBuf> {
        if self.is_v2() {
            return vec![self.root.clone()];
        }
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(std::result::Result::ok)
            // Symlinks such as `cpu -> cpu,cpuacct` would name the same hierarchy twice.
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }
}

fn count_lines(path: &Path) -> i64 {
    std::fs::read_to_string(path)
        .map(|s| i64::try_from(s.lines().filter(|l| !l.trim().is_empty()).count()).unwrap_or(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let l = CgroupLayout::new("/drover/");
        assert_eq!(l.cgroups_path("p_c1"), "/drover/p_c1");
        assert_eq!(
            l.dir("memory", "p_c1"),
            Path::new("/sys/fs/cgroup/memory/drover/p_c1")
        );
        assert_eq!(l.usage("surely-no-such-instance"), Usage::default());
        assert!(!l.frozen("surely-no-such-instance"));
    }
}

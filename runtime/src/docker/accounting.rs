//! What each container used, read from the kernel: every container runs
//! under a cgroup of its own that the node names (`cgroup_parent`
//! `/wasmnode/NODE/NAME`), whose counters outlive the container (a parent
//! keeps what its removed children used), so the node reads the
//! container's CPU time and peak memory after it ended and then removes the
//! cgroup; at start it removes those a crash left behind.
//!
//! Only where the node can do that: the engine on this machine (a Unix
//! socket), its `cgroupfs` driver (v1 or v2; under systemd the engine names
//! the cgroups), and the node allowed to create cgroups here (it makes its
//! own parent at connect). Elsewhere containers run as before and report
//! wall time only.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The directory under which containers' cgroups go, in every hierarchy.
const PARENT: &str = "wasmnode";

/// The cgroup layout the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1: one hierarchy per controller.
    V1,
    /// cgroup v2: one unified hierarchy.
    V2,
}

/// What one container used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Used {
    /// CPU time, user and system.
    pub cpu: Option<Duration>,
    /// Highest memory use, bytes.
    pub peak_memory_bytes: Option<u64>,
}

/// Reads and clears containers' cgroups under `root` (`/sys/fs/cgroup`).
#[derive(Debug, Clone)]
pub struct Accounting {
    root: PathBuf,
    layout: Layout,
    /// This node's directory below `PARENT` (its id, made path-safe).
    node: String,
}

impl Accounting {
    /// Accounting for node `node_id` under `root` for `layout`, if the
    /// node may create cgroups there (it creates its parent now).
    pub fn open(root: &Path, layout: Layout, node_id: &str) -> Option<Self> {
        let node: String = node_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let accounting = Self {
            root: root.to_path_buf(),
            layout,
            node,
        };
        let own = accounting.own();
        match std::fs::create_dir_all(&own) {
            Ok(()) => Some(accounting),
            Err(e) => {
                tracing::info!(path = %own.display(), error = %e, "containers' CPU time and memory are not measured: the node cannot create cgroups");
                None
            }
        }
    }

    /// The `cgroup_parent` a container named `name` runs under.
    pub fn parent(&self, name: &str) -> String {
        format!("/{PARENT}/{}/{name}", self.node)
    }

    /// What the container `name` used, once it has been removed; removes
    /// its cgroup.
    pub fn collect(&self, name: &str) -> Used {
        let used = self.read(name);
        self.remove(name);
        used
    }

    /// Removes the cgroups of this node's containers that a crash left
    /// (a cgroup still in use is not removed).
    pub fn sweep(&self) {
        let names: Vec<String> = std::fs::read_dir(self.own())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in names {
            self.remove(&name);
        }
    }

    /// This node's parent in the hierarchy that counts CPU time.
    fn own(&self) -> PathBuf {
        let hierarchy = match self.layout {
            Layout::V1 => "cpuacct",
            Layout::V2 => "",
        };
        self.node_dir(hierarchy)
    }

    /// This node's parent in `hierarchy` ("" for the unified one).
    fn node_dir(&self, hierarchy: &str) -> PathBuf {
        self.root.join(hierarchy).join(PARENT).join(&self.node)
    }

    fn read(&self, name: &str) -> Used {
        match self.layout {
            Layout::V1 => Used {
                cpu: read_number(&self.dir("cpuacct", name).join("cpuacct.usage"))
                    .map(Duration::from_nanos),
                peak_memory_bytes: read_number(
                    &self.dir("memory", name).join("memory.max_usage_in_bytes"),
                ),
            },
            Layout::V2 => {
                let dir = self.dir("", name);
                Used {
                    cpu: std::fs::read_to_string(dir.join("cpu.stat"))
                        .ok()
                        .as_deref()
                        .and_then(usage_usec)
                        .map(Duration::from_micros),
                    peak_memory_bytes: read_number(&dir.join("memory.peak")),
                }
            }
        }
    }

    fn dir(&self, hierarchy: &str, name: &str) -> PathBuf {
        self.node_dir(hierarchy).join(name)
    }

    /// Removes the container's cgroup from every hierarchy that has it.
    fn remove(&self, name: &str) {
        let dirs: Vec<PathBuf> = match self.layout {
            Layout::V2 => vec![self.dir("", name)],
            Layout::V1 => std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|h| self.dir(&h.file_name().to_string_lossy(), name))
                .collect(),
        };
        for dir in dirs.iter().filter(|d| d.is_dir()) {
            // A cgroup is removed with rmdir; its files are not real files.
            if let Err(e) = std::fs::remove_dir(dir) {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove a container's cgroup");
            }
        }
    }
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `usage_usec` of a v2 `cpu.stat`.
fn usage_usec(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_reads_cpuacct_and_the_memory_peak_then_removes_the_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let accounting = Accounting::open(root.path(), Layout::V1, "node/1").expect("writable");
        let c = "wasmnode-job-1";
        assert_eq!(accounting.parent(c), "/wasmnode/node_1/wasmnode-job-1");
        // What the engine would have made: the parent path in every hierarchy.
        let own = |hierarchy: &str| root.path().join(hierarchy).join("wasmnode/node_1").join(c);
        write(&own("cpuacct").join("cpuacct.usage"), "1500000000\n");
        write(&own("memory").join("memory.max_usage_in_bytes"), "4096\n");
        std::fs::create_dir_all(own("pids")).unwrap();

        let used = accounting.read(c);
        assert_eq!(used.cpu, Some(Duration::from_millis(1500)));
        assert_eq!(used.peak_memory_bytes, Some(4096));
        // A real cgroup directory goes with its files at rmdir; these test
        // directories need theirs removed first.
        std::fs::remove_file(own("cpuacct").join("cpuacct.usage")).unwrap();
        std::fs::remove_file(own("memory").join("memory.max_usage_in_bytes")).unwrap();
        accounting.remove(c);
        for hierarchy in ["cpuacct", "memory", "pids"] {
            assert!(!own(hierarchy).exists(), "{hierarchy}");
        }
        assert!(accounting.own().is_dir(), "the node's parent stays");

        // A crash left one behind: the next start removes it.
        std::fs::create_dir_all(own("cpuacct")).unwrap();
        std::fs::create_dir_all(own("memory")).unwrap();
        accounting.sweep();
        assert!(!own("cpuacct").exists() && !own("memory").exists());
    }

    #[test]
    fn v2_reads_usage_usec_and_memory_peak() {
        let stat = "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n";
        assert_eq!(usage_usec(stat), Some(2500));
        assert_eq!(usage_usec("user_usec 1\n"), None);
        let root = tempfile::tempdir().unwrap();
        let accounting = Accounting::open(root.path(), Layout::V2, "n").expect("writable");
        assert!(root.path().join("wasmnode/n").is_dir());
        write(&accounting.dir("", "c").join("cpu.stat"), stat);
        write(&accounting.dir("", "c").join("memory.peak"), "8192\n");
        let used = accounting.read("c");
        assert_eq!(used.cpu, Some(Duration::from_micros(2500)));
        assert_eq!(used.peak_memory_bytes, Some(8192));
        let gone = accounting.collect("never-ran");
        assert_eq!((gone.cpu, gone.peak_memory_bytes), (None, None));
    }

    #[test]
    fn no_accounting_where_the_node_cannot_create_cgroups() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-directory");
        std::fs::write(&file, "").unwrap();
        assert!(Accounting::open(&file, Layout::V2, "n").is_none());
    }
}

//! Real cgroups shaped like a container runtime's, on every mounted hierarchy (v1, v2 or both):
//! a process moved into one is attributed to that "container" by its `/proc/PID/cgroup`.
//! Removed on drop, after its processes are gone.

use std::path::PathBuf;
use std::time::Duration;

/// The mount points of every cgroup hierarchy on this machine but cpuset (whose new groups
/// take no process before `cpuset.cpus` and `cpuset.mems` are set; no runtime shape depends
/// on it).
pub fn hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let cgroup = f.len() > 3 && (f[2] == "cgroup" || f[2] == "cgroup2");
            (cgroup && !f[3].split(',').any(|o| o == "cpuset")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// A cgroup path like `/kubepods/burstable/pod<uid>/<id>`, made under every hierarchy.
pub struct Cgroup {
    pub path: String,
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    pub fn create(path: &str) -> Cgroup {
        let rel = path.trim_start_matches('/');
        let mut dirs = Vec::new();
        for h in hierarchies() {
            let dir = h.join(rel);
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("create cgroup {}: {e}", dir.display()));
            dirs.push(dir);
        }
        Cgroup {
            path: path.to_string(),
            dirs,
        }
    }

    /// Moves `pid` into this cgroup on every hierarchy.
    pub fn add(&self, pid: i32) {
        for d in &self.dirs {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())
                .unwrap_or_else(|e| panic!("move {pid} into {}: {e}", d.display()));
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // Members must be gone first; the caller kills them before dropping this.
            // Never panic here: this may run while a test is already unwinding.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline
                && !std::fs::read_to_string(d.join("cgroup.procs"))
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            // Remove the leaf and every parent this created that is now empty.
            let mut dir = d.clone();
            while std::fs::remove_dir(&dir).is_ok() {
                if !dir.pop() || hierarchies().contains(&dir) {
                    break;
                }
            }
        }
    }
}

//! Helpers of the declared-against-observed tests (`tests/it/declared.rs`, `tests/it/cri.rs`,
//! `tests/it/soak.rs`): a `--path.run` for runc containers, the findings of a scrape, and an
//! intruder: a process in a container's cgroup and namespaces but one, as `nsenter` from the
//! container's cgroup leaves it.

use std::path::Path;
use std::time::Duration;

use super::runc::{Bundle, Container, cgroup_mounts, hex_id};
use super::visitor::uuid;
use super::{Exporter, Metrics, Spawned, ns_inode, wait_for};

/// The `--path.run` of a test: `runc/` with a link per container.
pub struct Run {
    path: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Run {
    pub fn new() -> Run {
        let dir = tempfile::Builder::new()
            .prefix("nsx-run-")
            .tempdir()
            .unwrap();
        let mut run = Run::inside(dir.path());
        run._dir = Some(dir);
        run
    }

    /// `runc/` in `dir`, another test's `/run`-shaped dir (a private containerd's), which
    /// removes it.
    pub fn inside(dir: &Path) -> Run {
        std::fs::create_dir_all(dir.join("runc")).unwrap();
        Run {
            path: dir.to_owned(),
            _dir: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `bundle` as a container with a 64-hex id in a pod-shaped cgroup, and links its
    /// state where the exporter looks.
    pub fn run(&self, bundle: Bundle) -> Container {
        self.try_run(bundle).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A busybox container named `name` that sleeps in namespaces of its own but for `base`'s
    /// network namespace, which its spec joins by path.
    pub fn net_joiner(&self, name: &str, base: &Container) -> Container {
        let net = format!("/proc/{}/ns/net", base.pid());
        self.run(
            Bundle::busybox(name)
                .args(&["sleep", "100000"])
                .namespaces(&[
                    ("pid", None),
                    ("net", Some(&net)),
                    ("ipc", None),
                    ("uts", None),
                    ("mnt", None),
                ]),
        )
    }

    pub fn try_run(&self, bundle: Bundle) -> Result<Container, String> {
        let id = hex_id();
        let bundle = bundle.cgroups_path(&format!("/kubepods/besteffort/pod{}/{id}", uuid()));
        let c = Container::try_run(bundle, &id)?;
        std::os::unix::fs::symlink(c.root().join(&id), self.path().join("runc").join(&id)).unwrap();
        Ok(c)
    }
}

/// kthreadd: in the host's namespaces, and open to root here where PID 1 is not.
pub const HOST: i32 = 2;

/// The OCI names of the types runc 1.1 knows (no `time`: runc 1.2 added it).
pub const TYPES: [&str; 7] = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];

/// The findings of `rule` now, as (container_id, type, declared).
/// [`findings`] of the containers `ids` only: another test's containers may be on the machine.
pub fn findings_of(m: &Metrics, rule: &str, ids: &[&str]) -> Vec<(String, String, String)> {
    let mut all = findings(m, rule);
    all.retain(|(id, _, _)| ids.contains(&id.as_str()));
    all
}

pub fn findings(m: &Metrics, rule: &str) -> Vec<(String, String, String)> {
    m.find("nsexporter_sharing_findings_active", &[("rule", rule)])
        .into_iter()
        .map(|s| {
            (
                s.labels["container_id"].clone(),
                s.labels["type"].clone(),
                s.labels["declared"].clone(),
            )
        })
        .collect()
}

/// A scan that finished after `after` (a scrape's `nsexporter_scans_total` beyond it).
pub fn scan_after(e: &Exporter, scans: f64) -> Metrics {
    wait_for("a later scan", Duration::from_secs(30), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[]).unwrap_or(0.0) > scans + 1.0).then_some(m)
    })
}

pub fn scans(e: &Exporter) -> f64 {
    e.metrics()
        .value("nsexporter_scans_total", &[])
        .unwrap_or(0.0)
}

/// A process in `c`'s cgroup (every hierarchy) and in `c`'s namespaces, except `t`, which is
/// `pid`'s: what an `nsenter` from the container's cgroup looks like. Dropped: killed.
pub struct Intruder {
    _nsenter: Spawned,
}

impl Intruder {
    pub fn enter(c: &Container, t: &str, into: i32) -> Intruder {
        Intruder::enter_pid(c.pid(), t, into)
    }

    /// As [`Intruder::enter_pid`], with the exporter `watcher` stopped (SIGSTOP) from before
    /// the process enters the namespaces until it is in the cgroup. For a pod that shares one
    /// pid namespace (the sandbox's) between its containers: a sweep between the two would
    /// read a host-cgroup process in the sandbox's pid namespace, and attribution keeps such
    /// a process the sandbox's for good (a process never leaves its container). A real
    /// runtime (`runc exec`) puts its process in the cgroup first.
    pub fn enter_pid_unseen(target: i32, t: &str, into: i32, watcher: i32) -> Intruder {
        use nix::sys::signal::{Signal, kill};
        let watcher = nix::unistd::Pid::from_raw(watcher);
        kill(watcher, Signal::SIGSTOP).unwrap();
        let intruder = std::panic::catch_unwind(|| Intruder::enter_pid(target, t, into));
        kill(watcher, Signal::SIGCONT).unwrap();
        intruder.unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// As [`Intruder::enter`], beside any process `target`, in its cgroup (its path on the
    /// unified or named hierarchy, written on every hierarchy that has it).
    pub fn enter_pid(target: i32, t: &str, into: i32) -> Intruder {
        let cgroup = std::fs::read_to_string(format!("/proc/{target}/cgroup")).unwrap();
        let path = cgroup
            .lines()
            .find_map(|l| {
                l.strip_prefix("0::")
                    .or_else(|| l.split_once(":name=systemd:").map(|x| x.1))
            })
            .unwrap()
            .to_owned();
        let mut args: Vec<String> = Vec::new();
        for u in TYPES {
            let pid = if u == t { into } else { target };
            let flag = match u {
                "mnt" => "mount",
                other => other,
            };
            // nsenter refuses to enter its own user namespace again: leave it out then.
            if u == "user" && ns_inode(pid, "user") == ns_inode(std::process::id() as i32, "user") {
                continue;
            }
            args.push(format!("--{flag}=/proc/{pid}/ns/{u}"));
        }
        args.extend(["sleep".into(), "1000".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let nsenter = Spawned::new("nsenter", &args);
        let child = nsenter.child_running("sleep");
        for mount in cgroup_mounts() {
            let procs = mount
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs");
            if procs.exists() {
                let _ = std::fs::write(&procs, child.to_string());
            }
        }
        Intruder { _nsenter: nsenter }
    }
}

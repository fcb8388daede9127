//! Real OCI containers for tests, run by runc(8) with no container engine around it: a
//! [`Bundle`] (a rootfs and the `config.json` that `runc spec` would write, edited here with
//! serde_json) and a running [`Container`], killed and deleted on drop, its cgroups removed.
//!
//! Kernel interfaces, through runc: namespaces(7) (an entry with a `path` joins that namespace
//! with setns(2), a type left out is shared with the host: that is how `hostNetwork` looks),
//! cgroups(7) v1 and v2 (runc's cgroupfs driver makes the group on every mounted hierarchy) and
//! capabilities(7).
//!
//! Every container has its own runc `--root` (a tempdir), so parallel tests never see each
//! other's state, and ids need only be unique where they name a cgroup ([`unique_id`],
//! [`hex_id`]).

use std::collections::BTreeSet;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Debian's `busybox-static`: one static binary, so a rootfs needs nothing else.
pub const BUSYBOX: &str = "/bin/busybox";

/// `{prefix}-{test process pid}-{counter}`: unique across tests and concurrent test runs.
pub fn unique_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// 64 random hex digits, the shape of a containerd or CRI-O container id.
pub fn hex_id() -> String {
    (0..4)
        .map(|_| {
            let mut h = RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// An OCI bundle in a tempdir: `rootfs/` and the config, written when the container starts.
/// The setters consume and return the bundle, so a test reads as one expression.
pub struct Bundle {
    dir: tempfile::TempDir,
    config: Value,
}

impl Bundle {
    /// A rootfs with `/bin/busybox` and a symlink for each of its applets (`sh`, `sleep`,
    /// `nsenter`, `cat`, ...); the process is `sh`.
    pub fn busybox(name: &str) -> Bundle {
        let bundle = Bundle::empty(name);
        let bin = bundle.rootfs().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(BUSYBOX, bin.join("busybox"))
            .unwrap_or_else(|e| panic!("copy {BUSYBOX} (apt-get install busybox-static): {e}"));
        let (ok, applets, err) = super::run(BUSYBOX, &["--list"]);
        assert!(ok, "busybox --list: {err}");
        for applet in applets.lines().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        bundle
    }

    /// A rootfs holding only `binary`, copied to `dest` (an absolute path in the container),
    /// which is also the process: the shape of an image built `FROM scratch`.
    pub fn with_binary(name: &str, binary: &Path, dest: &str) -> Bundle {
        assert!(dest.starts_with('/'), "{dest} is not absolute");
        let bundle = Bundle::empty(name);
        let target = bundle.rootfs().join(dest.trim_start_matches('/'));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(binary, &target)
            .unwrap_or_else(|e| panic!("copy {} into the rootfs: {e}", binary.display()));
        bundle.args(&[dest])
    }

    /// `runc spec --rootless=false` (runc 1.1), without a terminal: its own pid, net, ipc, uts
    /// and mount namespaces, root with three capabilities, read-only rootfs, no_new_privs.
    fn empty(name: &str) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bundle-{name}-"))
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let default_caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        let config = json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["sh"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {
                    "bounding": default_caps,
                    "effective": default_caps,
                    "permitted": default_caps,
                    "ambient": default_caps,
                },
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true,
            },
            "root": {"path": "rootfs", "readonly": true},
            "hostname": name,
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                             "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                 "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            ],
            "linux": {
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
                "namespaces": [
                    {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"},
                    {"type": "mount"},
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
                ],
                "readonlyPaths": [
                    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
                ],
            },
        });
        Bundle { dir, config }
    }

    /// The bundle directory (holds `config.json` once the container runs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// The config as it will be written, for what no setter covers.
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// The process's argv; `args[0]` is looked up in the container's PATH.
    pub fn args(mut self, args: &[&str]) -> Bundle {
        self.config["process"]["args"] = json!(args);
        self
    }

    /// Adds `KEY=VALUE` entries to the process environment.
    pub fn env(mut self, vars: &[&str]) -> Bundle {
        let env = self.config["process"]["env"].as_array_mut().unwrap();
        env.extend(vars.iter().map(|v| json!(v)));
        self
    }

    pub fn user(mut self, uid: u32, gid: u32) -> Bundle {
        self.config["process"]["user"] = json!({"uid": uid, "gid": gid});
        self
    }

    /// Sets every capability set to `caps` (`SYS_PTRACE` or `CAP_SYS_PTRACE`). A non-root
    /// process keeps a capability across its execve only if it is ambient or granted by the
    /// file (capabilities(7)); ambient needs it inheritable too, or runc 1.1 drops it without
    /// a word. [`Bundle::ambient`] narrows both for the file-capability case.
    pub fn capabilities(mut self, caps: &[&str]) -> Bundle {
        let caps = cap_names(caps);
        for set in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            self.config["process"]["capabilities"][set] = json!(caps);
        }
        self
    }

    /// Sets the ambient and inheritable sets (after [`Bundle::capabilities`]): containerd and
    /// CRI-O put a Kubernetes `capabilities.add` in bounding, effective and permitted only.
    pub fn ambient(mut self, caps: &[&str]) -> Bundle {
        for set in ["inheritable", "ambient"] {
            self.config["process"]["capabilities"][set] = json!(cap_names(caps));
        }
        self
    }

    pub fn readonly_rootfs(mut self, readonly: bool) -> Bundle {
        self.config["root"]["readonly"] = json!(readonly);
        self
    }

    /// `allowPrivilegeEscalation: false` in Kubernetes terms.
    pub fn no_new_privileges(mut self, on: bool) -> Bundle {
        self.config["process"]["noNewPrivileges"] = json!(on);
        self
    }

    /// A recursive bind mount of the host's `src` at `dst` (a hostPath volume).
    pub fn bind_mount(mut self, src: &str, dst: &str, readonly: bool) -> Bundle {
        let mut options = vec!["rbind", "rprivate"];
        if readonly {
            options.push("ro");
        }
        let mounts = self.config["mounts"].as_array_mut().unwrap();
        mounts.push(json!({
            "destination": dst, "type": "bind", "source": src, "options": options,
        }));
        self
    }

    /// The namespaces the container gets, replacing the default list. Types are nsexporter's
    /// (`net`, `mnt`, ...) or the OCI names (`network`, `mount`). `Some(path)` joins that
    /// namespace (e.g. `/proc/<pid>/ns/net`: a pod's sandbox); a type left out is the host's.
    pub fn namespaces(mut self, namespaces: &[(&str, Option<&str>)]) -> Bundle {
        let entries: Vec<Value> = namespaces
            .iter()
            .map(|(ns_type, path)| {
                let oci = match *ns_type {
                    "net" => "network",
                    "mnt" => "mount",
                    t => t,
                };
                match path {
                    Some(p) => json!({"type": oci, "path": p}),
                    None => json!({"type": oci}),
                }
            })
            .collect();
        self.config["linux"]["namespaces"] = json!(entries);
        self
    }

    /// The cgroup, one absolute path made on every hierarchy by runc's cgroupfs driver, e.g.
    /// `/kubepods/burstable/pod<uid>/<64 hex>` (cgroupfs kubelet) or
    /// `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
    /// (what a systemd kubelet leaves in /proc/PID/cgroup). runc's systemd driver
    /// (`slice:prefix:name`) needs a running systemd, and the cgroupfs driver would take that
    /// text as one literal directory name; a relative path lands under runc's own cgroup,
    /// which differs per hierarchy here (memory is `/process_api/...`).
    pub fn cgroups_path(mut self, path: &str) -> Bundle {
        assert!(
            path.starts_with('/'),
            "cgroups path {path} must be absolute"
        );
        self.config["linux"]["cgroupsPath"] = json!(path);
        self
    }

    /// `resources.limits.memory` in Kubernetes terms.
    pub fn memory_limit(mut self, bytes: u64) -> Bundle {
        self.config["linux"]["resources"]["memory"] = json!({"limit": bytes});
        self
    }

    /// Writes `config.json`. runc refuses a hostname without a UTS namespace of the
    /// container's own, so the hostname goes where there is none.
    fn write_config(&mut self) {
        let own_uts = self.config["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "uts" && n.get("path").is_none());
        if !own_uts {
            self.config.as_object_mut().unwrap().remove("hostname");
        }
        std::fs::write(
            self.dir().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }
}

fn cap_names(caps: &[&str]) -> Vec<String> {
    caps.iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.starts_with("CAP_") {
                c
            } else {
                format!("CAP_{c}")
            }
        })
        .collect()
}

/// A process the container owns, by `(pid, starttime)`: pids are reused.
#[derive(Clone, Copy, Debug)]
struct Member {
    pid: i32,
    start_ticks: u64,
}

impl Member {
    fn of(pid: i32) -> Option<Member> {
        Some(Member {
            pid,
            start_ticks: start_ticks(pid)?,
        })
    }

    /// Still there, zombie included (a zombie still holds its pid and cgroup membership).
    fn alive(&self) -> bool {
        start_ticks(self.pid) == Some(self.start_ticks)
    }
}

/// Field 22 of /proc/PID/stat (proc_pid_stat(5)).
fn start_ticks(pid: i32) -> Option<u64> {
    super::stat_field(pid, 22)
}

fn has_subdirectory(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false)
}

/// Removes `parents` (deepest first) that a test made ([`parents_made`]), up to the first
/// that is not its to remove: not made by a test, or still holding another container's cgroup,
/// whose owner removes it later.
pub fn remove_parents_made(parents: &[PathBuf], made: &mut BTreeSet<PathBuf>) {
    for parent in parents {
        if !made.contains(parent)
            || has_subdirectory(parent)
            || std::fs::remove_dir(parent).is_err()
        {
            break;
        }
        made.remove(parent);
    }
}

/// The mount point of every cgroup hierarchy, v1 and v2, cpuset included (runc makes the
/// group there too).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// The parent cgroups (`/kubepods`, `/kubepods/burstable`, ...) that runc made for a container
/// of this test process: runc deletes only the leaf. Parents are shared by the containers of
/// parallel tests, so the last container out removes them; the lock is held from the check
/// of what exists until runc has made the leaf, and while removing, so that no parent goes
/// away under a starting container.
static PARENTS_MADE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub fn parents_made() -> MutexGuard<'static, BTreeSet<PathBuf>> {
    // A test that panicked holding the lock left the set consistent: every step is one insert
    // or remove.
    PARENTS_MADE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `mount/path` and each of its parents below `mount`, deepest first.
pub fn with_parents(mount: &Path, cgroup: &str) -> Vec<PathBuf> {
    Path::new(cgroup.trim_start_matches('/'))
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .map(|a| mount.join(a))
        .collect()
}

/// A container started by `runc run --detach`. On drop: `runc kill --all ID KILL`,
/// `runc delete --force ID`, a wait until its processes are gone, and removal of the parent
/// cgroups runc made for it once no other container uses them. Drop then checks that
/// `runc list` is empty and that its cgroup is gone from every hierarchy, and panics if not,
/// unless the test is already panicking.
pub struct Container {
    pub id: String,
    bundle: Bundle,
    state: tempfile::TempDir,
    log_path: PathBuf,
    cgroup: String,
    members: Vec<Member>,
    cleaned: bool,
}

impl Container {
    /// Runs the bundle detached as `id` with stdin from /dev/null and stdout and stderr to
    /// [`Container::log_path`], and waits until runc says `running` and the init has exec'd
    /// the configured process. Panics, after cleaning up, if it does not get there.
    pub fn run(bundle: Bundle, id: &str) -> Container {
        Container::try_run(bundle, id).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Container::run`], with the failure (runc's message and the container's output) as
    /// an error. Whatever was created is removed before this returns an error.
    pub fn try_run(mut bundle: Bundle, id: &str) -> Result<Container, String> {
        // An explicit cgroup, so that cleanup knows which directories are the container's.
        if bundle.config["linux"].get("cgroupsPath").is_none() {
            bundle = bundle.cgroups_path(&format!("/{id}"));
        }
        bundle.write_config();
        let cgroup = bundle.config["linux"]["cgroupsPath"]
            .as_str()
            .unwrap()
            .to_string();
        let log_path = bundle.dir().join("container.log");
        let state = tempfile::Builder::new()
            .prefix("runc-root-")
            .tempdir()
            .unwrap();
        let mut c = Container {
            id: id.to_string(),
            bundle,
            state,
            log_path,
            cgroup,
            members: Vec::new(),
            cleaned: false,
        };
        let log = std::fs::File::create(&c.log_path).unwrap();
        let mut made = parents_made();
        for mount in cgroup_mounts() {
            let parents = with_parents(&mount, &c.cgroup).into_iter().skip(1);
            made.extend(parents.filter(|d| !d.exists()));
        }
        let out = c
            .runc_command(&["run", "--detach", "--bundle"])
            .arg(c.bundle.dir())
            .arg(id)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .status()
            .map_err(|e| format!("runc is needed (apt-get install runc): {e}"))?;
        drop(made);
        if !out.success() {
            return Err(format!("runc run {id} failed ({out}): {}", c.log()));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = c.state();
            let status = state.as_ref().and_then(|s| s["status"].as_str());
            // `running` comes as soon as `runc start` has released the init, before its
            // execve: wait for the execve too, which can still fail (EPERM, ENOENT).
            let pid = state.as_ref().and_then(|s| s["pid"].as_i64()).unwrap_or(0) as i32;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if status == Some("running") && !comm.is_empty() && !comm.starts_with("runc:[") {
                match Member::of(pid) {
                    Some(m) => c.members.push(m),
                    None => return Err(format!("container {id} init {pid} is gone: {}", c.log())),
                }
                return Ok(c);
            }
            if status == Some("stopped") || Instant::now() > deadline {
                return Err(format!(
                    "container {id} is {}, not running: {}",
                    status.unwrap_or("unknown to runc"),
                    c.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `runc --root <this container's root> ARGS`.
    fn runc_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("runc");
        cmd.arg("--root").arg(self.state.path()).args(args);
        cmd
    }

    /// Runs `runc ARGS` against this container's root, to completion.
    pub fn runc(&self, args: &[&str]) -> Output {
        self.runc_command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run runc")
    }

    /// `runc state ID`, parsed; `None` once runc no longer knows the container.
    pub fn state(&self) -> Option<Value> {
        let out = self.runc(&["state", &self.id]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// The host pid of the container's init.
    pub fn pid(&self) -> i32 {
        self.members[0].pid
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The cgroup path in the config (the same under every hierarchy).
    pub fn cgroup(&self) -> &str {
        &self.cgroup
    }

    /// This container's runc `--root`: its `state.json` is at `<root>/<id>/state.json`.
    pub fn root(&self) -> &Path {
        self.state.path()
    }

    /// The file the container's stdout and stderr (and runc's errors) go to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `runc exec ID ARGS` in the foreground, as the config's user with its capabilities.
    pub fn try_exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["exec", self.id.as_str()];
        all.extend_from_slice(args);
        self.runc(&all)
    }

    /// [`Container::try_exec`] that must succeed; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let out = self.try_exec(args);
        assert!(
            out.status.success(),
            "runc exec {} {args:?}: {}{}",
            self.id,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `runc exec --detach ID ARGS` with stdio on /dev/null; returns the host pid of the
    /// exec'd process (from `--pid-file`), which drop waits for as well.
    pub fn exec_detached(&mut self, args: &[&str]) -> i32 {
        let pid_file = self
            .state
            .path()
            .join(format!("exec-{}.pid", self.members.len()));
        let mut cmd = self.runc_command(&["exec", "--detach", "--pid-file"]);
        let out = cmd
            .arg(&pid_file)
            .arg(&self.id)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run runc");
        assert!(
            out.status.success(),
            "runc exec --detach {} {args:?}: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if let Some(m) = Member::of(pid) {
            self.members.push(m);
        }
        pid
    }

    /// Stops and removes the container now, panicking if anything is left behind.
    pub fn remove(mut self) {
        let problems = self.cleanup();
        assert!(problems.is_empty(), "{}", problems.join("; "));
    }

    /// Everything [`Drop`] does; returns what could not be cleaned. Never panics.
    fn cleanup(&mut self) -> Vec<String> {
        self.cleaned = true;
        let mut problems = Vec::new();
        // --all: without a pid namespace of its own, killing init would leave the rest.
        let _ = self.runc(&["kill", "--all", &self.id, "KILL"]);
        let delete = self.runc(&["delete", "--force", &self.id]);
        if !delete.status.success() && self.state().is_some() {
            problems.push(format!(
                "runc delete {}: {}",
                self.id,
                String::from_utf8_lossy(&delete.stderr)
            ));
        }
        // The container's processes are reparented to the host's init, which reaps them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.members.iter().any(Member::alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for m in self.members.iter().filter(|m| m.alive()) {
            problems.push(format!("process {} of {} still alive", m.pid, self.id));
        }
        let mut made = parents_made();
        for mount in cgroup_mounts() {
            let dirs = with_parents(&mount, &self.cgroup);
            // runc removed the leaf; EBUSY until the kernel has released its last member.
            let deadline = Instant::now() + Duration::from_secs(5);
            while dirs[0].exists() && Instant::now() < deadline {
                if std::fs::remove_dir(&dirs[0]).is_err() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            if dirs[0].exists() {
                problems.push(format!("cgroup {} is left", dirs[0].display()));
                continue;
            }
            remove_parents_made(&dirs[1..], &mut made);
        }
        let list = self.runc(&["list", "--quiet"]);
        let listed = String::from_utf8_lossy(&list.stdout);
        if !list.status.success() || !listed.trim().is_empty() {
            problems.push(format!("runc list is not empty: {listed:?}"));
        }
        problems
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let problems = self.cleanup();
        if problems.is_empty() {
            return;
        }
        let message = format!("container {} not cleaned: {}", self.id, problems.join("; "));
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

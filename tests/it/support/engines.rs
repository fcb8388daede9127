//! Real container engines for tests, each private to the test and gone after it: a dockerd
//! with its own data root, exec root and socket (and the containerd it starts), and a Podman
//! store of its own (`--root`, `--runroot`, `--tmpdir`). Neither touches the machine's own
//! Docker or Podman, nor its network: dockerd runs without a bridge, iptables or IP
//! forwarding, and the tests use `--network host` or `none`.
//!
//! On drop, pass or fail: every container and pod is removed, dockerd is stopped (never a
//! dockerd this did not start), what the engines left mounted under their directory (dockerd's
//! `netns/default`, overlay mounts) is unmounted, the directory removed, and the cgroups the
//! engines made and left (`/docker/…`, `/libpod_parent/…` on cgroupfs) are removed where
//! they did not exist before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::wait_for;

/// The output of a command that must succeed, as text.
fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A tar of a rootfs holding Debian's static busybox as `/bin/busybox`, `/bin/sh` and
/// `/bin/sleep`: enough for `sleep 1000`, and importable with `docker import` and `podman
/// import` (no registry is needed).
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(super::runc::BUSYBOX, bin.join("busybox"))
        .unwrap_or_else(|e| panic!("copy {} (busybox-static): {e}", super::runc::BUSYBOX));
    for applet in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let tar = dir.join("rootfs.tar");
    let (done, _, err) = super::run(
        "tar",
        &[
            "-C",
            rootfs.to_str().unwrap(),
            "-cf",
            tar.to_str().unwrap(),
            ".",
        ],
    );
    assert!(done, "tar: {err}");
    tar
}

/// The name of the busybox image [`with_busybox`] imports.
pub const BUSYBOX_IMAGE: &str = "nsx-busybox";

/// A dockerd and a Podman store of the test's own, each with the busybox rootfs imported as
/// [`BUSYBOX_IMAGE`] (no registry here); the tar is made in `work`.
pub fn with_busybox(work: &Path) -> (Dockerd, PodmanStore) {
    let tar = busybox_tar(work);
    let tar = tar.to_str().unwrap();
    let docker = Dockerd::start();
    docker.docker(&["import", tar, BUSYBOX_IMAGE]);
    let podman = PodmanStore::new();
    podman.podman(&["import", tar, BUSYBOX_IMAGE]);
    (docker, podman)
}

/// A dockerd of the test's own. Its data root is what `--path.docker` reads.
pub struct Dockerd {
    child: Child,
    socket: String,
    dir: Option<tempfile::TempDir>,
    _cgroups: Leftovers,
}

impl Dockerd {
    /// Starts `dockerd` (Debian's docker.io) and waits until it answers.
    pub fn start() -> Dockerd {
        let cgroups = Leftovers::watch(&["docker"]);
        let dir = tempfile::Builder::new()
            .prefix("nsx-dockerd-")
            .tempdir()
            .unwrap();
        let path = |p: &str| dir.path().join(p).to_str().unwrap().to_owned();
        let socket = format!("unix://{}", path("docker.sock"));
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("docker.pid"), "--host", &socket])
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
            ])
            .args(["--bridge=none", "--log-level=warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("dockerd (apt-get install docker.io): {e}"));
        let mut d = Dockerd {
            child,
            socket,
            dir: Some(dir),
            _cgroups: cgroups,
        };
        wait_for("dockerd to answer", Duration::from_secs(30), || {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dockerd exited ({status}): {}", d.log());
            }
            d.try_docker(&["version"]).status.success().then_some(())
        });
        d
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dockerd.log")).unwrap_or_default()
    }

    /// `docker --host <this daemon> ARGS`, to completion.
    pub fn try_docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["--host", &self.socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("docker (apt-get install docker.io): {e}"))
    }

    /// [`Dockerd::try_docker`] that must succeed; its stdout, trimmed.
    pub fn docker(&self, args: &[&str]) -> String {
        ok(&format!("docker {args:?}"), self.try_docker(args))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first: dockerd stops them on SIGTERM too, but only within its timeout.
        let ids = self.try_docker(&["ps", "--all", "--quiet"]);
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = self.try_docker(&["rm", "--force", id]);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            eprintln!("dockerd did not stop in 20 s: killed\n{}", self.log());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(dir) = self.dir.take() {
            remove_with_mounts(dir);
        }
    }
}

/// A Podman store of the test's own. Its root is what `--path.podman` reads.
pub struct PodmanStore {
    dir: Option<tempfile::TempDir>,
    _cgroups: Leftovers,
}

impl PodmanStore {
    pub fn new() -> PodmanStore {
        let cgroups = Leftovers::watch(&["libpod_parent"]);
        let dir = tempfile::Builder::new()
            .prefix("nsx-podman-")
            .tempdir()
            .unwrap();
        // runc cannot raise RLIMIT_NOFILE and RLIMIT_NPROC to podman's defaults (1048576,
        // 4194304) here: every container, a pod's infra container too, gets these instead.
        // And runc, not crun, which Podman prefers where it is installed and which refuses
        // this machine's hybrid cgroup layout.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        PodmanStore {
            dir: Some(dir),
            _cgroups: cgroups,
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    /// `podman --root … --runroot … --tmpdir … ARGS`, to completion.
    pub fn try_podman(&self, args: &[&str]) -> Output {
        let path = |p: &str| self.dir().join(p);
        Command::new("podman")
            .arg("--root")
            .arg(path("root"))
            .arg("--runroot")
            .arg(path("run"))
            .arg("--tmpdir")
            .arg(path("tmp"))
            .args(args)
            .env("CONTAINERS_CONF", path("containers.conf"))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("podman (apt-get install podman): {e}"))
    }

    /// [`PodmanStore::try_podman`] that must succeed; its stdout, trimmed.
    pub fn podman(&self, args: &[&str]) -> String {
        ok(&format!("podman {args:?}"), self.try_podman(args))
    }
}

impl Drop for PodmanStore {
    fn drop(&mut self) {
        let _ = self.try_podman(&["pod", "rm", "--all", "--force", "--time", "0"]);
        let _ = self.try_podman(&["rm", "--all", "--force", "--time", "0"]);
        // Not `system reset`, which would also remove networks, whose configuration is the
        // machine's (/etc/cni/net.d).
        let _ = self.try_podman(&["rmi", "--all", "--force"]);
        if let Some(dir) = self.dir.take() {
            remove_with_mounts(dir);
        }
    }
}

/// Unmounts whatever is mounted at or below `dir` (deepest first, lazily, so a busy mount
/// cannot hold this up), then removes it.
pub fn remove_with_mounts(dir: tempfile::TempDir) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir.path()))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let (done, _, err) = super::run("umount", &["--lazy", point]);
        if !done {
            eprintln!("umount {point}: {err}");
        }
    }
    let path = dir.path().to_owned();
    if let Err(e) = dir.close() {
        eprintln!("remove {}: {e}", path.display());
    }
}

/// Cgroups below `tops` (e.g. `docker`, `libpod_parent`) on every hierarchy that did not
/// exist when this was made: the engines make them and leave some behind (podman 4.3 with
/// cgroupfs leaves a pod's directory and `libpod_parent/conmon`; dockerd leaves `/docker`).
/// On drop, each is removed deepest first; one that still holds a process (another engine's
/// container that came meanwhile) cannot be removed, and is left.
pub struct Leftovers {
    tops: Vec<PathBuf>,
    before: BTreeSet<PathBuf>,
}

impl Leftovers {
    pub fn watch(tops: &[&str]) -> Leftovers {
        let tops: Vec<PathBuf> = super::runc::cgroup_mounts()
            .iter()
            .flat_map(|h| tops.iter().map(move |t| h.join(t)))
            .collect();
        let before = tops.iter().flat_map(|t| dirs_under(t)).collect();
        Leftovers { tops, before }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mut made: Vec<PathBuf> = self
            .tops
            .iter()
            .flat_map(|t| dirs_under(t))
            .filter(|d| !self.before.contains(d))
            .collect();
        made.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in made {
            // EBUSY while the kernel releases the last member.
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.exists()
                && std::fs::remove_dir(&d).is_err()
                && Instant::now() < deadline
                && std::fs::read_to_string(d.join("cgroup.procs"))
                    .is_ok_and(|p| p.trim().is_empty())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `top` and every directory below it, if it exists.
fn dirs_under(top: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        out.push(d);
    }
    out
}

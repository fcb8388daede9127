//! Test support: the real binary on a free loopback port, an HTTP client (ureq), metric
//! parsing, and real namespaces made with unshare(1). Everything started here is stopped on
//! drop, so a failing test leaves no process behind.
//!
//! The exposition parser is our own: prometheus-parse folds a histogram's `_bucket` lines into
//! one sample under the base name, where the tests look samples up by the names on the wire,
//! and the prometheus crate only encodes.
#![allow(dead_code)]

pub mod alertmanager;
pub mod cgroup;
pub mod cri;
pub mod dashboard;
pub mod declared;
pub mod engines;
pub mod golden;
pub mod pod;
pub mod prometheus;
pub mod runc;
pub mod visitor;
pub mod webhook;
pub mod yaml;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nsexporter");

/// The binary the tests run: [`BIN`], or `NSEXPORTER_TEST_BIN` where it is set (to run the
/// same tests against another build, e.g. an older one, and count what passes).
pub fn bin() -> PathBuf {
    std::env::var_os("NSEXPORTER_TEST_BIN").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture_procfs() -> PathBuf {
    manifest_dir().join("tests/fixtures/proc")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The binary as the rendered DaemonSet runs it (deploy/kubernetes/daemonset.yaml): uid and
/// gid 65534, no groups, `SYS_PTRACE` its only capability (bounding, inheritable, ambient so
/// that it survives the exec, as the image's file capability makes it).
pub const AS_THE_DAEMONSET: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--bounding-set=-all,+sys_ptrace",
    "--inh-caps=-all,+sys_ptrace",
    "--ambient-caps=-all,+sys_ptrace",
];

/// [`AS_THE_DAEMONSET`] with the `runtime-specs` component
/// (deploy/kubernetes/runtime-specs): `DAC_READ_SEARCH` too, to read the runtimes' specs.
pub const AS_THE_DAEMONSET_WITH_SPECS: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--bounding-set=-all,+sys_ptrace,+dac_read_search",
    "--inh-caps=-all,+sys_ptrace,+dac_read_search",
    "--ambient-caps=-all,+sys_ptrace,+dac_read_search",
];

/// The running exporter; killed on drop.
pub struct Exporter {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    /// Starts the binary with `args` on a free port and waits until /readyz says ready.
    pub fn start(args: &[&str]) -> Exporter {
        let mut e = Exporter::spawn(&[], args, None);
        e.wait_until("ready", |r| r.status == 200, "/readyz");
        e
    }

    /// Starts the binary on a [`crowded_procfs`] of `processes` made under `dir`, with no
    /// name source (their paths lead nowhere), and `args`.
    pub fn on_crowded_procfs(dir: &std::path::Path, processes: u32, args: &[&str]) -> Exporter {
        let procfs = dir.join("proc");
        crowded_procfs(&procfs, processes);
        let none = dir.join("none");
        let flags: Vec<String> = [
            ("procfs", &procfs),
            ("kubelet-logs", &none),
            ("docker", &none),
            ("podman", &none),
            ("run", &none),
        ]
        .iter()
        .map(|(key, path)| format!("--path.{key}={}", path.display()))
        .collect();
        let all: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        Exporter::start(&all)
    }

    /// Starts the binary under `wrapper` (a command that execs the rest of its arguments,
    /// such as `setpriv --bounding-set=-net_admin`) and waits until /readyz says ready.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Exporter {
        let mut e = Exporter::spawn(wrapper, args, None);
        e.wait_until("ready", |r| r.status == 200, "/readyz");
        e
    }

    /// Starts the binary with at most `nofile` open files (RLIMIT_NOFILE) and waits until it
    /// answers `/healthz`, healthy or not: with too few it never becomes ready.
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Exporter {
        let mut e = Exporter::spawn(&[], args, Some(nofile));
        e.wait_until("answering", |_| true, "/healthz");
        e
    }

    /// Starts the binary and waits until its port answers anything: over TLS, the plain
    /// HTTP of [`http`] gets a 400, and whether it is ready is for the caller's client to see.
    pub fn start_listening(args: &[&str]) -> Exporter {
        let mut e = Exporter::spawn(&[], args, None);
        e.wait_until("listening", |_| true, "/healthz");
        e
    }

    fn spawn(wrapper: &[&str], args: &[&str], nofile: Option<u64>) -> Exporter {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let stderr_path = dir.path().join("stderr.log");
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(bin());
                cmd
            }
            None => Command::new(bin()),
        };
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        if let Some(n) = nofile {
            // pre_exec is unsafe by signature, and it is the only way to set a limit on the
            // child alone (the full-fd-table test must not shrink the test runner's own).
            #[allow(unsafe_code)]
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork and
            // exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, n, n)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd.spawn().expect("start nsexporter");
        Exporter {
            child,
            port,
            stderr_path,
            _dir: dir,
        }
    }

    /// Polls `path` until `ok` holds of its answer, or panics naming `what` (and the log).
    pub fn wait_until(&mut self, what: &str, ok: impl Fn(&HttpResponse) -> bool, path: &str) {
        wait_for(
            &format!("the exporter to be {what}"),
            Duration::from_secs(20),
            || {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("exporter exited early ({status}): {}", self.stderr());
                }
                self.try_get(path).ok().filter(|r| ok(r)).map(|_| ())
            },
        );
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn try_get(&self, path: &str) -> std::io::Result<HttpResponse> {
        http(self.port, "GET", path, &[])
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.try_get(path).expect("HTTP request")
    }

    /// The current exposition, parsed.
    pub fn metrics(&self) -> Metrics {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        Metrics::parse(&r.text())
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_for("the exporter to exit", Duration::from_secs(10), || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request with `Connection: close`, by ureq: any status is an answer, the
/// body is given as sent (no decompression: ureq is built without gzip), and no connection
/// is kept for the next request, so that each call is one connection as the limit tests count.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("Connection", "close");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(()).map_err(std::io::Error::other)?;
    let mut resp = agent.run(req).map_err(ureq::Error::into_io)?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), v)
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .map_err(ureq::Error::into_io)?;
    Ok(HttpResponse {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}

/// One sample of the text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Clone, Debug, Default)]
pub struct Metrics(pub Vec<Sample>);

impl Metrics {
    /// Parses the text format as nsexporter writes it (no escaped quotes in label values).
    pub fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("label");
                    (k.to_string(), v.trim_end_matches('"').to_string())
                })
                .collect();
            out.push(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("sample value"),
            });
        }
        Metrics(out)
    }

    /// Samples of `name` whose labels include all of `want`.
    pub fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                want.iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` with labels `want`, if any.
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, want);
        assert!(found.len() <= 1, "{name} {want:?} matches {found:?}");
        found.first().map(|s| s.value)
    }
}

pub const NS_TYPES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// `readlink /proc/PID/ns/TYPE` parsed to an inode.
pub fn ns_inode(pid: i32, ns_type: &str) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns_type}")).ok()?;
    let text = link.to_string_lossy().into_owned();
    text.strip_prefix(&format!("{ns_type}:["))?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Processes started in their own process group and killed, group and all, on drop.
pub struct Spawned {
    pub child: Child,
}

impl Spawned {
    /// Spawns `cmd` in a new process group.
    pub fn new(program: &str, args: &[&str]) -> Spawned {
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        Spawned { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The first child of this process (unshare --fork's forked child), once it has exec'd
    /// `comm`.
    pub fn child_running(&self, comm: &str) -> i32 {
        let pid = self.pid();
        wait_for(
            &format!("a child {comm} of {pid}"),
            Duration::from_secs(10),
            || {
                let children =
                    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
                let child: i32 = children.split_whitespace().next()?.parse().ok()?;
                let c = std::fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
                (c.trim() == comm).then_some(child)
            },
        )
    }

    /// Waits until the process itself has exec'd `comm` (after unshare without --fork).
    pub fn running(&self, comm: &str) -> i32 {
        let pid = self.pid();
        wait_for(
            &format!("{pid} to run {comm}"),
            Duration::from_secs(10),
            || {
                let c = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (c.trim() == comm).then_some(pid)
            },
        )
    }

    /// Kills the whole process group, reaps the direct child, and waits until no member of
    /// the group (zombies included) is left, so that its namespaces are gone when this returns.
    pub fn kill(&mut self) {
        let pgid = self.pid();
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
        wait_for(
            &format!("process group {pgid} to be gone"),
            Duration::from_secs(10),
            || (!group_alive(pgid)).then_some(()),
        );
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Field `n` (1-based, as proc_pid_stat(5) numbers them; from 3, after `comm`) of
/// /proc/PID/stat, read independently of the exporter's own parser.
pub fn stat_field<T: std::str::FromStr>(pid: i32, n: usize) -> Option<T> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(n.checked_sub(3)?)?
        .parse()
        .ok()
}

/// Whether any process under /proc is in process group `pgid` (field 5).
fn group_alive(pgid: i32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
            .and_then(|pid| stat_field::<i32>(pid, 5))
            == Some(pgid)
    })
}

/// Runs a command to completion, returning (success, stdout, stderr).
pub fn run(program: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (scripts/install-test-deps): {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `field` of `pid`'s /proc/PID/status in bytes (VmRSS, VmHWM).
pub fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib * 1024
}

/// A procfs tree of the fixture's PID 1 and `n` more processes, each in six namespaces of its
/// own: a snapshot of megabytes, that a scan holds twice while it compares.
pub fn crowded_procfs(root: &std::path::Path, n: u32) {
    let fixture = fixture_procfs();
    std::fs::create_dir_all(root.join("1/ns")).unwrap();
    std::fs::copy(fixture.join("stat"), root.join("stat")).unwrap();
    for file in ["stat", "cgroup", "cmdline"] {
        std::fs::copy(fixture.join("1").join(file), root.join("1").join(file)).unwrap();
    }
    for entry in std::fs::read_dir(fixture.join("1/ns")).unwrap() {
        let entry = entry.unwrap();
        let target = std::fs::read_link(entry.path()).unwrap();
        std::os::unix::fs::symlink(target, root.join("1/ns").join(entry.file_name())).unwrap();
    }
    for i in 0..n {
        let pid = 1000 + i;
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        let stat = format!(
            "{pid} (worker) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 {} 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            5000 + i
        );
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("cgroup"), "0::/workers\n").unwrap();
        for (t, k) in [
            ("cgroup", 0),
            ("ipc", 1),
            ("mnt", 2),
            ("net", 3),
            ("pid", 4),
            ("uts", 5),
        ] {
            let inode = 4_100_000_000u64 + u64::from(i) * 8 + k;
            std::os::unix::fs::symlink(format!("{t}:[{inode}]"), dir.join("ns").join(t)).unwrap();
        }
        std::os::unix::fs::symlink("time:[4026531834]", dir.join("ns/time")).unwrap();
        std::os::unix::fs::symlink("user:[4026531837]", dir.join("ns/user")).unwrap();
    }
}

/// Opens `n` connections to `port`, each sending `bytes`.
pub fn connections(port: u16, n: usize, bytes: &[u8]) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(bytes).unwrap();
            s
        })
        .collect()
}

/// Whether the server has closed `s`: end of file or a reset, within `timeout`.
pub fn closed_by_server(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// `ip netns add NAME`, deleted again on drop, even when the test fails.
pub struct Netns(pub String);

impl Netns {
    pub fn add(tag: &str) -> Netns {
        let name = format!("nsx-{tag}-{}", std::process::id());
        let (ok, _, err) = run("ip", &["netns", "add", &name]);
        assert!(ok, "ip netns add {name}: {err}");
        Netns(name)
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }

    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).unwrap().ino()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// Where process `pid` accepts traffic: its TCP sockets in LISTEN and its bound UDP sockets, as
/// `tcp 127.0.0.1:9093` (IPv6 as `tcp6 [::1]:9093`), read from /proc/PID/net/{tcp,udp}{,6}
/// (proc_net_tcp(5)) for the socket inodes among its fds.
pub fn listening_addresses(pid: i32) -> Vec<String> {
    let inodes: std::collections::BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for proto in ["tcp", "tcp6", "udp", "udp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{proto}")).unwrap_or_default();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || !inodes.contains(f[9]) {
                continue;
            }
            // TCP state 0A is LISTEN; a UDP socket receives once bound, whatever its state.
            if proto.starts_with("tcp") && f[3] != "0A" {
                continue;
            }
            out.push(format!("{proto} {}", hex_address(f[1])));
        }
    }
    out
}

/// `0100007F:2385` → `127.0.0.1:9093`; the 32-hex-digit IPv6 form → `[::1]:9093`. The kernel
/// prints each 32-bit word of the address in host (little-endian here) order.
fn hex_address(hex: &str) -> String {
    let (addr, port) = hex.split_once(':').unwrap();
    let port = u16::from_str_radix(port, 16).unwrap();
    let words: Vec<[u8; 4]> = (0..addr.len() / 8)
        .map(|i| {
            u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16)
                .unwrap()
                .to_le_bytes()
        })
        .collect();
    match words.as_slice() {
        [w] => format!("{}:{port}", std::net::Ipv4Addr::from(*w)),
        _ => {
            let bytes: Vec<u8> = words.concat();
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap());
            format!("[{v6}]:{port}")
        }
    }
}

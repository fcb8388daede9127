//! What each namespace holds, on the real kernel (root): 200 network namespaces, half made
//! with `ip netns add` and half with `unshare --net`, each with a known number of veth
//! interfaces, loopback sockets, conntrack entries and frames sent over a veth pair, read by
//! the exporter and compared with what `ip`, `ss -s` and `conntrack -C` say inside each
//! (`nsenter`); and a mount namespace of 1,000 bind mounts. Each is read again by the binary
//! run with only what the DaemonSet grants, which must give the same figures. Beside them, a
//! network namespace no process is in, whose sockets a process outside holds: counted from
//! the fd pass, as root and with the grants of the components that let it ask sockets.
//!
//! The namespaces are made by one shell script, all at once, and the sockets by one Python
//! process that enters each namespace in turn (a socket belongs to the namespace it was made
//! in): a few hundred spawns from one script, not from the test. A guard kills what was
//! started and deletes the named namespaces on drop, whatever the outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{AS_THE_DAEMONSET, Exporter, Metrics, run, wait_for};

const NAMESPACES: usize = 200;

/// The exporter's flags here: no cap per workload, as the test's namespaces and whatever other
/// tests hold on the machine at once count together by owner and may pass it; what is read is
/// under test, not the cap.
const ARGS: &[&str] = &[
    "--scan.interval=500ms",
    "--metrics.namespaces-per-workload=0",
];

/// What namespace `i` is made to hold.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Made {
    veth_pairs: u64,
    listeners: u64,
    connections: u64,
    udp: u64,
    tcp6: u64,
    /// 60-byte frames sent from `va0` to its peer `vb0` (where there is a pair).
    frames: u64,
}

impl Made {
    fn of(i: usize) -> Made {
        let i = i as u64;
        let veth_pairs = i % 4;
        Made {
            veth_pairs,
            listeners: i % 3 + 1,
            connections: i % 5,
            udp: i % 2,
            tcp6: u64::from(i.is_multiple_of(3)),
            frames: if veth_pairs > 0 { i % 7 + 1 } else { 0 },
        }
    }
}

/// Everything the test started: killed, and the named namespaces deleted, on drop.
struct Made200 {
    dir: tempfile::TempDir,
    tag: String,
    holder: Option<Child>,
}

impl Made200 {
    fn pids(&self) -> Vec<i32> {
        let text = std::fs::read_to_string(self.dir.path().join("pids")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for Made200 {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for i in (0..NAMESPACES).step_by(2) {
            let _ = run(
                "ip",
                &["netns", "del", &format!("nsx-holds-{}-{i}", self.tag)],
            );
        }
    }
}

/// Makes the namespaces: namespace `i` (`ip netns add` for even `i`, `unshare --net` for
/// odd) has `lo` up, its veth pairs with IPv6 off (no traffic of the kernel's own), a
/// conntrack rule on loopback, and a `sleep` as its member; `pids` lists the members in
/// order (`ip netns exec`, `unshare` and `sh` each exec the next, so the pid is the sleep's).
fn make(dir: &Path, tag: &str) {
    let mut script = String::from("set -eu\ncd \"$1\"\n");
    // The members must not hold the script's output open: the test would wait for them.
    let quiet = "</dev/null >/dev/null 2>>errors";
    for i in 0..NAMESPACES {
        let m = Made::of(i);
        let body = format!(
            "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; ip link set lo up; \
             for j in $(seq 1 {pairs}); do ip link add va$((j-1)) type veth peer name vb$((j-1)); \
             ip link set va$((j-1)) up; ip link set vb$((j-1)) up; done; \
             iptables -w -A OUTPUT -o lo -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT; \
             touch ready.{i}; exec sleep 3600",
            pairs = m.veth_pairs
        );
        if i.is_multiple_of(2) {
            let name = format!("nsx-holds-{tag}-{i}");
            script.push_str(&format!(
                "ip netns add {name}\nip netns exec {name} sh -c '{body}' {quiet} &\necho $! >> pids\n"
            ));
        } else {
            script.push_str(&format!(
                "unshare --net sh -c '{body}' {quiet} &\necho $! >> pids\n"
            ));
        }
    }
    script.push_str(&format!(
        "for i in $(seq 0 {last}); do n=0; while [ ! -e ready.$i ]; do sleep 0.05; n=$((n+1)); \
         [ $n -lt 1200 ] || exit 1; done; done\n",
        last = NAMESPACES - 1
    ));
    let path = dir.join("make.sh");
    std::fs::write(&path, script).unwrap();
    let status = Command::new("bash")
        .arg(&path)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("make.err")).unwrap())
        .status()
        .expect("bash");
    let said = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(
        status.success(),
        "making the namespaces: {}{}",
        said("make.err"),
        said("errors")
    );
}

/// The Python process that makes each namespace's sockets and sends its frames, then holds
/// the sockets until killed; it says `ready` once all are made.
const HOLDER: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
pids = [int(l) for l in open(sys.argv[1])]
held = []
for i, pid in enumerate(pids):
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:
        raise OSError(ctypes.get_errno(), f"setns {pid}")
    os.close(fd)
    pairs, listeners, connections, udp, tcp6, frames = [int(x) for x in sys.argv[2 + i].split(",")]
    ls = []
    for _ in range(listeners):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0)); s.listen(64); ls.append(s)
    held += ls
    for _ in range(connections):
        c = socket.create_connection(ls[0].getsockname())
        a, _ = ls[0].accept()
        held += [c, a]
    for _ in range(udp):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); held.append(u)
    for _ in range(tcp6):
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); s.bind(("::1", 0)); s.listen(8); held.append(s)
    if frames:
        p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        p.bind(("va0", 0))
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"\x00" * 46
        for _ in range(frames):
            p.send(frame)
        p.close()
print("ready", flush=True)
sys.stdin.read()
"#;

/// What the tools say inside each member's namespace, by pid: one script, one line group
/// each.
fn tools(dir: &Path, pids: &[i32]) -> BTreeMap<i32, Tools> {
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let script = "for p in \"$@\"; do echo \"== $p\"; nsenter -t $p -n sh -c \
                  'ip -j -s link; echo; ss -s; echo conntrack $(conntrack -C)'; done";
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("tools")
        .args(&list)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("== ")
        .skip(1)
        .map(|block| {
            let (pid, rest) = block.split_once('\n').unwrap();
            (pid.trim().parse().unwrap(), Tools::parse(rest))
        })
        .collect()
}

/// One namespace as `ip -j -s link`, `ss -s` and `conntrack -C` see it.
#[derive(Debug, Default, PartialEq)]
struct Tools {
    interfaces: u64,
    /// Summed over the interfaces but `lo`: rx bytes, tx bytes, rx packets, tx packets, rx
    /// errors, tx errors, rx dropped, tx dropped.
    traffic: [u64; 8],
    /// `ss -s`'s table: protocol → (IP, IPv6).
    ss: BTreeMap<String, (u64, u64)>,
    conntrack: u64,
}

impl Tools {
    fn parse(text: &str) -> Tools {
        let mut lines = text.lines();
        let json = lines.next().expect("ip -j output");
        let links: serde_json::Value = serde_json::from_str(json).expect("ip -j -s link");
        let mut t = Tools::default();
        for l in links.as_array().unwrap() {
            t.interfaces += 1;
            if l["ifname"] == "lo" {
                continue;
            }
            let s = &l["stats64"];
            let fields = [
                &s["rx"]["bytes"],
                &s["tx"]["bytes"],
                &s["rx"]["packets"],
                &s["tx"]["packets"],
                &s["rx"]["errors"],
                &s["tx"]["errors"],
                &s["rx"]["dropped"],
                &s["tx"]["dropped"],
            ];
            for (sum, v) in t.traffic.iter_mut().zip(fields) {
                *sum += v.as_u64().unwrap();
            }
        }
        for line in lines {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["conntrack", n] => t.conntrack = n.parse().unwrap(),
                [proto @ ("RAW" | "UDP" | "TCP"), _total, ip, ip6] => {
                    t.ss.insert(
                        proto.to_lowercase(),
                        (ip.parse().unwrap(), ip6.parse().unwrap()),
                    );
                }
                _ => {}
            }
        }
        t
    }
}

/// The binary with the grants the DaemonSet has with the `proc-events` and
/// `docker-podman-names` components (deploy/kubernetes): `NET_ADMIN` to ask a socket for its
/// network namespace, `DAC_READ_SEARCH` to list the fds of root's processes. The host's pid
/// namespace, proc-events' `hostPID`, is the test's own.
const AS_THE_DAEMONSET_ASKING_SOCKETS: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--bounding-set=-all,+sys_ptrace,+net_admin,+dac_read_search",
    "--inh-caps=-all,+sys_ptrace,+net_admin,+dac_read_search",
    "--ambient-caps=-all,+sys_ptrace,+net_admin,+dac_read_search",
];

/// Sockets made in the namespace that no process is in, above the shipped alert's 20.
const LEAKED_SOCKETS: u64 = 24;

/// A process of the host's network namespace that enters the namespace mounted at `argv[1]`,
/// makes `argv[2]` UDP sockets there, dups the first (one socket, two fds), returns home and
/// holds them until killed; it says `ready` once back.
const LEAKER: &str = r#"
import ctypes, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
home = os.open("/proc/self/ns/net", os.O_RDONLY)
there = os.open(sys.argv[1], os.O_RDONLY)
if libc.setns(there, 0x40000000) != 0:
    raise OSError(ctypes.get_errno(), "setns there")
held = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[2]))]
held.append(os.dup(held[0].fileno()))
if libc.setns(home, 0x40000000) != 0:
    raise OSError(ctypes.get_errno(), "setns home")
print("ready", flush=True)
sys.stdin.read()
"#;

/// A network namespace that no process is in (`ip netns add`), with sockets a process in the
/// host's namespace made in it and holds: the process killed and the namespace deleted on drop.
struct Leak {
    name: String,
    holder: Option<Child>,
}

impl Drop for Leak {
    fn drop(&mut self) {
        if let Some(mut h) = self.holder.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// Makes the namespace and its held sockets; returns the guard and the namespace's inode.
fn leak(tag: &str) -> (Leak, String) {
    let name = format!("nsx-holds-{tag}-leak");
    let (ok, _, err) = run("ip", &["netns", "add", &name]);
    let mut leak = Leak { name, holder: None };
    assert!(ok, "ip netns add: {err}");
    let path = format!("/run/netns/{}", leak.name);
    let mut holder = Command::new("python3")
        .args(["-c", LEAKER, &path, &LEAKED_SOCKETS.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let out = holder.stdout.take().unwrap();
    leak.holder = Some(holder);
    let mut ready = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(out).read_line(&mut ready).unwrap();
    }
    assert_eq!(ready.trim(), "ready", "the socket holder failed");
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
    (leak, inode.to_string())
}

/// The samples of the holds families about `inodes`, by name and labels.
fn holds_of(m: &Metrics, inodes: &[String]) -> BTreeMap<String, f64> {
    m.0.iter()
        .filter(|s| {
            s.name.starts_with("nsexporter_network_namespace_")
                || s.name == "nsexporter_mount_namespace_mounts"
        })
        .filter(|s| s.labels.get("inode").is_some_and(|i| inodes.contains(i)))
        .map(|s| (format!("{}{:?}", s.name, s.labels), s.value))
        .collect()
}

/// Starts the exporter as the DaemonSet runs it, waits for a scan that read `inode` in
/// `family`, and asserts it gives the same figures as `root` for `inodes`.
fn least_privilege_reads_the_same(root: &Metrics, family: &str, inodes: &[String]) {
    let e = Exporter::start_under(AS_THE_DAEMONSET, ARGS);
    let last = inodes.last().unwrap().as_str();
    let m = scan_reading(&e, family, &[last]);
    let (want, got) = (holds_of(root, inodes), holds_of(&m, inodes));
    assert!(!want.is_empty());
    assert_eq!(
        got,
        want,
        "as uid 65534 with SYS_PTRACE only: {}",
        e.stderr()
    );
}

/// The exposition once a scan has given `family` a series for each of `inodes`: on a machine
/// other tests load, a scan of a few thousand namespaces can take seconds, so the wait is
/// long, and says what the exporter logged where it runs out.
fn scan_reading(e: &Exporter, family: &str, inodes: &[&str]) -> Metrics {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let m = e.metrics();
        if inodes
            .iter()
            .all(|i| m.value(family, &[("inode", i)]).is_some())
        {
            return m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scan gave {family} for {inodes:?}: {}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn value(m: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    m.value(name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?}")) as u64
}

/// 200 network namespaces: for each, every figure the exporter gives equals what was made,
/// and what `ip -j -s link`, `ss -s` and `conntrack -C` say inside it; the node sums hold them.
#[test]
#[ignore = "needs root, iproute2, iptables, conntrack and python3 (scripts/test runs it)"]
fn two_hundred_network_namespaces_hold_what_the_tools_say() {
    let dir = tempfile::tempdir().unwrap();
    let tag = std::process::id().to_string();
    let mut made = Made200 {
        dir,
        tag: tag.clone(),
        holder: None,
    };
    make(made.dir.path(), &tag);
    let pids = made.pids();
    assert_eq!(pids.len(), NAMESPACES);
    let shapes: Vec<String> = (0..NAMESPACES)
        .map(|i| {
            let m = Made::of(i);
            let f = [
                m.veth_pairs,
                m.listeners,
                m.connections,
                m.udp,
                m.tcp6,
                m.frames,
            ];
            f.map(|n| n.to_string()).join(",")
        })
        .collect();
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(HOLDER)
        .arg(made.dir.path().join("pids"))
        .args(&shapes)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut ready = String::new();
    {
        use std::io::BufRead;
        let out = holder.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut ready).unwrap();
    }
    made.holder = Some(holder);
    assert_eq!(ready.trim(), "ready", "the socket holder failed");

    let inode = |pid: i32| {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
        let link = link.to_string_lossy().into_owned();
        link.trim_start_matches("net:[")
            .trim_end_matches(']')
            .to_string()
    };
    let inodes: Vec<String> = pids.iter().map(|&p| inode(p)).collect();
    let (leaked, leaked_inode) = leak(&tag);
    let e = Exporter::start(ARGS);
    let asking = Exporter::start_under(AS_THE_DAEMONSET_ASKING_SOCKETS, ARGS);
    // Every namespace read by one scan: the first made and the last.
    let (first, last) = (&inodes[0], &inodes[NAMESPACES - 1]);
    let m = scan_reading(
        &e,
        "nsexporter_network_namespace_interfaces",
        &[first, last],
    );
    let tools = tools(made.dir.path(), &pids);

    let traffic_families = [
        "receive_bytes_total",
        "transmit_bytes_total",
        "receive_packets_total",
        "transmit_packets_total",
        "receive_errors_total",
        "transmit_errors_total",
        "receive_drops_total",
        "transmit_drops_total",
    ];
    for (i, (&pid, ino)) in pids.iter().zip(&inodes).enumerate() {
        let made = Made::of(i);
        let t = &tools[&pid];
        let at = [("inode", ino.as_str())];
        let net = |f: &str| value(&m, &format!("nsexporter_network_namespace_{f}"), &at);
        let ctx = format!("namespace {i} (pid {pid}, inode {ino}): {made:?}, tools {t:?}");
        // What was made.
        assert_eq!(net("interfaces"), 1 + 2 * made.veth_pairs, "{ctx}");
        assert_eq!(net("transmit_packets_total"), made.frames, "{ctx}");
        assert_eq!(net("receive_packets_total"), made.frames, "{ctx}");
        assert_eq!(net("transmit_bytes_total"), 60 * made.frames, "{ctx}");
        assert_eq!(net("conntrack_entries"), made.connections, "{ctx}");
        let sockets = |p: &str| {
            value(
                &m,
                "nsexporter_network_namespace_sockets",
                &[("inode", ino.as_str()), ("protocol", p)],
            )
        };
        assert_eq!(
            sockets("tcp"),
            made.listeners + 2 * made.connections,
            "{ctx}"
        );
        assert_eq!(sockets("udp"), made.udp, "{ctx}");
        assert_eq!(sockets("tcp6"), made.tcp6, "{ctx}");
        // What the tools say.
        assert_eq!(net("interfaces"), t.interfaces, "{ctx}");
        for (f, want) in traffic_families.iter().zip(t.traffic) {
            assert_eq!(net(f), want, "{f}: {ctx}");
        }
        for (proto, (ip, ip6)) in &t.ss {
            assert_eq!(sockets(proto), *ip, "{proto}: {ctx}");
            assert_eq!(sockets(&format!("{proto}6")), *ip6, "{proto}6: {ctx}");
        }
        assert_eq!(t.ss.len(), 3, "{ctx}");
        assert_eq!(net("conntrack_entries"), t.conntrack, "{ctx}");
    }
    // The node sums hold at least what was made (the host and other tests hold more).
    let made_tcp: u64 = (0..NAMESPACES)
        .map(|i| Made::of(i).listeners + 2 * Made::of(i).connections)
        .sum();
    assert!(value(&m, "nsexporter_sockets", &[("protocol", "tcp")]) >= made_tcp);
    let made_ct: u64 = (0..NAMESPACES).map(|i| Made::of(i).connections).sum();
    assert!(value(&m, "nsexporter_conntrack_entries", &[]) >= made_ct);
    // The namespace no process is in: its sockets, each once, as root and with the grants
    // of the components that let the fd pass ask sockets; none of the 200 (each has a
    // member) has the family.
    let held = "nsexporter_network_namespace_held_sockets";
    for (who, e) in [("root", &e), ("uid 65534, the components' grants", &asking)] {
        let m = scan_reading(e, held, &[&leaked_inode]);
        assert_eq!(
            value(&m, held, &[("inode", &leaked_inode)]),
            LEAKED_SOCKETS,
            "{who}: {}",
            e.stderr()
        );
        assert!(value(&m, "nsexporter_network_namespace_held_sockets_max", &[]) >= LEAKED_SOCKETS);
        assert!(
            inodes
                .iter()
                .all(|i| m.value(held, &[("inode", i)]).is_none())
        );
    }
    drop((e, asking, leaked));
    least_privilege_reads_the_same(&m, "nsexporter_network_namespace_interfaces", &inodes);
    drop(made);
}

/// Where a mount namespace of `n` bind mounts is made: a directory bound on itself `n` times
/// in a private mount namespace, whose member is a `sleep`; the mounts go with it.
struct Mounts {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Mounts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the guard and the file that says it is ready; `base` in its directory holds the
/// mounts the namespace had before the bind mounts: `/` and `/proc`, and what the kernel
/// would not unmount. The rest of the host's copy is unmounted first, because since Linux 3.18
/// a mount point removed in one namespace is detached in all, and other tests' containers
/// remove theirs meanwhile.
fn mount_namespace_of(n: usize) -> (Mounts, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let script = format!(
        "mount --make-rprivate / && \
         awk '{{print $5}}' /proc/self/mountinfo | sort -r | while read m; do \
         case \"$m\" in /|/proc) ;; *) umount -l \"$m\" 2>/dev/null;; esac; done; \
         mkdir -p {d}/m && wc -l < /proc/self/mountinfo > {d}/base && i=0 && while [ $i -lt {n} ]; do \
         mkdir {d}/m/$i && mount --bind {d}/m/$i {d}/m/$i || exit 1; i=$((i+1)); done && \
         touch {r} && exec sleep 3600",
        d = dir.path().display(),
        r = ready.display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare");
    (Mounts { child, _dir: dir }, ready)
}

/// A mount namespace with 1,000 bind mounts more than its parent's copy: counted exactly, as
/// its `mountinfo` lines and `findmnt` inside it say; the node's largest is at least it.
#[test]
#[ignore = "needs root and util-linux (scripts/test runs it)"]
fn a_mount_namespace_of_a_thousand_bind_mounts_is_counted_exactly() {
    let (mounts, ready) = mount_namespace_of(1000);
    wait_for("the bind mounts", Duration::from_secs(60), || {
        ready.exists().then_some(())
    });
    let pid = mounts.child.id() as i32;
    let link = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap();
    let inode = link
        .to_string_lossy()
        .trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .to_string();
    let findmnt = || {
        let (ok, listed, err) = run(
            "nsenter",
            &[
                "-t",
                &pid.to_string(),
                "-m",
                "findmnt",
                "--list",
                "--noheadings",
                "-o",
                "TARGET",
            ],
        );
        assert!(ok, "{err}");
        listed.lines().count() as u64
    };
    // The test's own bind mounts, exactly 1,000 of them.
    let dir = ready.parent().unwrap().join("m");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let ours = mountinfo
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(&dir))
        })
        .count();
    assert_eq!(ours, 1000, "{mountinfo}");
    let base = std::fs::read_to_string(ready.with_file_name("base")).unwrap();
    let base: u64 = base.trim().parse().unwrap();
    let e = Exporter::start(ARGS);
    let least = Exporter::start_under(AS_THE_DAEMONSET, ARGS);
    let family = "nsexporter_mount_namespace_mounts";
    scan_reading(&e, family, &[&inode]);
    scan_reading(&least, family, &[&inode]);
    // The counts are compared with findmnt's where two reads around two fresh scans agree.
    let scans = |e: &Exporter| {
        e.metrics()
            .value("nsexporter_scans_total", &[])
            .unwrap_or(0.0)
    };
    let fresh = |e: &Exporter, after: f64| {
        wait_for("two scans more", Duration::from_secs(60), || {
            (scans(e) >= after + 2.0).then_some(())
        });
        value(&e.metrics(), family, &[("inode", &inode)])
    };
    let (counted, least_counted, listed) = (0..5)
        .find_map(|_| {
            let before = findmnt();
            let (n, n_least) = (scans(&e), scans(&least));
            let counted = (fresh(&e, n), fresh(&least, n_least));
            (findmnt() == before).then_some((counted.0, counted.1, before))
        })
        .expect("the namespace's mounts kept changing");
    assert_eq!(counted, listed, "findmnt inside");
    assert_eq!(
        least_counted,
        listed,
        "as uid 65534 with SYS_PTRACE only: {}",
        least.stderr()
    );
    // What the unmounting leaves is `/`, `/proc` and any mount the kernel will not unmount
    // (EINVAL: this machine has a stale netns bind mount in /run/netns that the host's own
    // namespace cannot unmount either), which may yet be detached: at most `base` besides the
    // thousand.
    assert!(
        counted >= 1000 && counted <= base + 1000,
        "{counted} of {base} + 1000"
    );
    assert!(value(&e.metrics(), "nsexporter_mount_namespace_mounts_max", &[]) >= counted);
    drop(mounts);
}

//! The binary against the real kernel, as root: namespaces made with unshare(1) must appear
//! with the right members, be counted as created, and vanish and be counted as destroyed when
//! their processes die; `nsexporter list` must agree with lsns(8); `promtool check metrics`
//! must accept the live exposition.
//!
//! The tests share one lock: each asserts exact counts of namespaces created on the machine, so
//! they must not make namespaces at the same time.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::support::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn live_exporter() -> Exporter {
    Exporter::start(&["--scan.interval=200ms"])
}

/// The namespaces of `pids` that are not the host's (kthreadd's), with their member counts as
/// the kernel reports them under /proc.
fn new_namespaces(pids: &[i32]) -> BTreeMap<(String, u64), usize> {
    let mut out = BTreeMap::new();
    for t in NS_TYPES {
        let host = ns_inode(2, t);
        for &pid in pids {
            let inode = ns_inode(pid, t).expect("read the child's ns link");
            if Some(inode) != host {
                out.insert((t.to_string(), inode), 0);
            }
        }
    }
    // Members: every process on the machine in that namespace.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        for ((t, inode), n) in out.iter_mut() {
            if ns_inode(pid, t) == Some(*inode) {
                *n += 1;
            }
        }
    }
    out
}

fn counter_by_type(m: &Metrics, name: &str) -> BTreeMap<String, f64> {
    NS_TYPES
        .iter()
        .map(|t| (t.to_string(), m.value(name, &[("type", t)]).unwrap_or(0.0)))
        .collect()
}

fn per_type(made: &BTreeMap<(String, u64), usize>) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = NS_TYPES.iter().map(|t| (t.to_string(), 0.0)).collect();
    for (t, _) in made.keys() {
        *out.get_mut(t).unwrap() += 1.0;
    }
    out
}

fn delta(after: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before[k]))
        .collect()
}

fn shows_all(m: &Metrics, made: &BTreeMap<(String, u64), usize>) -> bool {
    made.iter().all(|((t, inode), n)| {
        m.value(
            "nsexporter_namespace_processes",
            &[("type", t), ("inode", &inode.to_string())],
        ) == Some(*n as f64)
    })
}

fn shows_none(m: &Metrics, made: &BTreeMap<(String, u64), usize>) -> bool {
    made.keys().all(|(t, inode)| {
        let inode = inode.to_string();
        [
            "nsexporter_namespace_processes",
            "nsexporter_namespace_info",
            "nsexporter_namespace_start_time_seconds",
        ]
        .iter()
        .all(|name| m.find(name, &[("type", t), ("inode", &inode)]).is_empty())
    })
}

#[test]
#[ignore = "needs root: makes namespaces of every type with unshare(1)"]
fn unshared_namespaces_are_created_seen_and_destroyed() {
    let _guard = serial();
    let e = live_exporter();
    let before = e.metrics();
    let created_before = counter_by_type(&before, "nsexporter_namespaces_created_total");
    let destroyed_before = counter_by_type(&before, "nsexporter_namespaces_destroyed_total");

    let mut all = Spawned::new(
        "unshare",
        &[
            "--fork",
            "--pid",
            "--mount-proc",
            "--net",
            "--uts",
            "--ipc",
            "--cgroup",
            "--time",
            "sleep",
            "1000",
        ],
    );
    let all_child = all.child_running("sleep");
    let mut user = Spawned::new("unshare", &["--user", "--map-root-user", "sleep", "1000"]);
    let user_pid = user.running("sleep");

    let made = new_namespaces(&[all.pid(), all_child, user_pid]);
    // unshare itself enters the new mnt, net, uts, ipc and cgroup namespaces; only its forked
    // child is in the new pid and time namespaces; the user namespace holds one sleep.
    assert_eq!(
        per_type(&made),
        NS_TYPES
            .iter()
            .map(|t| (t.to_string(), 1.0))
            .collect::<BTreeMap<_, _>>(),
        "one new namespace of each type: {made:?}"
    );
    for ((t, _), n) in &made {
        let want = match t.as_str() {
            "pid" | "time" | "user" => 1,
            _ => 2,
        };
        assert_eq!(*n, want, "{t} members per /proc: {made:?}");
    }

    let during = wait_for("the exporter to show them", Duration::from_secs(10), || {
        let m = e.metrics();
        shows_all(&m, &made).then_some(m)
    });
    for (t, inode) in made.keys() {
        let inode = inode.to_string();
        let labels = [("type", t.as_str()), ("inode", inode.as_str())];
        assert_eq!(
            during.value(
                "nsexporter_namespace_info",
                &[labels[0], labels[1], ("host", "false")]
            ),
            Some(1.0),
            "{t} {inode} is not the host's"
        );
        let start = during
            .value("nsexporter_namespace_start_time_seconds", &labels)
            .expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (now - 60.0..=now + 1.0).contains(&start),
            "{t} started {start}, now {now}"
        );
    }
    assert_eq!(
        delta(
            &counter_by_type(&during, "nsexporter_namespaces_created_total"),
            &created_before
        ),
        per_type(&made),
        "created_total rises by the number made"
    );

    all.kill();
    user.kill();
    let after = wait_for("their series to vanish", Duration::from_secs(10), || {
        let m = e.metrics();
        shows_none(&m, &made).then_some(m)
    });
    assert_eq!(
        delta(
            &counter_by_type(&after, "nsexporter_namespaces_destroyed_total"),
            &destroyed_before
        ),
        per_type(&made),
        "destroyed_total rises by the number killed"
    );
    let lifetimes: f64 = NS_TYPES
        .iter()
        .map(|t| {
            after
                .value(
                    "nsexporter_namespace_lifetime_seconds_count",
                    &[("type", t)],
                )
                .unwrap()
                - before
                    .value(
                        "nsexporter_namespace_lifetime_seconds_count",
                        &[("type", t)],
                    )
                    .unwrap()
        })
        .sum();
    assert_eq!(
        lifetimes,
        made.len() as f64,
        "one lifetime observed per destroyed namespace"
    );
}

#[test]
#[ignore = "needs root: reads the namespace links of init and the kernel threads"]
fn host_namespaces_come_from_init_or_kthreadd() {
    let _guard = serial();
    let e = live_exporter();
    let m = e.metrics();
    let init_readable = std::fs::read_link("/proc/1/ns/net").is_ok();
    let host_pid = if init_readable { 1 } else { 2 };
    let source = if init_readable { "init" } else { "kthreadd" };
    assert_eq!(
        m.value("nsexporter_host_namespaces_source", &[("source", source)]),
        Some(1.0)
    );
    for t in NS_TYPES {
        let want = ns_inode(host_pid, t).unwrap().to_string();
        let host = m.find(
            "nsexporter_namespace_info",
            &[("type", t), ("host", "true")],
        );
        assert_eq!(host.len(), 1, "{t}: {host:?}");
        assert_eq!(host[0].labels["inode"], want, "{t}");
    }
    let denied = m
        .value(
            "nsexporter_scan_errors_total",
            &[("reason", "permission_denied")],
        )
        .unwrap();
    if init_readable {
        assert_eq!(denied, 0.0);
    } else {
        // This machine's protected init: EACCES even for root, counted, and said once.
        assert!(denied >= 1.0, "PID 1's links are unreadable: {denied}");
        let log = e.stderr();
        let said: Vec<_> = log
            .lines()
            .filter(|l| l.contains("reason=permission_denied") && l.contains("level=warn"))
            .collect();
        assert_eq!(said.len(), 1, "{log}");
        assert!(said[0].contains("/proc/1/ns/"), "{}", said[0]);
    }
    // A namespace held only by kernel threads (kdevtmpfs has its own mount namespace) is the
    // kernel's, never a container's.
    let kthread_only = m
        .find(
            "nsexporter_namespace_info",
            &[("type", "mnt"), ("host", "false")],
        )
        .into_iter()
        .filter(|s| {
            let inode: u64 = s.labels["inode"].parse().unwrap();
            let members: Vec<i32> = std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&pid| ns_inode(pid, "mnt") == Some(inode))
                .collect();
            !members.is_empty()
                && members
                    .iter()
                    .all(|&pid| stat_field::<i32>(pid, 4) == Some(2))
        })
        .collect::<Vec<_>>();
    for s in &kthread_only {
        assert_eq!(s.labels["owner"], "kernel", "{s:?}");
    }
    // Everything readable is there: every process under /proc but vanished ones.
    let processes = m.value("nsexporter_processes", &[]).unwrap();
    let on_proc = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count() as f64;
    assert!(
        (processes - on_proc).abs() <= 5.0,
        "{processes} vs {on_proc}"
    );
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct LsnsRow {
    ns: u64,
    #[serde(rename = "type")]
    ns_type: String,
    nprocs: u64,
    /// None (null) for a namespace no process is in.
    pid: Option<i32>,
    user: Option<String>,
    command: Option<String>,
}

/// A row of `lsns --json` (or `nsexporter list --output json`), known by type and inode.
trait Listed: serde::de::DeserializeOwned {
    fn key(&self) -> (String, u64);
}

impl Listed for LsnsRow {
    fn key(&self) -> (String, u64) {
        (self.ns_type.clone(), self.ns)
    }
}

/// The rows of a `{"namespaces": [...]}` listing by type and inode.
fn listed<R: Listed>(json: &str) -> BTreeMap<(String, u64), R> {
    #[derive(serde::Deserialize)]
    #[serde(bound = "R: serde::de::DeserializeOwned")]
    struct Out<R> {
        namespaces: Vec<R>,
    }
    let out: Out<R> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    out.namespaces.into_iter().map(|r| (r.key(), r)).collect()
}

fn lsns_rows(json: &str) -> BTreeMap<(String, u64), LsnsRow> {
    listed(json)
}

#[test]
#[ignore = "needs root: makes namespaces with unshare(1), and lsns must see every process"]
fn list_agrees_with_lsns() {
    let _guard = serial();
    let all = Spawned::new(
        "unshare",
        &[
            "--fork",
            "--pid",
            "--mount-proc",
            "--net",
            "--uts",
            "--ipc",
            "sh",
            "-c",
            "sleep 1000 & sleep 1000 & wait",
        ],
    );
    let sh = all.child_running("sh");
    let user = Spawned::new("unshare", &["--user", "--map-root-user", "sleep", "1000"]);
    user.running("sleep");
    let pids = [all.pid(), sh, user.pid()];
    let pid_ns = ("pid".to_string(), ns_inode(sh, "pid").unwrap());
    let made = wait_for("the shell's two sleeps", Duration::from_secs(10), || {
        let made = new_namespaces(&pids);
        (made.get(&pid_ns) == Some(&3)).then_some(made)
    });
    assert_eq!(made.len(), 6, "pid mnt net uts ipc user: {made:?}");

    // The two reads are not one instant: where another test's process starts or ends between
    // them, a namespace's members differ, and both are read again (a few times at most).
    let mut disagreements = Vec::new();
    for _ in 0..5 {
        let (ok, ours, err) = run(BIN, &["list", "--output=json"]);
        assert!(ok, "{err}");
        let (ok, theirs, err) = run(
            "lsns",
            &[
                "--json",
                "--list",
                "--output",
                "NS,TYPE,NPROCS,PID,USER,COMMAND",
            ],
        );
        assert!(ok, "{err}");
        let ours = lsns_rows(&ours);
        let theirs = lsns_rows(&theirs);
        for key in made.keys() {
            let (o, t) = (&ours[key], &theirs[key]);
            assert_eq!(o, t, "nsexporter list and lsns disagree on {key:?}");
        }
        // And on every namespace both list: same members, same oldest process.
        disagreements = theirs
            .iter()
            .filter_map(|(key, t)| {
                let o = ours.get(key)?;
                ((o.nprocs, o.pid) != (t.nprocs, t.pid)).then(|| format!("{key:?}: {o:?} {t:?}"))
            })
            .collect();
        if disagreements.is_empty() {
            return;
        }
    }
    panic!("nsexporter list and lsns disagree: {disagreements:#?}");
}

#[test]
#[ignore = "needs root (unshare --net) and promtool (scripts/install-test-deps)"]
fn promtool_accepts_the_live_exposition() {
    let _guard = serial();
    let e = live_exporter();
    let _ns = Spawned::new("unshare", &["--net", "--uts", "sleep", "1000"]);
    let text = e.get("/metrics").text();
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-test-deps)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    assert!(
        text.contains("process_resident_memory_bytes "),
        "own process metrics"
    );
    assert!(text.contains("process_open_fds "));
}

/// Reads a histogram's `_count` and `_sum` and its `le` bucket for `type`.
fn lifetime_stats(m: &Metrics, t: &str, le: &str) -> (f64, f64, f64) {
    let v = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("type", t)];
        labels.extend_from_slice(extra);
        m.value(name, &labels).unwrap_or(0.0)
    };
    (
        v("nsexporter_namespace_lifetime_seconds_count", &[]),
        v("nsexporter_namespace_lifetime_seconds_sum", &[]),
        v(
            "nsexporter_namespace_lifetime_seconds_bucket",
            &[("le", le)],
        ),
    )
}

/// The churn that undercounted with inode identity: four `unshare --net --uts --ipc sleep 2.5`
/// a second at a 1 s interval. The kernel hands each freed inode to the next namespace at once,
/// so most inodes come back within an interval; kernel ids tell them apart. Every namespace
/// made is counted created and destroyed exactly once, and the lifetimes are within one
/// interval (plus a scan) of the 2.5 s they lived.
#[test]
#[ignore = "needs root: makes namespaces with unshare(1)"]
fn churn_is_counted_exactly_with_lifetimes_within_an_interval() {
    const MADE: u32 = 120;
    const TYPES: [&str; 3] = ["net", "uts", "ipc"];
    let _guard = serial();
    let e = Exporter::start(&["--scan.interval=1s"]);
    // Past the baseline scan, which counts nothing.
    let before = wait_for("a second scan", Duration::from_secs(10), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 2.0).then_some(m)
    });
    assert_eq!(
        before.value("nsexporter_namespace_identity", &[("method", "kernel_id")]),
        Some(1.0),
        "this kernel answers NS_GET_ID"
    );
    let created = counter_by_type(&before, "nsexporter_namespaces_created_total");
    let destroyed = counter_by_type(&before, "nsexporter_namespaces_destroyed_total");
    let lifetimes: Vec<_> = TYPES
        .iter()
        .map(|t| {
            let (count, sum, le2) = lifetime_stats(&before, t, "2.5");
            (count, sum, le2, lifetime_stats(&before, t, "5").2)
        })
        .collect();

    let start = std::time::Instant::now();
    let mut running: Vec<Spawned> = Vec::new();
    let mut inodes: BTreeMap<&str, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for i in 0..MADE {
        let due = start + Duration::from_millis(250 * u64::from(i));
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
        let s = Spawned::new("unshare", &["--net", "--uts", "--ipc", "sleep", "2.5"]);
        let pid = s.running("sleep");
        for t in TYPES {
            if let Some(inode) = ns_inode(pid, t) {
                inodes.entry(t).or_default().insert(inode);
            }
        }
        running.push(s);
        // Reap the ones that are done, so no zombie is left holding a pid.
        running.retain_mut(|s| !matches!(s.child.try_wait(), Ok(Some(_))));
    }
    // Let the last ones live their 2.5 s: killing them early would hide them from the scans.
    wait_for("every sleep to exit", Duration::from_secs(10), || {
        running.retain_mut(|s| !matches!(s.child.try_wait(), Ok(Some(_))));
        running.is_empty().then_some(())
    });
    // Two full scans after the last exit.
    let end_scans = e.metrics().value("nsexporter_scans_total", &[]).unwrap();
    let after = wait_for("two more scans", Duration::from_secs(10), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= end_scans + 2.0).then_some(m)
    });
    let created = delta(
        &counter_by_type(&after, "nsexporter_namespaces_created_total"),
        &created,
    );
    let destroyed = delta(
        &counter_by_type(&after, "nsexporter_namespaces_destroyed_total"),
        &destroyed,
    );
    for (i, t) in TYPES.iter().enumerate() {
        // The inodes seen right after each unshare: far fewer than the namespaces, the kernel
        // reused them.
        let distinct = inodes.get(t).map_or(0, |s| s.len());
        assert_eq!(
            created[*t],
            f64::from(MADE),
            "{t} created ({distinct} inodes)"
        );
        assert_eq!(
            destroyed[*t],
            f64::from(MADE),
            "{t} destroyed ({distinct} inodes)"
        );
        // Each lived 2.5 s and a little: measured from its first member's start to the scan
        // that missed it, it is over 2.5 s and under 2.5 s + one interval + a scan, so every
        // one falls in the (2.5, 5] bucket.
        let (count0, sum0, le2_0, le5_0) = lifetimes[i];
        let (count, sum, le2) = lifetime_stats(&after, t, "2.5");
        let (_, _, le5) = lifetime_stats(&after, t, "5");
        assert_eq!(count - count0, f64::from(MADE), "{t} lifetimes");
        assert_eq!(le2 - le2_0, 0.0, "{t}: no lifetime of 2.5 s or less");
        assert_eq!(
            le5 - le5_0,
            f64::from(MADE),
            "{t}: every lifetime 5 s or less"
        );
        let mean = (sum - sum0) / f64::from(MADE);
        eprintln!("{t}: {MADE} made under {distinct} inodes; mean lifetime {mean:.3}s");
        assert!(
            (2.5..=3.6).contains(&mean),
            "{t}: mean lifetime {mean:.3}s, lived 2.5s, interval 1s"
        );
    }
}

/// Whether this machine's cgroup hierarchies are v1 or hybrid (a v1 line in PID 1's file).
fn host_has_v1_hierarchies() -> bool {
    std::fs::read_to_string("/proc/1/cgroup")
        .unwrap()
        .lines()
        .any(|l| !l.starts_with("0::"))
}

/// A runc container as `runc spec` makes it (no cgroup namespace) in a Docker-shaped cgroup.
/// On a v1 or hybrid host, where runtimes never unshare the cgroup namespace, that is no
/// finding by default; with `host_namespace_types: [cgroup]` written out, it is.
#[test]
#[ignore = "needs root, runc and busybox-static (scripts/install-test-deps)"]
fn cgroup_sharing_follows_the_hosts_cgroup_layout() {
    use crate::support::runc::{Bundle, Container, hex_id};
    let _guard = serial();
    let id = hex_id();
    let container = Container::run(
        Bundle::busybox("cgroupns")
            .args(&["sleep", "1000"])
            .cgroups_path(&format!("/docker/{id}")),
        &id,
    );
    let v1 = host_has_v1_hierarchies();
    let ours = [("container_id", id.as_str()), ("type", "cgroup")];
    let findings = |m: &Metrics| {
        m.find(
            "nsexporter_sharing_findings_active",
            &[ours[0], ours[1], ("rule", "host_namespace")],
        )
        .len()
    };

    let defaults = live_exporter();
    let m = wait_for(
        "the container in the host's cgroup namespace",
        Duration::from_secs(10),
        || {
            let m = defaults.metrics();
            (!m.find("nsexporter_workload_host_namespace", &ours)
                .is_empty())
            .then_some(m)
        },
    );
    let layout = if v1 { "hybrid" } else { "unified" };
    assert_eq!(
        m.value("nsexporter_cgroup_layout", &[("layout", layout)]),
        Some(1.0)
    );
    // Its net namespace is its own: the container was seen, and only cgroup is shared.
    assert!(
        m.find(
            "nsexporter_workload_host_namespace",
            &[ours[0], ("type", "net")]
        )
        .is_empty()
    );
    assert_eq!(findings(&m), usize::from(!v1), "default policy");
    let log = defaults.stderr();
    let policy_line = log.lines().find(|l| l.contains("policy in force")).unwrap();
    assert_eq!(
        policy_line.contains("host_namespace_types=ipc,net,pid,uts "),
        v1,
        "{policy_line}"
    );
    drop(defaults);

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nsexporter.yaml");
    std::fs::write(&config, "policy:\n  host_namespace_types: [cgroup]\n").unwrap();
    let written = Exporter::start(&[
        "--scan.interval=200ms",
        &format!("--config.file={}", config.display()),
    ]);
    wait_for("a cgroup finding", Duration::from_secs(10), || {
        (findings(&written.metrics()) == 1).then_some(())
    });
    drop(container);
}

/// A process whose main thread left the host's network namespace and whose second thread then
/// joined it again (setns(2) moves one thread): `/proc/PID/ns/net` shows the private one.
/// Python's threads are pthreads and ctypes reaches unshare(2) and setns(2).
const THREAD_IN_HOST_NET: &str = r#"
import ctypes, os, threading, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
host = os.open("/proc/self/ns/net", os.O_RDONLY)
if libc.unshare(CLONE_NEWNET) != 0:
    raise OSError(ctypes.get_errno(), "unshare")
def join_host():
    if libc.setns(host, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    time.sleep(1000)
threading.Thread(target=join_host, daemon=True).start()
time.sleep(1000)
"#;

/// A container process's second thread in the host's network namespace is a `host_namespace`
/// net finding for that container by default (`--scan.threads=containers`), and invisible
/// with `--scan.threads=none`, as it is to lsns.
#[test]
#[ignore = "needs root: unshare(2), setns(2) and a real cgroup"]
fn a_container_thread_in_the_hosts_net_namespace_is_a_finding() {
    use crate::support::cgroup::Cgroup;
    use crate::support::runc::hex_id;
    let _guard = serial();
    let id = hex_id();
    let cgroup = Cgroup::create(&format!("/docker/{id}"));
    let python = Spawned::new("python3", &["-c", THREAD_IN_HOST_NET]);
    let pid = python.pid();
    let host_net = ns_inode(2, "net").unwrap();
    // The main thread in a private net namespace, the second in the host's.
    let tid = wait_for(
        "the second thread in the host's net namespace",
        Duration::from_secs(10),
        || {
            let main = ns_inode(pid, "net")?;
            let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            let tid = tasks
                .flatten()
                .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
                .find(|&tid| tid != pid)?;
            let link = std::fs::read_link(format!("/proc/{pid}/task/{tid}/ns/net")).ok()?;
            (main != host_net && link.to_str()? == format!("net:[{host_net}]")).then_some(tid)
        },
    );
    cgroup.add(pid);
    let net_finding = |m: &Metrics| {
        m.find(
            "nsexporter_sharing_findings_active",
            &[
                ("container_id", &id),
                ("type", "net"),
                ("rule", "host_namespace"),
            ],
        )
        .len()
    };

    let threads = live_exporter();
    wait_for(
        "a net finding from the thread",
        Duration::from_secs(10),
        || (net_finding(&threads.metrics()) == 1).then_some(()),
    );
    // The process counts as a member of the host's net namespace, as it is of its own.
    let m = threads.metrics();
    assert!(
        m.value(
            "nsexporter_namespace_processes",
            &[("type", "net"), ("inode", &host_net.to_string())]
        )
        .is_some()
    );
    drop(threads);

    let main_only = Exporter::start(&["--scan.interval=200ms", "--scan.threads=none"]);
    let m = wait_for("three scans", Duration::from_secs(10), || {
        let m = main_only.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 3.0).then_some(m)
    });
    // Seen as a container (its pid namespace is the host's), but not in the host's net.
    assert!(
        !m.find(
            "nsexporter_workload_host_namespace",
            &[("container_id", &id), ("type", "pid")]
        )
        .is_empty()
    );
    assert_eq!(
        net_finding(&m),
        0,
        "thread {tid} is not read with --scan.threads=none"
    );
    drop(main_only);
    drop(python);
}

/// A container process (private mount namespace, in the container's cgroup) forks a child
/// that enters the host's mount namespace and execs `sleep` for the seconds of the second
/// argument: what nsenter from a container does. The first argument is a file whose appearance says go.
const HOST_MOUNT_FOR_TWO_SECONDS: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
host = os.open("/proc/2/ns/mnt", os.O_RDONLY)
if libc.unshare(CLONE_NEWNS) != 0:
    raise OSError(ctypes.get_errno(), "unshare")
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
child = os.fork()
if child == 0:
    if libc.setns(host, CLONE_NEWNS) != 0:
        os._exit(1)
    os.execv("/bin/sleep", ["sleep", sys.argv[2]])
os.waitpid(child, 0)
time.sleep(1000)
"#;

/// A container (a Docker-shaped cgroup) whose process waits to send a child into the host's
/// mount namespace for `seconds`; `go` starts it. Dropped in field order: the process, then
/// the cgroup, then the file.
struct HostMountVisit {
    _python: Spawned,
    _cgroup: crate::support::cgroup::Cgroup,
    id: String,
    go: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HostMountVisit {
    fn prepare(seconds: &str) -> HostMountVisit {
        let id = crate::support::runc::hex_id();
        let cgroup = crate::support::cgroup::Cgroup::create(&format!("/docker/{id}"));
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let script = HOST_MOUNT_FOR_TWO_SECONDS;
        let python = Spawned::new("python3", &["-c", script, go.to_str().unwrap(), seconds]);
        let host_mnt = ns_inode(2, "mnt").unwrap();
        wait_for(
            "the container's own mount namespace",
            Duration::from_secs(10),
            || (ns_inode(python.pid(), "mnt")? != host_mnt).then_some(()),
        );
        cgroup.add(python.pid());
        HostMountVisit {
            _python: python,
            _cgroup: cgroup,
            id,
            go,
            _dir: dir,
        }
    }

    fn go(&self) {
        std::fs::write(&self.go, "").unwrap();
    }
}

/// Host mount findings counted so far.
fn host_mounts_counted(m: &Metrics) -> f64 {
    m.value(
        "nsexporter_sharing_findings_total",
        &[("rule", "host_mount_from_container"), ("type", "mnt")],
    )
    .unwrap_or(0.0)
}

/// With full scans a minute apart, the sweep sees a 2-second visit to the host's mount
/// namespace: the findings counter rises before the next scan, the warn line names the
/// process, and the shipped critical alert fires in a real Prometheus on the increase.
#[test]
#[ignore = "needs root: unshare(2), setns(2), a real cgroup, and prometheus"]
fn a_two_second_host_mount_between_scans_is_counted_and_pages() {
    use crate::support::prometheus::Prometheus;
    let _guard = serial();
    let visit = HostMountVisit::prepare("2");
    let id = visit.id.clone();
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=1s"]);
    let counted = host_mounts_counted;
    // Judged against what the first scan counted: another test's containers may be beside it.
    let before = counted(&e.metrics());
    let rules = manifest_dir().join("deploy/prometheus/alerts.yaml");
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", e.port)], "1s", &[&rules]);
    wait_for(
        "Prometheus to scrape the exporter",
        Duration::from_secs(30),
        || {
            (!prometheus
                .query("nsexporter_sharing_findings_total")
                .is_empty())
            .then_some(())
        },
    );

    visit.go();
    let m = wait_for(
        "the sweep to count the finding",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            (counted(&m) > before).then_some(m)
        },
    );
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "counted by a sweep, not by a scan"
    );
    let log = e.stderr();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("seen by the sweep")
                && l.contains("rule=host_mount_from_container")
                && l.contains(&id)
        })
        .collect();
    assert_eq!(said.len(), 1, "{log}");
    assert!(
        said[0].contains(&format!("container_id={id}")),
        "{}",
        said[0]
    );
    assert!(said[0].contains("comm=sleep"), "{}", said[0]);

    wait_for(
        "the critical alert to fire",
        Duration::from_secs(30),
        || {
            prometheus
                .alerts()
                .iter()
                .any(|(name, state, labels)| {
                    name == "NsexporterHostMountNamespaceFromContainer"
                        && state == "firing"
                        && labels["rule"] == "host_mount_from_container"
                        // The alert's second arm (a finding gone within 5m) has no container.
                        && labels["container_id"].as_str().is_none_or(|c| c == id)
                })
                .then_some(())
        },
    );
    drop(prometheus);
    drop(e);
    drop(visit);
}

/// With `--scan.proc-events` (this machine: root, in the host's namespaces) and no sweeps, a
/// 0.2-second visit to the host's mount namespace is counted from the kernel's exec and fork
/// events, long before the next scan.
#[test]
#[ignore = "needs root in the host's namespaces: the proc connector, setns(2), a real cgroup"]
fn a_fifth_of_a_second_host_mount_is_seen_through_process_events() {
    let _guard = serial();
    let visit = HostMountVisit::prepare("0.2");
    let e = Exporter::start(&[
        "--scan.interval=60s",
        "--scan.sweep-interval=0s",
        "--scan.proc-events=true",
    ]);
    assert!(
        e.stderr().contains("listening for process events"),
        "{}",
        e.stderr()
    );
    let counted = host_mounts_counted;
    let before = counted(&e.metrics());
    visit.go();
    let m = wait_for(
        "the events to count the finding",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            (counted(&m) > before).then_some(m)
        },
    );
    assert_eq!(m.value("nsexporter_scans_total", &[]), Some(1.0));
    assert_eq!(
        m.value("nsexporter_sweeps_total", &[]),
        None,
        "no sweeps, no sweep counter"
    );
    assert!(m.value("nsexporter_proc_events_total", &[]).unwrap() >= 1.0);
    drop(e);
    drop(visit);
}

/// The labels of `nsexporter_namespace_info` of the net namespace `inode`, and its process
/// count, if the exposition has it.
fn net_info(m: &Metrics, inode: u64) -> Option<(BTreeMap<String, String>, f64)> {
    let inode = inode.to_string();
    let id = [("type", "net"), ("inode", inode.as_str())];
    let info = m
        .find("nsexporter_namespace_info", &id)
        .first()?
        .labels
        .clone();
    Some((info, m.value("nsexporter_namespace_processes", &id)?))
}

/// Waits until the net namespace `inode` is exported held by `held_by` (or, for `None`, not
/// exported at all).
fn wait_held_by(e: &Exporter, inode: u64, held_by: Option<&str>) -> Metrics {
    wait_for(
        &format!("net:[{inode}] held by {held_by:?}"),
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            let now = net_info(&m, inode).map(|(l, _)| l["held_by"].clone());
            (now.as_deref() == held_by).then_some(m)
        },
    )
}

/// A net namespace held by an fd only: a shell opens its child's `/proc/P/ns/net`, the child
/// exits, and the fd stays with the shell's `exec sleep`. The holder, and the namespace's inode.
fn fd_holder() -> (Spawned, u64) {
    let holder = Spawned::new(
        "sh",
        &[
            "-c",
            r#"unshare --net sleep 1000 & c=$!
            while [ "$(readlink /proc/$c/ns/net)" = "$(readlink /proc/$$/ns/net)" ]; do sleep 0.05; done
            exec 7</proc/$c/ns/net; kill $c; wait $c 2>/dev/null; exec sleep 1000"#,
        ],
    );
    let held = wait_for("the fd", Duration::from_secs(10), || {
        holder.running("sleep");
        let link = std::fs::read_link(format!("/proc/{}/fd/7", holder.pid())).ok()?;
        let text = link.to_str()?.to_owned();
        text.strip_prefix("net:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    (holder, held)
}

/// Between fd passes (`--scan.fd-interval`), an fd the last pass found keeps its namespace,
/// scan after scan, while the holding process lives, and holds it no longer once that
/// process exits, though no pass has run since.
#[test]
#[ignore = "needs root: unshare(1)"]
fn an_fd_found_by_the_last_pass_holds_until_its_process_exits() {
    let _guard = serial();
    let (holder, held) = fd_holder();
    let e = Exporter::start(&["--scan.interval=200ms", "--scan.fd-interval=1h"]);
    wait_held_by(&e, held, Some("fd"));
    let scans = |m: &Metrics| m.value("nsexporter_scans_total", &[]).unwrap_or(0.0);
    let first = scans(&e.metrics());
    let m = wait_for("ten more scans", Duration::from_secs(10), || {
        let m = e.metrics();
        (scans(&m) >= first + 10.0).then_some(m)
    });
    let now = net_info(&m, held).map(|(labels, _)| labels["held_by"].clone());
    assert_eq!(now.as_deref(), Some("fd"), "no fd pass since the first");
    drop(holder);
    wait_held_by(&e, held, None);
}

/// Between fd passes, an fd the last pass found holds its namespace only while the process
/// still has it open: one that closes the fd and lives on holds it no longer, from the next
/// scan, though no pass has run since (before, it held it until the next pass, an hour here).
#[test]
#[ignore = "needs root: unshare(1)"]
fn a_closed_fd_holds_its_namespace_no_longer() {
    let _guard = serial();
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("close");
    let holder = Spawned::new(
        "sh",
        &[
            "-c",
            r#"unshare --net sleep 1000 & c=$!
            while [ "$(readlink /proc/$c/ns/net)" = "$(readlink /proc/$$/ns/net)" ]; do sleep 0.05; done
            exec 7</proc/$c/ns/net; kill $c; wait $c 2>/dev/null
            while [ ! -e "$1" ]; do sleep 0.05; done
            exec 7<&-; exec sleep 1000"#,
            "sh",
            go.to_str().unwrap(),
        ],
    );
    let held = wait_for("the fd", Duration::from_secs(10), || {
        let link = std::fs::read_link(format!("/proc/{}/fd/7", holder.pid())).ok()?;
        let text = link.to_str()?.to_owned();
        text.strip_prefix("net:[")?
            .strip_suffix(']')?
            .parse::<u64>()
            .ok()
    });
    let e = Exporter::start(&["--scan.interval=200ms", "--scan.fd-interval=1h"]);
    wait_held_by(&e, held, Some("fd"));
    std::fs::write(&go, "").unwrap();
    wait_for("the fd closed", Duration::from_secs(10), || {
        std::fs::read_link(format!("/proc/{}/fd/7", holder.pid()))
            .is_err()
            .then_some(())
    });
    wait_held_by(&e, held, None);
    drop(e);
    drop(holder);
}

/// Issue 25's flood, from one unprivileged process: uid and gid 65534, `unshare(CLONE_NEWUSER)`
/// once, then `$1` uts namespaces, each left held by an fd it keeps open (the last one it is
/// in as well).
const NAMESPACE_FLOOD: &str = r#"
import ctypes, os, resource, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWUTS = 0x10000000, 0x04000000
os.setgroups([]); os.setgid(65534); os.setuid(65534)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
if libc.unshare(CLONE_NEWUSER) != 0:
    raise OSError(ctypes.get_errno(), "unshare user")
for _ in range(int(sys.argv[1])):
    if libc.unshare(CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare uts")
    os.open("/proc/self/ns/uts", os.O_RDONLY)
time.sleep(1000)
"#;

/// An unprivileged process in a kubepods-shaped container cgroup floods the node with uts
/// namespaces held by fds (3,000 here, against a cap of 100 namespaces a workload; issue 25
/// made 19,900 and 60,148 series, see docs/performance.md): every one is counted against its
/// container, and the scrape carries at most the cap's per-namespace series of it. Its user
/// namespace and the uts namespace it is in (members) keep their series, and the kept ones it
/// only holds carry its container's labels with `owner="none"`.
#[test]
#[ignore = "needs root: a kubepods-shaped cgroup, setuid(2) to 65534, unshare(2)"]
fn a_flood_of_namespaces_held_by_fds_is_capped_and_counted_against_its_container() {
    const FLOOD: usize = 3000;
    const CAP: usize = 100;
    let _guard = serial();
    let (uid, id) = (
        crate::support::visitor::uuid(),
        crate::support::runc::hex_id(),
    );
    let cgroup =
        crate::support::cgroup::Cgroup::create(&format!("/kubepods/besteffort/pod{uid}/{id}"));
    let flood = Spawned::new("python3", &["-c", NAMESPACE_FLOOD, &FLOOD.to_string()]);
    cgroup.add(flood.pid());
    let held = || {
        let fds = std::fs::read_dir(format!("/proc/{}/fd", flood.pid())).ok()?;
        let uts = fds.flatten().filter(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy().starts_with("uts:["))
        });
        Some(uts.count())
    };
    wait_for("the flood", Duration::from_secs(10), || {
        (held()? == FLOOD).then_some(())
    });
    let e = Exporter::start(&[
        "--scan.interval=250ms",
        "--scan.fd-interval=100ms",
        "--scan.sweep-interval=0s",
        &format!("--metrics.namespaces-per-workload={CAP}"),
    ]);
    // Its user namespace and FLOOD uts namespaces; its other namespaces are the host's.
    let beyond = (FLOOD + 1 - CAP) as f64;
    let m = wait_for(
        "the flood counted against its container",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            let n = m.value(
                "nsexporter_workload_namespaces_beyond_cap",
                &[
                    ("container_id", &id),
                    ("type", "uts"),
                    ("owner", "container"),
                ],
            )?;
            (n == beyond).then_some(m)
        },
    );
    let labels = &m.find(
        "nsexporter_workload_namespaces_beyond_cap",
        &[("container_id", &id)],
    );
    assert_eq!(labels.len(), 1, "uts only");
    assert_eq!(labels[0].labels["pod_uid"], uid);
    assert!(m.value("nsexporter_workloads_over_namespace_cap", &[]) >= Some(1.0));
    // Its per-namespace series: the cap's, its two with members among them.
    let info = m.find("nsexporter_namespace_info", &[("container_id", &id)]);
    assert_eq!(info.len(), CAP);
    let owners = |owner: &str, held_by: &str| {
        info.iter()
            .filter(|s| s.labels["owner"] == owner && s.labels["held_by"] == held_by)
            .count()
    };
    assert_eq!(owners("container", "process"), 1, "its user namespace");
    assert_eq!(owners("container", "process,fd"), 1, "the uts it is in");
    assert_eq!(owners("none", "fd"), CAP - 2, "held only, counted as its");
    let inodes: Vec<&str> = info.iter().map(|s| s.labels["inode"].as_str()).collect();
    let per_namespace =
        m.0.iter()
            .filter(|s| s.name.starts_with("nsexporter_namespace_"))
            .filter(|s| {
                s.labels
                    .get("inode")
                    .is_some_and(|i| inodes.contains(&i.as_str()))
            })
            .count();
    assert!(per_namespace <= 3 * CAP, "{per_namespace}");
    let series = m.0.len();
    eprintln!(
        "{series} series in the scrape, {per_namespace} per-namespace ones of the flood's container"
    );
    drop(e);
    drop(flood);
    drop(cgroup);
}

/// A net namespace pinned by `ip netns add` is exported held by `bind_mount` at its path with
/// no process, stays one namespace while a process comes and goes, and is destroyed once by
/// `ip netns del`. One held by an fd of a process whose member exited is held by `fd`, and
/// destroyed once when the fd closes.
#[test]
#[ignore = "needs root: ip netns add, unshare(1)"]
fn namespaces_held_by_a_bind_mount_or_an_fd_are_seen_and_destroyed_once() {
    let _guard = serial();
    let e = Exporter::start(&["--scan.interval=200ms", "--scan.fd-interval=100ms"]);
    let before = wait_for("a first scan", Duration::from_secs(10), || {
        let m = e.metrics();
        m.value("nsexporter_scans_total", &[])
            .is_some_and(|n| n >= 1.0)
            .then_some(m)
    });
    let count = |m: &Metrics, name| counter_by_type(m, name)["net"];
    let created = count(&before, "nsexporter_namespaces_created_total");
    let destroyed = count(&before, "nsexporter_namespaces_destroyed_total");

    let netns = Netns::add("pin");
    let inode = netns.inode();
    let m = wait_held_by(&e, inode, Some("bind_mount"));
    let (info, processes) = net_info(&m, inode).unwrap();
    assert_eq!(processes, 0.0);
    assert_eq!(info["pinned_at"], netns.path());
    assert_eq!(info["owner"], "none");
    assert_eq!(info["userns"], ns_inode(2, "user").unwrap().to_string());
    let (ok, json, err) = run(BIN, &["list", "--type=net", "--output=json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = listed["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ns"] == inode)
        .unwrap_or_else(|| panic!("net:[{inode}] not listed: {json}"))
        .clone();
    assert_eq!(row["held_by"], "bind_mount", "{row}");
    assert_eq!(row["nsfs"], netns.path().as_str(), "{row}");
    assert_eq!(
        (row["nprocs"].as_u64(), row["pid"].is_null()),
        (Some(0), true)
    );

    // A process comes and goes: the same namespace throughout.
    let mut visitor = Spawned::new("ip", &["netns", "exec", &netns.0, "sleep", "1000"]);
    visitor.running("sleep");
    wait_held_by(&e, inode, Some("process,bind_mount"));
    visitor.kill();
    wait_held_by(&e, inode, Some("bind_mount"));
    drop(netns);
    let m = wait_held_by(&e, inode, None);
    assert_eq!(
        count(&m, "nsexporter_namespaces_created_total"),
        created + 1.0
    );
    assert_eq!(
        count(&m, "nsexporter_namespaces_destroyed_total"),
        destroyed + 1.0
    );

    // An fd: the shell opens its child's namespace, the child exits, the fd stays with sleep.
    let (holder, held) = fd_holder();
    let m = wait_held_by(&e, held, Some("fd"));
    assert_eq!(net_info(&m, held).unwrap().1, 0.0, "no process in it");
    drop(holder);
    let m = wait_held_by(&e, held, None);
    assert_eq!(
        count(&m, "nsexporter_namespaces_created_total"),
        created + 2.0
    );
    assert_eq!(
        count(&m, "nsexporter_namespaces_destroyed_total"),
        destroyed + 2.0
    );
}

#[derive(Debug, serde::Deserialize, PartialEq)]
struct Hierarchy {
    ns: u64,
    #[serde(rename = "type")]
    ns_type: String,
    pns: u64,
    ons: u64,
}

impl Listed for Hierarchy {
    fn key(&self) -> (String, u64) {
        (self.ns_type.clone(), self.ns)
    }
}

fn hierarchy(json: &str) -> BTreeMap<(String, u64), Hierarchy> {
    listed(json)
}

/// `pns` and `ons` in `list --output json` are lsns's PNS and ONS, for every namespace both
/// list, with a user and pid namespace nested in another; `list --tree parent` draws the
/// nesting.
#[test]
#[ignore = "needs root: nested user and pid namespaces with unshare(1), and lsns"]
fn parents_and_owners_agree_with_lsns_for_nested_namespaces() {
    let _guard = serial();
    let nested = Spawned::new(
        "unshare",
        &[
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "unshare",
            "--user",
            "--map-root-user",
            "--pid",
            "--fork",
            "sleep",
            "1000",
        ],
    );
    let outer = nested.child_running("unshare");
    let inner = wait_for("the inner sleep", Duration::from_secs(10), || {
        let children =
            std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).ok()?;
        let child: i32 = children.split_whitespace().next()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(child)
    });
    let ns = |pid: i32, t: &str| ns_inode(pid, t).unwrap();
    let (ok, ours, err) = run(BIN, &["list", "--output=json"]);
    assert!(ok, "{err}");
    let (ok, theirs, err) = run("lsns", &["--json", "--output", "NS,TYPE,PNS,ONS"]);
    assert!(ok, "{err}");
    let (ours, theirs) = (hierarchy(&ours), hierarchy(&theirs));
    let mut compared = 0;
    for (key, t) in &theirs {
        if let Some(o) = ours.get(key) {
            assert_eq!(o, t, "nsexporter list and lsns disagree on {key:?}");
            compared += 1;
        }
    }
    assert!(compared >= 10, "{compared} compared");
    // The nesting itself, from the kernel's links: not only agreement.
    let at = |t: &str, pid| &ours[&(t.to_string(), ns(pid, t))];
    // unshare(2) moves its caller into a new user namespace, but only its children into a
    // new pid namespace: the first unshare is in the outer user namespace, the second (its
    // child, `outer`) in the inner one and the outer pid namespace.
    let first = nested.pid();
    let host_user = ns(2, "user");
    assert_ne!(ns(first, "user"), ns(inner, "user"));
    assert_eq!(at("user", first).pns, host_user);
    assert_eq!(at("user", inner).pns, ns(first, "user"));
    assert_eq!(at("pid", inner).pns, ns(outer, "pid"));
    assert_eq!(at("pid", outer).pns, ns(2, "pid"));
    assert_eq!(at("pid", outer).ons, ns(first, "user"));
    assert_eq!(at("pid", inner).ons, ns(inner, "user"));
    assert_eq!(at("net", inner).ons, host_user, "net was never unshared");
    assert_eq!(at("uts", 2).pns, 0, "only pid and user have parents");

    let (ok, tree, err) = run(BIN, &["list", "--tree=parent", "--type=pid"]);
    assert!(ok, "{err}");
    let column = |inode: u64| {
        tree.lines()
            .enumerate()
            .find_map(|(i, l)| {
                let at = l.find(&format!("─{inode} "))?;
                Some((i, l[..at].chars().count()))
            })
            .unwrap_or_else(|| panic!("pid:[{inode}] not in the tree:\n{tree}"))
    };
    let (outer_line, outer_depth) = column(ns(outer, "pid"));
    let (inner_line, inner_depth) = column(ns(inner, "pid"));
    assert!(
        inner_line > outer_line && inner_depth > outer_depth,
        "inner not under outer:\n{tree}"
    );
}

/// The orphan count once every namespace older than the exporter is counted: the age counts
/// from when this exporter first saw a namespace, so a netns another test or runtime left
/// behind becomes an orphan one orphan age (at most 3 s in these tests) after the start, as
/// the test's own does; the baseline is taken a scan after that.
fn orphan_baseline(e: &Exporter, orphans: impl Fn(&Metrics) -> Option<f64>) -> f64 {
    wait_for("a first scan", Duration::from_secs(10), || {
        orphans(&e.metrics())
    });
    std::thread::sleep(Duration::from_millis(4500));
    orphans(&e.metrics()).unwrap()
}

/// A net namespace left bind-mounted with no process for longer than the orphan age is
/// counted as orphaned and reaches NsexporterOrphanedNamespaces in a real Prometheus; it
/// resolves when the mount goes.
#[test]
#[ignore = "needs root (ip netns add) and prometheus"]
fn an_orphaned_netns_reaches_the_alert() {
    use crate::support::prometheus::Prometheus;
    let _guard = serial();
    let e = Exporter::start(&["--scan.interval=500ms", "--namespace.orphan-age=3s"]);
    let rules = manifest_dir().join("deploy/prometheus/alerts.yaml");
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", e.port)], "1s", &[&rules]);
    let orphans = |m: &Metrics| {
        m.value(
            "nsexporter_orphaned_namespaces",
            &[("type", "net"), ("held_by", "bind_mount")],
        )
    };
    let baseline = orphan_baseline(&e, orphans);
    let netns = Netns::add("orphan");
    let young = wait_held_by(&e, netns.inode(), Some("bind_mount"));
    assert_eq!(orphans(&young), Some(baseline), "not yet 3 s old");
    let m = wait_for("the orphan", Duration::from_secs(10), || {
        let m = e.metrics();
        (orphans(&m) == Some(baseline + 1.0)).then_some(m)
    });
    let age = m
        .value(
            "nsexporter_orphaned_namespace_max_age_seconds",
            &[("type", "net"), ("held_by", "bind_mount")],
        )
        .unwrap();
    assert!(age >= 3.0, "{age}");
    wait_for("the alert to fire", Duration::from_secs(60), || {
        prometheus
            .alerts()
            .iter()
            .any(|(name, state, labels)| {
                name == "NsexporterOrphanedNamespaces"
                    && state == "firing"
                    && labels["type"] == "net"
                    && labels["held_by"] == "bind_mount"
            })
            .then_some(())
    });
    // The count is the machine's: another test's or runtime's namespace may come or go
    // meanwhile, so this one's going is one fewer than just before.
    let before = orphans(&e.metrics()).unwrap();
    drop(netns);
    wait_for("the orphan to go", Duration::from_secs(10), || {
        (orphans(&e.metrics())? <= before - 1.0).then_some(())
    });
}

/// A process that holds `own` UDP sockets made in its own network namespace (the host's) and
/// `other` made in a new one, which it has left again with nsenter(1): no process is in that
/// namespace, nothing mounts it, no nsfs fd names it; only the sockets hold it. The sockets
/// are fds 100 and up, the other namespace's after the own ones'.
struct SocketHolder {
    process: Spawned,
    /// The inode of the namespace the `other` sockets were made in, as the kernel named it
    /// while the holder was in it.
    netns: u64,
    _dir: tempfile::TempDir,
}

/// The first fd of a [`SocketHolder`]'s sockets.
const FIRST_SOCKET_FD: usize = 100;

impl SocketHolder {
    fn new(own: usize, other: usize) -> SocketHolder {
        SocketHolder::owned_by(own, other, None)
    }

    /// A holder that runs as `uid` (all its uids and gids) once back in the host's namespace.
    fn owned_by(own: usize, other: usize, uid: Option<u32>) -> SocketHolder {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("netns");
        let home = format!("/proc/{}/ns/net", std::process::id());
        // bash: dash takes single-digit fds only, and has no /dev/udp. Each fd is a UDP
        // socket connected to the discard port; nothing is sent.
        let open = r#"i=0; while [ $i -lt "$2" ]; do eval "exec $(($1 + i))<>/dev/udp/127.0.0.1/9"; i=$((i+1)); done"#;
        let inner = format!(
            r#"ip link set lo up && set -- $(({FIRST_SOCKET_FD} + $1)) "$2" "$3" "$4" "$5" && {open} &&
            readlink /proc/self/ns/net > "$3.tmp" && mv "$3.tmp" "$3" &&
            exec nsenter --net="$4" ${{5:+setpriv --reuid="$5" --regid="$5" --clear-groups}} sleep 1000"#
        );
        let outer = format!(
            r#"inner=$1; shift; set -- {FIRST_SOCKET_FD} "$@"; {open} && shift && exec unshare --net bash -c "$inner" bash "$@""#
        );
        let (own, other) = (own.to_string(), other.to_string());
        let file_arg = file.to_str().unwrap();
        let uid = uid.map(|u| u.to_string()).unwrap_or_default();
        let process = Spawned::new(
            "bash",
            &[
                "-c", &outer, "bash", &inner, &own, &other, file_arg, &home, &uid,
            ],
        );
        let netns = wait_for("the holder's sockets", Duration::from_secs(30), || {
            process.running("sleep");
            let text = std::fs::read_to_string(&file).ok()?;
            text.trim()
                .strip_prefix("net:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        });
        SocketHolder {
            process,
            netns,
            _dir: dir,
        }
    }

    fn pid(&self) -> i32 {
        self.process.pid()
    }
}

/// Whether any process on the machine is in the net namespace `inode`, or any mount of this
/// mount namespace is it, or any fd is an nsfs fd of it: what the kernel says holds it, but
/// for sockets.
fn held_but_by_sockets(inode: u64) -> Vec<String> {
    let mut found = Vec::new();
    let text = format!("net:[{inode}]");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if ns_inode(pid, "net") == Some(inode) {
            found.push(format!("process {pid}"));
        }
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == text) {
                found.push(format!("fd {}", fd.path().display()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&text))
            .map(str::to_owned),
    );
    found
}

/// util-linux's version as `lsns --version` says it, as (major, minor).
fn lsns_version() -> (u32, u32) {
    let (ok, out, err) = run("lsns", &["--version"]);
    assert!(ok, "{err}");
    let version = out.split_whitespace().last().unwrap_or_default();
    let mut parts = version.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// A net namespace that only a socket holds (a process made it there and setns'd back) is
/// exported with `held_by="socket"` and no process, with its owner asked of the kernel
/// through the socket; it is orphaned once older than the orphan age; `list` shows it, as
/// util-linux lsns 2.41+ does (Debian's older lsns cannot: then it must not list it either);
/// and it is destroyed once when the socket's holder exits.
#[test]
#[ignore = "needs root: unshare(1) and nsenter(1), pidfd_getfd(2) and SIOCGSKNS (CAP_SYS_PTRACE, CAP_NET_ADMIN)"]
fn a_network_namespace_held_only_by_a_socket_is_listed_and_orphaned() {
    let _guard = serial();
    let e = Exporter::start(&[
        "--scan.interval=200ms",
        "--scan.fd-interval=100ms",
        "--namespace.orphan-age=2s",
    ]);
    let orphans = |m: &Metrics| {
        m.value(
            "nsexporter_orphaned_namespaces",
            &[("type", "net"), ("held_by", "socket")],
        )
    };
    let baseline = orphan_baseline(&e, orphans);
    let destroyed = |m: &Metrics| {
        m.value("nsexporter_namespaces_destroyed_total", &[("type", "net")])
            .unwrap()
    };

    let holder = SocketHolder::new(0, 1);
    let (pid, inode) = (holder.pid(), holder.netns);
    // What the kernel says: the holder is back in the host's namespace, its fd is a socket,
    // and nothing but sockets holds the namespace it made.
    assert_eq!(
        ns_inode(pid, "net"),
        ns_inode(std::process::id() as i32, "net")
    );
    assert_ne!(ns_inode(pid, "net"), Some(inode));
    let socket_fd = format!("/proc/{pid}/fd/{FIRST_SOCKET_FD}");
    let link = std::fs::read_link(&socket_fd).unwrap();
    assert!(link.to_string_lossy().starts_with("socket:["), "{link:?}");
    assert_eq!(held_but_by_sockets(inode), Vec::<String>::new());

    let m = wait_held_by(&e, inode, Some("socket"));
    let (info, processes) = net_info(&m, inode).unwrap();
    assert_eq!(processes, 0.0);
    assert_eq!(info["owner"], "none");
    assert_eq!(info["pinned_at"], "");
    assert_eq!(
        info["userns"],
        ns_inode(2, "user").unwrap().to_string(),
        "the owner, asked of the kernel through the socket"
    );
    assert_eq!(orphans(&m), Some(baseline), "not yet 2 s old");
    let m = wait_for("the orphan", Duration::from_secs(10), || {
        let m = e.metrics();
        (orphans(&m) == Some(baseline + 1.0)).then_some(m)
    });
    let age = m
        .value(
            "nsexporter_orphaned_namespace_max_age_seconds",
            &[("type", "net"), ("held_by", "socket")],
        )
        .unwrap();
    assert!(age >= 2.0, "{age}");

    let (ok, json, err) = run(BIN, &["list", "--type=net", "--output=json"]);
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let row = listed["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ns"] == inode)
        .unwrap_or_else(|| panic!("net:[{inode}] not listed: {json}"))
        .clone();
    assert_eq!(row["held_by"], "socket", "{row}");
    assert_eq!(
        row["sockets"],
        serde_json::json!([format!("{pid}:{FIRST_SOCKET_FD}")])
    );
    assert_eq!(
        (row["nprocs"].as_u64(), row["pid"].is_null()),
        (Some(0), true)
    );
    let (ok, table, err) = run(BIN, &["list", "--type=net"]);
    assert!(ok, "{err}");
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&inode.to_string()))
        .unwrap_or_else(|| panic!("net:[{inode}] not in the table:\n{table}"));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        [
            &inode.to_string(),
            "net",
            "0",
            "-",
            "-",
            "socket",
            "socket",
            &format!("{pid}:{FIRST_SOCKET_FD}")
        ]
    );

    // util-linux lsns finds socket-held namespaces from 2.41 on; older ones cannot.
    let (ok, lsns, err) = run("lsns", &["--json", "--type=net", "--output=NS,NPROCS"]);
    assert!(ok, "{err}");
    let lsns: serde_json::Value = serde_json::from_str(&lsns).unwrap();
    let theirs = lsns["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ns"] == inode)
        .cloned();
    let version = lsns_version();
    if version >= (2, 41) {
        let theirs = theirs.unwrap_or_else(|| panic!("lsns {version:?} does not list it"));
        assert_eq!(theirs["nprocs"], 0, "{theirs}");
    } else {
        assert_eq!(theirs, None, "lsns {version:?} lists what it cannot see");
        eprintln!(
            "lsns {}.{} predates 2.41 and cannot list socket-held namespaces: compared with the kernel instead",
            version.0, version.1
        );
    }

    let before = destroyed(&m);
    drop(holder);
    let m = wait_held_by(&e, inode, None);
    assert_eq!(destroyed(&m), before + 1.0);
    assert_eq!(orphans(&m), Some(baseline));
}

/// The fds of this process that are sockets, by fd.
fn own_sockets() -> BTreeMap<i32, u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|fd| {
            let n = fd.file_name().to_str()?.parse().ok()?;
            let link = std::fs::read_link(fd.path()).ok()?;
            let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some((n, inode.parse().ok()?))
        })
        .collect()
}

/// How many fds this process has open.
fn own_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Process `pid` as a scan would have read it: enough for an fd pass.
fn process(pid: i32) -> nsexporter::model::Process {
    use nsexporter::model::{NsType, PerType, Process, ProcessId};
    let mut namespaces = PerType::splat(None);
    namespaces[NsType::Net] = ns_inode(pid, "net").and_then(nsexporter::model::inode);
    Process {
        id: ProcessId {
            pid,
            start_ticks: stat_field(pid, 22).unwrap(),
        },
        ppid: stat_field(pid, 4).unwrap(),
        uid: 0,
        comm: "".into(),
        namespaces,
        cgroup: None,
        thread_namespaces: Vec::new(),
    }
}

/// The fd pass asks each socket once while it lives: a second pass over the same sockets asks
/// none, and one after some closed and others opened asks only the new ones and remembers
/// only the open ones. No fd fetched from another process stays open: this process's fd
/// count is the same before and after each pass, though every pass fetches hundreds. Only a
/// socket outside its holder's own network namespace is a pin.
#[test]
#[ignore = "needs root: unshare(1) and nsenter(1), pidfd_getfd(2) and SIOCGSKNS (CAP_SYS_PTRACE, CAP_NET_ADMIN)"]
fn each_socket_is_asked_once_while_it_lives_and_no_fetched_fd_stays_open() {
    use nsexporter::model::{NamespaceId, NsType, SocketPin};
    use nsexporter::scan::ScanErrors;
    use nsexporter::scan::pins::{SocketMemo, read_fds};
    let _guard = serial();
    let holder = SocketHolder::new(0, 1);
    let mut mine: Vec<std::net::UdpSocket> = (0..300)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let me = std::process::id() as i32;
    let processes: BTreeMap<i32, _> = [me, holder.pid()]
        .into_iter()
        .map(|pid| (pid, process(pid)))
        .collect();
    let root = nsexporter::procfs::ProcFs::new("/proc")
        .open_root()
        .unwrap();
    let mut memo = SocketMemo::default();
    let pass = |memo: &mut SocketMemo| {
        let mut errors = ScanErrors::default();
        let fds = own_fds();
        let pass = read_fds(
            std::os::fd::AsFd::as_fd(&root),
            std::path::Path::new("/proc"),
            &processes,
            Some(memo),
            &mut errors,
        );
        assert_eq!(own_fds(), fds, "a fetched fd was left open");
        assert_eq!(errors.total(), 0, "{errors:?}");
        assert_eq!(pass.sockets_skipped, [0; 4], "nothing skipped as root");
        pass
    };
    let theirs = std::fs::read_link(format!("/proc/{}/fd/{FIRST_SOCKET_FD}", holder.pid()))
        .unwrap()
        .to_string_lossy()
        .trim_start_matches("socket:[")
        .trim_end_matches(']')
        .parse::<u64>()
        .unwrap();
    let pin = (
        NamespaceId {
            ns_type: NsType::Net,
            inode: holder.netns,
        },
        SocketPin {
            process: processes[&holder.pid()].id,
            fd: FIRST_SOCKET_FD as i32,
            socket: theirs,
        },
    );

    let first = pass(&mut memo);
    let open = own_sockets().len() as u64 + 1;
    assert!(open > 300, "{open}");
    assert_eq!(first.sockets_asked, open, "every socket, once");
    assert_eq!(
        first.sockets,
        [pin],
        "only the socket outside its holder's namespace"
    );
    let second = pass(&mut memo);
    assert_eq!(second.sockets_asked, 0, "all remembered");
    assert_eq!(second.sockets, [pin], "remembered, and still a pin");

    mine.truncate(200);
    mine.extend((0..20).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()));
    let third = pass(&mut memo);
    assert_eq!(third.sockets_asked, 20, "only the new ones");
    assert_eq!(
        memo.len(),
        own_sockets().len() + 1,
        "only the open ones kept"
    );
    drop(holder);
    let fourth = pass(&mut memo);
    assert_eq!((fourth.sockets_asked, fourth.sockets.len()), (0, 0));
    assert_eq!(memo.len(), own_sockets().len());
}

/// An exporter limited to 64 open files asks 2,000 sockets (1,000 in another namespace) in
/// one fd pass and finds the namespace they hold: each fetched fd is closed before the next is
/// fetched. Its fd count stays where it was, no read fails for want of an fd, and later
/// passes ask only sockets new on the machine, not the 2,000 again.
#[test]
#[ignore = "needs root: unshare(1) and nsenter(1), pidfd_getfd(2) and SIOCGSKNS (CAP_SYS_PTRACE, CAP_NET_ADMIN)"]
fn thousands_of_sockets_are_asked_within_64_open_files_and_once() {
    let _guard = serial();
    let mut e =
        Exporter::start_with_nofile(&["--scan.interval=200ms", "--scan.fd-interval=100ms"], 64);
    // Answering is not ready: on a crowded machine the first scan takes a while.
    e.wait_until("ready", |r| r.status == 200, "/readyz");
    let scans = |m: &Metrics| m.value("nsexporter_scans_total", &[]).unwrap_or(0.0);
    let queries = |m: &Metrics| {
        m.value("nsexporter_fd_scan_socket_queries_total", &[])
            .unwrap()
    };
    let emfile = |m: &Metrics| {
        m.value(
            "nsexporter_scan_errors_total",
            &[("reason", "too_many_open_files")],
        )
        .unwrap()
    };
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", e.child.id()))
            .unwrap()
            .count()
    };
    let before = wait_for("two scans", Duration::from_secs(10), || {
        let m = e.metrics();
        (scans(&m) >= 2.0).then_some(m)
    });
    let fds_before = fds();

    let holder = SocketHolder::new(1000, 1000);
    let m = wait_held_by(&e, holder.netns, Some("socket"));
    let asked = queries(&m) - queries(&before);
    assert!(asked >= 2000.0, "{asked} sockets asked");
    let settled = wait_for("ten more scans", Duration::from_secs(20), || {
        let now = e.metrics();
        (scans(&now) >= scans(&m) + 10.0).then_some(now)
    });
    let again = queries(&settled) - queries(&m);
    // Without the memo, ten passes would ask the 2,000 ten times over; what is asked is the
    // machine's new sockets (the scrapes', other tests').
    assert!(
        again < 2000.0,
        "{again} sockets asked in ten passes after the first"
    );
    assert_eq!(emfile(&settled), emfile(&before), "{}", e.stderr());
    assert_eq!(
        settled.value(
            "nsexporter_scan_failures_total",
            &[("reason", "too_many_open_files")]
        ),
        Some(0.0)
    );
    let fds_after = fds();
    assert!(
        fds_after <= fds_before + 4,
        "{fds_before} fds before, {fds_after} after"
    );
    eprintln!(
        "exporter fds: {fds_before} before, {fds_after} after; sockets asked: {asked} in the first pass, {again} in the ten after"
    );
}

/// Where the kernel will not tell a socket's namespace, the socket is skipped, counted by
/// reason in `nsexporter_fd_scan_skipped_sockets`, and the reason said once however many
/// passes meet it: an exporter without CAP_NET_ADMIN asks no socket (`no_net_admin`); one
/// whose real uid differs from the holder's, without CAP_SYS_PTRACE, can read the holder's
/// fd links (a ptrace read check on the fs uid) but is refused pidfd_getfd (an attach check
/// on the real uid): `permission_denied`. Neither sees the namespace.
#[test]
#[ignore = "needs root: unshare(1), nsenter(1) and setpriv(1) to run the exporter with fewer privileges"]
fn sockets_the_kernel_will_not_answer_for_are_counted_and_said_once() {
    let _guard = serial();
    let skipped = |m: &Metrics, reason: &str| {
        m.value("nsexporter_fd_scan_skipped_sockets", &[("reason", reason)])
            .unwrap()
    };
    let scans = |m: &Metrics| m.value("nsexporter_scans_total", &[]).unwrap_or(0.0);
    let args = ["--scan.interval=200ms", "--scan.fd-interval=100ms"];
    let cases: [(&str, &[&str], Option<u32>, &str); 2] = [
        (
            "no_net_admin",
            &[
                "setpriv",
                "--bounding-set=-net_admin",
                "--inh-caps=-net_admin",
            ],
            None,
            "SIOCGSKNS",
        ),
        (
            "permission_denied",
            &[
                "setpriv",
                "--ruid=65534",
                "--euid=4242",
                "--rgid=65534",
                "--egid=4242",
                "--clear-groups",
                "--inh-caps=+net_admin",
                "--ambient-caps=+net_admin",
            ],
            Some(4242),
            "pidfd_getfd(2) was refused",
        ),
    ];
    for (reason, wrapper, uid, said) in cases {
        let holder = SocketHolder::owned_by(0, 1, uid);
        let e = Exporter::start_under(wrapper, &args);
        let m = wait_for("ten scans", Duration::from_secs(20), || {
            let m = e.metrics();
            (scans(&m) >= 10.0).then_some(m)
        });
        assert!(skipped(&m, reason) >= 1.0, "{reason}: {}", e.stderr());
        let asked = m
            .value("nsexporter_fd_scan_socket_queries_total", &[])
            .unwrap();
        if uid.is_some() {
            // Only the holder's socket belongs to that user, but for the exporter's own: it was
            // asked, and refused.
            assert_eq!(skipped(&m, reason), 1.0, "{reason}");
            assert!(asked >= 1.0, "{reason}: {asked}");
        } else {
            assert_eq!(
                asked, 0.0,
                "{reason}: nothing is asked without CAP_NET_ADMIN"
            );
        }
        for other in [
            "other_pid_namespace",
            "no_net_admin",
            "permission_denied",
            "unsupported",
        ] {
            if other != reason {
                assert_eq!(skipped(&m, other), 0.0, "{reason}: {other}");
            }
        }
        assert_eq!(
            net_info(&m, holder.netns),
            None,
            "{reason}: a socket not asked holds nothing"
        );
        let stderr = e.stderr();
        let lines = stderr.lines().filter(|l| l.contains(said)).count();
        assert_eq!(lines, 1, "{reason}: said once in ten passes:\n{stderr}");
        assert!(stderr.contains(&format!("reason={reason}")), "{stderr}");
    }
}

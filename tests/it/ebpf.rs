//! The eBPF source (`--scan.ebpf`) on the real kernel, as root: what it sees that no sweep
//! can (a 10 ms stay in the host's network namespace), what it tells before the next scan (a
//! new namespace, a child cloned into namespaces of its own), and one line, with the sweeps
//! going on, where it cannot run (no flag, no CAP_BPF, no tracefs).
//!
//! The scans are a minute apart and the sweeps off, so that whatever is counted between
//! scans was counted from the kernel's reports. Built only with the `ebpf` feature
//! (`scripts/test` turns it on). The tests share one lock: they count on the whole machine,
//! and share tracefs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::cgroup::Cgroup;
use crate::support::pod::Pod;
use crate::support::runc::hex_id;
use crate::support::visitor::Visitor;
use crate::support::*;

static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// tracefs at /sys/kernel/tracing while the test runs: mounted here if it was not, and then
/// (only then) unmounted on drop.
pub(crate) struct Tracefs {
    mounted_here: bool,
}

impl Tracefs {
    pub(crate) fn ensure() -> Tracefs {
        let mounted = || Path::new(TRACEFS).join("events").is_dir();
        if mounted() {
            return Tracefs {
                mounted_here: false,
            };
        }
        let (ok, _, err) = run("mount", &["-t", "tracefs", "nodev", TRACEFS]);
        assert!(ok && mounted(), "mount tracefs: {err}");
        Tracefs { mounted_here: true }
    }
}

impl Drop for Tracefs {
    fn drop(&mut self) {
        if self.mounted_here {
            let _ = run("umount", &[TRACEFS]);
        }
    }
}

/// The scan loop's first scan, with the eBPF source attached (its start line said so).
fn started_with_ebpf(args: &[&str]) -> (Exporter, Metrics) {
    let mut all = vec![
        "--scan.ebpf=true",
        "--scan.interval=60s",
        "--scan.sweep-interval=0s",
    ];
    all.extend_from_slice(args);
    let e = Exporter::start(&all);
    let m = first_scan(&e);
    let log = e.stderr();
    assert!(log.contains("eBPF source attached"), "{log}");
    (e, m)
}

fn first_scan(e: &Exporter) -> Metrics {
    wait_for("the first scan", Duration::from_secs(20), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 1.0).then_some(m)
    })
}

fn changes(m: &Metrics, syscall: &str, t: &str) -> f64 {
    m.value(
        "nsexporter_ebpf_namespace_changes_total",
        &[("syscall", syscall), ("type", t)],
    )
    .unwrap_or(0.0)
}

/// The exporter's log lines of namespace changes that hold every one of `fields`.
fn changes_logged(log: &str, fields: &[String]) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("namespace change (eBPF)"))
        .filter(|l| fields.iter().all(|f| l.split(' ').any(|w| w == f)))
        .map(String::from)
        .collect()
}

/// Host-namespace findings of type net counted so far.
fn host_net(m: &Metrics) -> f64 {
    m.value(
        "nsexporter_sharing_findings_total",
        &[("rule", "host_namespace"), ("type", "net")],
    )
    .unwrap_or(0.0)
}

/// A pod `web-…` in `shop`, and a kubelet log directory (in the temporary directory) to name
/// its containers in.
fn web_pod() -> (tempfile::TempDir, std::path::PathBuf, Pod) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir(&logs).unwrap();
    (
        dir,
        logs,
        Pod::new(format!("web-{}", &hex_id()[..5]), "shop"),
    )
}

/// A process of a pod's container, 10 s old, enters the host's network namespace for 10 ms
/// and comes back: with scans a minute apart and no sweeps, the kernel's report alone counts
/// it, with its container and pod, within seconds and before the second scan, and says it
/// once.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, unshare(2), setns(2), cgroups"]
fn a_10_ms_stay_in_the_hosts_net_is_counted_with_its_container_and_pod() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let (_dir, logs, pod) = web_pod();
    let born = Instant::now();
    let visitor = Visitor::in_pod(&pod, &logs, "app", "net", 0.010);
    let (e, m) = started_with_ebpf(&[&format!("--path.kubelet-logs={}", logs.display())]);
    let before = host_net(&m);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(born.elapsed()));
    visitor.go();
    // The finding is published at the first setns; the way back may come in a later batch.
    let m = wait_for(
        "the 10 ms stay counted, there and back",
        Duration::from_secs(20),
        || {
            let m = e.metrics();
            (host_net(&m) > before && changes(&m, "setns", "net") >= 2.0).then_some(m)
        },
    );
    assert_eq!(host_net(&m), before + 1.0);
    let active = m.find(
        "nsexporter_sharing_findings_active",
        &[
            ("rule", "host_namespace"),
            ("type", "net"),
            ("container_id", &visitor.id),
            ("container", "app"),
            ("pod", &pod.name),
            ("k8s_namespace", "shop"),
        ],
    );
    assert_eq!(active.len(), 1, "active with its container and pod");
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "before the second scan"
    );
    // The stay is over: /proc shows it home, as any sweep would have.
    assert_ne!(ns_inode(visitor.pid(), "net"), ns_inode(2, "net"));
    let pid = format!("pid={}", visitor.pid());
    let host_inode = format!("namespace={}", ns_inode(2, "net").unwrap());
    let wanted = [
        pid.clone(),
        "syscall=setns".into(),
        "type=net".into(),
        host_inode,
        "host=true".into(),
        format!("container_id={}", visitor.id),
        "container=app".into(),
        format!("pod={}", pod.name),
    ];
    // The log line may reach the pipe after the metrics were published: wait for it, and give
    // a second line a second's chance to show.
    wait_for("the change logged", Duration::from_secs(10), || {
        (!changes_logged(&e.stderr(), &wanted).is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let log = e.stderr();
    let entered = changes_logged(&log, &wanted);
    assert_eq!(entered.len(), 1, "said once:\n{log}");
    let finding: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("seen by the sweep between scans")
                && l.contains(" type=net ")
                && l.contains(&visitor.id)
        })
        .collect();
    assert_eq!(finding.len(), 1, "{log}");
    assert!(
        finding[0].contains(&format!("pod={}", pod.name)),
        "{}",
        finding[0]
    );
    assert!(finding[0].contains(&pid), "{}", finding[0]);
}

/// A child of a pod's container process enters the host's network namespace and exits at
/// once, gone before `/proc` can be read: it is judged by the cgroup it was born in, its
/// parent's, and counted with its container and pod before the next scan.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, unshare(2), setns(2), cgroups"]
fn a_child_gone_before_it_is_read_is_counted_with_its_parents_container() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let (_dir, logs, pod) = web_pod();
    let visitor = Visitor::in_pod_by_a_child(&pod, &logs, "app", "net");
    let (e, m) = started_with_ebpf(&[&format!("--path.kubelet-logs={}", logs.display())]);
    let before = host_net(&m);
    visitor.go();
    let child = visitor.child();
    assert!(
        !std::path::Path::new(&format!("/proc/{child}")).exists(),
        "the child is gone"
    );
    let m = wait_for("the child's stay counted", Duration::from_secs(20), || {
        let m = e.metrics();
        (host_net(&m) > before).then_some(m)
    });
    assert_eq!(host_net(&m), before + 1.0);
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "before the second scan"
    );
    let active = m.find(
        "nsexporter_sharing_findings_active",
        &[
            ("rule", "host_namespace"),
            ("type", "net"),
            ("container_id", &visitor.id),
            ("pod", &pod.name),
        ],
    );
    assert_eq!(active.len(), 1, "active with its container and pod");
    let pid = format!("pid={child}");
    wait_for(
        "the child's finding logged",
        Duration::from_secs(10),
        || {
            e.stderr()
                .lines()
                .any(|l| {
                    l.contains("seen by the sweep between scans")
                        && l.split(' ').any(|w| w == pid)
                        && l.contains(&visitor.id)
                })
                .then_some(())
        },
    );
}

/// A child born into a runc container's pid namespace by a parent outside the container
/// (`nsenter -t <init> -p` from the host: its parent is in the host's cgroup and pid
/// namespace, as with `CLONE_PARENT` or a subreaper), in the host's network namespace, gone
/// within milliseconds (its parent `nsenter` often too): the kernel's report of its own pid
/// namespace places it in the container, so its stay is counted as the container's before
/// the next scan. Judged by its parent's cgroup, it was the host's.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, runc, cgroups"]
fn a_child_born_into_a_containers_pid_namespace_from_outside_is_the_containers() {
    use crate::support::runc::{Bundle, Container};
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let id = hex_id();
    let bundle = Bundle::busybox("born")
        .args(&["sleep", "1000"])
        .cgroups_path(&format!(
            "/kubepods/besteffort/pod{}/{id}",
            crate::support::visitor::uuid()
        ));
    let container = Container::run(bundle, &id);
    std::thread::sleep(Duration::from_millis(1100));
    let (e, m) = started_with_ebpf(&[]);
    let before = host_net(&m);
    let target = container.pid().to_string();
    let (ok, _, err) = run("nsenter", &["-t", &target, "-p", "--", "true"]);
    assert!(ok, "nsenter: {err}");
    let m = wait_for("the child's stay counted", Duration::from_secs(20), || {
        let m = e.metrics();
        (host_net(&m) > before).then_some(m)
    });
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "before the second scan"
    );
    let active = m.find(
        "nsexporter_sharing_findings_active",
        &[
            ("rule", "host_namespace"),
            ("type", "net"),
            ("container_id", &id),
        ],
    );
    assert_eq!(active.len(), 1, "the container's");
    drop(e);
    drop(container);
}

/// A container process runs `unshare --net`: its new network namespace is logged with its
/// container and pod, and counted, within seconds and before the next scan.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, unshare(2), cgroups"]
fn unshare_net_by_a_container_process_is_known_before_the_next_scan() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir(&logs).unwrap();
    let go = dir.path().join("go");
    let pod = Pod::new(format!("batch-{}", &hex_id()[..5]), "jobs");
    let id = hex_id();
    pod.log_entry(&logs, "worker", &id);
    let cgroup = Cgroup::create(&pod.cgroup(&id));
    // Its own namespaces, then into its cgroup (as a runtime), then at go: unshare --net.
    let script = r#"while [ ! -e "$1" ]; do sleep 0.05; done; exec unshare --net sleep 1000"#;
    let container = Spawned::new(
        "unshare",
        &[
            "--net",
            "--uts",
            "--ipc",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            go.to_str().unwrap(),
        ],
    );
    let pid = container.running("sh");
    cgroup.add(pid);
    let (e, m) = started_with_ebpf(&[&format!("--path.kubelet-logs={}", logs.display())]);
    let before = changes(&m, "unshare", "net");
    std::fs::write(&go, "").unwrap();
    container.running("sleep");
    let new_net = ns_inode(pid, "net").unwrap();
    let fields = [
        format!("pid={pid}"),
        "syscall=unshare".into(),
        "type=net".into(),
        format!("namespace={new_net}"),
        "host=false".into(),
        format!("container_id={id}"),
        "container=worker".into(),
        format!("pod={}", pod.name),
    ];
    let said = wait_for("the new namespace logged", Duration::from_secs(20), || {
        let said = changes_logged(&e.stderr(), &fields);
        (!said.is_empty()).then_some(said)
    });
    assert_eq!(said.len(), 1, "{said:?}");
    let m2 = e.metrics();
    assert!(changes(&m2, "unshare", "net") > before);
    assert_eq!(
        m2.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "before the next scan"
    );
    drop(m);
    drop(container);
}

/// A child of clone(CLONE_NEWUSER | CLONE_NEWNS) is reported with its new user and mount
/// namespaces.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, clone(2) with CLONE_NEWUSER"]
fn a_clone_newuser_newns_child_is_seen() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let (e, _) = started_with_ebpf(&[]);
    // The raw clone(2) (56 on x86-64: flags, stack 0 as fork), so that nothing but the flags
    // makes the child; the child prints its pid and namespaces, lives a moment and exits.
    const CLONE: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x00020000, 17
pid = libc.syscall(56, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0)
if pid == 0:
    links = [os.readlink("/proc/self/ns/" + t) for t in ("user", "mnt")]
    os.write(1, ("%d %s %s\n" % (os.getpid(), links[0], links[1])).encode())
    time.sleep(0.3)
    os._exit(0)
if pid < 0:
    raise OSError(ctypes.get_errno(), "clone")
os.waitpid(pid, 0)
"#;
    let out = Command::new("python3")
        .args(["-c", CLONE])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (child, user, mnt) = (words[0], words[1], words[2]);
    let inode = |link: &str| {
        link.split_once('[')
            .unwrap()
            .1
            .trim_end_matches(']')
            .to_string()
    };
    for (t, link) in [("user", user), ("mnt", mnt)] {
        let fields = [
            format!("pid={child}"),
            "syscall=clone".into(),
            format!("type={t}"),
            format!("namespace={}", inode(link)),
        ];
        wait_for(
            &format!("the child's {t} logged"),
            Duration::from_secs(20),
            || (!changes_logged(&e.stderr(), &fields).is_empty()).then_some(()),
        );
    }
    let m = e.metrics();
    assert!(changes(&m, "clone", "user") >= 1.0);
    assert!(changes(&m, "clone", "mnt") >= 1.0);
}

/// A child forked (no flag) after its parent unshared a pid namespace for its children shares
/// its parent's nsproxy but not its pid namespace: it is reported, with the new one.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs, unshare(2) with CLONE_NEWPID"]
fn a_fork_into_the_pid_namespace_its_parent_entered_is_seen() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let (e, _) = started_with_ebpf(&[]);
    const FORK: &str = r#"
import ctypes, os, time
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x20000000) != 0:
    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWPID)")
pid = os.fork()
if pid == 0:
    os.write(1, ("child %s\n" % os.readlink("/proc/self/ns/pid")).encode())
    # Alive long enough to be read on a loaded machine: a change of a process gone unread
    # is only counted (see pipeline::Between::judge_events).
    time.sleep(2)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", pid, flush=True)
"#;
    let out = Command::new("python3")
        .args(["-c", FORK])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |tag: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag:?} in {text:?}"))
            .trim()
            .to_string()
    };
    let (link, child) = (field("child "), field("parent "));
    let inode = link.split_once('[').unwrap().1.trim_end_matches(']');
    let fields = [
        format!("pid={child}"),
        "syscall=clone".into(),
        "type=pid".into(),
        format!("namespace={inode}"),
    ];
    wait_for(
        "the child's pid namespace logged",
        Duration::from_secs(20),
        || (!changes_logged(&e.stderr(), &fields).is_empty()).then_some(()),
    );
}

/// Least privilege: as uid 65534 with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH (tracefs) and
/// CAP_SYS_PTRACE (the scan's) alone, as the ebpf component's pod runs it, no CAP_SYS_ADMIN:
/// the source attaches, reports a change, and has given up CAP_BPF and CAP_PERFMON for good;
/// its task probes report a process's fork, exec, setuid, cgroup move and exit, and another's
/// prctl(PR_SET_NAME), with /proc's pid and start time (the reader's debug lines say them:
/// attach gives up its capabilities for good, so only a process of its own can attach).
#[test]
#[ignore = "needs root: setpriv(1) to run the exporter as uid 65534 with four capabilities"]
fn attaches_as_nobody_with_bpf_and_perfmon_and_drops_them() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let caps = "bpf,+perfmon,+dac_read_search,+sys_ptrace";
    let e = Exporter::start_under(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps=-all,+{caps}"),
            &format!("--ambient-caps=+{caps}"),
            &format!("--bounding-set=-all,+{caps}"),
        ],
        &[
            "--scan.ebpf=true",
            "--scan.interval=60s",
            "--scan.sweep-interval=0s",
            // The reader says each task report at debug.
            "--log.level=debug",
        ],
    );
    first_scan(&e);
    let log = e.stderr();
    assert!(log.contains("eBPF source attached"), "{log}");
    assert!(!log.contains("task probes did not attach"), "{log}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.child.id())).unwrap();
    let set = |name: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    // The mount-table iterator loaded, and the scan thread reads it with neither capability.
    assert!(!log.contains("mount-table"), "{log}");
    // The loader parsed no more of the kernel's BTF than the object reads: the whole, as aya
    // parses it by default, put the peak at 30 MiB (docs/performance.md), what the exporter
    // holds besides at this machine's few processes is under 15.
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    assert!(peak_kib < 22 * 1024, "VmHWM {peak_kib} kB");
    const CAP_PERFMON: u64 = 1 << 38;
    const CAP_BPF: u64 = 1 << 39;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    for name in ["CapPrm:", "CapEff:"] {
        assert_eq!(
            set(name) & (CAP_BPF | CAP_PERFMON | CAP_SYS_ADMIN),
            0,
            "{name}\n{status}"
        );
    }
    // setpriv's setresuid is a "touched" report of the task probes.
    let mut unshared = Spawned::new(
        "unshare",
        &["--uts", "setpriv", "--reuid=65534", "--", "sleep", "1000"],
    );
    let pid = unshared.running("sleep");
    let fields = [
        format!("pid={pid}"),
        "syscall=unshare".into(),
        "type=uts".into(),
        format!("namespace={}", ns_inode(pid, "uts").unwrap()),
    ];
    wait_for("the change logged", Duration::from_secs(20), || {
        (!changes_logged(&e.stderr(), &fields).is_empty()).then_some(())
    });
    // The task probes, on the same process: its fork (by this test), its exec, its setuid, a
    // move to another cgroup and its exit, each with /proc's pid and start time.
    let start_ticks = proc_start_ticks(pid);
    let cgroup = Cgroup::create(&format!("/nsexporter-tasks-{}", &hex_id()[..8]));
    cgroup.add(pid);
    let cgroup_id = unified_cgroup_id(&cgroup.path);
    unshared.kill();
    let this = format!("parent={}", std::process::id());
    let cgroup_id = format!("cgroup_id={cgroup_id}");
    for (kind, also) in [
        ("fork", Some(&this)),
        ("exec", Some(&this)),
        ("touched", Some(&cgroup_id)),
        ("exit", None),
    ] {
        let mut fields = vec![
            format!("kind={kind}"),
            format!("pid={pid}"),
            format!("start_ticks={start_ticks}"),
        ];
        fields.extend(also.cloned());
        wait_for(
            &format!("the {kind} reported"),
            Duration::from_secs(20),
            || (!tasks_logged(&e.stderr(), &fields).is_empty()).then_some(()),
        );
    }
    drop(cgroup);
    // Its setuid and its cgroup move: two reports at least.
    let touched = [
        "kind=touched".to_owned(),
        format!("pid={pid}"),
        format!("start_ticks={start_ticks}"),
    ];
    let said = tasks_logged(&e.stderr(), &touched);
    assert!(said.len() >= 2, "{said:#?}");
    // A process that names itself (prctl PR_SET_NAME), and has done nothing else to be
    // touched for.
    let rename =
        "import ctypes, time; ctypes.CDLL(None).prctl(15, b'renamed', 0, 0, 0); time.sleep(1000)";
    let mut renamed = Spawned::new("/usr/bin/python3", &["-c", rename]);
    let pid = renamed.running("renamed");
    let fields = [
        "kind=touched".to_owned(),
        format!("pid={pid}"),
        format!("start_ticks={}", proc_start_ticks(pid)),
    ];
    wait_for("the rename reported", Duration::from_secs(20), || {
        (!tasks_logged(&e.stderr(), &fields).is_empty()).then_some(())
    });
    renamed.kill();
}

/// The exporter's log lines of task reports that hold every one of `fields`.
fn tasks_logged(log: &str, fields: &[String]) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("task report (eBPF)"))
        .filter(|l| fields.iter().all(|f| l.split(' ').any(|w| w == f)))
        .map(String::from)
        .collect()
}

/// `/proc/PID/stat`'s starttime (field 22), after the comm in parentheses.
fn proc_start_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(19).unwrap().parse().unwrap()
}

/// The id the kernel gives cgroup `path` on the unified hierarchy: its directory's inode.
fn unified_cgroup_id(path: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let root = mounts
        .lines()
        .map(|l| l.split(' ').collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| f[1].to_owned())
        .expect("a cgroup2 mount");
    std::fs::metadata(Path::new(&root).join(path.trim_start_matches('/')))
        .unwrap()
        .ino()
}

/// With a ring of one page and a fork flood from every CPU, the exporter reads too slowly:
/// reports are lost, and every one lost shows as a gap in its CPU's sequence, as many as the
/// kernel counted dropped for a full ring.
#[test]
#[ignore = "needs root: eBPF (CAP_BPF, CAP_PERFMON), tracefs"]
fn a_tiny_ring_under_a_fork_flood_shows_every_loss_as_a_sequence_gap() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    // The real /proc: with a fixture tree the scan thread has nothing to read under the
    // flood, and the reader, alone on the cores, sometimes kept up with a one-page ring.
    let (e, _) = started_with_ebpf(&["--scan.ebpf-ring-buffer=4096"]);
    let t = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Two forkers a CPU for one to two seconds (to the second whole second): fork and exit,
    // no exec, as fast as a shell goes; within one second the reader sometimes kept up.
    let flood = r#"end=$(($(date +%s) + 2)); while [ "$(date +%s)" -lt $end ]; do for i in 1 2 3 4 5 6 7 8 9 10; do ( : ) & done; wait; done"#;
    let mut forkers: Vec<Spawned> = (0..2 * cpus)
        .map(|_| Spawned::new("busybox", &["sh", "-c", flood]))
        .collect();
    for f in &mut forkers {
        let _ = f.child.wait();
    }
    let lost = |m: &Metrics, reason| {
        m.value("nsexporter_ebpf_events_lost_total", &[("reason", reason)])
            .unwrap_or(0.0)
    };
    // A loss shows as a gap once the CPU's next report arrives: one fork on every CPU.
    let settled = wait_for("the losses settled", Duration::from_secs(20), || {
        for cpu in 0..cpus {
            let _ = Command::new("taskset")
                .args(["-c", &cpu.to_string(), "true"])
                .status();
        }
        std::thread::sleep(Duration::from_millis(100));
        let m = e.metrics();
        let (full, gaps) = (lost(&m, "ring_buffer_full"), lost(&m, "sequence_gap"));
        (full > 0.0 && gaps == full).then_some((full, gaps))
    });
    eprintln!(
        "ring_buffer_full {} sequence_gap {} in {:?} from the start",
        settled.0,
        settled.1,
        t.elapsed()
    );
}

/// The lines the exporter said about the eBPF source.
fn ebpf_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("scan.ebpf") || l.contains("eBPF"))
        .collect()
}

/// Scans go on: a second scan after the first.
fn scans_go_on(e: &Exporter) {
    wait_for("a second scan", Duration::from_secs(20), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 2.0).then_some(())
    });
}

/// Without the flag: nothing is loaded, nothing is said, and no eBPF family is exported.
#[test]
fn without_the_flag_nothing_is_loaded() {
    let procfs = format!("--path.procfs={}", fixture_procfs().display());
    let e = Exporter::start(&[&procfs, "--scan.interval=200ms"]);
    scans_go_on(&e);
    let text = e.get("/metrics").text();
    assert!(!text.contains("nsexporter_ebpf_"), "{text}");
    assert!(ebpf_lines(&e.stderr()).is_empty(), "{}", e.stderr());
}

/// Without CAP_BPF (and CAP_SYS_ADMIN, which would stand in for it) in the bounding set: one
/// line says which capability is missing, and the scans go on.
#[test]
#[ignore = "needs root: setpriv(1) drops CAP_BPF from a root's bounding set"]
fn without_cap_bpf_one_line_and_the_scans_go_on() {
    let _serial = serial();
    let _tracefs = Tracefs::ensure();
    let e = Exporter::start_under(
        &["setpriv", "--bounding-set=-bpf,-sys_admin"],
        &["--scan.ebpf=true", "--scan.interval=200ms"],
    );
    scans_go_on(&e);
    let log = e.stderr();
    let said = ebpf_lines(&log);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(said[0].contains("missing CAP_BPF"), "{}", said[0]);
    assert!(said[0].contains("the sweeps go on"), "{}", said[0]);
    assert!(!e.get("/metrics").text().contains("nsexporter_ebpf_"));
}

/// With tracefs unmounted (in a mount namespace of the exporter's own, so that nothing else on
/// the machine loses it): one line names tracefs, and the scans go on.
#[test]
#[ignore = "needs root: unshare(1) for a private mount namespace, umount(8)"]
fn without_tracefs_one_line_and_the_scans_go_on() {
    let _serial = serial();
    let e = Exporter::start_under(
        &[
            "unshare",
            "--mount",
            "--propagation=private",
            "sh",
            "-c",
            r#"umount -l /sys/kernel/tracing 2>/dev/null; exec "$0" "$@""#,
        ],
        &["--scan.ebpf=true", "--scan.interval=200ms"],
    );
    scans_go_on(&e);
    let log = e.stderr();
    let said = ebpf_lines(&log);
    assert_eq!(said.len(), 1, "{said:#?}");
    assert!(
        said[0].contains("tracefs is not mounted at /sys/kernel/tracing"),
        "{}",
        said[0]
    );
    assert!(!e.get("/metrics").text().contains("nsexporter_ebpf_"));
}

//! What a process inside a container, having read this code, can do to hide from it, tried on
//! the real kernel as root: call itself by a runtime's name, move in place with setns(2)
//! after the scan has seen it, hide in a flood of execs; and what real runtimes' own
//! plumbing must not trip while containers start and stop.
//!
//! Each "container" here is a process in a kubepods-shaped cgroup (on every hierarchy) with
//! namespaces of its own, made with unshare(2): exactly what attribution and the rules see of
//! a runc container's process. The tests share one lock: each counts findings on the whole
//! machine.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::cgroup::Cgroup;
use crate::support::runc::{Bundle, Container, hex_id};
use crate::support::visitor::{Visitor, uuid};
use crate::support::*;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn counted(m: &Metrics, rule: &str, t: &str) -> f64 {
    m.value(
        "nsexporter_sharing_findings_total",
        &[("rule", rule), ("type", t)],
    )
    .unwrap_or(0.0)
}

fn active(m: &Metrics, id: &str, rule: &str, t: &str) -> bool {
    !m.find(
        "nsexporter_sharing_findings_active",
        &[("container_id", id), ("rule", rule), ("type", t)],
    )
    .is_empty()
}

/// The log lines of findings seen between scans that name `id`.
fn said_between_scans(log: &str, id: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("seen by the sweep") && l.contains(&format!("container_id={id}")))
        .map(String::from)
        .collect()
}

/// Every name a runtime's process goes by, taken by a payload: none exempts it. Already in the
/// host's pid namespace (a finding of the first scan), each joins the host's mount and net
/// namespaces between scans a minute apart: both counted by the next sweep, and logged once
/// with the forged name.
#[test]
#[ignore = "needs root: unshare(2), setns(2), prctl(2) and real cgroups"]
fn a_runtimes_name_exempts_a_payload_from_nothing() {
    let _guard = serial();
    const NAMES: [&str; 7] = [
        "runc",
        "runc init",
        "runc:[2:INIT]",
        "conmon",
        "containerd-shim",
        "pause",
        "catatonit",
    ];
    let visitors: Vec<Visitor> = NAMES
        .iter()
        .map(|n| Visitor::prepare(n, "mnt,net", -1.0))
        .collect();
    // Old enough that no rule could take them for a runtime setting up: their parent is this
    // test anyway, not a runtime.
    std::thread::sleep(Duration::from_millis(1100));
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=1s"]);
    let m = wait_for("the first scan", Duration::from_secs(10), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 1.0).then_some(m)
    });
    for v in &visitors {
        assert!(
            active(&m, &v.id, "host_namespace", "pid"),
            "{} in the host's pid namespace",
            v.id
        );
    }
    // The counters are the machine's: compared with what they were, and each container's
    // own series and line say it was this one.
    let (mounts, nets) = (
        counted(&m, "host_mount_from_container", "mnt"),
        counted(&m, "host_namespace", "net"),
    );
    for v in &visitors {
        assert!(!active(&m, &v.id, "host_mount_from_container", "mnt"));
        assert!(!active(&m, &v.id, "host_namespace", "net"));
    }

    let sweeps_at_go = m.value("nsexporter_sweeps_total", &[]).unwrap();
    for v in &visitors {
        v.go();
    }
    let n = NAMES.len() as f64;
    let m = wait_for("the sweep to count them", Duration::from_secs(10), || {
        let m = e.metrics();
        visitors
            .iter()
            .all(|v| {
                active(&m, &v.id, "host_mount_from_container", "mnt")
                    && active(&m, &v.id, "host_namespace", "net")
            })
            .then_some(m)
    });
    assert!(counted(&m, "host_mount_from_container", "mnt") >= mounts + n);
    assert!(counted(&m, "host_namespace", "net") >= nets + n);
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "by sweeps"
    );
    let sweeps = m.value("nsexporter_sweeps_total", &[]).unwrap() - sweeps_at_go;
    eprintln!("counted {sweeps} sweeps after go");
    assert!(sweeps <= 3.0, "{sweeps} sweeps after go");
    let log = e.stderr();
    for (v, name) in visitors.iter().zip(NAMES) {
        // Active at once, not only at the next scan.
        assert!(active(&m, &v.id, "host_mount_from_container", "mnt"));
        assert!(active(&m, &v.id, "host_namespace", "net"));
        let said = said_between_scans(&log, &v.id);
        assert_eq!(said.len(), 2, "mnt and net, once each: {said:?}");
        for line in &said {
            assert!(line.contains(&format!("pid={}", v.pid())), "{line}");
            let comm = if name.contains(' ') {
                format!("comm=\"{name}\"")
            } else {
                format!("comm={name}")
            };
            assert!(line.contains(&comm), "{comm} in {line}");
        }
    }
    drop(e);
    drop(visitors);
}

/// A container process that has lived five seconds in its own namespaces spends 1.5 s in the
/// host's net namespace and goes back: with scans a minute apart, the sweeps' in-place
/// re-check counts it, with its container, before the next scan. `after_scan`: the process
/// starts after the exporter's first scan, so that only sweeps ever read it before it moves.
fn a_stay_in_the_hosts_net_namespace_is_counted(after_scan: bool) {
    let _guard = serial();
    let before = (!after_scan).then(|| Visitor::prepare("app", "net", 1.5));
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=1s"]);
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    let visitor = before.unwrap_or_else(|| Visitor::prepare("app", "net", 1.5));
    std::thread::sleep(Duration::from_secs(5));
    // The counter is the machine's: compared with what it was, and the container's own
    // series and log line say it was this one.
    let m = e.metrics();
    let before = counted(&m, "host_namespace", "net");
    assert!(!active(&m, &visitor.id, "host_namespace", "net"));
    let went = Instant::now();
    visitor.go();
    let m = wait_for("the re-check to count it", Duration::from_secs(10), || {
        let m = e.metrics();
        active(&m, &visitor.id, "host_namespace", "net").then_some(m)
    });
    eprintln!("counted {:?} after it went", went.elapsed());
    assert!(counted(&m, "host_namespace", "net") > before);
    assert_eq!(m.value("nsexporter_scans_total", &[]), Some(1.0));
    assert!(
        m.value("nsexporter_sweep_rechecked_processes_total", &[])
            .unwrap()
            >= 1.0
    );
    // (Born after the scan, it is also seen in the host's pid namespace by a sweep.)
    let said: Vec<String> = said_between_scans(&e.stderr(), &visitor.id)
        .into_iter()
        .filter(|l| l.contains("type=net"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("comm=app"), "{}", said[0]);
    // Back home: no more findings, however many sweeps pass.
    wait_for("it to go back", Duration::from_secs(10), || {
        (ns_inode(visitor.pid(), "net")? != ns_inode(2, "net")?).then_some(())
    });
    let sweeps = e.metrics().value("nsexporter_sweeps_total", &[]).unwrap();
    wait_for("three more sweeps", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_sweeps_total", &[])? >= sweeps + 3.0).then_some(())
    });
    let said = said_between_scans(&e.stderr(), &visitor.id);
    assert_eq!(
        said.iter().filter(|l| l.contains("type=net")).count(),
        1,
        "{said:?}"
    );
    drop(e);
    drop(visitor);
}

#[test]
#[ignore = "needs root: unshare(2), setns(2) and real cgroups"]
fn a_stay_of_a_second_and_a_half_in_the_hosts_net_namespace_is_counted() {
    a_stay_in_the_hosts_net_namespace_is_counted(false);
}

#[test]
#[ignore = "needs root: unshare(2), setns(2) and real cgroups"]
fn a_stay_by_a_process_only_sweeps_have_read_is_counted() {
    a_stay_in_the_hosts_net_namespace_is_counted(true);
}

/// Cgroup leaves a container makes below its own, then a move into one and a stay in the
/// host's mount and net namespaces between scans a minute apart: a leaf named like CRI-O's
/// monitor exempts nothing, and a leaf named like pod B's container frames nothing. Both
/// stays are counted by the next sweep on the container that made the leaf; pod B, in its
/// own namespaces throughout, has no finding.
#[test]
#[ignore = "needs root: unshare(2), setns(2) and real cgroups"]
fn cgroup_leaves_a_container_makes_neither_hide_it_nor_frame_another() {
    let _guard = serial();
    let monitor = Visitor::prepare("app", "mnt,net", -1.0);
    let framer = Visitor::prepare("app", "mnt,net", -1.0);
    let innocent = Visitor::prepare("app", "net", -1.0);
    let innocent_pod = innocent.cgroup.path.rsplit('/').nth(1).unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=1s"]);
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    let leaves = [
        Cgroup::create(&format!(
            "{}/crio-conmon-{}.scope",
            monitor.cgroup.path,
            hex_id()
        )),
        Cgroup::create(&format!(
            "{}/kubepods/besteffort/{innocent_pod}/{}",
            framer.cgroup.path, innocent.id
        )),
    ];
    leaves[0].add(monitor.pid());
    leaves[1].add(framer.pid());
    let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let m = e.metrics();
        let innocent_had = |m: &Metrics| {
            m.find(
                "nsexporter_sharing_findings_active",
                &[("container_id", &innocent.id)],
            )
            .len()
        };
        let standing = innocent_had(&m);
        monitor.go();
        framer.go();
        let m = wait_for("the sweep to count both", Duration::from_secs(10), || {
            let m = e.metrics();
            [&monitor, &framer]
                .iter()
                .all(|v| {
                    active(&m, &v.id, "host_mount_from_container", "mnt")
                        && active(&m, &v.id, "host_namespace", "net")
                })
                .then_some(m)
        });
        assert_eq!(
            m.value("nsexporter_scans_total", &[]),
            Some(1.0),
            "by sweeps"
        );
        // Pod B's standing finding (its pid namespace is the host's) and nothing more.
        assert_eq!(innocent_had(&m), standing, "pod B framed");
        assert!(!active(&m, &innocent.id, "host_namespace", "net"));
        assert!(!active(
            &m,
            &innocent.id,
            "host_mount_from_container",
            "mnt"
        ));
    }));
    // The processes go before their leaves, and the leaves before the containers' cgroups,
    // whatever the outcome.
    let (monitor_process, framer_process) = (monitor.process, framer.process);
    drop((monitor_process, framer_process));
    drop(leaves);
    drop(e);
    if let Err(panic) = judged {
        std::panic::resume_unwind(panic);
    }
}

/// The init of a runc container (its own pid namespace, a kubepods cgroup, CAP_SYS_ADMIN, the
/// host's cgroup tree and procfs mounted) forks a child that writes itself into the root cgroup
/// of every hierarchy and joins the host's mount and net namespaces, between scans a minute
/// apart. The next sweep counts the move and both host namespaces on the container, by its
/// id; an exporter started only afterwards, which never read the child in its
/// container's cgroup, places it by its pid namespace all the same.
#[test]
#[ignore = "needs root: runc, setns(2) and real cgroups"]
fn a_process_that_leaves_its_containers_cgroup_stays_its_containers() {
    let _guard = serial();
    let go = tempfile::tempdir().unwrap();
    let (id, pod) = (hex_id(), uuid());
    // The process that moves is forked after go: a sweep that reads it before it has left
    // every hierarchy places it by its own history, one after by its pid namespace.
    let script = "(while [ ! -e /go/go ]; do sleep 0.05; done; \
                  sh -c 'for f in /hostcg/*/cgroup.procs; do echo 0 > $f; done; \
                  exec nsenter --net=/hostproc/2/ns/net --mount=/hostproc/2/ns/mnt sleep 1000') & wait";
    let bundle = Bundle::busybox("escape")
        .args(&["sh", "-c", script])
        .capabilities(&[
            "CAP_SYS_ADMIN",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_KILL",
        ])
        .bind_mount("/sys/fs/cgroup", "/hostcg", false)
        // The host's procfs, for kthreadd's namespaces: a mount namespace cannot be bound
        // into a newer one (the kernel refuses the loop), a path through procfs can be.
        .bind_mount("/proc", "/hostproc", true)
        .bind_mount(go.path().to_str().unwrap(), "/go", true)
        .cgroups_path(&format!("/kubepods/besteffort/pod{pod}/{id}"));
    let container = Container::run(bundle, &id);
    std::thread::sleep(Duration::from_millis(1100));
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=1s"]);
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    assert!(!active(
        &e.metrics(),
        &id,
        "left_container_cgroup",
        "cgroup"
    ));
    std::fs::write(go.path().join("go"), "").unwrap();
    let in_host = |m: &Metrics| {
        active(m, &id, "left_container_cgroup", "cgroup")
            && active(m, &id, "host_mount_from_container", "mnt")
            && active(m, &id, "host_namespace", "net")
    };
    let m = wait_for(
        "the sweep to count the move",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            in_host(&m).then_some(m)
        },
    );
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "by sweeps"
    );
    drop(e);
    // A fresh exporter: only the pid namespace says where the child belongs.
    let e = Exporter::start(&["--scan.interval=60s"]);
    let m = wait_for(
        "a fresh exporter's first scan",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            (m.value("nsexporter_scans_total", &[])? >= 1.0).then_some(m)
        },
    );
    assert!(
        in_host(&m),
        "{:?}",
        m.find(
            "nsexporter_sharing_findings_active",
            &[("container_id", &id)]
        )
    );
    drop(e);
    drop(container);
}

/// 20,000 execs in about half a minute, with process events on and sweeps every second: the
/// sweep counter rises on /metrics every two seconds throughout (it is published after each
/// sweep, and the events do not hold the sweeps off), a two-second host mount in the middle
/// of the flood is counted, and what the event queue dropped is counted rather than lost.
#[test]
#[ignore = "needs root in the host's namespaces: the proc connector, setns(2), real cgroups"]
fn a_flood_of_execs_holds_off_neither_the_sweeps_nor_a_finding() {
    let _guard = serial();
    let visitor = Visitor::prepare("app", "mnt", 2.0);
    let e = Exporter::start(&[
        "--scan.interval=60s",
        "--scan.sweep-interval=1s",
        "--scan.proc-events=true",
    ]);
    assert!(
        e.stderr().contains("listening for process events"),
        "{}",
        e.stderr()
    );
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    // Two shells exec'ing as fast as they can, one per core, until the visit is over and three
    // more sweeps were due: a flood bounded by time, not by a count, so that on a loaded
    // machine it does not take a minute of both cores from the tests beside it.
    let stop = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    std::fs::remove_file(&stop).unwrap();
    let flood = format!("while [ ! -e {} ]; do /bin/true; done", stop.display());
    let floods = [
        Spawned::new("sh", &["-c", &flood]),
        Spawned::new("sh", &["-c", &flood]),
    ];
    let started = Instant::now();
    let mut sweeps = Vec::new();
    let mut went = false;
    while floods
        .iter()
        .any(|f| Path::new(&format!("/proc/{}", f.pid())).exists() && !zombie(f.pid()))
        && started.elapsed() < Duration::from_secs(60)
    {
        if !went && started.elapsed() > Duration::from_secs(4) {
            visitor.go();
            went = true;
        }
        if started.elapsed() > Duration::from_secs(12) {
            std::fs::write(&stop, b"").unwrap();
        }
        sweeps.push(e.metrics().value("nsexporter_sweeps_total", &[]).unwrap());
        std::thread::sleep(Duration::from_secs(2));
    }
    let flood_took = started.elapsed();
    let m = e.metrics();
    let events = m.value("nsexporter_proc_events_total", &[]).unwrap();
    let dropped = |reason| {
        m.value(
            "nsexporter_proc_events_dropped_total",
            &[("reason", reason)],
        )
        .unwrap()
    };
    eprintln!(
        "flood took {flood_took:?}; {events} events judged, {} dropped (queue full), {} kernel overruns; sweeps every 2 s: {sweeps:?}",
        dropped("queue_full"),
        dropped("kernel_overrun")
    );
    assert!(went, "the flood ended before the visit");
    assert!(sweeps.len() >= 3, "{sweeps:?}");
    for pair in sweeps.windows(2) {
        assert!(pair[1] > pair[0], "no sweep published in 2 s: {sweeps:?}");
    }
    assert!(events >= 1000.0, "{events}");
    // Its own finding, once: other tests' containers share this machine (a scoped lane), so
    // the machine-wide counter is not the visitor's alone.
    let id = visitor.id.clone();
    wait_for("the host mount found", Duration::from_secs(30), || {
        active(&e.metrics(), &id, "host_mount_from_container", "mnt").then_some(())
    });
    let said: Vec<String> = said_between_scans(&e.stderr(), &id)
        .into_iter()
        .filter(|l| l.contains("host_mount_from_container"))
        .collect();
    assert_eq!(said.len(), 1, "{said:?}\n{}", e.stderr());
    assert_eq!(e.metrics().value("nsexporter_scans_total", &[]), Some(1.0));
    drop(floods);
    drop(e);
    drop(visitor);
}

/// Whether `pid` is a zombie (exited, not yet reaped).
fn zombie(pid: i32) -> bool {
    stat_field::<String>(pid, 3).is_some_and(|s| s == "Z")
}

/// This machine's PID 1 is protected: its namespace links are EACCES even for root. That is
/// how the node is built, not news: counted once, and standing since, so the counter that
/// NsexporterScanErrorsRising watches stays flat from scan to scan.
#[test]
#[ignore = "needs root on a machine whose PID 1 refuses its ns links (this one)"]
fn a_protected_init_is_counted_once_and_then_standing() {
    if std::fs::read_link("/proc/1/ns/net").is_ok() {
        eprintln!("PID 1's links are readable here: nothing to show");
        return;
    }
    let e = Exporter::start(&["--scan.interval=200ms"]);
    let denied = |m: &Metrics| {
        (
            m.value(
                "nsexporter_scan_errors_total",
                &[("reason", "permission_denied")],
            ),
            m.value(
                "nsexporter_scan_errors_standing",
                &[("reason", "permission_denied")],
            ),
        )
    };
    let first = wait_for("two scans", Duration::from_secs(10), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 2.0).then_some(m)
    });
    let (total, standing) = denied(&first);
    assert!(total.unwrap() >= 1.0, "{total:?}");
    assert!(standing.unwrap() >= 1.0, "{standing:?}");
    let later = wait_for("ten scans", Duration::from_secs(20), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= 10.0).then_some(m)
    });
    // Other processes may come and go refused meanwhile; PID 1 alone adds nothing.
    assert_eq!(denied(&later).0, total, "no rise from scan to scan");
    assert_eq!(
        later.value(
            "nsexporter_host_namespaces_source",
            &[("source", "kthreadd")]
        ),
        Some(1.0),
        "the host's namespaces are kthreadd's: what the denial means"
    );
    // Said once: other processes' errors (one vanishing as it is read) are other reasons.
    let log = e.stderr();
    let warned = log
        .lines()
        .filter(|l| l.contains("scan errors") && l.contains("reason=permission_denied"))
        .count();
    assert_eq!(warned, 1, "said once: {log}");
}

/// Real runtimes' plumbing (runc's stages, runc exec's init, conmon, the shims) sits in a
/// container's cgroup before it is in the container's namespaces: told apart by facts, none of
/// it may be a finding. A hundred containers started and stopped by runc (in kubepods
/// cgroups), Docker and Podman, the three engines at once, with process events and sweeps ten
/// times a second to catch every moment of their setup, and an exec into each runc container.
#[test]
#[ignore = "needs root, runc, docker.io, podman and busybox-static (scripts/install-test-deps)"]
fn a_hundred_real_containers_start_and_stop_without_a_finding() {
    use crate::support::engines::with_busybox;
    use crate::support::runc::{Bundle, Container};
    let _guard = serial();
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let (docker, podman) = with_busybox(work.path());
    let e = Exporter::start(&[
        "--scan.interval=1s",
        "--scan.sweep-interval=100ms",
        "--scan.proc-events=true",
    ]);
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    // Every container this test makes, by id: what else runs on the machine is not judged here.
    // runc's, Docker's and Podman's are made at the same time, each engine's one after
    // another, so that their plumbing also overlaps.
    let mut ids: Vec<String> = Vec::new();
    let engine = |each: &(dyn Fn(&[&str]) -> String + Sync), rm: &[&str]| {
        (0..33)
            .map(|i| {
                let name = format!("nsx-plumbing-{i}");
                let run = [
                    "run",
                    "--detach",
                    "--network",
                    "none",
                    "--name",
                    &name,
                    "nsx-busybox",
                    "sleep",
                    "1000",
                ];
                let id = each(&run);
                each(&[rm, &[name.as_str()]].concat());
                id
            })
            .collect::<Vec<String>>()
    };
    std::thread::scope(|s| {
        let runc = s.spawn(|| {
            (0..34)
                .map(|i| {
                    let id = hex_id();
                    let bundle = Bundle::busybox(&format!("nsx-plumbing-{i}"))
                        .args(&["sleep", "1000"])
                        .cgroups_path(&format!("/kubepods/besteffort/pod{}/{id}", uuid()));
                    let container = Container::run(bundle, &id);
                    container.exec(&["true"]);
                    container.remove();
                    id
                })
                .collect::<Vec<String>>()
        });
        let docker = s.spawn(|| engine(&|a| docker.docker(a), &["rm", "--force"]));
        let podman = s.spawn(|| engine(&|a| podman.podman(a), &["rm", "--force", "--time", "0"]));
        for made in [runc, docker, podman] {
            ids.extend(made.join().expect("a maker panicked"));
        }
    });
    // What was read while they ran: the events and sweeps saw their plumbing.
    let scans = e.metrics().value("nsexporter_scans_total", &[]).unwrap();
    let m = wait_for("two more scans", Duration::from_secs(10), || {
        let m = e.metrics();
        (m.value("nsexporter_scans_total", &[])? >= scans + 2.0).then_some(m)
    });
    // Each finding is logged once, at warn, with its container: none may be one of these.
    assert_eq!(ids.len(), 100);
    assert!(ids.iter().all(|id| id.len() == 64), "{ids:?}");
    let log = e.stderr();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("unexpected namespace sharing"))
        .filter(|l| {
            ids.iter()
                .any(|id| l.contains(&format!("container_id={id}")))
        })
        .collect();
    eprintln!(
        "100 containers in {:?}; {} processes read between scans, {} events",
        started.elapsed(),
        m.value("nsexporter_sweep_processes_total", &[])
            .unwrap_or(0.0),
        m.value("nsexporter_proc_events_total", &[]).unwrap_or(0.0)
    );
    assert!(said.is_empty(), "{said:#?}");
    // Nor a privilege finding: a default container's processes, the runc `exec` among them
    // (read, as its parent is outside the container), hold no more than their spec and first
    // process.
    let privilege: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rule=privilege_exceeds_declared"))
        .filter(|l| ids.iter().any(|id| l.contains(id.as_str())))
        .collect();
    assert!(privilege.is_empty(), "{privilege:#?}");
    assert!(m.value("nsexporter_sweep_processes_total", &[]).unwrap() > 100.0);
    drop(e);
}

/// A process for the sweeps' round-robin re-reads: unshares mount, net, uts and ipc, starts a
/// second thread, and waits for the file `argv[1]`. Then `argv[3]` (`thread`: the second
/// thread alone; `main`: the main thread) joins the host's net namespace (kthreadd's), writes
/// its tid to `argv[1]`.in, stays `argv[2]` seconds, goes back to its own and writes
/// `argv[1]`.back.
const STAYER: &str = r#"
import ctypes, os, sys, threading, time
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWNET, NEWUTS, NEWIPC = 0x00020000, 0x40000000, 0x04000000, 0x08000000
def check(r, what):
    if r != 0:
        raise OSError(ctypes.get_errno(), what)
go, stay, who = sys.argv[1], float(sys.argv[2]), sys.argv[3]
host = os.open("/proc/2/ns/net", os.O_RDONLY)
check(libc.unshare(NEWNS | NEWNET | NEWUTS | NEWIPC), "unshare")
own = os.open("/proc/self/ns/net", os.O_RDONLY)
def visit():
    while not os.path.exists(go):
        time.sleep(0.01)
    check(libc.setns(host, NEWNET), "setns")
    with open(go + ".in", "w") as f:
        f.write(str(threading.get_native_id()))
    time.sleep(stay)
    check(libc.setns(own, NEWNET), "setns back")
    open(go + ".back", "w").close()
def wait():
    time.sleep(1000)
second = threading.Thread(target=visit if who == "thread" else wait, daemon=True)
second.start()
if who == "main":
    visit()
time.sleep(1000)
"#;

/// A process running [`STAYER`], with a kubepods-shaped cgroup made for it. Dropped in field
/// order: the process, then the cgroup, then the go file.
struct Stayer {
    process: Spawned,
    cgroup: crate::support::cgroup::Cgroup,
    id: String,
    go: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Stayer {
    /// At go, `who` (`thread` or `main`) stays `stay` seconds in the host's net namespace.
    /// Returns once the process is in its own namespaces with its second thread; in its
    /// container's cgroup where `contained`, in this test's (the host's, to attribution)
    /// otherwise.
    fn new(who: &str, stay: f64, contained: bool) -> Stayer {
        let id = hex_id();
        let cgroup = crate::support::cgroup::Cgroup::create(&format!(
            "/kubepods/besteffort/pod{}/{id}",
            uuid()
        ));
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let stay = stay.to_string();
        let process = Spawned::new("python3", &["-c", STAYER, go.to_str().unwrap(), &stay, who]);
        let pid = process.pid();
        let host_net = ns_inode(2, "net").unwrap();
        wait_for(
            "the stayer in its own namespaces, with two threads",
            Duration::from_secs(10),
            || {
                let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count();
                (ns_inode(pid, "net")? != host_net && threads == 2).then_some(())
            },
        );
        if contained {
            cgroup.add(pid);
        }
        Stayer {
            process,
            cgroup,
            id,
            go,
            _dir: dir,
        }
    }

    fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Goes, and returns once the visitor is in the host's namespace, with its tid.
    fn go(&self) -> i32 {
        std::fs::write(&self.go, "").unwrap();
        let file = self.go.with_extension("in");
        wait_for("the visit to begin", Duration::from_secs(10), || {
            std::fs::read_to_string(&file).ok()?.parse().ok()
        })
    }

    /// Whether the visitor is back in its own namespace.
    fn back(&self) -> bool {
        self.go.with_extension("back").exists()
    }
}

/// The exporter as the round-robin tests run it: scans a minute apart (out of the way), sweeps
/// five times a second, no eBPF and no process events; returns once the first scan is in.
fn sweeping_exporter() -> Exporter {
    let e = Exporter::start(&["--scan.interval=60s", "--scan.sweep-interval=200ms"]);
    wait_for("the first scan", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_scans_total", &[])? >= 1.0).then_some(())
    });
    e
}

/// A container process's second thread alone spends a second in the host's net namespace and
/// goes back, between two scans a minute apart, without eBPF: the sweeps' round of threads
/// counts it, with its container, and says it once, with its process.
#[test]
#[ignore = "needs root: unshare(2), setns(2) and real cgroups"]
fn a_threads_stay_in_the_hosts_net_namespace_is_counted_without_ebpf() {
    let _guard = serial();
    let stayer = Stayer::new("thread", 1.0, true);
    let e = sweeping_exporter();
    let m = e.metrics();
    let before = counted(&m, "host_namespace", "net");
    assert!(!active(&m, &stayer.id, "host_namespace", "net"));
    let went = Instant::now();
    let tid = stayer.go();
    assert_ne!(tid, stayer.pid(), "the second thread went");
    assert_ne!(ns_inode(stayer.pid(), "net"), ns_inode(2, "net"));
    let m = wait_for(
        "the thread round to count it",
        Duration::from_secs(10),
        || {
            let m = e.metrics();
            active(&m, &stayer.id, "host_namespace", "net").then_some(m)
        },
    );
    eprintln!(
        "counted {:?} after it went; back already: {}",
        went.elapsed(),
        stayer.back()
    );
    assert!(counted(&m, "host_namespace", "net") > before);
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "by sweeps"
    );
    wait_for("it to go back", Duration::from_secs(10), || {
        stayer.back().then_some(())
    });
    let sweeps = e.metrics().value("nsexporter_sweeps_total", &[]).unwrap();
    wait_for("three more sweeps", Duration::from_secs(10), || {
        (e.metrics().value("nsexporter_sweeps_total", &[])? >= sweeps + 3.0).then_some(())
    });
    let said: Vec<String> = said_between_scans(&e.stderr(), &stayer.id)
        .into_iter()
        .filter(|l| l.contains("type=net"))
        .collect();
    assert_eq!(said.len(), 1, "once: {said:?}");
    assert!(
        said[0].contains(&format!("pid={}", stayer.pid())),
        "{}",
        said[0]
    );
    drop(e);
    drop(stayer);
}

/// A process the first scan read in the host's cgroup is moved into a container's, and then
/// spends a second in the host's net namespace, between two scans a minute apart: the sweeps'
/// round of other processes' cgroup files finds the move, and the re-check of containers'
/// processes then counts the stay, with that container.
#[test]
#[ignore = "needs root: unshare(2), setns(2) and real cgroups"]
fn a_process_moved_into_a_container_after_the_scan_is_watched() {
    let _guard = serial();
    let stayer = Stayer::new("main", 1.0, false);
    let e = sweeping_exporter();
    stayer.cgroup.add(stayer.pid());
    let moved = Instant::now();
    // Sweeps enough for a round of the machine's other processes, a hundred a sweep.
    let others = std::fs::read_dir("/proc").unwrap().count() as f64;
    let sweeps = e.metrics().value("nsexporter_sweeps_total", &[]).unwrap();
    wait_for("a round of cgroup files", Duration::from_secs(10), || {
        let now = e.metrics().value("nsexporter_sweeps_total", &[])?;
        (now >= sweeps + (others / 100.0).ceil() + 1.0).then_some(())
    });
    stayer.go();
    let m = wait_for("the re-check to count it", Duration::from_secs(10), || {
        let m = e.metrics();
        active(&m, &stayer.id, "host_namespace", "net").then_some(m)
    });
    eprintln!("counted {:?} after the move", moved.elapsed());
    assert_eq!(
        m.value("nsexporter_scans_total", &[]),
        Some(1.0),
        "by sweeps"
    );
    drop(e);
    drop(stayer);
}

/// A process in cgroups nine deep with names of 250 bytes, on every hierarchy: on a hybrid
/// host its `cgroup` file is past 16 KiB, and a scan holds it whole.
#[test]
#[ignore = "needs root: real cgroups"]
fn a_cgroup_file_past_16_kib_is_read_whole() {
    use nsexporter::procfs::ProcFs;
    use nsexporter::scan::{PinScan, Scanner, ThreadScan};
    let deep: Vec<String> = (0..9).map(|i| format!("{i}{}", "d".repeat(249))).collect();
    let cgroup =
        crate::support::cgroup::Cgroup::create(&format!("/nsx-{}/{}", hex_id(), deep.join("/")));
    let process = Spawned::new("sleep", &["30"]);
    cgroup.add(process.pid());
    let file = std::fs::read(format!("/proc/{}/cgroup", process.pid())).unwrap();
    if file.len() <= 16 * 1024 {
        eprintln!(
            "{} bytes: too few hierarchies here for a file past 16 KiB",
            file.len()
        );
        return;
    }
    let pins = PinScan {
        mounts: false,
        fds: None,
    };
    let mut scanner = Scanner::new(ProcFs::new("/proc"), ThreadScan::None, pins);
    let outcome = scanner.scan(None).expect("scan");
    let read = outcome.snapshot.processes[&process.pid()]
        .cgroup
        .clone()
        .expect("read");
    eprintln!("{} bytes", read.len());
    assert_eq!(*read, *file);
    drop(process);
    drop(cgroup);
}

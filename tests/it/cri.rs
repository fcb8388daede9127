//! Declared against observed under containerd 1.6's CRI plugin, driven over its gRPC socket as
//! kubelet drives it (`crate::support::cri`): a plain pod, a `hostNetwork` pod, a `hostPID` pod and a
//! pod with a shared process namespace, each a sandbox and app containers.
//!
//! Two views of the same specs: the library's judgement of a scan of the real `/proc` with the
//! specs found where the exporter finds them (every container, all 8 types: declared `new`,
//! `joined` with the namespace the path resolved to, or `host`), against a table of what
//! kubelet's requests ask for; and the binary, with `--path.run` on the private containerd's
//! `/run`-shaped dir and an empty kubelet log directory: no `undeclared_namespace` finding, the
//! declared host sharing `declared="true"`, and every container named from its annotations.

use crate::support::cri;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::support::*;
use cri::{Containerd, PodKind, containers, run_pods};
use nsexporter::declared::{Declared, Expected, SpecSources, Wanted, judge, resolve_on_host};
use nsexporter::model::NsType;

/// What kubelet's request asks of one type, and so what the spec must declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// A namespace of the container's own.
    New,
    /// Joined by path: the pod network's bind mount (the sandbox's net), resolving to it.
    JoinedOwn,
    /// Joined by `/proc/<pause pid>/ns/<type>`, resolving to the sandbox's namespace.
    JoinedSandbox,
    /// Joined by `/proc/<pause pid>/ns/<type>`, where the sandbox has the host's.
    JoinedHost,
    /// No entry: the host's.
    Host,
}

/// Whether the cgroup hierarchy is cgroup v2 alone, where containerd 1.6 gives each app
/// container a cgroup namespace; on this machine's hybrid layout it gives none.
fn unified() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The table: what `kind`'s sandbox (`sandbox`) or app container asks for, per type.
fn wanted(kind: PodKind, sandbox: bool, t: NsType) -> Want {
    use NsType::*;
    use Want::*;
    let host_net = kind == PodKind::HostNetwork;
    match (t, sandbox) {
        (Mnt, _) => New,
        (User | Time, _) => Host,
        // containerd's CRI gives an unprivileged app container a cgroup namespace on cgroup
        // v2 alone (`containerSpec`, container_create_linux.go), the sandbox none; this
        // machine is hybrid, so the v2 row is the source's word, not seen here.
        (Cgroup, true) => Host,
        (Cgroup, false) => {
            if unified() {
                New
            } else {
                Host
            }
        }
        (Ipc, true) => New,
        (Ipc, false) => JoinedSandbox,
        (Net | Uts, true) if host_net => Host,
        (Net, true) => JoinedOwn,
        (Uts, true) => New,
        (Net | Uts, false) if host_net => JoinedHost,
        (Net | Uts, false) => JoinedSandbox,
        (Pid, true) if kind == PodKind::HostPid => Host,
        (Pid, true) => New,
        (Pid, false) => match kind {
            PodKind::HostPid => JoinedHost,
            PodKind::SharedPid => JoinedSandbox,
            PodKind::Plain | PodKind::HostNetwork | PodKind::Privileged => New,
        },
    }
}

/// The host's namespace of each type: kthreadd's (PID 1 may be protected).
fn host_inode(t: NsType) -> u64 {
    ns_inode(2, t.as_str()).unwrap()
}

/// Every container's declaration, all 8 types, as the library judges a scan of the real
/// `/proc` with the specs found under the private containerd's `/run`-shaped dir: declared
/// `new` is the container's own namespace (not the host's), `joined` resolves to the sandbox's
/// namespace (or, in a `hostNetwork`/`hostPID` pod, to the host's, which the sandbox has), and
/// `host` is the host's; no finding.
#[test]
#[ignore = "needs root, containerd, runc, containernetworking-plugins, busybox-static"]
fn cri_pods_declare_every_type_right() {
    let mut c = Containerd::start();
    let pods = run_pods(&mut c);
    let all = containers(&pods);
    // Scanned as the binary scans by default.
    let defaults = nsexporter::config::Settings::defaults();
    let mut scanner = nsexporter::scan::Scanner::new(
        nsexporter::procfs::ProcFs::new(PathBuf::from("/proc")),
        defaults.scan_threads,
        defaults.scan_pins(),
    );
    let snapshot = scanner.scan(None).unwrap().snapshot;
    let attribution = nsexporter::attribution::attribute(
        &snapshot,
        &[],
        &Default::default(),
        &mut Default::default(),
    );
    let mut sources = SpecSources::new(c.run_dir(), "/nonexistent".into(), "/proc".into());
    let wanted_ids: Vec<Wanted> = all
        .iter()
        .map(|(_, _, id, _)| Wanted {
            id: id.to_string(),
            shim: None,
        })
        .collect();
    let refresh = sources.refresh(&wanted_ids, std::time::Instant::now());
    assert!(refresh.errors.is_empty(), "{:?}", refresh.errors);
    let specs: HashMap<String, Arc<nsexporter::declared::Spec>> = refresh.specs;
    let resolve = |p: &Path| resolve_on_host(Path::new("/proc"), p);
    let judgement = judge(&snapshot, &attribution, &specs, &resolve);
    let mut problems = Vec::new();
    let mut table = Vec::new();
    for (pod, name, id, sandbox) in &all {
        let Some(expected) = judgement.expected.get(*id) else {
            problems.push(format!(
                "{}/{name}: not judged (no spec or no process)",
                pod.name
            ));
            continue;
        };
        let pid = c.pid(id);
        let pause = c.pid(&pod.sandbox_id);
        for t in NsType::ALL {
            let want = wanted(pod.kind, *sandbox, t);
            let own = ns_inode(pid, t.as_str()).unwrap();
            let of_pause = ns_inode(pause, t.as_str()).unwrap();
            let host = host_inode(t);
            let (declared, resolved) = &expected[t];
            let joined_proc =
                |p: &Path| p == Path::new(&format!("/proc/{pause}/ns/{}", t.as_str()));
            let right = match want {
                Want::New => {
                    *declared == Declared::New && *resolved == Expected::Inode(own) && own != host
                }
                Want::JoinedOwn => {
                    matches!(declared, Declared::Joined(p) if !joined_proc(p))
                        && *resolved == Expected::Inode(own)
                        && own != host
                }
                Want::JoinedSandbox => {
                    matches!(declared, Declared::Joined(p) if joined_proc(p))
                        && *resolved == Expected::Inode(of_pause)
                        && of_pause != host
                }
                Want::JoinedHost => {
                    matches!(declared, Declared::Joined(p) if joined_proc(p))
                        && *resolved == Expected::Inode(host)
                }
                Want::Host => *declared == Declared::Host && *resolved == Expected::Inode(host),
            };
            // What the processes are in is what was declared.
            let observed_right = *resolved == Expected::Inode(own);
            table.push(format!(
                "{:>9}/{name:<4} {t:<6} {want:<13?} {declared:?} -> {resolved:?}",
                pod.name
            ));
            if !right || !observed_right {
                problems.push(format!(
                    "{}/{name} {t}: want {want:?}, judged {declared:?} -> {resolved:?} (own {own}, sandbox {of_pause}, host {host})",
                    pod.name
                ));
            }
        }
    }
    eprintln!("{}", table.join("\n"));
    let ours: Vec<_> = judgement
        .findings
        .iter()
        .filter(|f| all.iter().any(|(_, _, id, _)| f.container.id == *id))
        .collect();
    assert!(ours.is_empty(), "findings: {ours:?}");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The binary on the real `/proc` with `--path.run` on the private containerd's dir and an
/// empty kubelet log directory: no `undeclared_namespace` or `user_namespace_not_applied`
/// finding for any container; the `hostNetwork` pod's `host_namespace` findings (net, uts)
/// and the `hostPID` pod's (pid) are `declared="true"`; and every container, sandbox included
/// (`container="POD"`), is named from its spec's annotations on its own mount namespace's
/// `nsexporter_namespace_info`.
#[test]
#[ignore = "needs root, containerd, runc, containernetworking-plugins, busybox-static"]
fn cri_pods_as_the_exporter_sees_them_named_from_annotations() {
    let mut c = Containerd::start();
    let pods = run_pods(&mut c);
    let all = containers(&pods);
    let logs = tempfile::tempdir().unwrap();
    let e = Exporter::start(&[
        &format!("--path.run={}", c.run_dir().display()),
        &format!("--path.kubelet-logs={}", logs.path().display()),
        "--path.docker=/nonexistent",
        "--path.podman=/nonexistent",
        "--scan.interval=1s",
        "--scan.sweep-interval=0s",
    ]);
    let m = declared::scan_after(&e, declared::scans(&e));
    let mut problems = Vec::new();
    // The CRI's plumbing (the shims, runc's stages, the pause containers) moves no process
    // out of its container's cgroup either.
    for rule in [
        "undeclared_namespace",
        "user_namespace_not_applied",
        "left_container_cgroup",
    ] {
        for f in declared::findings(&m, rule) {
            if all.iter().any(|(_, _, id, _)| f.0 == *id) {
                problems.push(format!("{rule}: {f:?}"));
            }
        }
    }
    let host = declared::findings(&m, "host_namespace");
    for (pod, name, id, _) in &all {
        let types: &[&str] = match pod.kind {
            PodKind::HostNetwork => &["net", "uts"],
            PodKind::HostPid => &["pid"],
            _ => &[],
        };
        for t in types {
            if !host.contains(&(id.to_string(), t.to_string(), "true".into())) {
                problems.push(format!("{}/{name}: no declared host {t}", pod.name));
            }
        }
        if let Some(f) = host
            .iter()
            .find(|f| f.0 == *id && !types.contains(&f.1.as_str()))
        {
            problems.push(format!("{}/{name}: host finding {f:?}", pod.name));
        }
        // Named on its own mount namespace.
        let mnt = ns_inode(c.pid(id), "mnt").unwrap().to_string();
        let info = m.find(
            "nsexporter_namespace_info",
            &[("type", "mnt"), ("inode", &mnt)],
        );
        let named = info.first().map(|s| {
            (
                s.labels["pod"].as_str(),
                s.labels["k8s_namespace"].as_str(),
                s.labels["container"].as_str(),
                s.labels["container_id"].as_str(),
                s.labels["pod_uid"].as_str(),
            )
        });
        let want = (
            pod.name.as_str(),
            pod.namespace.as_str(),
            *name,
            *id,
            pod.uid.as_str(),
        );
        if named != Some(want) {
            problems.push(format!("{}/{name}: named {named:?}", pod.name));
        }
    }
    use crate::privilege::{ALL, DEFAULT_CAPS};
    // Observed privilege: kubelet's requests as the CRI got them (no seccomp profile: the
    // kubelet's default is Unconfined; masked paths unless privileged).
    let default = [
        "true",
        "true",
        "disabled",
        "false",
        DEFAULT_CAPS,
        "baseline",
    ];
    let host = [
        "true",
        "true",
        "disabled",
        "false",
        DEFAULT_CAPS,
        "privileged",
    ];
    let privileged = ["true", "true", "disabled", "false", ALL, "privileged"];
    let app = |pod: &str| {
        let p = pods.iter().find(|p| p.name == pod).unwrap();
        p.container("app").to_string()
    };
    let rows = vec![
        ("cri default pod", app("web-0"), default),
        ("cri hostNetwork pod", app("agent-0"), host),
        ("cri hostPID pod", app("monitor-0"), host),
        ("cri privileged pod", app("admin-0"), privileged),
    ];
    problems.extend(crate::privilege::wrong_rows(&m, &rows));
    // Beside each observed level, the level Pod Security admission would give the OCI spec
    // containerd wrote for the app container, which the exporter reads. The host pods' app
    // containers join the pause container's net or pid by `/proc/<pause>/ns/…`, a path that
    // does not say the namespace is the host's: their own specs are baseline, though the pod
    // (which admission reads) is privileged, as the sandbox's spec, which leaves the type
    // out, shows. The exporter judges what the processes are in, so it sees the host's.
    let admission = ["baseline", "baseline", "baseline", "privileged"];
    for ((name, id, observed), admitted) in rows.iter().zip(admission) {
        let declared = crate::privilege::admission_level(
            &c.run_dir(),
            Path::new("/nonexistent"),
            id,
            c.pid(id),
        );
        crate::privilege::side_by_side(name, observed[5], declared, admitted, &mut problems);
    }
    for pod in ["agent-0", "monitor-0"] {
        let sandbox = &pods.iter().find(|p| p.name == pod).unwrap().sandbox_id;
        let declared = crate::privilege::admission_level(
            &c.run_dir(),
            Path::new("/nonexistent"),
            sandbox,
            c.pid(sandbox),
        );
        let name = format!("cri {pod} sandbox (pause)");
        crate::privilege::side_by_side(&name, "-", declared, "privileged", &mut problems);
    }
    assert!(problems.is_empty(), "{problems:#?}\n{}", e.stderr());
    assert_eq!(
        std::fs::read_dir(logs.path()).unwrap().count(),
        0,
        "no kubelet log entry"
    );
}

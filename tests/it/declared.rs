//! Declared against observed on the real kernel: runc containers whose `state.json` the
//! exporter reads under `--path.run` (`<run>/runc/<id>/state.json`), classified per type as
//! new, joined or host; then processes moved where their spec did not put them.
//!
//! Each runc container keeps its own `--root` (see `crate::support::runc`); `<run>/runc/<id>` is a
//! symlink to `<root>/<id>`, as the exporter follows symlinks above the file, never the file.

use std::sync::Mutex;

use crate::support::declared::{
    HOST, Intruder, Run, TYPES, findings, findings_of, scan_after, scans,
};
use crate::support::runc::{Bundle, Container};
use crate::support::*;

static SERIAL: Mutex<()> = Mutex::new(());

pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn exporter(run: &Run) -> Exporter {
    Exporter::start(&[
        &format!("--path.run={}", run.path().display()),
        "--path.kubelet-logs=/nonexistent",
        "--path.docker=/nonexistent",
        "--path.podman=/nonexistent",
        "--scan.interval=1s",
        "--scan.sweep-interval=0s",
    ])
}

/// A bundle with the default namespaces (pid, net, ipc, uts, mnt) and `t` set as `how`:
/// `new`, `joined` (`base`'s, by `/proc/<pid>/ns/<t>`) or `host` (left out).
fn cell(t: &str, how: &str, base: &Container) -> Bundle {
    let mut ns: Vec<(String, Option<String>)> = ["pid", "net", "ipc", "uts", "mnt"]
        .iter()
        .filter(|u| **u != t)
        .map(|u| (u.to_string(), None))
        .collect();
    match how {
        "new" => ns.push((t.into(), None)),
        "joined" => ns.push((t.into(), Some(format!("/proc/{}/ns/{t}", base.pid())))),
        _ => {}
    }
    let ns_ref: Vec<(&str, Option<&str>)> =
        ns.iter().map(|(a, b)| (a.as_str(), b.as_deref())).collect();
    let mut b = Bundle::busybox(&format!("{t}-{how}"))
        .args(&["sleep", "1000"])
        .namespaces(&ns_ref);
    if t == "user" && how != "host" {
        // runc 1.1 wants the mappings even where it joins.
        user_namespace(&mut b, true);
    }
    b
}

/// A user namespace mapping 0-65535 to 100000-165535 (mappings only where it is new), with
/// a bundle the mapped root can reach and no cgroup mount (sysfs cgroup mounts need the
/// user namespace to own a cgroup namespace).
pub(crate) fn user_namespace(b: &mut Bundle, mappings: bool) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The mapped root makes its mount points: the rootfs is its own.
    let (ok, _, err) = run(
        "chown",
        &["-R", "100000:100000", b.rootfs().to_str().unwrap()],
    );
    assert!(ok, "chown: {err}");
    let c = b.config_mut();
    if mappings {
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    }
    let mounts = c["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/sys/fs/cgroup" && m["destination"] != "/sys");
}

/// The 7 types runc 1.1 knows × {new, joined, host}: as declared, no undeclared finding, and
/// a declared host namespace is `declared="true"` on its host finding; then one process of
/// each moved to the host's namespace of that type (new, joined) or to the base container's
/// (host): one finding of that type each. runc 1.1 refuses a `time` namespace (checked).
#[test]
#[ignore = "needs root: runc containers, nsenter, cgroups"]
fn runc_matrix_every_type_new_joined_host() {
    let _guard = serial();
    let run = Run::new();
    // The base: every type of its own, mappings included, for the joined cells.
    let base = {
        let b = Bundle::busybox("base")
            .args(&["sleep", "1000"])
            .namespaces(&[
                ("pid", None),
                ("net", None),
                ("ipc", None),
                ("uts", None),
                ("mnt", None),
                ("cgroup", None),
            ]);
        run.run(b)
    };
    let base_user = {
        let mut b = Bundle::busybox("base-user")
            .args(&["sleep", "1000"])
            .namespaces(&[
                ("pid", None),
                ("net", None),
                ("ipc", None),
                ("uts", None),
                ("mnt", None),
                ("user", None),
            ]);
        user_namespace(&mut b, true);
        run.run(b)
    };
    // What runc 1.1 cannot run: a time namespace (runc 1.2), and joining another
    // container's mount namespace (its rootfs setup needs the joined namespace's /proc).
    // Each is checked to fail, so that a newer runc extends the matrix; the judgement of
    // these cells is covered by `declared::judge`'s unit tests.
    let refused = |b: Bundle, what: &str| {
        if let Ok(c) = run.try_run(b) {
            panic!("runc ran {what} ({}): extend the matrix", c.id);
        }
    };
    refused(
        Bundle::busybox("time").namespaces(&[("time", None)]),
        "a time namespace",
    );
    let mut cells = Vec::new();
    for t in TYPES {
        for how in ["new", "joined", "host"] {
            let from = if t == "user" { &base_user } else { &base };
            if (t, how) == ("mnt", "joined") {
                refused(cell(t, how, from), "a joined mount namespace");
                continue;
            }
            // Not run: without a mount namespace of its own runc bind-mounts the rootfs and
            // makes `/` rslave in the host's mount namespace (it did, here, and it broke
            // user namespaces for the machine until undone). The unit tests cover the cell.
            if (t, how) == ("mnt", "host") {
                continue;
            }
            let c = run
                .try_run(cell(t, how, from))
                .unwrap_or_else(|e| panic!("{t} {how}: {e}"));
            cells.push((t, how, c));
        }
    }
    eprintln!("{} cells run", cells.len());
    let e = exporter(&run);
    let m = scan_after(&e, scans(&e));
    let undeclared = findings(&m, "undeclared_namespace");
    let user = findings(&m, "user_namespace_not_applied");
    let mut problems = Vec::new();
    for (t, how, c) in &cells {
        if let Some(f) = undeclared.iter().chain(&user).find(|f| f.0 == c.id) {
            problems.push(format!("{t} {how}: {f:?} while as declared"));
        }
        // Every host finding of this container says whether its spec declared it.
        for f in findings(&m, "host_namespace")
            .iter()
            .filter(|f| f.0 == c.id)
        {
            let want = if f.1 == *t && *how != "host" {
                "false"
            } else {
                "true"
            };
            let declared_host = f.1 != *t || *how == "host";
            if declared_host && f.2 != "true" || !declared_host && f.2 != want {
                problems.push(format!("{t} {how}: host finding {f:?}"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n{}", e.stderr());
    // Now each moved.
    let mut intruders = Vec::new();
    for (t, how, c) in &cells {
        let from = if *t == "user" { &base_user } else { &base };
        let into = if *how == "host" { from.pid() } else { HOST };
        intruders.push(Intruder::enter(c, t, into));
    }
    let m = scan_after(&e, scans(&e));
    let undeclared = findings(&m, "undeclared_namespace");
    let user = findings(&m, "user_namespace_not_applied");
    for (t, how, c) in &cells {
        let of_c: Vec<_> = undeclared
            .iter()
            .chain(&user)
            .filter(|f| f.0 == c.id)
            .collect();
        let rule_ok = of_c.iter().any(|f| f.1 == *t && f.2 == "false");
        let only_t = of_c.iter().all(|f| f.1 == *t);
        if !rule_ok || !only_t {
            problems.push(format!("{t} {how} moved: {of_c:?}"));
        }
    }
    drop(intruders);
    assert!(problems.is_empty(), "{problems:#?}");
    drop(e);
}

/// A spec with uidMappings whose process is moved into the host's user namespace:
/// `user_namespace_not_applied`, with declared="false".
#[test]
#[ignore = "needs root: runc containers, nsenter, cgroups"]
fn uid_mappings_not_applied_to_a_moved_process() {
    let _guard = serial();
    let run = Run::new();
    let mut b = Bundle::busybox("mapped")
        .args(&["sleep", "1000"])
        .namespaces(&[
            ("pid", None),
            ("net", None),
            ("ipc", None),
            ("uts", None),
            ("mnt", None),
            ("user", None),
        ]);
    user_namespace(&mut b, true);
    let c = run.run(b);
    let e = exporter(&run);
    let m = scan_after(&e, scans(&e));
    assert!(findings_of(&m, "user_namespace_not_applied", &[&c.id]).is_empty());
    let _moved = Intruder::enter(&c, "user", HOST);
    let m = scan_after(&e, scans(&e));
    assert_eq!(
        findings_of(&m, "user_namespace_not_applied", &[&c.id]),
        vec![(c.id.clone(), "user".into(), "false".into())]
    );
}

/// Two pods: a process of one container enters the host's mount namespace (nsenter from its
/// cgroup), and another setns's into the other pod's network namespace: each an
/// `undeclared_namespace` finding, named from the spec's annotations with no kubelet log
/// directory.
#[test]
#[ignore = "needs root: runc containers, nsenter, cgroups"]
fn nsenter_into_the_host_and_into_another_pods_network_are_undeclared_with_names() {
    let _guard = serial();
    let run = Run::new();
    let annotated = |pod: &str, name: &str| {
        let mut b = Bundle::busybox(name).args(&["sleep", "1000"]);
        b.config_mut()["annotations"] = serde_json::json!({
            "io.kubernetes.cri.sandbox-name": pod,
            "io.kubernetes.cri.sandbox-namespace": "shop",
            "io.kubernetes.cri.container-name": name,
        });
        b
    };
    let web = run.run(annotated("web-0", "nginx"));
    let db = run.run(annotated("db-0", "postgres"));
    let e = exporter(&run);
    let m = scan_after(&e, scans(&e));
    let ours = [web.id.as_str(), db.id.as_str()];
    assert!(findings_of(&m, "undeclared_namespace", &ours).is_empty());
    let _into_host = Intruder::enter(&web, "mnt", HOST);
    let _into_db = Intruder::enter(&db, "net", web.pid());
    let m = scan_after(&e, scans(&e));
    let named = |id: &str, t: &str| {
        m.find(
            "nsexporter_sharing_findings_active",
            &[
                ("rule", "undeclared_namespace"),
                ("container_id", id),
                ("type", t),
            ],
        )
        .first()
        .map(|s| {
            (
                s.labels["pod"].clone(),
                s.labels["k8s_namespace"].clone(),
                s.labels["container"].clone(),
                s.labels["declared"].clone(),
            )
        })
    };
    assert_eq!(
        named(&web.id, "mnt"),
        Some((
            "web-0".into(),
            "shop".into(),
            "nginx".into(),
            "false".into()
        )),
        "{:?}",
        findings(&m, "undeclared_namespace")
    );
    assert_eq!(
        named(&db.id, "net"),
        Some((
            "db-0".into(),
            "shop".into(),
            "postgres".into(),
            "false".into()
        ))
    );
    assert_eq!(
        findings_of(&m, "undeclared_namespace", &ours).len(),
        2,
        "{:?}",
        findings(&m, "undeclared_namespace")
    );
}

/// runc joining another container's net by path: declared, no finding; and the base's
/// finding-free too.
#[test]
#[ignore = "needs root: runc containers, nsenter, cgroups"]
fn runc_joining_another_containers_net_by_path_is_declared() {
    let _guard = serial();
    let run = Run::new();
    let base = run.run(Bundle::busybox("base").args(&["sleep", "1000"]));
    let joiner = run.net_joiner("joiner", &base);
    let e = exporter(&run);
    let m = scan_after(&e, scans(&e));
    assert!(
        findings_of(&m, "undeclared_namespace", &[&base.id, &joiner.id]).is_empty(),
        "{}",
        e.stderr()
    );
    // The two pods share a net namespace: cross_workload, declared by the joiner's spec.
    let cross = findings(&m, "cross_workload");
    assert!(
        cross.contains(&(joiner.id.clone(), "net".into(), "true".into())),
        "{cross:?}"
    );
    assert!(
        cross.contains(&(base.id.clone(), "net".into(), "false".into())),
        "{cross:?}"
    );
}

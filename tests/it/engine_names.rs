//! Container names from real engines reach the findings: a dockerd and a Podman store of the
//! test's own (tests/it/support/engines.rs), a busybox image imported into each, containers on
//! the host network, a Podman pod, and the exporter scanning the real /proc with
//! `--path.docker` and `--path.podman` on them.
//!
//! What is proven: Docker's `config.v2.json` and containers/storage's `containers.json`, as
//! the installed docker.io and podman write them, name the containers on
//! `nsexporter_sharing_findings_active`; names of containers made after the exporter started
//! show from a following scan; a Podman pod's containers (and its infra container) are one
//! workload, not `cross_workload`, while a container outside the pod that joins its network
//! namespace is. And, without root or engines, on the fixture tree: broken engine files are
//! counted once and said once however many scans pass, and a mended one names its container
//! from the next scan.

use std::time::{Duration, Instant};

use crate::support::engines::{Dockerd, PodmanStore, busybox_tar};
use crate::support::{Exporter, Metrics, fixture_procfs, wait_for};

const IMAGE: &str = "nsx-busybox";

fn findings<'a>(m: &'a Metrics, want: &[(&str, &str)]) -> Vec<&'a crate::support::Sample> {
    m.find("nsexporter_sharing_findings_active", want)
}

/// The exposition once `f` finds what it waits for in it.
fn metrics_when<T>(e: &Exporter, what: &str, f: impl Fn(&Metrics) -> Option<T>) -> T {
    wait_for(what, Duration::from_secs(30), || f(&e.metrics()))
}

#[test]
#[ignore = "needs root, docker.io, podman, catatonit and busybox-static (scripts/install-test-deps)"]
fn docker_and_podman_names_reach_the_findings() {
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let tar = busybox_tar(work.path());
    let tar = tar.to_str().unwrap();
    // Declared before the exporter, so dropped after it: the engines outlive its last scan.
    let docker = Dockerd::start();
    docker.docker(&["import", tar, IMAGE]);
    let podman = PodmanStore::new();
    podman.podman(&["import", tar, IMAGE]);
    let kubelet_logs = work.path().join("no-kubelet");

    let e = Exporter::start(&[
        &format!("--path.kubelet-logs={}", kubelet_logs.display()),
        &format!("--path.docker={}", docker.data_root().display()),
        &format!("--path.podman={}", podman.root().display()),
        "--scan.interval=200ms",
    ]);
    // Made after the exporter's first scan: their names must come from a later read.
    let web = docker.docker(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--name",
        "nsx-web",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let pm = podman.podman(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--name",
        "nsx-pm",
        IMAGE,
        "sleep",
        "1000",
    ]);
    // A pod with its own network namespace (no network in it: nothing of the host's is
    // touched), and two containers in it.
    let pod = podman.podman(&["pod", "create", "--name", "nsx-pod", "--network", "none"]);
    let pod_a = podman.podman(&[
        "run",
        "--detach",
        "--pod",
        "nsx-pod",
        "--name",
        "nsx-pod-a",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let pod_b = podman.podman(&[
        "run",
        "--detach",
        "--pod",
        "nsx-pod",
        "--name",
        "nsx-pod-b",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let infra = podman.podman(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]);

    // 1. The host network, named.
    let host_net = [("rule", "host_namespace"), ("type", "net")];
    let m = metrics_when(&e, "named host-network findings", |m| {
        let named = |runtime, container| {
            let mut want = host_net.to_vec();
            want.extend([("runtime", runtime), ("container", container)]);
            findings(m, &want).len() == 1
        };
        (named("docker", "nsx-web") && named("podman", "nsx-pm")).then(|| m.clone())
    });
    for (id, runtime, name) in [(&web, "docker", "nsx-web"), (&pm, "podman", "nsx-pm")] {
        let f = findings(&m, &[("container_id", id.as_str()), ("type", "net")]);
        assert_eq!(f.len(), 1, "{name}: {f:?}");
        let labels = &f[0].labels;
        assert_eq!(
            (
                labels["runtime"].as_str(),
                labels["container"].as_str(),
                labels["pod"].as_str(),
                labels["k8s_namespace"].as_str()
            ),
            (runtime, name, "", ""),
            "{f:?}"
        );
        let shared = m.find(
            "nsexporter_workload_host_namespace",
            &[("container_id", id.as_str()), ("type", "net")],
        );
        assert_eq!(shared.len(), 1, "{name}: {shared:?}");
        assert_eq!(shared[0].labels["container"], name);
    }

    // 2. The pod: one workload in its own net, ipc and uts namespaces, none of it a finding.
    let pod_net = metrics_when(&e, "the pod's net namespace, its containers in", |m| {
        let rows = m.find(
            "nsexporter_namespace_info",
            &[("type", "net"), ("pod_uid", pod.as_str())],
        );
        (rows.len() == 1 && rows[0].labels["owner"] != "container").then(|| rows[0].clone())
    });
    assert_eq!(
        (
            pod_net.labels["owner"].as_str(),
            pod_net.labels["runtime"].as_str(),
            pod_net.labels["host"].as_str()
        ),
        ("pod", "podman", "false"),
        "{pod_net:?}"
    );
    let members = |m: &Metrics| {
        let mut names: Vec<String> = [&pod_a, &pod_b]
            .iter()
            .flat_map(|id| {
                m.find(
                    "nsexporter_namespace_info",
                    &[("container_id", id.as_str()), ("type", "mnt")],
                )
            })
            .map(|s| s.labels["container"].clone())
            .collect();
        names.sort();
        names
    };
    let m = metrics_when(&e, "both containers of the pod, named", |m| {
        (members(m) == ["nsx-pod-a", "nsx-pod-b"]).then(|| m.clone())
    });
    for id in [&pod_a, &pod_b, &infra] {
        let f = findings(&m, &[("container_id", id.as_str())]);
        assert!(f.is_empty(), "pod member {id}: {f:?}");
    }

    // 3. The control: a container outside the pod in the pod's net namespace is sharing
    //    across workloads, and so are the pod's own containers there.
    //    (Podman refuses `--network container:` into a pod from outside it; a path is not
    //    checked.)
    let pid = podman.podman(&["inspect", "--format", "{{.State.Pid}}", &pod_a]);
    let intruder = podman.podman(&[
        "run",
        "--detach",
        "--network",
        &format!("ns:/proc/{pid}/ns/net"),
        "--name",
        "nsx-intruder",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let cross = [("rule", "cross_workload"), ("type", "net")];
    let m = metrics_when(&e, "cross_workload in the pod's net namespace", |m| {
        let mut want = cross.to_vec();
        want.push(("container", "nsx-intruder"));
        (findings(m, &want).len() == 1).then(|| m.clone())
    });
    let mut named: Vec<&str> = findings(&m, &cross)
        .iter()
        .filter(|f| [&pod_a, &pod_b, &infra, &intruder].contains(&&f.labels["container_id"]))
        .map(|f| f.labels["container"].as_str())
        .collect();
    named.sort();
    let infra_name = format!("{}-infra", &pod[..12]);
    let mut want = vec![
        "nsx-intruder",
        "nsx-pod-a",
        "nsx-pod-b",
        infra_name.as_str(),
    ];
    want.sort();
    assert_eq!(named, want);

    // Every read succeeded.
    for source in ["docker", "podman"] {
        let errors: f64 = m
            .find("nsexporter_name_source_errors_total", &[("source", source)])
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(errors, 0.0, "{source}: {}", e.stderr());
    }
    eprintln!("engine names test took {:?}", started.elapsed());
}

/// Broken files in both stores: each counted once by reason, each reason said once, over many
/// scans; a Podman list mended (by rename, as containers/storage writes it) names the
/// fixture's Podman container (pid 200) from the next scan, and counts nothing more.
#[test]
fn broken_engine_files_are_counted_once_and_a_mended_one_names_its_container() {
    const PODMAN_ID: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker");
    let broken = docker.join(format!("containers/{}", "c".repeat(64)));
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("config.v2.json"), r#"{"ID":"#).unwrap();
    let huge = docker.join(format!("containers/{}", "d".repeat(64)));
    std::fs::create_dir_all(&huge).unwrap();
    std::fs::File::create(huge.join("config.v2.json"))
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let podman = dir.path().join("storage");
    let lists = podman.join("overlay-containers");
    std::fs::create_dir_all(&lists).unwrap();
    std::fs::write(lists.join("containers.json"), "[{").unwrap();

    let e = Exporter::start(&[
        &format!("--path.procfs={}", fixture_procfs().display()),
        &format!("--path.kubelet-logs={}", dir.path().join("none").display()),
        &format!("--path.docker={}", docker.display()),
        &format!("--path.podman={}", podman.display()),
        "--scan.interval=100ms",
    ]);
    let errors = |m: &Metrics, source: &str, reason: &str| {
        m.value(
            "nsexporter_name_source_errors_total",
            &[("source", source), ("reason", reason)],
        )
        .unwrap()
    };
    let m = metrics_when(&e, "ten scans", |m| {
        (m.value("nsexporter_scans_total", &[])? >= 10.0).then(|| m.clone())
    });
    let counted = [
        ("docker", "parse_error", 1.0),
        ("docker", "too_large", 1.0),
        ("docker", "permission_denied", 0.0),
        ("docker", "io_error", 0.0),
        ("podman", "parse_error", 1.0),
        ("podman", "too_large", 0.0),
        ("kubelet", "io_error", 0.0),
    ];
    for (source, reason, want) in counted {
        assert_eq!(errors(&m, source, reason), want, "{source} {reason}");
    }
    let said = |e: &Exporter| {
        e.stderr()
            .lines()
            .filter(|l| l.contains("level=warn") && l.contains("container names unread"))
            .count()
    };
    assert_eq!(said(&e), 3, "{}", e.stderr());
    let podman_name = |m: &Metrics| {
        m.find(
            "nsexporter_namespace_info",
            &[("container_id", PODMAN_ID), ("type", "mnt")],
        )
        .first()
        .map(|s| s.labels["container"].clone())
    };
    assert_eq!(podman_name(&m).as_deref(), Some(""));

    let mended = format!(r#"[{{"id":"{PODMAN_ID}","names":["mended"]}}]"#);
    std::fs::write(lists.join(".new"), mended).unwrap();
    std::fs::rename(lists.join(".new"), lists.join("containers.json")).unwrap();
    let m = metrics_when(&e, "the mended list's name", |m| {
        (podman_name(m).as_deref() == Some("mended")).then(|| m.clone())
    });
    for (source, reason, want) in counted {
        assert_eq!(errors(&m, source, reason), want, "{source} {reason}");
    }
    assert_eq!(said(&e), 3, "{}", e.stderr());
}

//! Declared against observed, everything at once and for a while: the four CRI pods of
//! `tests/it/cri.rs` (containerd 1.6 over its gRPC socket), Docker `--network host` and
//! `--pid container:X`, a Podman pod, and a runc container joining another's net by path, with
//! the exporter (shipped defaults: scans every 15 s, sweeps every second) scraped every second
//! by a real Prometheus evaluating the shipped alert rules, for `NSX_SOAK_SECONDS` (default
//! 30, two scans, to keep CI short; the 10 minutes is `NSX_SOAK_SECONDS=600`).
//!
//! Over the whole soak, asked of Prometheus over the range (not the last scrape): no
//! `undeclared_namespace` or `user_namespace_not_applied` finding for any of these containers
//! and no NsexporterUndeclaredNamespace alert for them, with every scrape up; and none in the
//! exporter's log, where each new finding is said with its container, even one gone before a
//! scrape. Then an
//! `nsenter` into the host's mount namespace from a CRI container's cgroup, and a CRI container
//! process that setns's into another pod's network namespace: each an `undeclared_namespace`
//! finding, and the critical alert firing in Prometheus with its pod, namespace and container.
//!
//! Only this test's containers are judged: other tests may run containers of their own on
//! the machine at the same time. The numbers (scans, sweeps, processes, containers, findings,
//! time to the alert, the exporter's RSS) are printed, not asserted.

use crate::support::cri;

use std::time::{Duration, Instant};

use crate::support::declared::{HOST, Intruder, Run};
use crate::support::engines::with_busybox;
use crate::support::prometheus::Prometheus;
use crate::support::runc::Bundle;
use crate::support::*;
use cri::{Containerd, containers, run_pods};

const RULES: &str = "deploy/prometheus/alerts.yaml";
const SPEC_RULES: &str = "undeclared_namespace|user_namespace_not_applied";

fn soak_seconds() -> u64 {
    match std::env::var("NSX_SOAK_SECONDS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("NSX_SOAK_SECONDS={v:?} is not a number of seconds")),
        Err(_) => 30,
    }
}

/// One number from an instant query's single result, or 0 where there is none.
fn scalar(p: &Prometheus, promql: &str) -> f64 {
    p.query(promql)
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn vm_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root, containerd, runc, containernetworking-plugins, docker.io, podman, catatonit, prometheus, busybox-static"]
fn everything_declared_for_a_soak_then_two_intrusions_page() {
    let seconds = soak_seconds();
    // CRI pods under a private containerd; its /run-shaped dir is the exporter's --path.run,
    // and the runc containers' state is linked there too.
    let mut cri = Containerd::start();
    let pods = run_pods(&mut cri);
    let run = Run::inside(&cri.run_dir());
    let runc_base = run.run(Bundle::busybox("base").args(&["sleep", "100000"]));
    let runc_joiner = run.net_joiner("joiner", &runc_base);
    // Docker (specs through the shims' cwd) and Podman (its store).
    let work = tempfile::tempdir().unwrap();
    let (docker, podman) = with_busybox(work.path());
    let d = |args: &[&str]| docker.docker(args);
    let sleep = ["nsx-busybox", "sleep", "100000"];
    let web = d(&[&["run", "-d", "--network", "host"][..], &sleep].concat());
    let x = d(&[&["run", "-d", "--name", "nsx-soak-x"][..], &sleep].concat());
    let joiner = d(&[&["run", "-d", "--pid", "container:nsx-soak-x"][..], &sleep].concat());
    let pod = podman.podman(&["pod", "create", "--name", "nsx-soak", "--network", "none"]);
    let pod_a = podman.podman(&[&["run", "-d", "--pod", "nsx-soak"][..], &sleep].concat());
    let infra = podman.podman(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]);

    let mut ours: Vec<String> = containers(&pods)
        .iter()
        .map(|(_, _, id, _)| id.to_string())
        .collect();
    ours.extend([
        runc_base.id.clone(),
        runc_joiner.id.clone(),
        web.clone(),
        x,
        joiner.clone(),
        pod_a,
        infra,
    ]);
    let ids = ours.join("|");

    let logs = tempfile::tempdir().unwrap();
    let mut exporter = Exporter::start(&[
        &format!("--path.run={}", cri.run_dir().display()),
        &format!("--path.kubelet-logs={}", logs.path().display()),
        &format!("--path.docker={}", docker.data_root().display()),
        &format!("--path.podman={}", podman.root().display()),
    ]);
    let exporter_pid = exporter.child.id() as i32;
    let prometheus = Prometheus::start(
        &[format!("127.0.0.1:{}", exporter.port)],
        "1s",
        &[&manifest_dir().join(RULES)],
    );
    // Every container of ours seen, as a scan's namespace owner, before the clock starts.
    wait_for(
        "every container seen by a scan",
        Duration::from_secs(60),
        || {
            let seen = prometheus.query(&format!(
                "count(count by (container_id) (nsexporter_namespace_info{{container_id=~\"{ids}\"}}))"
            ));
            let n = seen
                .first()
                .and_then(|r| r["value"][1].as_str())
                .and_then(|v| v.parse::<usize>().ok());
            (n == Some(ours.len())).then_some(())
        },
    );
    let started = Instant::now();
    let mut rss_max = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(5).min(
            Duration::from_secs(seconds).saturating_sub(started.elapsed())
                + Duration::from_millis(1),
        ));
        if let Ok(Some(status)) = exporter.child.try_wait() {
            panic!("exporter exited ({status}): {}", exporter.stderr());
        }
        rss_max = rss_max.max(vm_rss_kib(exporter_pid));
    }
    let soak = started.elapsed().as_secs();
    let range = format!("{soak}s");
    let over = |promql: &str| prometheus.query(promql);
    let found = over(&format!(
        "max_over_time(nsexporter_sharing_findings_active{{rule=~\"{SPEC_RULES}\", container_id=~\"{ids}\"}}[{range}])"
    ));
    let alerts = over(&format!(
        "max_over_time(ALERTS{{alertname=\"NsexporterUndeclaredNamespace\", container_id=~\"{ids}\"}}[{range}])"
    ));
    let scrapes = scalar(&prometheus, &format!("count_over_time(up[{range}])"));
    let up_min = scalar(&prometheus, &format!("min_over_time(up[{range}])"));
    let scans = scalar(
        &prometheus,
        &format!("increase(nsexporter_scans_total[{range}])"),
    );
    let sweeps = scalar(
        &prometheus,
        &format!("increase(nsexporter_sweeps_total[{range}])"),
    );
    let processes = scalar(
        &prometheus,
        &format!("max_over_time(nsexporter_processes[{range}])"),
    );
    let containers_seen = scalar(
        &prometheus,
        &format!(
            "count(count by (container_id) (max_over_time(nsexporter_namespace_info{{owner=\"container\"}}[{range}])))"
        ),
    );
    let findings_ours = over(&format!(
        "max_over_time(nsexporter_sharing_findings_active{{container_id=~\"{ids}\"}}[{range}])"
    ));
    let machine_spec_findings = scalar(
        &prometheus,
        &format!(
            "sum(increase(nsexporter_sharing_findings_total{{rule=~\"{SPEC_RULES}\"}}[{range}]))"
        ),
    );
    let rss_prom = scalar(
        &prometheus,
        &format!("max_over_time(process_resident_memory_bytes{{job=\"nsexporter\"}}[{range}])"),
    );
    eprintln!(
        "soak {soak} s: {scrapes} scrapes (up min {up_min}), {scans:.0} scans, {sweeps:.0} sweeps, \
         up to {processes} processes, {containers_seen} containers owning a namespace, \
         {} of ours; findings of ours over the soak: {}; spec-rule findings machine-wide \
         (any container): {machine_spec_findings:.0}; exporter RSS max {:.1} MiB (VmRSS sampled \
         every 5 s: {:.1} MiB)",
        ours.len(),
        findings_ours
            .iter()
            .map(|r| {
                let l = |k: &str| r["metric"][k].as_str().unwrap_or("").to_owned();
                format!(
                    "{} {} {}/{} declared={}",
                    l("rule"),
                    l("type"),
                    l("runtime"),
                    l("container"),
                    l("declared")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        rss_prom / 1048576.0,
        rss_max as f64 / 1024.0,
    );
    // And none between two scrapes: each new finding is logged at warn with its container.
    let logged: Vec<String> = exporter
        .stderr()
        .lines()
        .filter(|l| {
            (l.contains("undeclared_namespace") || l.contains("user_namespace_not_applied"))
                && ours.iter().any(|id| l.contains(id.as_str()))
        })
        .map(str::to_owned)
        .collect();
    // The specs were read: the declared sharing stood all along as `declared="true"`, and no
    // finding of ours was without a spec (`unknown`). (The Podman pod shares nothing with
    // anyone; tests/it/declared.rs shows its specs read.)
    let standing: Vec<(String, String, String, String)> = findings_ours
        .iter()
        .map(|r| {
            let l = |k: &str| r["metric"][k].as_str().unwrap_or("").to_owned();
            (l("container_id"), l("rule"), l("type"), l("declared"))
        })
        .collect();
    let (agent, monitor) = (&pods[1], &pods[2]);
    let mut declared: Vec<(&str, &str, &str)> = vec![
        (&web, "host_namespace", "net"),
        (&joiner, "cross_workload", "pid"),
        (&runc_joiner.id, "cross_workload", "net"),
    ];
    for id in std::iter::once(&agent.sandbox_id).chain(agent.containers.iter().map(|c| &c.1)) {
        declared.extend([
            (id.as_str(), "host_namespace", "net"),
            (id, "host_namespace", "uts"),
        ]);
    }
    for id in std::iter::once(&monitor.sandbox_id).chain(monitor.containers.iter().map(|c| &c.1)) {
        declared.push((id, "host_namespace", "pid"));
    }
    for (id, rule, t) in declared {
        let want = (
            id.to_owned(),
            rule.to_owned(),
            t.to_owned(),
            "true".to_owned(),
        );
        assert!(standing.contains(&want), "{want:?} not in {standing:#?}");
    }
    assert!(
        standing.iter().all(|f| f.3 != "unknown"),
        "a finding without a spec: {standing:#?}"
    );
    assert!(found.is_empty(), "undeclared during the soak: {found:#?}");
    assert!(logged.is_empty(), "undeclared during the soak: {logged:#?}");
    assert!(alerts.is_empty(), "alerts during the soak: {alerts:#?}");
    assert_eq!(up_min, 1.0, "a scrape failed during the soak");
    assert!(
        scrapes >= soak as f64 * 0.8,
        "{scrapes} scrapes in {soak} s"
    );

    // The intrusions: into the host's mount namespace from web-0's app's cgroup; and debug-0's
    // side container into web-0's network namespace.
    let web0 = &pods[0];
    let debug0 = &pods[3];
    let into_host_id = web0.container("app").to_owned();
    let setns_id = debug0.container("side").to_owned();
    let intruded = Instant::now();
    let _into_host = Intruder::enter_pid(cri.pid(&into_host_id), "mnt", HOST);
    // debug-0's containers share the sandbox's pid namespace.
    let _setns = Intruder::enter_pid_unseen(
        cri.pid(&setns_id),
        "net",
        cri.pid(&web0.sandbox_id),
        exporter_pid,
    );
    let want = [
        (&into_host_id, "mnt", web0, "app"),
        (&setns_id, "net", debug0, "side"),
    ];
    let mut firing_after = Vec::new();
    let mut pending: Vec<_> = want.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pending.is_empty() {
        let alerts = prometheus.alerts();
        pending.retain(|(id, t, pod, name)| {
            let hit = alerts.iter().find(|(alertname, state, labels)| {
                alertname == "NsexporterUndeclaredNamespace"
                    && state == "firing"
                    && labels["container_id"] == id.as_str()
                    && labels["type"] == *t
            });
            let Some((_, _, labels)) = hit else {
                return true;
            };
            let named = (
                labels["pod"].as_str(),
                labels["k8s_namespace"].as_str(),
                labels["container"].as_str(),
                labels["rule"].as_str(),
                labels["declared"].as_str(),
                labels["severity"].as_str(),
            );
            assert_eq!(
                named,
                (
                    Some(pod.name.as_str()),
                    Some(pod.namespace.as_str()),
                    Some(*name),
                    Some("undeclared_namespace"),
                    Some("false"),
                    Some("critical")
                ),
                "{labels}"
            );
            firing_after.push((*t, intruded.elapsed().as_secs_f64()));
            false
        });
        assert!(
            Instant::now() < deadline,
            "not firing for {pending:?}: {:#?}\n{}",
            prometheus.alerts(),
            exporter.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Exactly these two of ours, no other.
    let now = prometheus.query(&format!(
        "nsexporter_sharing_findings_active{{rule=~\"{SPEC_RULES}\", container_id=~\"{ids}\"}}"
    ));
    let mut got: Vec<(String, String)> = now
        .iter()
        .map(|r| {
            (
                r["metric"]["container_id"].as_str().unwrap().to_owned(),
                r["metric"]["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut expect = vec![
        (into_host_id.clone(), "mnt".to_owned()),
        (setns_id.clone(), "net".to_owned()),
    ];
    expect.sort();
    assert_eq!(got, expect);
    // The log check of the soak would have seen them: each is said, with its container.
    let log = exporter.stderr();
    for (id, _) in &expect {
        assert!(
            log.lines()
                .any(|l| l.contains("undeclared_namespace") && l.contains(id.as_str())),
            "no log line for {id}:\n{log}"
        );
    }
    eprintln!(
        "alert firing after the intrusion: {}; exporter VmRSS at the end {:.1} MiB",
        firing_after
            .iter()
            .map(|(t, s)| format!("{t} {s:.1} s"))
            .collect::<Vec<_>>()
            .join(", "),
        vm_rss_kib(exporter_pid) as f64 / 1024.0
    );
    drop(prometheus);
    drop(exporter);
}

//! A simulated Kubernetes node, all real: runc(8) containers of a busybox rootfs in
//! kubepods-shaped cgroups, a kubelet log directory naming them, the exporter scraping the
//! real /proc, and a real Prometheus evaluating `deploy/prometheus/alerts.yaml` (with `for`
//! shortened in a test copy). The five sharing cases of the design:
//!
//! 1. a pod of two containers sharing net, ipc and uts → no finding;
//! 2. a hostNetwork-style container (no net namespace of its own) → `host_namespace` for net;
//! 3. an allowed kube-system container with the host's pid namespace → host sharing exported,
//!    no finding;
//! 4. a process in a container's cgroup that entered the host's mount namespace with nsenter
//!    → `host_mount_from_container`;
//! 5. containers of two different pods in one net namespace → `cross_workload`.
//!
//! Everything is removed on drop, pass or fail: containers (runc kill and delete, cgroups),
//! the nsenter'd process, Prometheus and the exporter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::pod::Pod;
use crate::support::prometheus::Prometheus;
use crate::support::runc::{Bundle, Container, hex_id, unique_id};
use crate::support::{Exporter, Metrics, Spawned, manifest_dir, wait_for};

/// A running container of a pod, and the kubelet log entry naming it.
struct PodContainer {
    container: Container,
    id: String,
}

/// Starts `name` of `pod` with `namespaces` (a type left out is the host's; `Some(path)` joins
/// a namespace) and writes its kubelet log symlink name into `logs`.
fn start(pod: &Pod, name: &str, namespaces: &[(&str, Option<&str>)], logs: &Path) -> PodContainer {
    let id = hex_id();
    let bundle = Bundle::busybox(name)
        .args(&["sleep", "1000"])
        .namespaces(namespaces)
        .cgroups_path(&pod.cgroup(&id));
    let container = Container::run(bundle, &unique_id(name));
    pod.log_entry(logs, name, &id);
    PodContainer { container, id }
}

/// Removes, on drop, the cgroup parents that the containers' runc created but could not remove
/// while siblings were still there: pod directories, and `/kubepods/burstable` and `/kubepods`
/// unless they existed before the test (a real node's are never touched).
struct ParentCgroups {
    /// Relative paths, deepest first.
    paths: Vec<String>,
}

impl ParentCgroups {
    fn new() -> ParentCgroups {
        let mut paths = Vec::new();
        for p in ["kubepods/burstable", "kubepods"] {
            let existed = crate::support::cgroup::hierarchies()
                .iter()
                .any(|h| h.join(p).exists());
            if !existed {
                paths.push(p.to_string());
            }
        }
        ParentCgroups { paths }
    }

    fn pod(&mut self, pod: &Pod) {
        self.paths
            .insert(0, format!("kubepods/burstable/pod{}", pod.uid));
    }
}

impl Drop for ParentCgroups {
    fn drop(&mut self) {
        // runc's cgroupfs driver also made them under cpuset, which `hierarchies` leaves out.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let roots: Vec<PathBuf> = mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() > 2 && (f[2] == "cgroup" || f[2] == "cgroup2"))
                    .then(|| PathBuf::from(f[1]))
            })
            .collect();
        for rel in &self.paths {
            for root in &roots {
                let dir = root.join(rel);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                // EBUSY while the last member is being released.
                while dir.exists()
                    && std::fs::remove_dir(&dir).is_err()
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

fn own(types: &[&'static str]) -> Vec<(&'static str, Option<&'static str>)> {
    types.iter().map(|t| (*t, None)).collect()
}

const ALL_OWN: &[&str] = &["pid", "net", "ipc", "uts", "mnt", "cgroup"];

fn ns_path(pid: i32, t: &str) -> String {
    format!("/proc/{pid}/ns/{t}")
}

/// The rules file with every `for:` cut to 0s, so alerts fire within a few evaluations.
fn fast_rules(dir: &Path) -> PathBuf {
    let rules =
        std::fs::read_to_string(manifest_dir().join("deploy/prometheus/alerts.yaml")).unwrap();
    let fast: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}for: 0s\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert_ne!(fast, rules, "the rules have `for` clauses to shorten");
    let path = dir.join("alerts-fast.yaml");
    std::fs::write(&path, fast).unwrap();
    path
}

fn findings<'a>(m: &'a Metrics, rule: &str, pod: &str) -> Vec<&'a crate::support::Sample> {
    m.find(
        "nsexporter_sharing_findings_active",
        &[("rule", rule), ("pod", pod)],
    )
}

#[test]
#[ignore = "needs root, runc, busybox-static and prometheus (scripts/install-test-deps)"]
fn sharing_on_a_simulated_node_reaches_metrics_and_alerts() {
    // Declared first, so dropped last: after every container is gone.
    let mut parents = ParentCgroups::new();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir(&logs).unwrap();

    // 1. One pod, two containers: the second joins the first's net, ipc and uts, as the pause
    //    container's are joined.
    let web = Pod::new("web-1", "shop");
    parents.pod(&web);
    let app = start(&web, "app", &own(ALL_OWN), &logs);
    let app_pid = app.container.pid();
    let (net, ipc, uts) = (
        ns_path(app_pid, "net"),
        ns_path(app_pid, "ipc"),
        ns_path(app_pid, "uts"),
    );
    let sidecar = start(
        &web,
        "sidecar",
        &[
            ("pid", None),
            ("mnt", None),
            ("cgroup", None),
            ("net", Some(&net)),
            ("ipc", Some(&ipc)),
            ("uts", Some(&uts)),
        ],
        &logs,
    );

    // 2. hostNetwork: no net namespace entry.
    let hostnet_pod = Pod::new("hostnet-1", "default");
    parents.pod(&hostnet_pod);
    let _hostnet = start(
        &hostnet_pod,
        "agent",
        &own(&["pid", "ipc", "uts", "mnt", "cgroup"]),
        &logs,
    );

    // 3. kube-system with the host's pid namespace, allowed by the policy below.
    let proxy_pod = Pod::new("kube-proxy-x7k2p", "kube-system");
    parents.pod(&proxy_pod);
    let _proxy = start(
        &proxy_pod,
        "kube-proxy",
        &own(&["net", "ipc", "uts", "mnt", "cgroup"]),
        &logs,
    );

    // 4. A process in a container's cgroup that entered the host's mount namespace: what
    //    `nsenter -t 1 -m` from inside a privileged container leaves behind. PID 1 may be
    //    protected (it is on the machine this was written on), so the host's mount namespace
    //    is taken from kthreadd, which is always in the initial namespaces.
    let debug_pod = Pod::new("debug-1", "ops");
    parents.pod(&debug_pod);
    let debug = start(&debug_pod, "shell", &own(ALL_OWN), &logs);
    let debug_cgroup = debug_pod.cgroup(&debug.id);
    let procs: Vec<String> = crate::support::cgroup::hierarchies()
        .iter()
        .map(|h| {
            h.join(debug_cgroup.trim_start_matches('/'))
                .join("cgroup.procs")
                .display()
                .to_string()
        })
        .collect();
    let script = format!(
        "for f in {}; do echo $$ > $f; done; exec nsenter --target {} --net --uts --ipc --mount=/proc/2/ns/mnt sleep 1000",
        procs.join(" "),
        debug.container.pid()
    );
    let escaped = Spawned::new("sh", &["-c", &script]);
    let escaped_pid = escaped.running("sleep");

    // 5. Two pods in one net namespace: backend joins frontend's.
    let frontend_pod = Pod::new("frontend-1", "team-a");
    parents.pod(&frontend_pod);
    let backend_pod = Pod::new("backend-1", "team-b");
    parents.pod(&backend_pod);
    let frontend = start(&frontend_pod, "frontend", &own(ALL_OWN), &logs);
    let frontend_net = ns_path(frontend.container.pid(), "net");
    let _backend = start(
        &backend_pod,
        "backend",
        &[
            ("pid", None),
            ("ipc", None),
            ("uts", None),
            ("mnt", None),
            ("cgroup", None),
            ("net", Some(&frontend_net)),
        ],
        &logs,
    );

    let config = dir.path().join("nsexporter.yaml");
    std::fs::write(
        &config,
        "policy:\n  allow:\n    - name: kube-system host pid\n      k8s_namespace: kube-system\n      types: [pid]\n",
    )
    .unwrap();
    let exporter = Exporter::start(&[
        "--scan.interval=500ms",
        &format!("--config.file={}", config.display()),
        &format!("--path.kubelet-logs={}", logs.display()),
    ]);

    // Wait until every case is attributed, then check each.
    let m = wait_for(
        "all five cases in /metrics",
        Duration::from_secs(20),
        || {
            let m = exporter.metrics();
            let ready = !findings(&m, "host_namespace", "hostnet-1").is_empty()
                && !findings(&m, "host_mount_from_container", "debug-1").is_empty()
                && findings(&m, "cross_workload", "frontend-1").len() == 1
                && !m
                    .find(
                        "nsexporter_workload_host_namespace",
                        &[("pod", "kube-proxy-x7k2p")],
                    )
                    .is_empty();
            ready.then_some(m)
        },
    );

    // 1. The pod's shared net namespace belongs to the pod, and nothing about it is a finding.
    let net_inode = crate::support::ns_inode(app_pid, "net")
        .unwrap()
        .to_string();
    assert_eq!(
        crate::support::ns_inode(sidecar.container.pid(), "net"),
        crate::support::ns_inode(app_pid, "net")
    );
    let info = m.find(
        "nsexporter_namespace_info",
        &[("type", "net"), ("inode", &net_inode)],
    );
    assert_eq!(info.len(), 1, "{info:?}");
    let l = &info[0].labels;
    assert_eq!(
        (
            l["owner"].as_str(),
            l["pod"].as_str(),
            l["k8s_namespace"].as_str(),
            l["pod_uid"].as_str(),
            l["container"].as_str()
        ),
        ("pod", "web-1", "shop", web.uid.as_str(), "")
    );
    assert_eq!(
        m.value(
            "nsexporter_namespace_processes",
            &[("type", "net"), ("inode", &net_inode)]
        ),
        Some(2.0)
    );
    assert!(
        m.find("nsexporter_sharing_findings_active", &[("pod", "web-1")])
            .is_empty(),
        "pod-internal sharing is expected"
    );

    // 2. hostNetwork: exactly net, with the container named.
    let hostnet: Vec<_> = m.find(
        "nsexporter_sharing_findings_active",
        &[("pod", "hostnet-1")],
    );
    assert_eq!(hostnet.len(), 1, "{hostnet:?}");
    let l = &hostnet[0].labels;
    assert_eq!(
        (
            l["rule"].as_str(),
            l["type"].as_str(),
            l["container"].as_str()
        ),
        ("host_namespace", "net", "agent")
    );
    assert_eq!(
        l["runtime"], "unknown",
        "the cgroupfs layout does not name the runtime"
    );

    // 3. Allowed: exported as host sharing, no finding.
    assert_eq!(
        m.value(
            "nsexporter_workload_host_namespace",
            &[("pod", "kube-proxy-x7k2p"), ("type", "pid")]
        ),
        Some(1.0)
    );
    assert!(
        m.find(
            "nsexporter_sharing_findings_active",
            &[("pod", "kube-proxy-x7k2p")]
        )
        .is_empty()
    );

    // 4. The nsenter'd process: in the debug container's cgroup, the host's mount namespace.
    assert_eq!(
        crate::support::ns_inode(escaped_pid, "mnt"),
        crate::support::ns_inode(2, "mnt")
    );
    let escaped_findings = findings(&m, "host_mount_from_container", "debug-1");
    assert_eq!(escaped_findings.len(), 1);
    assert_eq!(escaped_findings[0].labels["type"], "mnt");
    assert_eq!(escaped_findings[0].labels["container_id"], debug.id);

    // 5. Both sides of the cross-pod sharing, net only.
    for pod in ["frontend-1", "backend-1"] {
        let f = findings(&m, "cross_workload", pod);
        assert_eq!(f.len(), 1, "{pod}: {f:?}");
        assert_eq!(f[0].labels["type"], "net");
    }
    assert!(
        m.value(
            "nsexporter_sharing_findings_total",
            &[("rule", "cross_workload"), ("type", "net")]
        )
        .unwrap()
            >= 2.0
    );

    // The alerts, through a real Prometheus.
    let rules = fast_rules(dir.path());
    let prometheus = Prometheus::start(
        &[format!("127.0.0.1:{}", exporter.port)],
        "1s",
        &[rules.as_path()],
    );
    let firing = |name: &str, pod: &str, alerts: &[(String, String, serde_json::Value)]| {
        alerts
            .iter()
            .any(|(n, s, l)| n == name && s == "firing" && l["pod"] == pod)
    };
    let alerts = wait_for(
        "the sharing alerts to fire",
        Duration::from_secs(60),
        || {
            let alerts = prometheus.alerts();
            let all = firing(
                "NsexporterUnexpectedHostNamespaceSharing",
                "hostnet-1",
                &alerts,
            ) && firing(
                "NsexporterHostMountNamespaceFromContainer",
                "debug-1",
                &alerts,
            ) && firing(
                "NsexporterCrossWorkloadNamespaceSharing",
                "frontend-1",
                &alerts,
            ) && firing(
                "NsexporterCrossWorkloadNamespaceSharing",
                "backend-1",
                &alerts,
            );
            all.then_some(alerts)
        },
    );
    let critical = alerts
        .iter()
        .find(|(n, _, _)| n == "NsexporterHostMountNamespaceFromContainer")
        .unwrap();
    assert_eq!(critical.2["severity"], "critical");
    // The allowed kube-system pod and the healthy pod raise nothing.
    for quiet in ["kube-proxy-x7k2p", "web-1"] {
        let raised: Vec<_> = alerts
            .iter()
            .filter(|(_, _, l)| l["pod"] == quiet)
            .collect();
        assert!(raised.is_empty(), "{quiet}: {raised:?}");
    }
    drop(escaped);
}

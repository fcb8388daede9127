//! A cluster, not one node: three exporters standing for three nodes, one Prometheus scraping
//! them as the Prometheus Operator would scrape `deploy/kubernetes/servicemonitor.yaml`, the
//! recording rules of `deploy/prometheus/recording.yaml`, the dashboard's queries per node and
//! for all of them, and remote-write of the recording rules' series to a second Prometheus
//! (`--web.enable-remote-write-receiver`), the path to Thanos Receive or Mimir.
//!
//! Each node is real: `unshare --pid --fork --mount-proc --uts --ipc` gives it its own pid,
//! mount, uts and ipc namespaces and its own /proc, whose PID 1 (a shell) is the node's host
//! process; the node's exporter scans that /proc, and sees only its node. The three share this
//! machine's net namespace (so that one Prometheus reaches them on 127.0.0.1), and its user,
//! time and cgroup namespaces, each of which every node counts as its own host's. A node's
//! containers are real processes in their own pid, ipc, mount and cgroup namespaces (and net
//! and uts, unless `hostNetwork`), in kubepods-shaped cgroups, named by the node's kubelet log
//! directory.
//!
//! The scrape job is derived from the ServiceMonitor and the Service, not restated: Debian's
//! Prometheus has no Kubernetes service discovery, so each node's endpoint is a static target
//! carrying the `__meta_kubernetes_*` labels the endpoints role gives it, followed by the
//! relabelling the Operator generates for the ServiceMonitor (selector, port, the standard
//! target labels, `jobLabel`) and then the ServiceMonitor's own `relabelings`. Two decoy
//! targets (another Service's endpoint, another port) must be dropped by it. Shortened: the
//! scrape interval (the ServiceMonitor's 30s, here 1s, timeout 1s) and the recording group's
//! `interval` (1m, here 1s, in a copy; the expressions are the shipped ones).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::cgroup::{Cgroup, hierarchies};
use crate::support::dashboard::{dashboard, label_values, queries, substitute};
use crate::support::pod::Pod;
use crate::support::prometheus::{Prometheus, encode};
use crate::support::runc::hex_id;
use crate::support::{BIN, Metrics, Spawned, free_port, http, manifest_dir};
use serde_json::{Value, json};

const SERVICE_MONITOR: &str = "deploy/kubernetes/servicemonitor.yaml";
const SERVICE: &str = "deploy/kubernetes/service.yaml";
const RECORDING: &str = "deploy/prometheus/recording.yaml";
/// What docs/metrics.md tells a Thanos or Mimir user to remote-write: only the recording rules'
/// series (`write_relabel_configs` keep on `__name__=~"nsexporter:.*"`).
const REMOTE_WRITE_KEEP: &str = "nsexporter:.*";
const CLUSTER: &str = "nsx-test";

/// One container of a node: pod, namespace, container name, and whether it is `hostNetwork`
/// (the node's net and uts namespaces).
type Workload = (&'static str, &'static str, &'static str, bool);

/// The cluster: node-a with a web pod and a hostNetwork agent, node-b with two web pods,
/// node-c with a hostNetwork agent and a web pod.
const NODES: &[(&str, &[Workload])] = &[
    (
        "node-a",
        &[
            ("web-a", "shop", "app", false),
            ("agent-a", "monitoring", "agent", true),
        ],
    ),
    (
        "node-b",
        &[
            ("web-b1", "shop", "app", false),
            ("web-b2", "shop", "app", false),
        ],
    ),
    (
        "node-c",
        &[
            ("agent-c", "monitoring", "agent", true),
            ("web-c", "shop", "app", false),
        ],
    ),
];

const TYPES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// A node: its own pid and mount namespace and /proc, its exporter, its containers (started
/// on [`Node::go`]). Dropped in field order: every process of the node (killing its PID 1
/// ends its pid namespace), then the cgroups, then its directory.
struct Node {
    root: Spawned,
    _cgroups: Vec<Cgroup>,
    dir: tempfile::TempDir,
    name: &'static str,
    workloads: &'static [Workload],
    pods: Vec<Pod>,
    port: u16,
}

impl Node {
    fn start(name: &'static str, workloads: &'static [Workload]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("containers");
        std::fs::create_dir(&logs).unwrap();
        let port = free_port();
        let mut cgroups = Vec::new();
        let mut pods = Vec::new();
        let mut starts = String::new();
        for (pod_name, namespace, container, host_network) in workloads {
            let pod = Pod::new(*pod_name, *namespace);
            let id = hex_id();
            let cgroup = Cgroup::create(&pod.cgroup(&id));
            pod.log_entry(&logs, container, &id);
            let procs: Vec<String> = hierarchies()
                .iter()
                .map(|h| {
                    h.join(cgroup.path.trim_start_matches('/'))
                        .join("cgroup.procs")
                        .display()
                        .to_string()
                })
                .collect();
            // The container's namespaces first, then its cgroup, as a runtime makes them: a
            // process that joined the cgroup while still in the node's namespaces would be
            // counted, rightly, as a container sharing them. The cgroup namespace last, so
            // that its root is the container's cgroup (on this side of the move, cgroup v2
            // refuses it).
            let own = if *host_network {
                "--ipc --mount"
            } else {
                "--net --uts --ipc --mount"
            };
            starts.push_str(&format!(
                "unshare --pid --fork unshare {own} sh -c 'for f in \"$@\"; do echo 0 > \"$f\"; \
                 done; exec unshare --cgroup sleep 1000' sh {} &\n",
                procs.join(" ")
            ));
            cgroups.push(cgroup);
            pods.push(pod);
        }
        let path = |p: PathBuf| {
            let s = p.display().to_string();
            assert!(!s.contains([' ', '\'', '"']), "{s}");
            s
        };
        let script = format!(
            "{BIN} --web.listen-address=127.0.0.1:{port} --scan.interval=500ms \
             --path.kubelet-logs={} 2>{} &\n\
             while [ ! -e {} ]; do sleep 0.1; done\n{starts}wait\n",
            path(logs),
            path(dir.path().join("exporter.log")),
            path(dir.path().join("go")),
        );
        let root = Spawned::new(
            "unshare",
            &[
                "--pid",
                "--fork",
                "--mount-proc",
                "--uts",
                "--ipc",
                "sh",
                "-c",
                &script,
            ],
        );
        let mut node = Node {
            root,
            _cgroups: cgroups,
            dir,
            name,
            workloads,
            pods,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http(port, "GET", "/readyz", &[]).is_ok_and(|r| r.status == 200) {
            if let Ok(Some(status)) = node.root.child.try_wait() {
                panic!("{name} exited ({status}): {}", node.log());
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s exporter is not ready: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("exporter.log")).unwrap_or_default()
    }

    /// Starts the node's containers.
    fn go(&self) {
        std::fs::write(self.dir.path().join("go"), "").unwrap();
    }

    fn metrics(&self) -> Metrics {
        let r = http(self.port, "GET", "/metrics", &[]).expect("/metrics");
        assert_eq!(r.status, 200);
        Metrics::parse(&r.text())
    }

    fn host_network(&self) -> usize {
        self.workloads.iter().filter(|w| w.3).count()
    }

    /// Namespaces with a process, by type, as this node is made: its own of each type, and
    /// each container's own (pid, ipc, mnt, cgroup; net and uts unless hostNetwork).
    fn expected_namespaces(&self, t: &str) -> usize {
        let containers = self.workloads.len();
        1 + match t {
            "pid" | "ipc" | "mnt" | "cgroup" => containers,
            "net" | "uts" => containers - self.host_network(),
            _ => 0,
        }
    }
}

/// Namespaces of type `t` that have a process in `m` (not only a bind mount or fd).
fn with_process(m: &Metrics, t: &str) -> usize {
    m.find("nsexporter_namespace_info", &[("type", t)])
        .iter()
        .filter(|s| {
            s.labels
                .get("held_by")
                .is_some_and(|h| h.contains("process"))
        })
        .count()
}

/// A Kubernetes label name as a Prometheus label name suffix: `app.kubernetes.io/name` →
/// `app_kubernetes_io_name` (what service discovery and the Operator do).
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A ServiceMonitor relabeling (camelCase, as the CRD spells it) as a Prometheus relabel
/// config; a key this does not know fails the test rather than being dropped.
fn relabel_config(r: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (k, v) in r.as_object().expect("a relabeling is a mapping") {
        let key = match k.as_str() {
            "sourceLabels" => "source_labels",
            "targetLabel" => "target_label",
            "action" => {
                out.insert(
                    "action".into(),
                    json!(v.as_str().unwrap().to_ascii_lowercase()),
                );
                continue;
            }
            "regex" | "replacement" | "separator" | "modulus" => k.as_str(),
            other => panic!("{SERVICE_MONITOR}: relabeling key {other} is not handled here"),
        };
        out.insert(key.into(), v.clone());
    }
    Value::Object(out)
}

/// The static target for the endpoint of the pod `pod` on `node`, with the labels the
/// Kubernetes endpoints role gives it, for a Service with `service_labels` and a port named
/// `port_name`.
fn endpoint_target(
    address: &str,
    service: &Value,
    port_name: &str,
    pod: &str,
    node: &str,
) -> Value {
    let mut labels = serde_json::Map::new();
    let meta = &service["metadata"];
    labels.insert(
        "__meta_kubernetes_namespace".into(),
        meta["namespace"].clone(),
    );
    labels.insert(
        "__meta_kubernetes_service_name".into(),
        meta["name"].clone(),
    );
    labels.insert(
        "__meta_kubernetes_endpoints_name".into(),
        meta["name"].clone(),
    );
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        let k = sanitize(k);
        labels.insert(format!("__meta_kubernetes_service_label_{k}"), v.clone());
        labels.insert(
            format!("__meta_kubernetes_service_labelpresent_{k}"),
            json!("true"),
        );
    }
    for (k, v) in [
        ("__meta_kubernetes_endpoint_port_name", port_name),
        ("__meta_kubernetes_endpoint_ready", "true"),
        ("__meta_kubernetes_endpoint_address_target_kind", "Pod"),
        ("__meta_kubernetes_endpoint_address_target_name", pod),
        ("__meta_kubernetes_pod_name", pod),
        ("__meta_kubernetes_pod_container_name", "nsexporter"),
        ("__meta_kubernetes_pod_node_name", node),
        ("__meta_kubernetes_pod_phase", "Running"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    json!({"targets": [address], "labels": labels})
}

/// The scrape job the Prometheus Operator generates for the ServiceMonitor's first endpoint
/// (its `generateServiceMonitorConfig`), with the endpoints role replaced by `targets`.
fn service_monitor_job(sm: &Value, targets: Vec<Value>) -> Value {
    let spec = &sm["spec"];
    let endpoint = &spec["endpoints"][0];
    let port = endpoint["port"].as_str().expect("endpoints[0].port");
    let mut relabel =
        vec![json!({"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"})];
    // The namespaceSelector, which the Operator puts in the service discovery config.
    let namespaces = spec["namespaceSelector"]["matchNames"]
        .as_array()
        .expect("namespaceSelector.matchNames")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("|");
    relabel.push(json!({"action": "keep", "source_labels": ["__meta_kubernetes_namespace"], "regex": namespaces}));
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .expect("selector.matchLabels")
    {
        let k = sanitize(k);
        relabel.push(json!({
            "action": "keep",
            "source_labels": [
                format!("__meta_kubernetes_service_label_{k}"),
                format!("__meta_kubernetes_service_labelpresent_{k}"),
            ],
            "regex": format!("({});true", v.as_str().unwrap()),
        }));
    }
    relabel.push(json!({"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": port}));
    for (kind, label) in [("Node", "node"), ("Pod", "pod")] {
        relabel.push(json!({
            "source_labels": ["__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"],
            "separator": ";",
            "regex": format!("{kind};(.*)"),
            "replacement": "${1}",
            "target_label": label,
        }));
    }
    for (source, target) in [
        ("__meta_kubernetes_namespace", "namespace"),
        ("__meta_kubernetes_service_name", "service"),
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_pod_container_name", "container"),
    ] {
        relabel.push(json!({"source_labels": [source], "target_label": target}));
    }
    relabel.push(json!({"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"}));
    relabel.push(json!({"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"}));
    if let Some(job_label) = spec["jobLabel"].as_str() {
        relabel.push(json!({
            "source_labels": [format!("__meta_kubernetes_service_label_{}", sanitize(job_label))],
            "target_label": "job",
            "regex": "(.+)",
            "replacement": "${1}",
        }));
    }
    relabel.push(json!({"target_label": "endpoint", "replacement": port}));
    let own: Vec<Value> = endpoint["relabelings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(relabel_config)
        .collect();
    assert!(!own.is_empty(), "{SERVICE_MONITOR}: no relabelings");
    relabel.extend(own);
    let namespace = sm["metadata"]["namespace"].as_str().unwrap();
    let name = sm["metadata"]["name"].as_str().unwrap();
    json!({
        "job_name": format!("serviceMonitor/{namespace}/{name}/0"),
        "honor_labels": endpoint["honorLabels"].as_bool().unwrap_or(false),
        "metrics_path": endpoint["path"].as_str().unwrap_or("/metrics"),
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": targets,
        "relabel_configs": relabel,
    })
}

/// `{label value: sample value}` of an instant query's result.
fn by(result: &[Value], label: &str) -> BTreeMap<String, f64> {
    result
        .iter()
        .map(|s| {
            (
                s["metric"][label].as_str().unwrap_or("").to_string(),
                s["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect()
}

/// Polls `f` until it equals `want`, then returns; past `timeout`, fails showing both.
fn settle<T: PartialEq + std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    want: &T,
    mut f: impl FnMut() -> T,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = f();
        if &got == want {
            return;
        }
        if Instant::now() > deadline {
            assert_eq!(&got, want, "{what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root (unshare, cgroups) and prometheus (scripts/install-test-deps)"]
fn three_nodes_one_prometheus_recording_rules_dashboard_and_remote_write() {
    let started = Instant::now();
    let nodes: Vec<Node> = NODES
        .iter()
        .map(|(name, workloads)| Node::start(name, workloads))
        .collect();

    // The central store: a second Prometheus that takes remote-write.
    let central = Prometheus::start_with_files(
        &json!({"global": {"evaluation_interval": "1s"}}).to_string(),
        &[],
        &["--web.enable-remote-write-receiver"],
    );

    // The cluster's Prometheus: the ServiceMonitor's job, the recording rules, remote-write of
    // their series only.
    let sm = crate::support::yaml::file(SERVICE_MONITOR);
    let service = crate::support::yaml::file(SERVICE);
    let port_name = sm["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let mut targets: Vec<Value> = nodes
        .iter()
        .map(|n| {
            endpoint_target(
                &format!("127.0.0.1:{}", n.port),
                &service,
                port_name,
                &format!("nsexporter-{}", &n.name[5..]),
                n.name,
            )
        })
        .collect();
    // Decoys on node-a's port: another Service's endpoint, and another port of this one.
    let mut other = service.clone();
    other["metadata"]["name"] = json!("other");
    other["metadata"]["labels"]["app.kubernetes.io/name"] = json!("other");
    let a = format!("127.0.0.1:{}", nodes[0].port);
    targets.push(endpoint_target(&a, &other, port_name, "other-x", "node-a"));
    targets.push(endpoint_target(
        &a,
        &service,
        "web",
        "nsexporter-x",
        "node-a",
    ));
    let job = service_monitor_job(&sm, targets);

    let recording = std::fs::read_to_string(manifest_dir().join(RECORDING)).unwrap();
    assert_eq!(recording.matches("    interval: 1m\n").count(), 1);
    let recording = recording.replace("    interval: 1m\n", "    interval: 1s\n");
    let config = json!({
        "global": {
            "scrape_interval": "1s",
            "evaluation_interval": "1s",
            "external_labels": {"cluster": CLUSTER},
        },
        "rule_files": ["recording.yaml"],
        "scrape_configs": [job],
        "remote_write": [{
            "url": format!("http://127.0.0.1:{}/api/v1/write", central.port),
            "write_relabel_configs": [
                {"source_labels": ["__name__"], "regex": REMOTE_WRITE_KEEP, "action": "keep"}
            ],
            "queue_config": {"batch_send_deadline": "1s"},
        }],
    });
    let prometheus = Prometheus::start_with_files(
        &config.to_string(),
        &[("recording.yaml".to_string(), recording)],
        &[],
    );

    // Three targets, named by their node; the decoys dropped.
    let names: Vec<&str> = nodes.iter().map(|n| n.name).collect();
    settle(
        "one target up per node, instance = node",
        Duration::from_secs(30),
        &names
            .iter()
            .map(|n| (n.to_string(), 1.0))
            .collect::<BTreeMap<_, _>>(),
        || by(&prometheus.query("up == 1"), "instance"),
    );
    let up = prometheus.query("up");
    assert_eq!(up.len(), 3, "the decoys are scraped: {up:?}");
    for s in &up {
        let m = &s["metric"];
        assert_eq!(m["node"], m["instance"], "{m}");
        for (k, v) in [
            ("job", "nsexporter"),
            ("namespace", "nsexporter"),
            ("service", "nsexporter"),
            ("endpoint", port_name),
        ] {
            assert_eq!(m[k], v, "{k}: {m}");
        }
        assert!(
            m["pod"].is_null() && m["container"].is_null(),
            "the target's pod and container are dropped: {m}"
        );
    }

    // The containers start after the first scrape, so their findings are new in Prometheus.
    for n in &nodes {
        n.go();
    }
    for n in &nodes {
        settle(
            &format!("{}'s namespaces with a process", n.name),
            Duration::from_secs(20),
            &TYPES
                .iter()
                .map(|t| n.expected_namespaces(t))
                .collect::<Vec<_>>(),
            || {
                let m = n.metrics();
                TYPES.iter().map(|t| with_process(&m, t)).collect()
            },
        );
        let m = n.metrics();
        for pod in &n.pods {
            assert!(
                !m.find("nsexporter_namespace_info", &[("pod", &pod.name)])
                    .is_empty(),
                "{}: {} not attributed",
                n.name,
                pod.name
            );
        }
    }
    let expositions: Vec<Metrics> = nodes.iter().map(Node::metrics).collect();

    // Per node: Prometheus holds what each exporter serves, under its node's name.
    for (n, m) in nodes.iter().zip(&expositions) {
        let want: BTreeMap<String, f64> = m
            .find("nsexporter_namespaces", &[])
            .iter()
            .map(|s| (s.labels["type"].clone(), s.value))
            .collect();
        settle(
            &format!("nsexporter_namespaces on {}", n.name),
            Duration::from_secs(20),
            &want,
            || {
                by(
                    &prometheus.query(&format!(
                        r#"nsexporter_namespaces{{instance="{}", node="{}"}}"#,
                        n.name, n.name
                    )),
                    "type",
                )
            },
        );
        let findings = prometheus.query(&format!(
            r#"nsexporter_sharing_findings_active{{instance="{}"}}"#,
            n.name
        ));
        let mut got: Vec<(String, String, String)> = findings
            .iter()
            .map(|s| {
                let l = &s["metric"];
                (
                    l["type"].as_str().unwrap_or("").into(),
                    l["pod"].as_str().unwrap_or("").into(),
                    l["container"].as_str().unwrap_or("").into(),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(String, String, String)> = n
            .workloads
            .iter()
            .filter(|w| w.3)
            .flat_map(|w| ["net", "uts"].map(|t| (t.into(), w.0.into(), w.2.into())))
            .collect();
        want.sort();
        assert_eq!(
            got, want,
            "{}: findings, with the exporter's pod labels",
            n.name
        );
    }

    // The cluster view: the recording rules over all three nodes.
    let sum_by_type: BTreeMap<String, f64> = TYPES
        .iter()
        .map(|t| {
            let total: f64 = expositions
                .iter()
                .filter_map(|m| m.value("nsexporter_namespaces", &[("type", t)]))
                .sum();
            (t.to_string(), total)
        })
        .collect();
    settle(
        "nsexporter:namespaces:sum_by_type",
        Duration::from_secs(20),
        &sum_by_type,
        || {
            by(
                &prometheus.query("nsexporter:namespaces:sum_by_type"),
                "type",
            )
        },
    );
    let host_network: usize = nodes.iter().map(Node::host_network).sum();
    settle(
        "nsexporter:sharing_findings_active:count_by_rule_type",
        Duration::from_secs(20),
        &[("net", host_network as f64), ("uts", host_network as f64)]
            .map(|(t, v)| (format!("host_namespace/{t}"), v))
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        || {
            prometheus
                .query("nsexporter:sharing_findings_active:count_by_rule_type")
                .iter()
                .map(|s| {
                    let l = &s["metric"];
                    (
                        format!(
                            "{}/{}",
                            l["rule"].as_str().unwrap(),
                            l["type"].as_str().unwrap()
                        ),
                        s["value"][1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        },
    );
    let mut host_sharing: BTreeMap<String, f64> = BTreeMap::new();
    for m in &expositions {
        for s in m.find("nsexporter_workload_host_namespace", &[]) {
            *host_sharing
                .entry(format!(
                    "{}/{}",
                    s.labels["type"], s.labels["k8s_namespace"]
                ))
                .or_default() += 1.0;
        }
    }
    settle(
        "nsexporter:workload_host_namespace:count_by_type_k8s_namespace",
        Duration::from_secs(20),
        &host_sharing,
        || {
            prometheus
                .query("nsexporter:workload_host_namespace:count_by_type_k8s_namespace")
                .iter()
                .map(|s| {
                    let l = &s["metric"];
                    (
                        format!(
                            "{}/{}",
                            l["type"].as_str().unwrap(),
                            l["k8s_namespace"].as_str().unwrap()
                        ),
                        s["value"][1].as_str().unwrap().parse().unwrap(),
                    )
                })
                .collect()
        },
    );
    assert_eq!(
        by(&prometheus.query("nsexporter:scan_success:avg"), ""),
        BTreeMap::from([(String::new(), 1.0)])
    );
    // New findings in the last hour: one net and one uts per hostNetwork container, counted
    // by each node. increase() extrapolates a young series upwards (never down): it comes down
    // to within a quarter of the count once a few seconds of samples are in.
    let count = host_network as f64;
    let mut events = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        events = by(
            &prometheus.query(
                r#"nsexporter:sharing_findings:increase1h_by_rule_type{rule="host_namespace"}"#,
            ),
            "type",
        );
        let near = |t: &str| {
            events
                .get(t)
                .is_some_and(|v| (count..count + 0.5).contains(v))
        };
        if near("net") && near("uts") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for t in ["net", "uts"] {
        let v = events.get(t).copied().unwrap_or(0.0);
        assert!(
            (count..count + 0.5).contains(&v),
            "new {t} findings in the last hour: {v}, want {count} (extrapolated): {events:?}"
        );
    }
    let created = by(
        &prometheus.query("nsexporter:namespaces_created:rate5m_by_type"),
        "type",
    );
    assert!(
        created.get("pid").is_some_and(|v| *v > 0.0),
        "the containers' pid namespaces were created after the first scan: {created:?}"
    );

    // The dashboard's node variable lists the three nodes; each node's panels show that node
    // alone, and All shows the cluster, as the recording rules count it.
    let d = dashboard();
    let instance_query = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "instance")
        .and_then(|v| v["query"].as_str())
        .expect("an instance variable");
    let (selector, label) =
        label_values(&substitute(instance_query, &[("job", "nsexporter")])).unwrap();
    let answer = prometheus.api(&format!(
        "/api/v1/label/{label}/values?match[]={}",
        encode(&selector)
    ));
    assert_eq!(answer["data"], json!(names), "{instance_query}");
    let all = format!("({})", names.join("|"));
    let panel = |instance: &str, title: &str, ref_id: &str| -> Option<f64> {
        let q = queries(&d)
            .into_iter()
            .find(|q| q.panel == title && q.ref_id == ref_id)
            .unwrap_or_else(|| panic!("no panel {title:?} {ref_id}"));
        let expr = substitute(&q.expr, &variables(instance));
        let result = prometheus.query(&expr);
        assert!(result.len() <= 1, "{title}: {result:?}");
        result
            .first()
            .map(|s| s["value"][1].as_str().unwrap().parse().unwrap())
    };
    let mut per_node_series = Vec::new();
    for (n, m) in nodes.iter().zip(&expositions) {
        let namespaces: f64 = m
            .find("nsexporter_namespaces", &[])
            .iter()
            .map(|s| s.value)
            .sum();
        assert_eq!(
            panel(n.name, "Namespaces", "A"),
            Some(namespaces),
            "{}",
            n.name
        );
        assert_eq!(
            panel(n.name, "Active sharing findings", "A"),
            Some(2.0 * n.host_network() as f64),
            "{}",
            n.name
        );
        assert_eq!(panel(n.name, "Exporters up / down", "A"), Some(1.0));
        // Every series any panel shows for this node is this node's.
        for q in queries(&d) {
            let expr = substitute(&q.expr, &variables(n.name));
            for s in prometheus.query(&expr) {
                let i = &s["metric"]["instance"];
                assert!(
                    i.is_null() || i == n.name,
                    "{} {} for {}: a series of {i}",
                    q.panel,
                    q.ref_id,
                    n.name
                );
            }
        }
        let series = prometheus.query(&format!(r#"count({{instance="{}"}})"#, n.name));
        per_node_series.push(format!(
            "{} {}",
            n.name,
            series[0]["value"][1].as_str().unwrap()
        ));
    }
    let cluster_namespaces: f64 = sum_by_type.values().sum();
    assert_eq!(panel(&all, "Namespaces", "A"), Some(cluster_namespaces));
    assert_eq!(
        panel(&all, "Active sharing findings", "A"),
        Some(2.0 * host_network as f64)
    );
    assert_eq!(panel(&all, "Exporters up / down", "A"), Some(3.0));

    // Remote-write: the central Prometheus holds the recording rules' series, with the
    // cluster's external label, at the same values, and nothing else.
    // Compared sample by sample at one evaluation's timestamp: the last one the central
    // Prometheus has every series of.
    let recorded = prometheus.query(r#"{__name__=~"nsexporter:.+"}"#);
    let at = loop {
        let last = central.query(r#"timestamp(nsexporter:scan_success:avg)"#);
        if let Some(t) = last.first() {
            let t: f64 = t["value"][1].as_str().unwrap().parse().unwrap();
            if samples_at(&central, t, None).len() == recorded.len() {
                break t;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "remote-written series missing in the central Prometheus: {recorded:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let here = samples_at(&prometheus, at, Some(CLUSTER));
    let there = samples_at(&central, at, None);
    assert_eq!(there.len(), recorded.len());
    assert_eq!(there, here, "remote-written series and values");
    let names_there = by(
        &central.query(r#"count by (__name__) ({__name__=~".+"})"#),
        "__name__",
    );
    assert!(
        names_there.keys().all(|n| n.starts_with("nsexporter:")),
        "only the recording rules' series are written: {names_there:?}"
    );

    eprintln!(
        "series per node: {}; recording series in the cluster view: {} (remote-written: {}, \
         names {}); {:.1} s in all",
        per_node_series.join(", "),
        recorded.len(),
        there.len(),
        names_there.len(),
        started.elapsed().as_secs_f64()
    );
    drop(prometheus);
    drop(central);
    drop(nodes);
}

/// The recording rules' samples taken at exactly Unix time `t` in `p`, as (labels, value),
/// with `cluster` added to the labels when given (the external label remote-write adds).
fn samples_at(p: &Prometheus, t: f64, cluster: Option<&str>) -> BTreeMap<String, String> {
    let want = format!("{t:.3}");
    p.query_at(r#"{__name__=~"nsexporter:.+"}[2s]"#, t)
        .into_iter()
        .filter_map(|s| {
            let mut labels = s["metric"].clone();
            if let Some(c) = cluster {
                labels["cluster"] = json!(c);
            }
            let sample = s["values"]
                .as_array()?
                .iter()
                .find(|v| v[0].as_f64().is_some_and(|ts| format!("{ts:.3}") == want))?
                .clone();
            Some((labels.to_string(), sample[1].as_str()?.to_string()))
        })
        .collect()
}

/// Grafana's variables for the dashboard's queries with `instance` selected (a node's name, or
/// the regex Grafana makes of All), as `tests/it/dashboard.rs` substitutes them otherwise.
fn variables(instance: &str) -> [(&str, &str); 7] {
    [
        ("__rate_interval", "4s"),
        ("__interval_ms", "1000"),
        ("__interval", "1s"),
        ("__range_s", "60"),
        ("__range", "60s"),
        ("instance", instance),
        ("job", "nsexporter"),
    ]
}

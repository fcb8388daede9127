//! The per-scan view: every per-namespace and per-container series of one scan, with its label
//! values built once when the scan ends, rendered as const metrics each time the registry is
//! gathered (node_exporter's collectors work this way). Nothing is reset and refilled: the next
//! scan's view replaces this one whole, so no series outlives its namespace or container.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Gauge, LabelPair, Metric, MetricFamily, MetricType};

use crate::model::NsType;

/// One namespace's series.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub ns_type: NsType,
    pub inode: String,
    pub processes: usize,
    /// `host`, `owner`, `runtime`, `pod_uid`, `pod`, `k8s_namespace`, `container`,
    /// `container_id`, in [`INFO_LABELS`] order.
    pub info: [String; 8],
    /// Estimated creation as unix time, where known.
    pub start_time: Option<f64>,
}

/// The labels of `nsexporter_namespace_info` after `type` and `inode`.
pub const INFO_LABELS: [&str; 8] = [
    "host",
    "owner",
    "runtime",
    "pod_uid",
    "pod",
    "k8s_namespace",
    "container",
    "container_id",
];

/// The labels that name a container, in this order, after `type` (and `rule`).
pub const WORKLOAD_LABELS: [&str; 5] = [
    "runtime",
    "container_id",
    "container",
    "pod",
    "k8s_namespace",
];

/// A container in the host's namespace of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSharingRow {
    pub ns_type: NsType,
    pub workload: [String; 5],
}

/// A finding.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingRow {
    pub rule: &'static str,
    pub ns_type: NsType,
    pub workload: [String; 5],
}

/// Everything one scan exports per namespace and per container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanView {
    pub namespaces: Vec<NamespaceRow>,
    pub host_sharing: Vec<HostSharingRow>,
    pub findings: Vec<FindingRow>,
}

/// Renders the current [`ScanView`] when gathered.
pub struct ViewCollector {
    view: Mutex<Arc<ScanView>>,
    descs: Vec<Desc>,
}

const PROCESSES: (&str, &str) = (
    "nsexporter_namespace_processes",
    "Member processes of each namespace in the last scan.",
);
const INFO: (&str, &str) = (
    "nsexporter_namespace_info",
    "One series per namespace seen in the last scan; host=\"true\" marks the host's namespace of that type, owner says what its members belong to, and the container labels are set where all members agree.",
);
const START_TIME: (&str, &str) = (
    "nsexporter_namespace_start_time_seconds",
    "Estimated creation time of each namespace: the earliest start time of any member seen, as unix time.",
);
const HOST_SHARING: (&str, &str) = (
    "nsexporter_workload_host_namespace",
    "1 for each container with a process in the host's namespace of that type, allowed or not.",
);
const FINDINGS: (&str, &str) = (
    "nsexporter_sharing_findings_active",
    "1 for each sharing the policy does not allow, now, by rule (host_namespace, cross_workload, host_mount_from_container); nsexporter_sharing_findings_total counts them as they appear.",
);

impl ViewCollector {
    pub fn new() -> Self {
        let desc = |(name, help): (&str, &str), labels: Vec<&str>| {
            Desc::new(
                name.into(),
                help.into(),
                labels.into_iter().map(String::from).collect(),
                Default::default(),
            )
            .expect("valid metric names")
        };
        let workload = |first: &[&'static str]| [first, &WORKLOAD_LABELS[..]].concat();
        ViewCollector {
            view: Mutex::new(Arc::new(ScanView::default())),
            descs: vec![
                desc(PROCESSES, vec!["type", "inode"]),
                desc(INFO, [&["type", "inode"][..], &INFO_LABELS].concat()),
                desc(START_TIME, vec!["type", "inode"]),
                desc(HOST_SHARING, workload(&["type"])),
                desc(FINDINGS, workload(&["rule", "type"])),
            ],
        }
    }

    /// Replaces the view; the next gather renders it.
    pub fn set(&self, view: ScanView) {
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }

    /// The view the next gather renders.
    pub fn get(&self) -> Arc<ScanView> {
        Arc::clone(&self.view.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Default for ViewCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// A gauge sample with these labels, sorted by name as the text format's other metrics are.
fn sample(labels: &[(&str, &str)], value: f64) -> Metric {
    let mut pairs: Vec<LabelPair> = labels
        .iter()
        .map(|(name, value)| {
            let mut p = LabelPair::default();
            p.set_name((*name).to_owned());
            p.set_value((*value).to_owned());
            p
        })
        .collect();
    pairs.sort_by(|a, b| a.name().cmp(b.name()));
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(pairs);
    m
}

fn family((name, help): (&str, &str), metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(MetricType::GAUGE);
    f.set_metric(metrics);
    f
}

fn workload_labels<'a>(
    first: &[(&'a str, &'a str)],
    w: &'a [String; 5],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = first.to_vec();
    labels.extend(WORKLOAD_LABELS.iter().zip(w).map(|(n, v)| (*n, v.as_str())));
    labels
}

impl Collector for ViewCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let view = self.get();
        let n = view.namespaces.len();
        let (mut processes, mut info, mut start) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ns in &view.namespaces {
            let id = [("type", ns.ns_type.as_str()), ("inode", ns.inode.as_str())];
            processes.push(sample(&id, ns.processes as f64));
            let mut labels = id.to_vec();
            labels.extend(
                INFO_LABELS
                    .iter()
                    .zip(&ns.info)
                    .map(|(n, v)| (*n, v.as_str())),
            );
            info.push(sample(&labels, 1.0));
            if let Some(t) = ns.start_time {
                start.push(sample(&id, t));
            }
        }
        let host = view
            .host_sharing
            .iter()
            .map(|h| {
                sample(
                    &workload_labels(&[("type", h.ns_type.as_str())], &h.workload),
                    1.0,
                )
            })
            .collect();
        let findings = view
            .findings
            .iter()
            .map(|f| {
                let first = [("rule", f.rule), ("type", f.ns_type.as_str())];
                sample(&workload_labels(&first, &f.workload), 1.0)
            })
            .collect();
        vec![
            family(PROCESSES, processes),
            family(INFO, info),
            family(START_TIME, start),
            family(HOST_SHARING, host),
            family(FINDINGS, findings),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn render(c: &Arc<ViewCollector>) -> String {
        struct Handle(Arc<ViewCollector>);
        impl Collector for Handle {
            fn desc(&self) -> Vec<&Desc> {
                self.0.desc()
            }
            fn collect(&self) -> Vec<MetricFamily> {
                self.0.collect()
            }
        }
        let registry = Registry::new();
        registry.register(Box::new(Handle(Arc::clone(c)))).unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn workload(id: &str) -> [String; 5] {
        ["containerd", id, "app", "web-1", "default"].map(String::from)
    }

    #[test]
    fn a_view_renders_as_sorted_const_metrics_and_replaces_the_last() {
        let c = Arc::new(ViewCollector::new());
        c.set(ScanView {
            namespaces: vec![
                NamespaceRow {
                    ns_type: NsType::Net,
                    inode: "4026531840".into(),
                    processes: 3,
                    info: ["true", "host", "", "", "", "", "", ""].map(String::from),
                    start_time: Some(1700000000.5),
                },
                NamespaceRow {
                    ns_type: NsType::Mnt,
                    inode: "4026532300".into(),
                    processes: 1,
                    info: [
                        "false",
                        "container",
                        "containerd",
                        "uid-1",
                        "web-1",
                        "default",
                        "app",
                        "aa",
                    ]
                    .map(String::from),
                    start_time: None,
                },
            ],
            host_sharing: vec![HostSharingRow {
                ns_type: NsType::Net,
                workload: workload("aa"),
            }],
            findings: vec![FindingRow {
                rule: "host_namespace",
                ns_type: NsType::Net,
                workload: workload("aa"),
            }],
        });
        let text = render(&c);
        assert_eq!(
            samples(&text),
            [
                r#"nsexporter_namespace_info{container="",container_id="",host="true",inode="4026531840",k8s_namespace="",owner="host",pod="",pod_uid="",runtime="",type="net"} 1"#,
                r#"nsexporter_namespace_info{container="app",container_id="aa",host="false",inode="4026532300",k8s_namespace="default",owner="container",pod="web-1",pod_uid="uid-1",runtime="containerd",type="mnt"} 1"#,
                r#"nsexporter_namespace_processes{inode="4026531840",type="net"} 3"#,
                r#"nsexporter_namespace_processes{inode="4026532300",type="mnt"} 1"#,
                // No start time known for the second: no series, rather than a zero.
                r#"nsexporter_namespace_start_time_seconds{inode="4026531840",type="net"} 1700000000.5"#,
                r#"nsexporter_sharing_findings_active{container="app",container_id="aa",k8s_namespace="default",pod="web-1",rule="host_namespace",runtime="containerd",type="net"} 1"#,
                r#"nsexporter_workload_host_namespace{container="app",container_id="aa",k8s_namespace="default",pod="web-1",runtime="containerd",type="net"} 1"#,
            ]
        );
        assert!(text.contains("# TYPE nsexporter_namespace_info gauge\n"));

        // The next scan's view replaces this one whole: nothing of the last is left.
        c.set(ScanView::default());
        assert_eq!(samples(&render(&c)), Vec::<&str>::new());
    }
}

//! The per-scan view: every per-namespace and per-container series of one scan, with its label
//! values built once when the scan ends, written straight into the text exposition by the one
//! encoder ([`super::encode`]). Nothing is
//! reset and refilled: the next scan's view replaces this one whole, so no series outlives its
//! namespace or container. No intermediate metric objects are built either: at 10,000
//! processes those (a label-pair object per label per series) were most of the exporter's peak
//! memory.

use std::sync::Arc;

use super::cap::BeyondCapRow;
use super::encode::{Sample, TextOut, write_samples};
use super::families::{Id, WrittenBy};
use crate::model::{HeldBy, NetHolds, NsType};
use crate::sharing::Ownership;

/// One namespace's series: small, as a node has thousands; the labels of what owns it are
/// shared with the scan's sharing result, not copied.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub ns_type: NsType,
    pub inode: u64,
    pub processes: u32,
    pub host: bool,
    pub ownership: Arc<Ownership>,
    /// Estimated creation as unix time, where known.
    pub start_time: Option<f64>,
    pub held_by: HeldBy,
    /// The paths bind mounts pin it at, comma-separated; empty where none does.
    pub pinned_at: String,
    /// The inode of the owning user namespace (`NS_GET_USERNS`); empty where unknown.
    pub userns: String,
    /// The inode of the parent pid or user namespace (`NS_GET_PARENT`); empty for other
    /// types and where unknown.
    pub parent: String,
}

impl NamespaceRow {
    /// The `nsexporter_namespace_info` label values after `type` and `inode`, in the order of
    /// the family's labels.
    fn info(&self) -> [&str; 12] {
        let o = &*self.ownership;
        [
            if self.host { "true" } else { "false" },
            self.held_by.as_str(),
            &self.pinned_at,
            &self.userns,
            &self.parent,
            o.owner.as_str(),
            &o.runtime,
            &o.pod_uid,
            &o.pod,
            &o.k8s_namespace,
            &o.container,
            &o.container_id,
        ]
    }
}

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
    /// `true`, `false` or `unknown`: whether the container's spec declared it.
    pub declared: &'static str,
    pub workload: [String; 5],
}

/// A container's privilege: its four container labels, then the privilege labels, in the
/// order of `nsexporter_container_privilege_info`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct PrivilegeRow {
    pub labels: [String; 11],
}

/// What one network namespace holds, for its series.
#[derive(Debug, Clone, PartialEq)]
pub struct NetRow {
    pub inode: u64,
    pub holds: NetHolds,
}

impl NetRow {
    /// The traffic counter `id` writes, where the interfaces were read.
    fn traffic(&self, id: Id) -> Option<u64> {
        let (_, t) = self.holds.interfaces?;
        Some(match id {
            Id::NetnsReceiveBytes => t.receive_bytes,
            Id::NetnsTransmitBytes => t.transmit_bytes,
            Id::NetnsReceivePackets => t.receive_packets,
            Id::NetnsTransmitPackets => t.transmit_packets,
            Id::NetnsReceiveErrors => t.receive_errors,
            Id::NetnsTransmitErrors => t.transmit_errors,
            Id::NetnsReceiveDrops => t.receive_drops,
            Id::NetnsTransmitDrops => t.transmit_drops,
            _ => return None,
        })
    }
}

/// Everything one scan exports per namespace and per container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanView {
    pub namespaces: Vec<NamespaceRow>,
    /// What the network namespaces among `namespaces` hold, where it was read.
    pub net: Vec<NetRow>,
    /// The mounts of the mount namespaces among `namespaces`, by inode, where read.
    pub mounts: Vec<(u64, u32)>,
    /// The sockets held from outside in the network namespaces among `namespaces` that have
    /// no member process, by inode: the one figure of such a namespace readable without setns.
    pub held_sockets: Vec<(u64, u64)>,
    /// The namespaces of workloads over the cap that have no row above, counted.
    pub beyond_cap: Vec<BeyondCapRow>,
    pub host_sharing: Vec<HostSharingRow>,
    pub findings: Vec<FindingRow>,
    pub privilege: Vec<PrivilegeRow>,
    /// Written into an exposition already, and its namespace and host sharing rows dropped:
    /// the exposition's text holds their series (see `Metrics::exposition`).
    pub encoded: bool,
}

impl ScanView {
    /// Writes family `id` by the one encoder ([`write_samples`]); nothing for a family without
    /// rows, or one a view does not write.
    pub fn write_family(&self, id: Id, out: &mut impl TextOut) {
        let family = id.family();
        if family.written_by != WrittenBy::View {
            return;
        }
        let one = |_: usize| Some(Sample::Number(1.0));
        match id {
            Id::WorkloadHostNamespace => {
                let rows = &self.host_sharing;
                let value = |r: usize, k: usize| match k {
                    0 => rows[r].ns_type.as_str(),
                    k => rows[r].workload[k - 1].as_str(),
                };
                write_samples(out, family, rows.len(), value, one);
            }
            Id::WorkloadNamespacesBeyondCap => {
                let rows = &self.beyond_cap;
                let value = |r: usize, k: usize| match k {
                    0 => rows[r].ns_type.as_str(),
                    k => rows[r].workload[k - 1].as_str(),
                };
                write_samples(out, family, rows.len(), value, |r| {
                    Some(Sample::Number(rows[r].namespaces as f64))
                });
            }
            Id::PrivilegeInfo => {
                let rows = &self.privilege;
                let value = |r: usize, k: usize| rows[r].labels[k].as_str();
                write_samples(out, family, rows.len(), value, one);
            }
            Id::NetnsInterfaces
            | Id::NetnsReceiveBytes
            | Id::NetnsTransmitBytes
            | Id::NetnsReceivePackets
            | Id::NetnsTransmitPackets
            | Id::NetnsReceiveErrors
            | Id::NetnsTransmitErrors
            | Id::NetnsReceiveDrops
            | Id::NetnsTransmitDrops
            | Id::NetnsConntrack => {
                let rows = &self.net;
                let inodes: Vec<String> = rows.iter().map(|r| r.inode.to_string()).collect();
                let value = |r: usize, _: usize| inodes[r].as_str();
                let number = |n: u64| Some(Sample::Number(n as f64));
                write_samples(out, family, rows.len(), value, |r| {
                    match id {
                        Id::NetnsInterfaces => rows[r].holds.interfaces.map(|(n, _)| u64::from(n)),
                        Id::NetnsConntrack => rows[r].holds.conntrack,
                        _ => rows[r].traffic(id),
                    }
                    .and_then(number)
                });
            }
            Id::NetnsSockets => {
                let series: Vec<(String, &'static str, u64)> = self
                    .net
                    .iter()
                    .flat_map(|r| {
                        let inode = r.inode.to_string();
                        r.holds
                            .sockets
                            .iter()
                            .map(move |&(p, n)| (inode.clone(), p.as_str(), n))
                    })
                    .collect();
                let value = |r: usize, k: usize| match k {
                    0 => series[r].0.as_str(),
                    _ => series[r].1,
                };
                write_samples(out, family, series.len(), value, |r| {
                    Some(Sample::Number(series[r].2 as f64))
                });
            }
            Id::NetnsHeldSockets => {
                let rows = &self.held_sockets;
                let inodes: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
                let value = |r: usize, _: usize| inodes[r].as_str();
                write_samples(out, family, rows.len(), value, |r| {
                    Some(Sample::Number(rows[r].1 as f64))
                });
            }
            Id::MountNamespaceMounts => {
                let rows = &self.mounts;
                let inodes: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
                let value = |r: usize, _: usize| inodes[r].as_str();
                write_samples(out, family, rows.len(), value, |r| {
                    Some(Sample::Number(f64::from(rows[r].1)))
                });
            }
            Id::FindingsActive => {
                let rows = &self.findings;
                let value = |r: usize, k: usize| match k {
                    0 => rows[r].rule,
                    1 => rows[r].ns_type.as_str(),
                    2 => rows[r].declared,
                    k => rows[r].workload[k - 3].as_str(),
                };
                write_samples(out, family, rows.len(), value, one);
            }
            _ => {
                // Inodes as text only while writing: a label value is text, a row keeps the
                // number.
                let inodes: Vec<String> = self
                    .namespaces
                    .iter()
                    .map(|ns| ns.inode.to_string())
                    .collect();
                let rows = &self.namespaces;
                let value = |r: usize, k: usize| match k {
                    0 => rows[r].ns_type.as_str(),
                    1 => inodes[r].as_str(),
                    k => rows[r].info()[k - 2],
                };
                let n = rows.len();
                match id {
                    Id::NamespaceProcesses => write_samples(out, family, n, value, |r| {
                        Some(Sample::Number(f64::from(rows[r].processes)))
                    }),
                    Id::NamespaceStartTime => write_samples(out, family, n, value, |r| {
                        rows[r].start_time.map(Sample::Number)
                    }),
                    _ => write_samples(out, family, n, value, one),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::families::{Family, Part};
    use crate::sharing::Owner;

    fn render(view: &ScanView) -> String {
        let mut out = Vec::new();
        for part in [Part::Scan, Part::Live] {
            for (id, _) in Family::all(WrittenBy::View, part) {
                view.write_family(id, &mut out);
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn samples(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    fn workload(id: &str) -> [String; 5] {
        ["containerd", id, "app", "web-1", "default"].map(String::from)
    }

    fn namespace(
        t: NsType,
        inode: u64,
        host: bool,
        o: Ownership,
        start: Option<f64>,
    ) -> NamespaceRow {
        NamespaceRow {
            ns_type: t,
            inode,
            processes: 1,
            host,
            ownership: Arc::new(o),
            start_time: start,
            held_by: HeldBy::default().with(crate::model::Holder::Process),
            pinned_at: String::new(),
            userns: "4026531837".into(),
            parent: String::new(),
        }
    }

    #[test]
    fn a_view_writes_sorted_samples_in_the_text_format() {
        let view = ScanView {
            namespaces: vec![
                namespace(
                    NsType::Mnt,
                    4026532300,
                    false,
                    Ownership {
                        owner: Owner::Container,
                        runtime: "containerd".into(),
                        pod_uid: "uid-1".into(),
                        pod: "web-1".into(),
                        k8s_namespace: "default".into(),
                        container: "app".into(),
                        container_id: "aa".into(),
                    },
                    None,
                ),
                NamespaceRow {
                    processes: 3,
                    ..namespace(
                        NsType::Net,
                        4026531840,
                        true,
                        Ownership {
                            owner: Owner::Host,
                            ..Ownership::default()
                        },
                        Some(1700000000.5),
                    )
                },
            ],
            beyond_cap: vec![BeyondCapRow {
                ns_type: NsType::Uts,
                workload: [
                    "container",
                    "containerd",
                    "uid-1",
                    "web-1",
                    "default",
                    "app",
                    "aa",
                ]
                .map(String::from),
                namespaces: 17900,
            }],
            host_sharing: vec![HostSharingRow {
                ns_type: NsType::Net,
                workload: workload("aa"),
            }],
            findings: vec![FindingRow {
                rule: "host_namespace",
                ns_type: NsType::Net,
                declared: "true",
                workload: workload("aa"),
            }],
            privilege: Vec::new(),
            net: vec![],
            mounts: vec![],
            held_sockets: vec![],
            encoded: false,
        };
        let text = render(&view);
        // Sorted by label values in label-name order (container first), as a registry sorts.
        assert_eq!(
            samples(&text),
            [
                r#"nsexporter_namespace_processes{inode="4026531840",type="net"} 3"#,
                r#"nsexporter_namespace_processes{inode="4026532300",type="mnt"} 1"#,
                r#"nsexporter_namespace_info{container="",container_id="",held_by="process",host="true",inode="4026531840",k8s_namespace="",owner="host",parent="",pinned_at="",pod="",pod_uid="",runtime="",type="net",userns="4026531837"} 1"#,
                r#"nsexporter_namespace_info{container="app",container_id="aa",held_by="process",host="false",inode="4026532300",k8s_namespace="default",owner="container",parent="",pinned_at="",pod="web-1",pod_uid="uid-1",runtime="containerd",type="mnt",userns="4026531837"} 1"#,
                // No start time known for the mnt namespace: no series rather than a zero.
                r#"nsexporter_namespace_start_time_seconds{inode="4026531840",type="net"} 1700000000.5"#,
                r#"nsexporter_workload_namespaces_beyond_cap{container="app",container_id="aa",k8s_namespace="default",owner="container",pod="web-1",pod_uid="uid-1",runtime="containerd",type="uts"} 17900"#,
                r#"nsexporter_workload_host_namespace{container="app",container_id="aa",k8s_namespace="default",pod="web-1",runtime="containerd",type="net"} 1"#,
                r#"nsexporter_sharing_findings_active{container="app",container_id="aa",declared="true",k8s_namespace="default",pod="web-1",rule="host_namespace",runtime="containerd",type="net"} 1"#,
            ]
        );
        assert!(text.contains(
            "# HELP nsexporter_namespace_info One series per namespace seen in the last scan; host=\"true\" marks"
        ));
        assert!(text.contains("# TYPE nsexporter_namespace_info gauge\n"));
        // A view without rows writes nothing, as a registry leaves empty families out.
        assert_eq!(render(&ScanView::default()), "");
    }

    #[test]
    fn label_values_are_escaped() {
        let view = ScanView {
            host_sharing: vec![HostSharingRow {
                ns_type: NsType::Pid,
                workload: ["docker", "id", "a\"b", "c\\d", "e\nf"].map(String::from),
            }],
            ..ScanView::default()
        };
        assert_eq!(
            samples(&render(&view)),
            [
                r#"nsexporter_workload_host_namespace{container="a\"b",container_id="id",k8s_namespace="e\nf",pod="c\\d",runtime="docker",type="pid"} 1"#
            ]
        );
    }

    /// A network namespace's holds: a series per part read, none for a part that was not (no
    /// conntrack, interfaces unread), sockets by protocol; mounts by inode.
    #[test]
    fn what_namespaces_hold_is_written_where_it_was_read() {
        use crate::model::{SocketProtocol, Traffic};
        let traffic = Traffic {
            receive_bytes: 10,
            transmit_bytes: 20,
            receive_packets: 1,
            transmit_packets: 2,
            receive_errors: 3,
            transmit_errors: 4,
            receive_drops: 5,
            transmit_drops: 6,
        };
        let view = ScanView {
            net: vec![
                NetRow {
                    inode: 4026532500,
                    holds: NetHolds {
                        interfaces: Some((3, traffic)),
                        sockets: vec![(SocketProtocol::Tcp, 7), (SocketProtocol::Udp6, 1)],
                        conntrack: Some(12),
                    },
                },
                NetRow {
                    inode: 4026532400,
                    holds: NetHolds::default(),
                },
            ],
            mounts: vec![(4026532300, 1000)],
            held_sockets: vec![(4026532600, 24)],
            ..ScanView::default()
        };
        let net = |name: &str, v: u64| {
            format!(r#"nsexporter_network_namespace_{name}{{inode="4026532500"}} {v}"#)
        };
        assert_eq!(
            samples(&render(&view)),
            [
                net("interfaces", 3),
                net("receive_bytes_total", 10),
                net("transmit_bytes_total", 20),
                net("receive_packets_total", 1),
                net("transmit_packets_total", 2),
                net("receive_errors_total", 3),
                net("transmit_errors_total", 4),
                net("receive_drops_total", 5),
                net("transmit_drops_total", 6),
                r#"nsexporter_network_namespace_sockets{inode="4026532500",protocol="tcp"} 7"#
                    .into(),
                r#"nsexporter_network_namespace_sockets{inode="4026532500",protocol="udp6"} 1"#
                    .into(),
                net("conntrack_entries", 12),
                r#"nsexporter_network_namespace_held_sockets{inode="4026532600"} 24"#.into(),
                r#"nsexporter_mount_namespace_mounts{inode="4026532300"} 1000"#.into(),
            ]
        );
    }
}

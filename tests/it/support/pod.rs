//! Kubernetes pods as a node's kubelet leaves them for the exporter to find: a pod uid, the
//! cgroup the kubelet's cgroupfs driver gives each of its containers, and the
//! `/var/log/containers` entry whose name says pod, namespace and container (only the name is
//! read).

use std::path::Path;

use super::runc::hex_id;

/// One simulated pod's identity.
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
}

impl Pod {
    pub fn new(name: impl Into<String>, namespace: impl Into<String>) -> Pod {
        let h = hex_id();
        Pod {
            uid: format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ),
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    /// The cgroup the kubelet's cgroupfs driver gives container `id` of this pod.
    pub fn cgroup(&self, id: &str) -> String {
        format!("/kubepods/burstable/pod{}/{id}", self.uid)
    }

    /// Writes the kubelet's log entry for `container` (id `id`) of this pod into `logs`.
    pub fn log_entry(&self, logs: &Path, container: &str, id: &str) {
        std::fs::write(
            logs.join(format!(
                "{}_{}_{container}-{id}.log",
                self.name, self.namespace
            )),
            "",
        )
        .unwrap();
    }
}

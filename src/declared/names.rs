//! Container names from a spec's annotations, which the CRI runtimes copy from the kubelet's
//! request: containerd's CRI plugin writes `io.kubernetes.cri.sandbox-name`,
//! `…sandbox-namespace`, `…sandbox-uid` and `…container-name` (containerd
//! `pkg/cri/annotations`); CRI-O writes `io.kubernetes.pod.name`, `…pod.namespace`,
//! `…pod.uid` and `io.kubernetes.container.name` (cri-o `pkg/annotations`). A node without
//! `/var/log/containers`, or one the exporter cannot read, still has names.
//!
//! The annotations are the runtime's record, written before the container's first process
//! runs, and the container cannot write its bundle; they are as trustworthy as the kubelet's
//! log names. Where both name a container the kubelet's win (the `NameSource` order).

use std::collections::BTreeMap;

use crate::attribution::ContainerNames;

/// (pod, namespace, container, pod uid) annotation keys, per runtime.
const KEYS: [[&str; 4]; 2] = [
    [
        "io.kubernetes.cri.sandbox-name",
        "io.kubernetes.cri.sandbox-namespace",
        "io.kubernetes.cri.container-name",
        "io.kubernetes.cri.sandbox-uid",
    ],
    [
        "io.kubernetes.pod.name",
        "io.kubernetes.pod.namespace",
        "io.kubernetes.container.name",
        "io.kubernetes.pod.uid",
    ],
];

/// The longest name kept: Kubernetes names are at most 253 bytes.
const NAME_LIMIT: usize = 253;

fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_LIMIT
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

/// The names the annotations give container `id`, if they name a pod. A sandbox (pause)
/// container has a pod and no container name: it is named `POD`, as the kubelet's Docker
/// names had it.
pub fn names_from_annotations(
    id: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<ContainerNames> {
    KEYS.iter().find_map(|[pod, ns, container, _uid]| {
        let pod = annotations.get(*pod).filter(|v| valid(v))?;
        let ns = annotations.get(*ns).filter(|v| valid(v))?;
        let container = match annotations.get(*container) {
            Some(c) if valid(c) => c.clone(),
            Some(_) => return None,
            None => "POD".to_owned(),
        };
        Some(ContainerNames {
            pod: pod.clone(),
            k8s_namespace: ns.clone(),
            container,
            container_id: id.to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containerd_and_cri_o_keys() {
        let cri = map(&[
            ("io.kubernetes.cri.sandbox-name", "web-0"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
            ("io.kubernetes.cri.container-name", "nginx"),
        ]);
        let n = names_from_annotations("abc", &cri).unwrap();
        assert_eq!(
            (
                n.pod.as_str(),
                n.k8s_namespace.as_str(),
                n.container.as_str()
            ),
            ("web-0", "shop", "nginx")
        );
        let crio = map(&[
            ("io.kubernetes.pod.name", "db-1"),
            ("io.kubernetes.pod.namespace", "data"),
            ("io.kubernetes.container.name", "pg"),
        ]);
        assert_eq!(names_from_annotations("abc", &crio).unwrap().pod, "db-1");
        let sandbox = map(&[
            ("io.kubernetes.cri.sandbox-name", "web-0"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
        ]);
        assert_eq!(
            names_from_annotations("abc", &sandbox).unwrap().container,
            "POD"
        );
    }

    #[test]
    fn no_pod_or_bad_names_is_none() {
        assert_eq!(names_from_annotations("a", &map(&[])), None);
        let bad = map(&[
            ("io.kubernetes.cri.sandbox-name", "web 0\n"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
        ]);
        assert_eq!(names_from_annotations("a", &bad), None);
        let long = "a".repeat(NAME_LIMIT + 1);
        let bad = map(&[
            ("io.kubernetes.cri.sandbox-name", "web-0"),
            ("io.kubernetes.cri.sandbox-namespace", "shop"),
            ("io.kubernetes.cri.container-name", &long),
        ]);
        assert_eq!(names_from_annotations("a", &bad), None);
    }
}

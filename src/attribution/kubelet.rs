//! Kubernetes names for container ids, read from the names of the kubelet's log symlinks.
//!
//! Interface: the directory `/var/log/containers/`, where the kubelet keeps one symlink per
//! container, named `<pod>_<namespace>_<container>-<container id>.log` (`logSymlink` in the
//! kubelet's `pkg/kubelet/kuberuntime/legacy.go`; the layout that log shippers such as the
//! Fluent Bit `kubernetes` filter parse). Only the names are read, never the logs: a
//! directory listing gives pod, namespace and container name for every container id on the
//! node without talking to the API server or the runtime.
//!
//! The name splits without ambiguity because none of the three names can contain `_`: a pod
//! name is a DNS subdomain (`[a-z0-9.-]`, up to 253), a namespace and a container name are DNS
//! labels (`[a-z0-9-]`, up to 63). The kubelet cuts names longer than 255 bytes short,
//! which cuts the id off; such a name no longer parses and is skipped.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// The Kubernetes names of one container, from one log symlink's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeletName {
    pub pod: String,
    pub k8s_namespace: String,
    pub container: String,
    /// 64 lowercase hex digits, without a `containerd://`-style scheme: the id that
    /// `/proc/PID/cgroup` shows.
    pub container_id: String,
}

/// Parses one file name of `/var/log/containers/`; `None` for anything else.
pub fn parse_log_name(name: &str) -> Option<KubeletName> {
    let stem = name.strip_suffix(".log")?;
    let (head, container_id) = stem.rsplit_once('-')?;
    let mut parts = head.split('_');
    let (pod, k8s_namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && is_container_id(container_id)
        && is_dns_subdomain(pod)
        && is_dns_label(k8s_namespace)
        && is_dns_label(container);
    valid.then(|| KubeletName {
        pod: pod.to_owned(),
        k8s_namespace: k8s_namespace.to_owned(),
        container: container.to_owned(),
        container_id: container_id.to_owned(),
    })
}

/// Lists `dir` (normally `/var/log/containers`) and returns the names it holds, by container
/// id. Entries whose names do not parse, or are not UTF-8, are skipped; entries are not
/// followed or opened, so dangling symlinks of containers already removed still count (the
/// caller only asks about ids it saw in `/proc`).
///
/// # Errors
///
/// The error of opening or reading the directory, as `read_dir` gives it: the caller knows
/// `dir` and adds it. A node that runs no kubelet has no such directory (`NotFound`).
pub fn read_kubelet_names(dir: &Path) -> io::Result<HashMap<String, KubeletName>> {
    let mut names = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let file_name = entry?.file_name();
        if let Some(name) = file_name.to_str().and_then(parse_log_name) {
            names.insert(name.container_id.clone(), name);
        }
    }
    Ok(names)
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// RFC 1123 label as Kubernetes checks it: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63.
fn is_dns_label(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63
                && alnum(first)
                && alnum(last)
                && bytes.iter().all(|&b| alnum(b) || b == b'-')
        }
        _ => false,
    }
}

/// RFC 1123 subdomain as Kubernetes checks it: dot-separated labels, at most 253 in all.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3959d7abfbd0221e5043fccbcb8040e9a1a4e6518dad483b7a33a131885e0283";

    fn name(pod: &str, ns: &str, container: &str, id: &str) -> Option<KubeletName> {
        Some(KubeletName {
            pod: pod.to_owned(),
            k8s_namespace: ns.to_owned(),
            container: container.to_owned(),
            container_id: id.to_owned(),
        })
    }

    #[test]
    fn log_names() {
        let cases: Vec<(String, Option<KubeletName>)> = vec![
            // Real names from a kubeadm control-plane node (dec1/practical_devops,
            // cloud/devops/kubernetes/ref/troubleshooting/general.md).
            (
                format!("kube-apiserver-controlplane_kube-system_kube-apiserver-{ID}.log"),
                name("kube-apiserver-controlplane", "kube-system", "kube-apiserver", ID),
            ),
            (
                "kube-proxy-6xsx9_kube-system_kube-proxy-c269a18400e27b14085c57f8e36f5b4d5471c140eb27e8b0f632c056547555de.log"
                    .to_owned(),
                name(
                    "kube-proxy-6xsx9",
                    "kube-system",
                    "kube-proxy",
                    "c269a18400e27b14085c57f8e36f5b4d5471c140eb27e8b0f632c056547555de",
                ),
            ),
            // A pod name with dots (a DNS subdomain), as in a pod named after its host.
            (
                format!("nodehelloworld.example.com_default_k8s-demo-{ID}.log"),
                name("nodehelloworld.example.com", "default", "k8s-demo", ID),
            ),
            // Single-character names.
            (format!("a_b_c-{ID}.log"), name("a", "b", "c", ID)),
            // Junk that must not parse.
            (format!("kube-proxy_kube-system_kube-proxy-{ID}"), None), // no .log
            (format!("kube-proxy_kube-system_kube-proxy-{ID}.log.1"), None), // rotated
            (format!("kube-proxy_kube-system_kube-proxy-{ID}.LOG"), None),
            (format!("kube-proxy_kube-system_kube-proxy{ID}.log"), None), // no dash before id
            (format!("kube-proxy_kube-system_kube-proxy-{}.log", &ID[..63]), None), // id cut short
            (format!("kube-proxy_kube-system_kube-proxy-{}.log", ID.to_uppercase()), None),
            (format!("kube-proxy_kube-system_-{ID}.log"), None), // empty container name
            (format!("_kube-system_kube-proxy-{ID}.log"), None), // empty pod name
            (format!("kube-proxy__kube-proxy-{ID}.log"), None),  // empty namespace
            (format!("kube-system_kube-proxy-{ID}.log"), None),  // two parts
            (format!("a_b_c_d-{ID}.log"), None),                 // four parts
            (format!("Kube-Proxy_kube-system_kube-proxy-{ID}.log"), None), // uppercase
            (format!("kube-proxy_kube.system_kube-proxy-{ID}.log"), None), // dot in namespace
            (format!("kube-proxy_kube-system_kube.proxy-{ID}.log"), None), // dot in container
            (format!("-kube-proxy_kube-system_kube-proxy-{ID}.log"), None), // leading dash
            (format!("kube-proxy._kube-system_kube-proxy-{ID}.log"), None), // empty label
            (format!("{}_ns_c-{ID}.log", "a".repeat(254)), None), // pod name too long
            (format!("p_{}_c-{ID}.log", "a".repeat(64)), None),   // namespace too long
            ("".to_owned(), None),
            (".log".to_owned(), None),
            ("kube-proxy.log".to_owned(), None),
            ("fluent-bit.db".to_owned(), None),
        ];
        for (file_name, expected) in cases {
            assert_eq!(parse_log_name(&file_name), expected, "name {file_name:?}");
        }
    }

    #[test]
    fn maximal_names() {
        // Every name at its Kubernetes maximum is accepted by the parser...
        let pod = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(pod.len(), 253);
        let full = format!("{pod}_{}_{}-{ID}", "n".repeat(63), "c".repeat(63));
        let parsed = parse_log_name(&format!("{full}.log")).expect("maximal names parse");
        assert_eq!(parsed.pod, pod);
        // ...but the kubelet cuts a file name to 255 bytes, `.log` included, which loses
        // the id: that name must be skipped, not misread.
        let cut = format!("{}.log", &full[..251]);
        assert_eq!(cut.len(), 255);
        assert_eq!(parse_log_name(&cut), None);
    }

    #[test]
    fn reads_a_directory_listing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let other = "c269a18400e27b14085c57f8e36f5b4d5471c140eb27e8b0f632c056547555de";
        // The kubelet makes symlinks into /var/log/pods; a dangling one still counts.
        std::os::unix::fs::symlink(
            "/nonexistent/var/log/pods/kube-system_kube-proxy-6xsx9_uid/kube-proxy/0.log",
            dir.path().join(format!(
                "kube-proxy-6xsx9_kube-system_kube-proxy-{other}.log"
            )),
        )
        .expect("symlink");
        std::fs::write(
            dir.path().join(format!("web-0_shop_nginx-{ID}.log")),
            b"contents are never read",
        )
        .expect("file");
        std::fs::write(dir.path().join("README"), b"").expect("junk file");
        std::fs::create_dir(dir.path().join(format!("d_d_d-{}.logs", ID))).expect("dir");

        let names = read_kubelet_names(dir.path()).expect("listing");
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(names.get(ID), name("web-0", "shop", "nginx", ID).as_ref());
        assert_eq!(
            names.get(other),
            name("kube-proxy-6xsx9", "kube-system", "kube-proxy", other).as_ref()
        );
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = read_kubelet_names(&dir.path().join("absent")).expect_err("no such dir");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}

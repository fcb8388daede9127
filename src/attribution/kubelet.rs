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
//!
//! The kubelet makes one name per container id, but the directory can hold more (a leftover,
//! a file someone made): names decide which policy rules match, so such a conflict is settled
//! by a fixed rule, never by readdir order, and reported.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use super::container_names::ContainerNames;
use crate::cgroup::is_container_id;

/// Parses one file name of `/var/log/containers/` into the names it carries; `None` for
/// anything else.
pub fn parse_log_name(name: &str) -> Option<ContainerNames> {
    let stem = name.strip_suffix(".log")?;
    let (head, container_id) = stem.rsplit_once('-')?;
    let mut parts = head.split('_');
    let (pod, k8s_namespace, container) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && is_container_id(container_id)
        && is_dns_subdomain(pod)
        && is_dns_label(k8s_namespace)
        && is_dns_label(container);
    valid.then(|| ContainerNames {
        pod: pod.to_owned(),
        k8s_namespace: k8s_namespace.to_owned(),
        container: container.to_owned(),
        container_id: container_id.to_owned(),
    })
}

/// The names a kubelet log directory gives, by container id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeletNames {
    /// One name per container id; where several file names carry the id, the one of the
    /// smallest file name (see [`read_kubelet_names`]).
    pub by_id: HashMap<String, ContainerNames>,
    /// Every container id that two or more file names carry, ordered by id.
    pub conflicts: Vec<NameConflict>,
}

/// Two or more file names that carry one container id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConflict {
    /// The directory listed.
    pub dir: std::path::PathBuf,
    pub container_id: String,
    /// The file names, in byte order: the first is the one used.
    pub file_names: Vec<String>,
}

/// Lists `dir` (normally `/var/log/containers`) and returns the names it holds, by container
/// id.
///
/// Only symlinks (what the kubelet makes) and regular files count; a FIFO, a directory or a
/// device with a name that parses is skipped. Entries are not followed or opened, so dangling
/// symlinks of containers already removed still count (the caller only asks about ids it saw
/// in `/proc`). The type is the directory entry's `d_type`; on filesystems that leave it
/// unknown, `DirEntry::file_type` falls back to `lstat` (`symlink_metadata`), which does not
/// follow the link either, and an entry removed before that is skipped. Entries whose names
/// do not parse, or are not UTF-8, are skipped.
///
/// Where two or more file names carry one container id, the smallest file name (in byte
/// order) wins, whatever the readdir order, and the id is listed in
/// [`KubeletNames::conflicts`] for the caller to report.
///
/// # Errors
///
/// The error of opening or reading the directory, as `read_dir` gives it: the caller knows
/// `dir` and adds it. A node that runs no kubelet has no such directory (`NotFound`).
pub fn read_kubelet_names(dir: &Path) -> io::Result<KubeletNames> {
    let mut found: Vec<(String, ContainerNames)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let counts = entry
            .file_type()
            .is_ok_and(|t| t.is_symlink() || t.is_file());
        if !counts {
            continue;
        }
        if let Some(file_name) = entry.file_name().to_str()
            && let Some(name) = parse_log_name(file_name)
        {
            found.push((file_name.to_owned(), name));
        }
    }
    // By id, then by file name: the first of each run of one id is the winner.
    found.sort_unstable_by(|(a_file, a), (b_file, b)| {
        (&a.container_id, a_file).cmp(&(&b.container_id, b_file))
    });
    let mut names = KubeletNames::default();
    for run in found.chunk_by(|(_, a), (_, b)| a.container_id == b.container_id) {
        let (_, first) = &run[0];
        if run.len() > 1 {
            names.conflicts.push(NameConflict {
                dir: dir.to_owned(),
                container_id: first.container_id.clone(),
                file_names: run.iter().map(|(file, _)| file.clone()).collect(),
            });
        }
        names
            .by_id
            .insert(first.container_id.clone(), first.clone());
    }
    Ok(names)
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

    fn name(pod: &str, ns: &str, container: &str, id: &str) -> Option<ContainerNames> {
        Some(ContainerNames {
            pod: pod.to_owned(),
            k8s_namespace: ns.to_owned(),
            container: container.to_owned(),
            container_id: id.to_owned(),
        })
    }

    #[test]
    fn log_names() {
        let cases: Vec<(String, Option<ContainerNames>)> = vec![
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

        let names = read_kubelet_names(dir.path()).expect("listing").by_id;
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

    #[test]
    fn two_names_for_one_id_resolve_the_same_in_any_order() {
        let other = "c269a18400e27b14085c57f8e36f5b4d5471c140eb27e8b0f632c056547555de";
        let proxy = format!("kube-proxy-x_kube-system_kube-proxy-{ID}.log");
        let forged = format!("web-0_shop_nginx-{ID}.log");
        let third = format!("zz_shop_nginx-{ID}.log");
        let alone = format!("a_b_c-{other}.log");
        let orders = [
            [&forged, &third, &proxy, &alone],
            [&proxy, &alone, &third, &forged],
            [&third, &proxy, &forged, &alone],
        ];
        for order in orders {
            let dir = tempfile::tempdir().expect("temp dir");
            for file in order {
                // A symlink, as the kubelet makes, and a regular file count alike.
                if file == &forged {
                    std::fs::write(dir.path().join(file), b"").expect("file");
                } else {
                    std::os::unix::fs::symlink("/nonexistent", dir.path().join(file))
                        .expect("symlink");
                }
            }
            let names = read_kubelet_names(dir.path()).expect("listing");
            // "kube-proxy-x_..." < "web-0_..." < "zz_..." in byte order.
            assert_eq!(
                names.by_id.get(ID),
                name("kube-proxy-x", "kube-system", "kube-proxy", ID).as_ref(),
                "order {order:?}"
            );
            assert_eq!(names.by_id.get(other), name("a", "b", "c", other).as_ref());
            assert_eq!(
                names.conflicts,
                vec![NameConflict {
                    container_id: ID.to_owned(),
                    dir: dir.path().to_owned(),
                    file_names: vec![proxy.clone(), forged.clone(), third.clone()],
                }],
                "order {order:?}"
            );
        }
    }

    #[test]
    fn only_symlinks_and_regular_files_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ids: Vec<String> = (0..5).map(|i| format!("{i}").repeat(64)).collect();
        let path = |pod: &str, id: &str| dir.path().join(format!("{pod}_ns_c-{id}.log"));
        nix::unistd::mkfifo(
            &path("fifo", &ids[0]),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        std::fs::create_dir(path("dir", &ids[1])).expect("dir");
        // Dangling, or to a directory: a symlink counts whatever it points at.
        std::os::unix::fs::symlink("/nonexistent/0.log", path("dangling", &ids[2]))
            .expect("symlink");
        std::os::unix::fs::symlink(dir.path(), path("to-dir", &ids[3])).expect("symlink");
        std::fs::write(path("file", &ids[4]), b"").expect("file");
        // A FIFO and a directory that would win a conflict do not take part in it.
        nix::unistd::mkfifo(
            &path("a-fifo", &ids[4]),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
        std::fs::create_dir(path("a-dir", &ids[4])).expect("dir");

        let names = read_kubelet_names(dir.path()).expect("listing");
        let mut pods: Vec<&str> = names.by_id.values().map(|n| n.pod.as_str()).collect();
        pods.sort_unstable();
        assert_eq!(pods, ["dangling", "file", "to-dir"], "{names:?}");
        assert_eq!(names.conflicts, []);
    }
}

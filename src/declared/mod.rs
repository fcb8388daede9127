//! Declared against observed: what each container's runtime was asked for, read from the OCI
//! runtime spec it was started with, against the namespaces its processes are in.
//!
//! Interfaces: the runtimes' own files on the node ([`source`]: bundles' `config.json`,
//! runc's `state.json`), never a runtime socket; the namespaces come from the scan
//! (`/proc/PID/ns/*`, proc_pid_ns(5); threads' `/proc/PID/task/TID/ns/*` per
//! `--scan.threads`), and bind-mounted namespace paths are resolved with stat(2) on nsfs
//! (namespaces(7)).
//!
//! - [`spec`]: parses a spec's bytes into what it declares per type (pure).
//! - [`source`]: finds and reads each container's spec, again only when it changes.
//! - [`judge`]: compares, and finds `undeclared_namespace` and `user_namespace_not_applied`.
//! - [`names`]: pod, namespace and container names from the spec's annotations (pure).

mod judge;
mod names;
mod source;
mod spec;

pub use judge::{Expected, Judgement, judge};
pub use names::names_from_annotations;
pub use source::{
    Format, SPEC_LIMIT, SpecError, SpecRefresh, SpecSources, Specs, Wanted, read_spec,
};
pub use spec::{
    Declared, Spec, SpecParseError, parse_oci_config, parse_runc_state, runc_bundle_config,
};

/// The inode of the namespace a bind mount at `path` pins, seen from the host's root through
/// `procfs` (`<procfs>/1/root/<path>`: the exporter's own mount namespace need not hold the
/// path; needs CAP_SYS_PTRACE), or, where PID 1's root cannot be entered, at `path` itself
/// (an exporter on the host). `None` unless the file is on nsfs (statfs(2) `NSFS_MAGIC`),
/// so a path that means something else in the exporter's own root is never taken.
pub fn resolve_on_host(procfs: &std::path::Path, path: &std::path::Path) -> Option<u64> {
    use nix::sys::statfs::{NSFS_MAGIC, statfs};
    let rel = path.strip_prefix("/").ok()?;
    let nsfs = |p: &std::path::Path| {
        (statfs(p).ok()?.filesystem_type() == NSFS_MAGIC)
            .then(|| nix::sys::stat::stat(p).ok().map(|s| s.st_ino))
            .flatten()
    };
    nsfs(&procfs.join("1/root").join(rel)).or_else(|| nsfs(path))
}

/// The inode of every bind-mounted namespace path that `specs` join, by [`resolve_on_host`]:
/// what [`judge`] asks of its `resolve`, read before it so that the judge does no I/O. A
/// `/proc/<pid>/ns/…` path is left out, as the judge takes it from the scan; so is a path on
/// no nsfs.
pub fn resolve_joined(
    procfs: &std::path::Path,
    specs: &Specs,
) -> std::collections::HashMap<std::path::PathBuf, u64> {
    let mut resolved = std::collections::HashMap::new();
    for spec in specs.values() {
        for declared in spec.namespaces.values() {
            if let Declared::Joined(path) = declared
                && judge::proc_ns_path(path).is_none()
                && !resolved.contains_key(path)
                && let Some(inode) = resolve_on_host(procfs, path)
            {
                resolved.insert(path.clone(), inode);
            }
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NsType, PerType};

    /// Only a path the scan cannot answer is resolved, and only to a namespace: the
    /// `/proc/<pid>/ns/…` path is left to the judge, a file on no nsfs is left out.
    #[test]
    fn only_bind_mounted_namespace_paths_are_resolved() {
        let joined = [
            "/proc/thread-self/ns/net",
            "/proc/1/ns/net",
            "/etc/hostname",
        ];
        let specs: Specs = joined
            .iter()
            .enumerate()
            .map(|(i, path)| {
                let mut namespaces = PerType::<Declared>::default();
                namespaces[NsType::Net] = Declared::Joined(path.into());
                let spec = Spec {
                    namespaces,
                    uid_mappings: false,
                    annotations: Default::default(),
                    privilege: Default::default(),
                };
                (i.to_string(), std::sync::Arc::new(spec))
            })
            .collect();
        let own = nix::sys::stat::stat("/proc/thread-self/ns/net")
            .unwrap()
            .st_ino;
        let resolved = resolve_joined(std::path::Path::new("/proc"), &specs);
        assert_eq!(
            resolved,
            std::collections::HashMap::from([("/proc/thread-self/ns/net".into(), own)])
        );
    }
}

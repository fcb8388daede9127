//! Which container, if any, a process runs in, read from the bytes of `/proc/PID/cgroup`.
//!
//! Kernel interface: `/proc/PID/cgroup`, cgroups(7) ("/proc files"). Each line is
//! `hierarchy-ID:controller-list:cgroup-path`. A cgroup v1 hierarchy has a non-zero ID and a
//! comma-separated controller list (`4:memory:/docker/<id>`, `1:name=systemd:/...`); the v2
//! (unified) hierarchy is the single line `0::/path`. A hybrid host prints both.
//!
//! No runtime writes "I am container X" anywhere in the kernel: each one names the cgroup it
//! creates after the container, and that naming is what this module reads. Three facts shape
//! the parser:
//!
//! - The path is everything after the *second* `:`, and may itself contain `:` (containerd
//!   with a half-applied systemd driver writes `...pod<uid>.slice:cri-containerd:<id>` as a
//!   literal directory name).
//! - The kernel appends ` (deleted)` to a v2 path whose cgroup was removed while the process
//!   still lives, and on v1 it prints `/` for an exiting task (`proc_cgroup_show` in
//!   `kernel/cgroup/cgroup.c`). So the v2 line is the most reliable, and v1 lines can disagree.
//! - The path is relative to the cgroup namespace *of the reader*. Read from inside a private
//!   cgroup namespace, the reader's own container shows `0::/` and everything else shows
//!   `/../../<the rest of the host path>`: the `..` components are dropped and the rest is
//!   read as usual, so only the reader's own container is lost (it looks like the host).

use std::borrow::Cow;
use std::fmt;

/// The container runtime (or manager) that created a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    /// containerd, through its CRI plugin (Kubernetes), nerdctl, or `ctr`.
    Containerd,
    /// CRI-O.
    CriO,
    /// Docker (dockerd), including Kubernetes with dockershim or cri-dockerd and the systemd
    /// cgroup driver.
    Docker,
    /// Podman (libpod), rootful or rootless.
    Podman,
    /// A container registered with systemd-machined: in practice systemd-nspawn.
    Nspawn,
    /// LXC or LXD.
    Lxc,
    /// A Kubernetes container under the cgroupfs driver: the path is
    /// `/kubepods/<qos>/pod<uid>/<id>` whichever runtime made it (containerd and Docker both
    /// do), so the path does not say. The container id and the pod are still known.
    Unknown,
}

impl Runtime {
    /// Every runtime, in label order.
    pub const ALL: [Runtime; 7] = [
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Docker,
        Runtime::Podman,
        Runtime::Nspawn,
        Runtime::Lxc,
        Runtime::Unknown,
    ];

    /// The value of the `runtime` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Nspawn => "systemd-nspawn",
            Runtime::Lxc => "lxc",
            Runtime::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container named by a cgroup path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerRef {
    pub runtime: Runtime,
    /// The runtime's id: 64 lowercase hex digits for containerd, CRI-O, Docker and Podman;
    /// the machine name for systemd-nspawn (unescaped, so `a\x2db` becomes `a-b`); the
    /// container name for LXC.
    pub id: String,
    /// The pod: the Kubernetes pod UID, in the API's form (dashed UUID `0d33f94b-ab1a-...`,
    /// or the 32-hex-digit hash the kubelet uses as the UID of a static pod), or a Podman
    /// pod's id (64 hex digits). `None` outside a pod, and for a container not directly under
    /// its pod's cgroup.
    pub pod_uid: Option<String>,
    /// The process is the runtime's per-container *monitor*, not the container's payload:
    /// conmon (`crio-conmon-<id>`, `libpod-conmon-<id>`), `lxc.monitor.<name>`, or the
    /// `supervisor` cgroup of an nspawn machine. The monitor runs in the host's namespaces by
    /// design, so a check of "container process shares a host namespace" must skip it.
    /// A monitor counts only where the runtime makes it, outside every container's cgroup
    /// (conmon in `machine.slice` or the pod's slice, `lxc.monitor.<name>` beside
    /// `lxc.payload.<name>`, nspawn's `supervisor` beside `payload`): a container can make
    /// cgroups only below its own, where [`classify_path`] never looks past its container.
    pub monitor: bool,
}

/// What `/proc/PID/cgroup` says about the workload a process belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CgroupWorkload {
    /// The file names no container: a host service, a user session, the root cgroup, or the
    /// root of the reader's own cgroup namespace. (Kernel threads land here too; telling them
    /// apart is not this module's job, see the parent module.)
    Host,
    /// The file was empty or had no well-formed line: typically the process exited while it
    /// was being read.
    Unknown,
    /// In a Kubernetes pod's cgroup, but in none of its containers' cgroups. Rare: systemd
    /// slices and cgroup v2 inner nodes hold no processes, so this shows up on v1 only.
    Pod { uid: String },
    /// In a container's cgroup.
    Container(ContainerRef),
}

/// Classifies a process from the raw bytes of its `/proc/PID/cgroup`.
///
/// Each well-formed line is classified on its own. A line that names a container beats one
/// that names only a pod, which beats one that names neither. Among lines of equal standing
/// the v2 line (`0::`) wins, then v1 `name=systemd`, `memory`, `cpu`, then any other v1 line,
/// then the earliest line. Malformed lines (no two `:`, a non-numeric hierarchy ID, a path
/// that does not start with `/`) are skipped; if none is left the answer is
/// [`CgroupWorkload::Unknown`]. Bytes that are not UTF-8 are replaced, not rejected: ids are
/// checked as hex, so a replaced byte can only reach a free-form name (nspawn, LXC).
pub fn parse_cgroup(contents: &[u8]) -> CgroupWorkload {
    // (standing, line preference) of the best line so far; lower is better.
    let mut best: Option<((u8, u8), CgroupWorkload)> = None;
    for line in contents.split(|&b| b == b'\n') {
        let Some(line) = CgroupLine::parse(line) else {
            continue;
        };
        let workload = classify_path(&String::from_utf8_lossy(line.path));
        let standing = match workload {
            CgroupWorkload::Container(_) => 0,
            CgroupWorkload::Pod { .. } => 1,
            CgroupWorkload::Host | CgroupWorkload::Unknown => 2,
        };
        let rank = (standing, line.preference());
        if best.as_ref().is_none_or(|(best_rank, _)| rank < *best_rank) {
            best = Some((rank, workload));
        }
    }
    best.map_or(CgroupWorkload::Unknown, |(_, workload)| workload)
}

/// One line of `/proc/PID/cgroup`, split but not interpreted.
struct CgroupLine<'a> {
    hierarchy: &'a [u8],
    controllers: &'a [u8],
    path: &'a [u8],
}

impl<'a> CgroupLine<'a> {
    fn parse(line: &'a [u8]) -> Option<Self> {
        let (hierarchy, rest) = split_once(line, b':')?;
        let (controllers, path) = split_once(rest, b':')?;
        if hierarchy.is_empty() || !hierarchy.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
        if path.first() != Some(&b'/') {
            return None;
        }
        Some(CgroupLine {
            hierarchy,
            controllers,
            path,
        })
    }

    /// Which hierarchy to believe first when several name a workload; lower is better.
    fn preference(&self) -> u8 {
        if self.hierarchy == b"0" && self.controllers.is_empty() {
            return 0;
        }
        let has = |name: &[u8]| self.controllers.split(|&b| b == b',').any(|c| c == name);
        if has(b"name=systemd") {
            1
        } else if has(b"memory") {
            2
        } else if has(b"cpu") {
            3
        } else {
            4
        }
    }
}

fn split_once(bytes: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == sep)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Classifies one cgroup path.
///
/// The path is read from its first component on, and the first component that names a
/// container wins: the **outermost** container is the workload, and everything below its
/// cgroup is that container's, as Tetragon maps a container's cgroup subtree. A container
/// with a writable cgroup subtree (privileged, systemd inside, a writable `/sys/fs/cgroup`)
/// makes any leaf it likes below its own cgroup: a leaf named like another pod's container
/// (framing it) or like a runtime's monitor (`crio-conmon-<id>.scope`, which would exempt it)
/// is below its own container's component and so never read. The sub-cgroups that runtimes
/// and inits make under a container's own (`libpod-<id>.scope/container`, `<id>/kube-proxy`,
/// `lxc.payload.c1/.lxc`) are that container's for the same reason. Nesting (Docker in
/// Docker, Kubernetes in a kind node) is seen from the node as the outer container; an
/// exporter inside the nested node reads paths relative to its own cgroup namespace and so
/// sees the inner containers.
fn classify_path(path: &str) -> CgroupWorkload {
    let components: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    for at in 0..components.len() {
        if let Some(container) = container_at(&components, at) {
            return CgroupWorkload::Container(container);
        }
    }
    match components.iter().find_map(|c| pod_uid_of(c)) {
        Some(uid) => CgroupWorkload::Pod { uid },
        None => CgroupWorkload::Host,
    }
}

/// Unit-name prefixes (`<prefix>-<64 hex>.scope`, or the bare `<prefix>-<64 hex>` that the
/// cgroupfs drivers of CRI-O and Podman use) and what they mean. Longer prefixes first where
/// one extends another (`crio-conmon-` before `crio-`).
const SCOPE_PREFIXES: &[(&str, Runtime, bool)] = &[
    ("cri-containerd-", Runtime::Containerd, false),
    ("nerdctl-", Runtime::Containerd, false),
    ("containerd-", Runtime::Containerd, false),
    ("crio-conmon-", Runtime::CriO, true),
    ("crio-", Runtime::CriO, false),
    ("docker-", Runtime::Docker, false),
    ("libpod-conmon-", Runtime::Podman, true),
    ("libpod-payload-", Runtime::Podman, false),
    ("libpod-", Runtime::Podman, false),
];

/// The prefixes that appear in the `slice:prefix:id` form that the systemd driver is handed,
/// when it reaches the filesystem unconverted (see the containerd 1.4 samples in the tests).
const COLON_PREFIXES: &[(&str, Runtime)] = &[
    ("cri-containerd", Runtime::Containerd),
    ("crio", Runtime::CriO),
    ("docker", Runtime::Docker),
];

/// The container that path component `at` names, given the components around it.
fn container_at(components: &[&str], at: usize) -> Option<ContainerRef> {
    let component = components[at];
    let parent = at.checked_sub(1).map(|p| components[p]);
    let child = components.get(at + 1).copied();
    let pod_uid = || parent.and_then(pod_uid_of);
    let container = |runtime, id: &str, pod_uid, monitor| {
        Some(ContainerRef {
            runtime,
            id: id.to_owned(),
            pod_uid,
            monitor,
        })
    };

    // `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`: one directory, pod included.
    if let Some((slice, rest)) = component.split_once(':') {
        let (prefix, id) = rest.split_once(':')?;
        let &(_, runtime) = COLON_PREFIXES.iter().find(|(p, _)| *p == prefix)?;
        return is_container_id(id)
            .then(|| container(runtime, id, pod_uid_of(slice), false))
            .flatten();
    }

    let stem = component.strip_suffix(".scope").unwrap_or(component);
    for &(prefix, runtime, monitor) in SCOPE_PREFIXES {
        match stem.strip_prefix(prefix) {
            Some(id) if is_container_id(id) => {
                let pod = match runtime {
                    Runtime::Podman => parent.and_then(podman_pod_of),
                    _ => pod_uid(),
                };
                return container(runtime, id, pod, monitor);
            }
            _ => {}
        }
    }

    // systemd-machined names a machine's scope `machine-<escaped name>.scope`; an
    // unprivileged nspawn (systemd 257) registers `<name>.scope` under the user manager's
    // `machine.slice`. QEMU guests registered by libvirt (`machine-qemu\x2d1\x2dvm.scope`)
    // are virtual machines, whose process lives in the host's namespaces: not a container.
    let is_scope = stem.len() < component.len();
    let machine = match stem.strip_prefix("machine-") {
        Some(escaped) if is_scope => Some(escaped),
        None if is_scope && parent == Some("machine.slice") => Some(stem),
        _ => None,
    };
    if let Some(escaped) = machine {
        let name = unescape_unit_name(escaped);
        if !name.is_empty() && !name.starts_with("qemu-") {
            // systemd-nspawn on cgroup v2 splits its scope into `payload` (the container)
            // and `supervisor` (nspawn itself, in the host's namespaces).
            return container(Runtime::Nspawn, &name, None, child == Some("supervisor"));
        }
        return None;
    }

    // LXC 4.0 and later: `lxc.payload.<name>`, `lxc.monitor.<name>`.
    for (prefix, monitor) in [("lxc.payload.", false), ("lxc.monitor.", true)] {
        match component.strip_prefix(prefix) {
            Some(name) if !name.is_empty() => return container(Runtime::Lxc, name, None, monitor),
            _ => {}
        }
    }
    // LXC before 3.1 (`/lxc/<name>`) and 3.1 to 3.2 (`/lxc.payload/<name>`, `/lxc.monitor/<name>`).
    match parent {
        Some("lxc" | "lxc.payload") => return container(Runtime::Lxc, component, None, false),
        Some("lxc.monitor") => return container(Runtime::Lxc, component, None, true),
        _ => {}
    }

    if !is_container_id(component) {
        return None;
    }
    if let Some(uid) = pod_uid() {
        // Kubernetes, cgroupfs driver: `/kubepods/<qos>/pod<uid>/<id>`.
        return container(Runtime::Unknown, component, Some(uid), false);
    }
    match parent {
        // Docker, cgroupfs driver: `/docker/<id>`, at any depth (Docker in Docker).
        Some("docker") => container(Runtime::Docker, component, None, false),
        // containerd outside Kubernetes (`ctr`, nerdctl with cgroupfs): `/<namespace>/<id>`,
        // only at the top, so that an arbitrary directory above a hex name does not count.
        // Podman's cgroupfs pods (`/libpod_parent/<pod id>/libpod-<id>`) have the same
        // shape one level up: the pod's id is no container.
        Some(namespace)
            if at == 1 && namespace != "libpod_parent" && is_containerd_namespace(namespace) =>
        {
            container(Runtime::Containerd, component, None, false)
        }
        _ => None,
    }
}

/// The pod UID that a pod-level cgroup directory names, in the API's form.
///
/// The cgroupfs driver writes `pod<uid>`; the systemd driver writes
/// `kubepods[-<qos>]-pod<uid>.slice` with each `-` of the UID turned into `_`, because `-`
/// separates the levels of a systemd slice name. Kubernetes 1.5 wrote
/// `BestEffort-pod<uid>.slice` (kubernetes/kubernetes#36807). The UID must be a dashed UUID or 32 hex digits (a static
/// pod), which keeps `podman-6696.scope` and friends out.
fn pod_uid_of(component: &str) -> Option<String> {
    let stem = component.strip_suffix(".slice").unwrap_or(component);
    let raw = match stem.strip_prefix("pod") {
        Some(raw) => raw,
        None => stem.rsplit_once('-')?.1.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let is_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let groups: Vec<&str> = uid.split('-').collect();
    let uuid_shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    let valid = if uuid_shape {
        groups.iter().all(|g| is_hex(g))
    } else {
        uid.len() == 32 && is_hex(&uid)
    };
    valid.then_some(uid)
}

/// The id of the Podman pod whose cgroup directory `component` is, from the directory right
/// above a Podman container's. With the systemd cgroup manager a pod is a slice named
/// `<parent>-libpod_pod_<id>.slice` (`machine-` when rootful, `user-` when rootless:
/// `systemdSliceFromPath(parent, "libpod_pod_<id>")` in libpod's `runtime_pod_linux.go`);
/// with cgroupfs it is `<cgroup parent>/<id>` (`/libpod_parent/<id>` by default, what this
/// machine's podman 4.3 made). A container outside a pod sits right in the parent
/// (`machine.slice`, `libpod_parent`), which is no id.
fn podman_pod_of(component: &str) -> Option<String> {
    let id = match component.strip_suffix(".slice") {
        Some(slice) => slice.rsplit_once("libpod_pod_")?.1,
        None => component,
    };
    is_container_id(id).then(|| id.to_owned())
}

/// Docker, containerd (CRI or not), CRI-O and Podman all use 64 lowercase hex digits, in
/// cgroup paths and in the kubelet's log names alike.
pub(super) fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// containerd's namespace grammar: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`. A systemd unit
/// (`system.slice`) also fits it, so units are refused by suffix.
fn is_containerd_namespace(s: &str) -> bool {
    let unit = [".slice", ".scope", ".service"]
        .iter()
        .any(|u| s.ends_with(u));
    let mut previous_separator = true;
    for b in s.bytes() {
        let separator = matches!(b, b'.' | b'_' | b'-');
        if !(separator || b.is_ascii_alphanumeric()) || (separator && previous_separator) {
            return false;
        }
        previous_separator = separator;
    }
    !unit && !previous_separator
}

/// Undoes systemd's unit-name escaping (`\x2d` for `-`, and so on); see systemd-escape(1).
fn unescape_unit_name(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped_byte = (bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x'))
            .then(|| bytes.get(i + 2..i + 4))
            .flatten()
            // from_str_radix would also take a sign: `\x+f`.
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped_byte {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    match String::from_utf8_lossy(&out) {
        Cow::Borrowed(s) => s.to_owned(),
        Cow::Owned(s) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(runtime: Runtime, id: &str, pod_uid: Option<&str>) -> CgroupWorkload {
        CgroupWorkload::Container(ContainerRef {
            runtime,
            id: id.to_owned(),
            pod_uid: pod_uid.map(str::to_owned),
            monitor: false,
        })
    }

    fn monitor(runtime: Runtime, id: &str, pod_uid: Option<&str>) -> CgroupWorkload {
        CgroupWorkload::Container(ContainerRef {
            runtime,
            id: id.to_owned(),
            pod_uid: pod_uid.map(str::to_owned),
            monitor: true,
        })
    }

    /// What a container with a writable cgroup subtree can make below its own cgroup, and
    /// what it must not get from it: a monitor's exemption, another pod's name, or the
    /// containerd name and allow rules of another container (issue 25's attacks).
    #[test]
    fn leaves_a_container_makes_below_its_own_cgroup_are_its_own() {
        use Runtime::*;
        const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        const POD_A: &str = "11111111-2222-3333-4444-555555555555";
        let own = format!("/kubepods/besteffort/pod{POD_A}/{A}");
        let a = container(Unknown, A, Some(POD_A));
        let systemd_a = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{A}.scope",
            POD_A.replace('-', "_")
        );
        let a_systemd = container(Containerd, A, Some(POD_A));
        let cases: Vec<(String, &CgroupWorkload)> = vec![
            (format!("0::{own}/crio-conmon-{B}.scope\n"), &a),
            (format!("0::{own}/libpod-conmon-{B}.scope\n"), &a),
            (format!("0::{own}/lxc.monitor.c1\n"), &a),
            (format!("0::{own}/machine-web.scope/supervisor\n"), &a),
            (
                format!(
                    "0::{own}/kubepods/besteffort/pod99999999-2222-3333-4444-555555555555/{B}\n"
                ),
                &a,
            ),
            (format!("0::{own}/cri-containerd-{B}.scope\n"), &a),
            (
                format!("0::{systemd_a}/crio-conmon-{B}.scope\n"),
                &a_systemd,
            ),
            (format!("0::{systemd_a}/docker/{B}\n"), &a_systemd),
            // Every hierarchy at once, as a container that writes each one would leave it.
            (
                format!("12:memory:{own}/crio-conmon-{B}.scope\n0::{own}/crio-conmon-{B}.scope\n"),
                &a,
            ),
        ];
        for (file, want) in cases {
            assert_eq!(&parse_cgroup(file.as_bytes()), want, "{file}");
        }
        // Where the runtime makes them, monitors are still monitors.
        assert_eq!(
            parse_cgroup(format!("0::/machine.slice/crio-conmon-{B}.scope\n").as_bytes()),
            monitor(CriO, B, None)
        );
    }

    /// Whole `/proc/PID/cgroup` files as published in bug reports and test suites, each with
    /// where it comes from. Long v1 files are shortened to a few of their lines; the
    /// path shapes are theirs, byte for byte.
    #[test]
    fn real_files() {
        let cases = [kubernetes_files(), engine_files(), other_files()].concat();
        for (name, contents, expected) in &cases {
            assert_eq!(&parse_cgroup(contents), expected, "case {name:?}");
        }
    }

    /// [`real_files`] of Kubernetes' pods, by driver, runtime and QoS class.
    fn kubernetes_files() -> Vec<(&'static str, &'static [u8], CgroupWorkload)> {
        use Runtime::*;
        vec![
            // Kubernetes, systemd driver, CRI-O, burstable, v1 (opencontainers/runc#4620).
            (
                "crio burstable v1",
                b"13:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope\n\
12:cpuset:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice/crio-5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c.scope\n\
11:files:/\n",
                container(
                    CriO,
                    "5eed917563583925ffdbd40a64efb2aaffe58638e57add8becaf460fe74f5b1c",
                    Some("a5c1f8d5-1919-434d-add7-4afaafdaef89"),
                ),
            ),
            // The same, with a static pod (32-hex UID) (neuvector/neuvector
            // share/system/cgroup_test.go, TestK8sCrio_v1_17).
            (
                "crio static pod",
                b"12:hugetlb:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod487a0dc6dccaeefbcfedba7a7ce1ca18.slice/crio-7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e.scope\n\
7:rdma:/\n\
1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod487a0dc6dccaeefbcfedba7a7ce1ca18.slice/crio-7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e.scope",
                container(
                    CriO,
                    "7a1fd6fe8cdfbd44dc78c4cc85dad7031eaab4365801684cad0aabdeaf863f9e",
                    Some("487a0dc6dccaeefbcfedba7a7ce1ca18"),
                ),
            ),
            // Kubernetes, systemd driver, containerd, hybrid v1 + v2 (neuvector
            // cgroup_test.go, TestK8sBottleRocket).
            (
                "cri-containerd besteffort hybrid",
                b"11:cpuset:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n\
1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n\
0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poddd1bf9d1_241d_47f5_8e25_12de83135812.slice/cri-containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n",
                container(
                    Containerd,
                    "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
                    Some("dd1bf9d1-241d-47f5-8e25-12de83135812"),
                ),
            ),
            // Kubernetes, systemd driver, Docker, burstable (lxc/lxc#3890).
            (
                "docker under kubepods.slice",
                b"12:rdma:/\n\
11:freezer:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7d4424e6_bb13_42f4_a47a_45a4828bf54d.slice/docker-d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98.scope\n",
                container(
                    Docker,
                    "d0b3604b67ac7930dd34ba3a796627e3e4717d12309e90a4afe3f38b6816ac98",
                    Some("7d4424e6-bb13-42f4-a47a-45a4828bf54d"),
                ),
            ),
            // Kubernetes, cgroupfs driver, besteffort (genuinetools/amicontained#7).
            (
                "kubepods cgroupfs besteffort",
                b"11:memory:/kubepods/besteffort/pod6c85216c-82ad-11e7-9fb0-061c2985ea4a/162a25c865d3117f158a598f94b1a14436519ba18c8c1969727b9d3f7bdee25e\n\
10:pids:/kubepods/besteffort/pod6c85216c-82ad-11e7-9fb0-061c2985ea4a/162a25c865d3117f158a598f94b1a14436519ba18c8c1969727b9d3f7bdee25e\n",
                container(
                    Unknown,
                    "162a25c865d3117f158a598f94b1a14436519ba18c8c1969727b9d3f7bdee25e",
                    Some("6c85216c-82ad-11e7-9fb0-061c2985ea4a"),
                ),
            ),
            // Kubernetes, cgroupfs driver, a sub-cgroup below the container's
            // (neuvector cgroup_test.go, TestK8sProxyProcess).
            (
                "kubepods cgroupfs sub-cgroup",
                b"10:memory:/kubepods/besteffort/podf8a694f2-7c08-11e9-98da-000c29077430/c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903/kube-proxy\n",
                container(
                    Unknown,
                    "c04e0a88a1de067f25bece337d4dbb897396e0b623c2a65330850fc9823f1903",
                    Some("f8a694f2-7c08-11e9-98da-000c29077430"),
                ),
            ),
            // Kubernetes, cgroupfs driver, burstable and guaranteed QoS levels: shape from
            // the pod-level cgroups listed in google/cadvisor#2540 (burstable) and
            // kubernetes/kubernetes#26751 (guaranteed pods sit directly under /kubepods).
            (
                "kubepods cgroupfs burstable",
                b"0::/kubepods/burstable/pod1ff47ee6-9685-4726-ac6f-0ff070c452d6/0f3deade416514b65143bdb917f86c290bf21b176d70d8ad8c4992469fdb28e6\n",
                container(
                    Unknown,
                    "0f3deade416514b65143bdb917f86c290bf21b176d70d8ad8c4992469fdb28e6",
                    Some("1ff47ee6-9685-4726-ac6f-0ff070c452d6"),
                ),
            ),
            (
                "kubepods cgroupfs guaranteed",
                b"0::/kubepods/pod1ff47ee6-9685-4726-ac6f-0ff070c452d6/0f3deade416514b65143bdb917f86c290bf21b176d70d8ad8c4992469fdb28e6\n",
                container(
                    Unknown,
                    "0f3deade416514b65143bdb917f86c290bf21b176d70d8ad8c4992469fdb28e6",
                    Some("1ff47ee6-9685-4726-ac6f-0ff070c452d6"),
                ),
            ),
            // Kubernetes, systemd driver, guaranteed QoS: `kubepods-pod<uid>.slice` directly
            // under kubepods.slice (shape per the kubelet's systemd naming; ids from
            // netdata/netdata#4868).
            (
                "kubepods.slice guaranteed",
                b"0::/kubepods.slice/kubepods-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice/cri-containerd-2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36.scope\n",
                container(
                    Containerd,
                    "2032491dcae31e6746f47daa0ac74564f2843a1bd847c5e6c4eb501ca132ac36",
                    Some("55c6c714-b240-4dec-9a45-57b61696ab6e"),
                ),
            ),
            // containerd 1.4 with a systemd-format cgroupsPath that reached the filesystem
            // unconverted: `:` inside the path, and the pod in the same component
            // (open-telemetry/opentelemetry-java#4507; neuvector TestK8sContainerd_v1_4_4).
            (
                "cri-containerd colon path",
                b"11:perf_event:/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n\
10:blkio:/system.slice/containerd.service/kubepods-besteffort-pod0125ec2f_b64a_4868_8f5b_94b56cbab864.slice:cri-containerd:ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459\n",
                container(
                    Containerd,
                    "ee4b20e90ac7f42a10bd004d05646b13d8ab5e2c5e7cbc01abf8006bac016459",
                    Some("0125ec2f-b64a-4868-8f5b-94b56cbab864"),
                ),
            ),
            (
                "cri-containerd colon path, name=systemd only",
                b"1:name=systemd:/system.slice/containerd.service/kubepods-burstable-podff49d0be_16b7_4a49_bb9e_8ec1f1f4e27f.slice:cri-containerd:0f99ad5f45163ed14ab8eaf92ed34bb4a631d007f8755a7d79be614bcb0df0ef\n",
                container(
                    Containerd,
                    "0f99ad5f45163ed14ab8eaf92ed34bb4a631d007f8755a7d79be614bcb0df0ef",
                    Some("ff49d0be-16b7-4a49-bb9e-8ec1f1f4e27f"),
                ),
            ),
            // Kubernetes 1.5, old QoS slice names (kubernetes/kubernetes#36807).
            (
                "BestEffort slice, k8s 1.5",
                b"11:memory:/system.slice/docker.service/BestEffort.slice/BestEffort-pod0d33f94b_ab1a_11e6_9e1a_68f7281d8004.slice/0c34bcd7d02f321d0df7aa6ea703285b02abebc9096c5128c14091fc43ea1f3b\n",
                container(
                    Unknown,
                    "0c34bcd7d02f321d0df7aa6ea703285b02abebc9096c5128c14091fc43ea1f3b",
                    Some("0d33f94b-ab1a-11e6-9e1a-68f7281d8004"),
                ),
            ),
            // CRI-O conmon, placed in the pod (cri-o/cri-o#2248, kepler#153) and in
            // system.slice (istio/istio#55139, v2 only).
            (
                "crio-conmon in the pod",
                b"1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podb4e8e0dc_caf3_4a43_bf50_f84ef5ef7a8f.slice/crio-conmon-927cffdca4f374600fe49a62bfd7f2e73ea6d37cdafb1bf8f89afb64d7e6c6a5.scope\n",
                monitor(
                    CriO,
                    "927cffdca4f374600fe49a62bfd7f2e73ea6d37cdafb1bf8f89afb64d7e6c6a5",
                    Some("b4e8e0dc-caf3-4a43-bf50-f84ef5ef7a8f"),
                ),
            ),
            (
                "crio-conmon in system.slice",
                b"0::/system.slice/crio-conmon-c055fa05e5c1c20cc4ef3e2ebd180ab360b5369538c9b7cd536b3e6c58311b39.scope\n",
                monitor(
                    CriO,
                    "c055fa05e5c1c20cc4ef3e2ebd180ab360b5369538c9b7cd536b3e6c58311b39",
                    None,
                ),
            ),
        ]
    }

    /// [`real_files`] of Docker's and Podman's containers.
    fn engine_files() -> Vec<(&'static str, &'static [u8], CgroupWorkload)> {
        use CgroupWorkload::Host;
        use Runtime::*;
        vec![
            // Docker, cgroupfs driver, v1, with name=systemd left at / (moby/moby#33352).
            (
                "docker cgroupfs",
                b"13:pids:/\n\
10:perf_event:/docker/5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498\n\
6:memory:/docker/5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498\n\
1:name=systemd:/\n",
                container(
                    Docker,
                    "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498",
                    None,
                ),
            ),
            // Docker on a hybrid host whose v2 line names containerd.service, not the
            // container: the v1 lines must win (ctrsploit/ctrsploit#280).
            (
                "docker hybrid, v2 line elsewhere",
                b"8:memory:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d\n\
1:name=systemd:/docker/2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d\n\
0::/system.slice/containerd.service\n",
                container(
                    Docker,
                    "2403ccfe427f1dc7b6120dccb9ac58c2f8456950380d587a9f33ea7f00dd303d",
                    None,
                ),
            ),
            // Docker, systemd driver (nginx-proxy/docker-gen#186).
            (
                "docker systemd scope",
                b"11:pids:/\n\
2:memory:/system.slice/docker-9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c.scope\n\
1:name=systemd:/system.slice/docker-9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c.scope\n",
                container(
                    Docker,
                    "9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c",
                    None,
                ),
            ),
            // Rootless Docker, v2 (docker/docs#14545; id from the docker-gen sample).
            (
                "docker rootless",
                b"0::/user.slice/user-1000.slice/user@1000.service/user.slice/docker-9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c.scope\n",
                container(
                    Docker,
                    "9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c",
                    None,
                ),
            ),
            // Docker in Docker (neuvector TestDockerIDRancherOS): from the node, the outer
            // container is the workload; everything below its cgroup is its own.
            (
                "docker in docker",
                b"8:memory:/docker/a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413/docker/ec08435e04266c5ba381fccbb829f626d11d8ddf5f8f547263c7a2d79ab4787a\n",
                container(
                    Docker,
                    "a9a5ad238e59234193ee7ec3fcff5e735b3708ea1068826952255b69e3cfa413",
                    None,
                ),
            ),
            // Kubernetes in Docker (minikube, kind; kubernetes/minikube#11280): from the
            // node, the Docker container that is the inner node is the workload, as for any
            // cgroup below a container's.
            (
                "kubepods inside a docker node",
                b"0::/docker/d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope\n",
                container(
                    Docker,
                    "d6701ec289c56e4391acb11d07474b3139466857a305490575508a8b7a9fcf22",
                    None,
                ),
            ),
            // The same inner node read by an exporter inside it, through its private cgroup
            // namespace (kind's default on cgroup v2): the inner pod's container.
            (
                "kubepods read inside a docker node's cgroup namespace",
                b"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod2ca4a155_3599_498d_bb9d_4446693fa3ea.slice/crio-0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0.scope\n",
                container(
                    CriO,
                    "0ba8ac17e4e7a31fb82279503552fe94e64bab4745bf6fd2ff231e7c8ca8bed0",
                    Some("2ca4a155-3599-498d-bb9d-4446693fa3ea"),
                ),
            ),
            // Podman, systemd driver, hybrid, with systemd inside the container
            // (podman-container-tools/podman#10602).
            (
                "podman machine.slice hybrid",
                b"11:memory:/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope\n\
1:name=systemd:/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope/init.scope\n\
0::/machine.slice/libpod-2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24.scope\n",
                container(
                    Podman,
                    "2521e906f0a0c758c3a7dc4fd68c197e32e96abb4b36807d0b0ede6d014a7c24",
                    None,
                ),
            ),
            // Podman pod with crun's `container` sub-cgroup, v2 (podman#13673): the pod's
            // slice names the pod.
            (
                "podman pod, crun sub-cgroup",
                b"0::/machine.slice/machine-libpod_pod_ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89.slice/libpod-1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f.scope/container\n",
                container(
                    Podman,
                    "1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f",
                    Some("ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89"),
                ),
            ),
            // A pod's container on this machine: podman 4.3.1, cgroupfs manager (no systemd),
            // hybrid; `podman pod create` and `podman run --pod` (2 of the 10 lines).
            (
                "podman pod, cgroupfs hybrid",
                b"4:memory:/libpod_parent/5fe9274922d8a61fbdc2b12b003e5438bf711497817f5befc31eb76448311c37/libpod-3c34722df70de591a8507eca22496776799930a05fb734903555bec0e8259688\n\
0::/libpod_parent/5fe9274922d8a61fbdc2b12b003e5438bf711497817f5befc31eb76448311c37/libpod-3c34722df70de591a8507eca22496776799930a05fb734903555bec0e8259688\n",
                container(
                    Podman,
                    "3c34722df70de591a8507eca22496776799930a05fb734903555bec0e8259688",
                    Some("5fe9274922d8a61fbdc2b12b003e5438bf711497817f5befc31eb76448311c37"),
                ),
            ),
            // Rootless pod, systemd manager: the slice under the user manager's `user.slice`
            // (`systemdSliceFromPath("user.slice", "libpod_pod_<id>")`, podman's
            // libpod/runtime_pod_linux.go).
            (
                "podman pod, rootless systemd",
                b"0::/user.slice/user-1000.slice/user@1000.service/user.slice/user-libpod_pod_ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89.slice/libpod-1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f.scope\n",
                container(
                    Podman,
                    "1dadda571b14eefb3158a15d0fff7e0089f9dd92f922679ed0116cccdfe8bb0f",
                    Some("ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89"),
                ),
            ),
            // A container outside a pod on this machine, the same podman: no pod.
            (
                "podman, cgroupfs hybrid, no pod",
                b"4:memory:/libpod_parent/libpod-7c308bef06a80bef84d586a6e3659246ee5412165f5884945f7029a8d14fec46\n\
0::/libpod_parent/libpod-7c308bef06a80bef84d586a6e3659246ee5412165f5884945f7029a8d14fec46\n",
                container(
                    Podman,
                    "7c308bef06a80bef84d586a6e3659246ee5412165f5884945f7029a8d14fec46",
                    None,
                ),
            ),
            // Podman `--cgroups=split` under a systemd service (podman#13673).
            (
                "podman split payload",
                b"0::/srv.slice/container-homeassistant.service/libpod-payload-c4e8e0d642078c90dde4a8a65883a7c0bee26f751d7c6a3096dc322519c658d3\n",
                container(
                    Podman,
                    "c4e8e0d642078c90dde4a8a65883a7c0bee26f751d7c6a3096dc322519c658d3",
                    None,
                ),
            ),
            // Podman's conmon scope (podman-container-tools/podman#507).
            (
                "podman conmon",
                b"0::/machine.slice/libpod-conmon-0411a2a82311fbc65b137ca550d5f7e6b6863bc734759be2f515b0b67062d49a.scope\n",
                monitor(
                    Podman,
                    "0411a2a82311fbc65b137ca550d5f7e6b6863bc734759be2f515b0b67062d49a",
                    None,
                ),
            ),
            // Podman, cgroupfs driver (`/libpod_parent/libpod-<id>`, podman#16960 and the
            // falcosecurity/libs podman layout table).
            (
                "podman cgroupfs",
                b"0::/libpod_parent/libpod-3bc14872777de686061f88f78fe8329d6ac09f998ba5765c2df9fea5c4a13314\n",
                container(
                    Podman,
                    "3bc14872777de686061f88f78fe8329d6ac09f998ba5765c2df9fea5c4a13314",
                    None,
                ),
            ),
            // Rootless Podman, v2 (podman#6400 shape, under user@.service).
            (
                "podman rootless",
                b"0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-3bc14872777de686061f88f78fe8329d6ac09f998ba5765c2df9fea5c4a13314.scope/container\n",
                container(
                    Podman,
                    "3bc14872777de686061f88f78fe8329d6ac09f998ba5765c2df9fea5c4a13314",
                    None,
                ),
            ),
            // `podman unshare`: a user scope, not a container; `podman-6696` must not be
            // read as a pod (containers/crun#376).
            (
                "podman unshare",
                b"0::/user.slice/user-1000.slice/user@1000.service/user.slice/podman-6696.scope\n",
                Host,
            ),
        ]
    }

    /// [`real_files`] of containerd without Kubernetes, LXC, nspawn and the rest.
    fn other_files() -> Vec<(&'static str, &'static [u8], CgroupWorkload)> {
        use CgroupWorkload::Host;
        use Runtime::*;
        vec![
            // containerd without Kubernetes: `ctr` puts a container at /<namespace>/<id>
            // (falcosecurity/libs container_engine/containerd.cpp).
            (
                "ctr default namespace",
                b"0::/default/f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830\n",
                container(
                    Containerd,
                    "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
                    None,
                ),
            ),
            (
                "containerd k8s.io namespace without kubepods",
                b"0::/k8s.io/f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830\n",
                container(
                    Containerd,
                    "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
                    None,
                ),
            ),
            // nerdctl with the systemd driver: `system.slice:nerdctl:<id>`, converted by runc
            // to a scope (containerd/nerdctl, generateCgroupPath).
            (
                "nerdctl systemd",
                b"0::/system.slice/nerdctl-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n",
                container(
                    Containerd,
                    "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
                    None,
                ),
            ),
            // `containerd-<id>.scope`: listed, with a question mark, by the falcosecurity/libs
            // CRI layout table; accepted because the id must still be 64 hex digits.
            (
                "containerd scope",
                b"0::/system.slice/containerd-f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830.scope\n",
                container(
                    Containerd,
                    "f45298cd514d1930c4fe3afc4412e59547f7e3148fddd22ca33cefce046eb830",
                    None,
                ),
            ),
            // The containerd daemon itself is a host service (kepler#153).
            ("containerd.service", b"0::/system.slice/containerd.service\n", Host),
            // LXC 3.x, hybrid, payload and monitor (htop-dev/htop#217).
            (
                "lxc.payload/ hybrid",
                b"11:cpuset:/lxc.payload/example\n\
2:memory:/lxc.payload/example/init.scope\n\
1:name=systemd:/lxc.payload/example/init.scope\n\
0::/lxc.payload/example/init.scope\n",
                container(Lxc, "example", None),
            ),
            (
                "lxc.monitor/ hybrid",
                b"1:name=systemd:/lxc.monitor/example\n0::/lxc.monitor/example\n",
                monitor(Lxc, "example", None),
            ),
            // LXC 4.0 flattened names, v2, a service inside (liske/needrestart#238).
            (
                "lxc.payload.<name>",
                b"0::/lxc.payload.focal/system.slice/avahi-daemon.service\n",
                container(Lxc, "focal", None),
            ),
            ("lxc.monitor.<name>", b"0::/lxc.monitor.focal\n", monitor(Lxc, "focal", None)),
            // LXC before 3.1 (falcosecurity/libs container_engine/lxc.cpp, `/lxc/<name>`).
            ("lxc/<name>", b"4:memory:/lxc/c1\n", container(Lxc, "c1", None)),
            // systemd-nspawn: `machine-<escaped name>.scope` (systemd/systemd#5490,
            // #18104 for the v2 payload sub-cgroup).
            (
                "nspawn escaped name",
                b"0::/machine.slice/machine-web\\x2d01.scope/payload/system.slice/nginx.service\n",
                container(Nspawn, "web-01", None),
            ),
            (
                "nspawn supervisor",
                b"0::/machine.slice/machine-web\\x2d01.scope/supervisor\n",
                monitor(Nspawn, "web-01", None),
            ),
            // Unprivileged nspawn under the user manager (systemd/systemd#37938).
            (
                "nspawn unprivileged",
                b"0::/user.slice/user-1000.slice/user@1000.service/machine.slice/android-build.scope/payload\n",
                container(Nspawn, "android-build", None),
            ),
            (
                "nspawn v1",
                b"1:name=systemd:/machine.slice/machine-rawhidex.scope/init.scope\n",
                container(Nspawn, "rawhidex", None),
            ),
            // A libvirt QEMU guest is a VM, not a container (the
            // `machine-qemu\x2d2\x2dinstance\x2d00000001.scope` shape quoted in
            // ceems-dev/ceems#377).
            (
                "libvirt qemu VM",
                b"0::/machine.slice/machine-qemu\\x2d2\\x2dinstance\\x2d00000001.scope/libvirt/emulator\n",
                Host,
            ),
            // Host processes (d2iq-archive/kubernetes-mesos#565, kontena/pharos-cluster#440).
            (
                "host v1, all at /",
                b"12:name=systemd:/\n11:hugetlb:/\n4:memory:/\n1:cpuset:/\n",
                Host,
            ),
            (
                "host service v1",
                b"11:cpuacct,cpu:/system.slice\n6:memory:/system.slice\n1:name=systemd:/system.slice\n",
                Host,
            ),
            (
                "host v2 session",
                b"0::/user.slice/user-1000.slice/session-3.scope\n",
                Host,
            ),
            ("host v2 init", b"0::/init.scope\n", Host),
            // Read from inside a container's own cgroup namespace, the container is `/`
            // (lxc/lxc#3373 shows `0::/` and `0::/.lxc` from inside one): nothing to see.
            ("cgroup namespace root", b"0::/\n", Host),
            ("cgroup namespace, lxc attach", b"0::/.lxc\n", Host),
            // A process outside the reader's cgroup namespace: `..` is dropped, the rest read.
            (
                "outside the reader's cgroup namespace",
                b"0::/../../kubepods/besteffort/pod6c85216c-82ad-11e7-9fb0-061c2985ea4a/162a25c865d3117f158a598f94b1a14436519ba18c8c1969727b9d3f7bdee25e\n",
                container(
                    Unknown,
                    "162a25c865d3117f158a598f94b1a14436519ba18c8c1969727b9d3f7bdee25e",
                    Some("6c85216c-82ad-11e7-9fb0-061c2985ea4a"),
                ),
            ),
        ]
    }

    /// Edge cases of the file format and of the choice between lines.
    #[test]
    fn format_edges() {
        use CgroupWorkload::{Host, Pod, Unknown};
        let docker = "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498";
        let other = "9b98bb265ea4c149d9a786380dd07716d341c3e925f2616040c6cd9ac8c4b75c";
        let cases: Vec<(&str, Vec<u8>, CgroupWorkload)> = vec![
            ("empty", b"".to_vec(), Unknown),
            ("only newlines", b"\n\n".to_vec(), Unknown),
            ("no colons", b"garbage\n".to_vec(), Unknown),
            ("one colon", b"4:memory\n".to_vec(), Unknown),
            (
                "non-numeric hierarchy",
                b"x:memory:/docker/abc\n".to_vec(),
                Unknown,
            ),
            ("relative path", b"0::docker\n".to_vec(), Unknown),
            // Newer kernels print `N:ctrl: (deleted)` with no path for a task whose cgroup
            // is gone on that hierarchy.
            (
                "no path, deleted",
                b"4:memory: (deleted)\n".to_vec(),
                Unknown,
            ),
            (
                "no trailing newline",
                format!("0::/docker/{docker}").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "trailing garbage after a good line",
                format!("0::/docker/{docker}\n\u{0}\u{0}\u{1}junk\nnot:a line").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "garbage before a good line",
                format!("\u{7f}ELF\n4:memory:/docker/{docker}\n").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "v2 path of a removed cgroup",
                format!("0::/system.slice/docker-{docker}.scope (deleted)\n").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "v2 wins over v1 when both name a container",
                format!("4:memory:/docker/{other}\n0::/docker/{docker}\n").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "name=systemd wins over memory, memory over cpu, cpu over others",
                format!(
                    "9:pids:/docker/{other}\n3:cpu,cpuacct:/docker/{other}\n\
                     2:memory:/docker/{other}\n1:name=systemd:/docker/{docker}\n"
                )
                .into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "memory wins over cpu",
                format!("3:cpu,cpuacct:/docker/{other}\n2:memory:/docker/{docker}\n").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                "a container on any line beats a host v2 line",
                format!("0::/\n9:pids:/docker/{docker}\n").into_bytes(),
                container(Runtime::Docker, docker, None),
            ),
            (
                // The ':' of the path is part of the path.
                "colon in a host path",
                b"0::/system.slice/a:b:c.service\n".to_vec(),
                Host,
            ),
            (
                "pod cgroup without a container (v1)",
                b"4:memory:/kubepods/besteffort/pod6c85216c-82ad-11e7-9fb0-061c2985ea4a\n".to_vec(),
                Pod {
                    uid: "6c85216c-82ad-11e7-9fb0-061c2985ea4a".to_owned(),
                },
            ),
            (
                "QoS level only",
                b"0::/kubepods/besteffort\n".to_vec(),
                Host,
            ),
            (
                "short hex is no id",
                b"0::/docker/5dace3de0735\n".to_vec(),
                Host,
            ),
            (
                "uppercase hex is no id",
                format!("0::/docker/{}\n", docker.to_uppercase()).into_bytes(),
                Host,
            ),
            (
                "hex under a systemd unit is not a containerd namespace",
                format!("0::/system.slice/{docker}\n").into_bytes(),
                Host,
            ),
            (
                "a bad pod UID does not make a pod",
                format!("0::/kubepods/besteffort/podnot-a-uid/{docker}\n").into_bytes(),
                Host,
            ),
        ];
        for (name, contents, expected) in cases {
            assert_eq!(parse_cgroup(&contents), expected, "case {name:?}");
        }
    }

    #[test]
    fn non_utf8_bytes() {
        let docker = "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498";
        // An invalid byte elsewhere in the path does not stop the container being found.
        let mut contents = b"0::/weird\xff\xfe.slice/docker-".to_vec();
        contents.extend_from_slice(docker.as_bytes());
        contents.extend_from_slice(b".scope\n");
        assert_eq!(
            parse_cgroup(&contents),
            container(Runtime::Docker, docker, None)
        );
        // An invalid byte inside an id makes it no id.
        let mut contents = b"0::/docker/".to_vec();
        contents.extend_from_slice(&docker.as_bytes()[..63]);
        contents.extend_from_slice(b"\xff\n");
        assert_eq!(parse_cgroup(&contents), CgroupWorkload::Host);
        // In a free-form name it is replaced, so the label stays valid UTF-8.
        assert_eq!(
            parse_cgroup(b"0::/lxc.payload.caf\xe9\n"),
            container(Runtime::Lxc, "caf\u{fffd}", None)
        );
        // An escaped invalid byte in a machine name, likewise.
        assert_eq!(
            parse_cgroup(b"0::/machine.slice/machine-a\\xffb.scope\n"),
            container(Runtime::Nspawn, "a\u{fffd}b", None)
        );
    }

    #[test]
    fn unit_name_unescaping() {
        assert_eq!(unescape_unit_name(r"web\x2d01"), "web-01");
        assert_eq!(unescape_unit_name(r"a\x2db\x2dc"), "a-b-c");
        // Malformed escapes are kept as they are.
        assert_eq!(unescape_unit_name(r"a\x2"), r"a\x2");
        assert_eq!(unescape_unit_name(r"a\xzz"), r"a\xzz");
        assert_eq!(unescape_unit_name(r"a\x+f"), r"a\x+f");
        assert_eq!(unescape_unit_name(r"a\"), r"a\");
    }

    #[test]
    fn pod_uids() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "pod6c85216c-82ad-11e7-9fb0-061c2985ea4a",
                Some("6c85216c-82ad-11e7-9fb0-061c2985ea4a"),
            ),
            (
                "kubepods-burstable-poda5c1f8d5_1919_434d_add7_4afaafdaef89.slice",
                Some("a5c1f8d5-1919-434d-add7-4afaafdaef89"),
            ),
            (
                "kubepods-pod55c6c714_b240_4dec_9a45_57b61696ab6e.slice",
                Some("55c6c714-b240-4dec-9a45-57b61696ab6e"),
            ),
            (
                "kubepods-burstable-pod8daa50c3a64c9ff60bb9eab7b44b56fd.slice",
                Some("8daa50c3a64c9ff60bb9eab7b44b56fd"),
            ),
            ("kubepods-burstable.slice", None),
            ("kubepods", None),
            ("podman-6696.scope", None),
            ("pod", None),
            ("pod6C85216C-82AD-11E7-9FB0-061C2985EA4A", None),
            ("pod6c85216c-82ad-11e7-9fb0-061c2985ea4", None),
            (
                "machine-libpod_pod_ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89.slice",
                None,
            ),
        ];
        for (component, expected) in cases {
            assert_eq!(
                pod_uid_of(component).as_deref(),
                *expected,
                "component {component:?}"
            );
        }
    }

    #[test]
    fn podman_pod_ids() {
        let id = "ddf44d54b520f0b4469fcd01c3155ca49e6911dc2175471eb3a7b789187a7a89";
        let cases: &[(String, Option<&str>)] = &[
            (format!("machine-libpod_pod_{id}.slice"), Some(id)),
            (format!("user-libpod_pod_{id}.slice"), Some(id)),
            // A `--cgroup-parent` slice of one's own keeps its prefix.
            (format!("team-libpod_pod_{id}.slice"), Some(id)),
            (id.to_owned(), Some(id)),
            ("machine.slice".to_owned(), None),
            ("libpod_parent".to_owned(), None),
            (format!("{id}.slice"), None),
            (format!("machine-libpod_pod_{}.slice", &id[..63]), None),
            (
                format!("machine-libpod_pod_{}.slice", id.to_uppercase()),
                None,
            ),
            (format!("machine-libpod_pod_{id}"), None),
            (format!("pod{id}"), None),
        ];
        for (component, expected) in cases {
            assert_eq!(
                podman_pod_of(component).as_deref(),
                *expected,
                "component {component:?}"
            );
        }
        // Only a Podman container's parent is read so: a Docker container under a directory
        // of 64 hex digits is in no pod.
        let docker = "5dace3de0735f73d2b5048f12d41a71741a02e49668de921fdae62f7e65dc498";
        assert_eq!(
            parse_cgroup(format!("0::/{id}/docker-{docker}.scope\n").as_bytes()),
            container(Runtime::Docker, docker, None)
        );
    }

    #[test]
    fn runtime_labels() {
        let all = [
            (Runtime::Containerd, "containerd"),
            (Runtime::CriO, "cri-o"),
            (Runtime::Docker, "docker"),
            (Runtime::Podman, "podman"),
            (Runtime::Nspawn, "systemd-nspawn"),
            (Runtime::Lxc, "lxc"),
            (Runtime::Unknown, "unknown"),
        ];
        for (runtime, label) in all {
            assert_eq!(runtime.as_str(), label);
            assert_eq!(runtime.to_string(), label);
        }
    }
}

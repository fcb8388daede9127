//! Attribution: which workload (host, container, pod) a process belongs to.
//!
//! Kernel interface: `/proc/PID/cgroup` (cgroups(7)). Container runtimes name the cgroup of
//! each container after it, so the cgroup path of a process says which container, and for
//! Kubernetes which pod, it runs in: [`crate::cgroup::parse_cgroup`], a leaf below both the
//! scan that reads the file and this stage, turns its bytes into a
//! [`CgroupWorkload`](crate::cgroup::CgroupWorkload). Names come from files beside the
//! kernel's: the kubelet's `/var/log/containers/` directory maps a container id to its pod,
//! namespace and container names ([`read_kubelet_names`] lists it, names only, never
//! contents, and [`parse_log_name`] parses one name); Docker's data root has each
//! container's name in its `config.v2.json`, and containers/storage lists Podman's in
//! `containers.json`; [`NameSources`] keeps them fresh, and every source reads into and
//! fails with the same kit (`container_names`), below them all.
//!
//! Everything here is a pure function of bytes already read, except the name sources' reads;
//! reading `/proc/PID/cgroup` itself belongs to the scan stage, through `ProcFs`.
//!
//! # Kernel threads
//!
//! A kernel thread has the same `/proc/PID/cgroup` as a host process (it sits in the root
//! cgroup), so [`crate::cgroup::parse_cgroup`] calls it
//! [`CgroupWorkload::Host`](crate::cgroup::CgroupWorkload::Host) and cannot do better. The
//! kernel/host split is made elsewhere, from the parent PID the scan already has: a process
//! is a kernel thread if it is kthreadd (PID 2) or a child of it (PPID 2). That test needs
//! `/proc/PID/stat`, not this file, so it is not done here.

mod container_names;
mod docker;
mod kubelet;
mod membership;
mod names;
mod podman;
mod workload;

pub(crate) use container_names::read_bounded;
pub use container_names::{ContainerNames, NameError, NameErrorReason};
pub use kubelet::{KubeletNames, NameConflict, parse_log_name, read_kubelet_names};
pub use membership::Memberships;
pub use names::{NameSource, NameSources, Names, REREAD as REREAD_NAMES, Refresh};
pub use workload::{Attribution, Container, SETUP_WINDOW_SECONDS, Workload, attribute};

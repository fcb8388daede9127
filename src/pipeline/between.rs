//! The between-scans judge: sweeps and process events. Between two full scans it reads the
//! processes that started since (a sweep, `/proc` listed again), the containers' processes
//! in place, and those the kernel reported forking, exec'ing or changing namespaces (the proc
//! connector, the eBPF source), and judges them by the host rules against the last scan's
//! host namespaces, so that a process that enters a host namespace and leaves within an
//! interval is still found. It runs between two steps of [`super::step`] and takes their
//! state; what it learns of memberships and findings the next step keeps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::attribution::{Attribution, Workload, attribute};
use crate::declared::Judgement;
use crate::events::{Event, EventStream};
use crate::metrics::{Exposition, Metrics, Outcome};
use crate::model::{
    Inode, NamespaceId, NsChange, NsType, PerType, Process, ProcessId, Snapshot, ThreadNamespace,
};
use crate::policy::Policy;
use crate::privilege::container::{ContainerPrivilege, ProcessSeen};
use crate::scan::{Scanner, Watch};
use crate::sharing::{Finding, evaluate};

use super::privilege::{differs, in_setup, user_namespace_of};
use super::sources::Sources;
use super::step::{ScanResult, State};
use super::step::{declared_privilege, privilege_finding};

/// How many namespace changes are logged between two scans at most.
const CHANGES_LOGGED: usize = 1000;

/// What the between-scans judge keeps until the next scan.
#[derive(Default)]
pub struct Between {
    /// The last scan's declared-versus-observed judgement, for the sweeps' findings.
    judgement: Judgement,
    /// Processes the sweeps read since the last scan: pid, start ticks, reads.
    swept: HashMap<i32, (u64, u8)>,
    /// The containers' processes of the last scan, which sweeps read again in place.
    watch: Watch,
    /// Namespace changes logged since the last scan.
    changes_logged: ChangesLogged,
    /// Each container's privilege as the last scan read it, with its first process's owner
    /// and user namespace: a process new since is read and judged against it.
    privilege: HashMap<String, (ContainerPrivilege, u32, Option<Inode>)>,
    /// Each container's processes at the last scan: a parent among them is inside.
    members: HashMap<String, HashSet<i32>>,
}

/// What the judge borrows from the scan loop for one sweep or batch of events.
pub struct Context<'a> {
    /// Reads the processes a sweep or an event names.
    pub scanner: &'a mut Scanner,
    /// The pipeline's state after the last scan: its snapshot, memberships and findings.
    pub state: &'a mut State,
    /// Names the containers of the processes read.
    pub sources: &'a mut Sources,
    /// Counts what was read and found, and encodes the exposition to publish.
    pub metrics: &'a mut Metrics,
    /// The policy in force.
    pub policy: &'a Policy,
    /// The process event readers, for their losses.
    pub events: Option<&'a EventStream>,
}

impl Between {
    /// Takes what the sweeps need from a scan's result: its judgement, and the processes
    /// to watch in place (the containers' and runtimes'), for the namespace types a process
    /// may move into a host's of (the mount namespace always, and those the policy judges).
    pub fn scanned(&mut self, result: &mut ScanResult, policy: &Policy) {
        let mut moves = PerType::splat(false);
        for t in NsType::ALL {
            moves[t] = t == NsType::Mnt || policy.host_namespace_types.contains(t);
        }
        let attribution = &result.attribution;
        let containers = result.snapshot.processes.keys().copied().filter(|&pid| {
            matches!(
                attribution.of(pid),
                Workload::Container(_) | Workload::Runtime(_)
            )
        });
        self.watch = Watch::new(containers, moves);
        self.judgement = std::mem::take(&mut result.judgement);
        self.members.clear();
        for pid in result.snapshot.processes.keys() {
            if let Workload::Container(c) = attribution.of(*pid) {
                self.members.entry(c.id.clone()).or_default().insert(*pid);
            }
        }
        let processes = &result.snapshot.processes;
        self.privilege = result
            .privilege
            .iter()
            .filter_map(|(c, _)| {
                let first = processes.get(&c.first.pid)?;
                Some((
                    c.container.id.clone(),
                    (c.clone(), first.uid, first.namespaces[NsType::User]),
                ))
            })
            .collect();
    }

    /// Forgets what was swept and logged since the last scan: a new scan read it all.
    pub fn reset(&mut self) {
        self.swept.clear();
        self.changes_logged = ChangesLogged::default();
    }

    /// One sweep: the processes new since the last scan, and the containers' processes that
    /// moved since, judged by the host rules against the last scan's host namespaces. Returns
    /// the exposition to publish, with its counters and any new finding; `None` where it
    /// could not run (the next scan says why).
    pub fn sweep_once(&mut self, cx: &mut Context<'_>) -> Option<Exposition> {
        let known = Arc::clone(cx.state.tracker.previous_arc()?);
        let sweep = match cx.scanner.sweep(&known, &mut self.swept, &mut self.watch) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sweep failed");
                return None;
            }
        };
        tracing::trace!(
            listed = sweep.listed,
            rechecked = sweep.rechecked,
            read = sweep.processes.len(),
            "sweep"
        );
        let (read, new) = self.judge(cx, sweep.processes, &known, &[]);
        cx.metrics.record(Outcome::Sweep {
            processes: read,
            rechecked: sweep.rechecked,
            new_findings: &new,
        });
        Some(encode_live(cx))
    }

    /// Reads the processes the kernel said forked or exec'd, or changed namespaces, and
    /// judges them as a sweep does. A change is judged as the kernel reported it: the
    /// namespaces the task entered join the process as it is read now (as a thread's, so that
    /// a stay already over, or a change of one thread, still counts), or as the last scan
    /// read it where it is gone by now (its cgroup, and so its container, is the one it had
    /// then). A process gone before anything read it (a child that enters the host's network
    /// and exits within a millisecond) is judged as its parent was read, by the cgroup it was
    /// born in ([`born_of`]), and by its own pid namespace, which the kernel reported; where
    /// its parent is gone too, by that pid namespace alone ([`reported`]). Only where neither
    /// is known is the change logged at debug and counted only in
    /// `nsexporter_ebpf_namespace_changes_total`.
    pub fn judge_events(&mut self, cx: &mut Context<'_>, batch: Vec<Event>) -> Option<Exposition> {
        let known = Arc::clone(cx.state.tracker.previous_arc()?);
        let (mut pids, mut changes, mut forks) = (Vec::new(), Vec::new(), 0);
        for event in batch {
            match event {
                Event::Process(pid) => {
                    forks += 1;
                    pids.push(pid);
                }
                Event::Change(change) => {
                    pids.push(change.process.pid);
                    changes.push(*change);
                }
                // Kept by the event-kept snapshot, not judged here.
                Event::Task(_) => {}
            }
        }
        pids.sort_unstable();
        pids.dedup();
        let mut processes = cx.scanner.read_pids(&pids, &known);
        // A flood of changes names thousands of processes: found by id, not by a walk each.
        let mut index: HashMap<ProcessId, usize> = processes
            .iter()
            .enumerate()
            .map(|(at, p)| (p.id, at))
            .collect();
        // Parents of processes gone unread, as read in this batch (`None`: gone too).
        let mut parents: HashMap<ProcessId, Option<Process>> = HashMap::new();
        for change in &changes {
            let at = match index.get(&change.process) {
                Some(&at) => at,
                None => match known.processes.get(&change.process.pid) {
                    Some(p) if p.id == change.process => {
                        processes.push(p.clone());
                        index.insert(p.id, processes.len() - 1);
                        processes.len() - 1
                    }
                    _ => {
                        let parent = change.parent.and_then(|parent| match index.get(&parent) {
                            Some(&at) => Some(processes[at].clone()),
                            // Read once a batch: a flood of short-lived children has one parent.
                            None => parents
                                .entry(parent)
                                .or_insert_with(|| read_one(cx.scanner, parent, &known))
                                .clone(),
                        });
                        let born = match parent {
                            Some(parent) => born_of(change, &parent),
                            // Its own pid namespace may place it still.
                            None if change.namespaces[NsType::Pid].is_some() => reported(change),
                            None => {
                                tracing::debug!(
                                    pid = change.process.pid,
                                    comm = %change.comm,
                                    syscall = change.syscall.as_str(),
                                    "namespace change of a process gone unread, whose parent is unknown"
                                );
                                continue;
                            }
                        };
                        processes.push(born);
                        index.insert(change.process, processes.len() - 1);
                        processes.len() - 1
                    }
                },
            };
            let p = &mut processes[at];
            for id in change.entered() {
                let tid = change.tid;
                if p.namespace(id.ns_type) != Some(id)
                    && !p
                        .thread_namespaces
                        .iter()
                        .any(|t| t.tid == tid && t.id == id)
                {
                    p.thread_namespaces.push(ThreadNamespace { tid, id });
                }
            }
        }
        let (read, new) = self.judge(cx, processes, &known, &changes);
        cx.metrics.record(Outcome::Events {
            proc_events: forks,
            read,
            new_findings: &new,
            changes: &changes,
        });
        Some(encode_live(cx))
    }

    /// Judges processes read between scans by the host rules, against the host namespaces of
    /// `known`, and logs each new finding: how many it read, and the new findings to count.
    fn judge(
        &mut self,
        cx: &mut Context<'_>,
        processes: Vec<Process>,
        known: &Snapshot,
        changes: &[NsChange],
    ) -> (usize, Vec<Finding>) {
        let read = processes.len();
        if read == 0 {
            return (0, Vec::new());
        }
        let processes: BTreeMap<i32, Process> =
            processes.into_iter().map(|p| (p.id.pid, p)).collect();
        // Parents that neither this read nor the last scan holds (one a sweep read before, as
        // runc's own process is before it forks its stages): read now, for attribution to
        // tell a runtime's setup from the payload.
        let mut missing: Vec<i32> = processes
            .values()
            .map(|p| p.ppid)
            .filter(|pid| !processes.contains_key(pid) && !known.processes.contains_key(pid))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let (time, wall) = cx.scanner.now();
        let parents = cx.scanner.read_pids(&missing, known);
        let parents = Snapshot::from_processes(
            wall,
            time,
            parents.into_iter().map(|p| (p.id.pid, p)).collect(),
            known.host.clone(),
        );
        let mut fresh = Snapshot::from_processes(wall, time, processes, known.host.clone());
        confirm_pid_namespaces(cx, &mut fresh);
        let names = cx.sources.names(cx.metrics);
        let attribution = attribute(
            &fresh,
            &[known, &parents],
            &names,
            &mut cx.state.memberships,
        );
        // Watched from now on, as the last scan's containers' processes are.
        for p in fresh.processes.values() {
            if matches!(
                attribution.of(p.id.pid),
                Workload::Container(_) | Workload::Runtime(_)
            ) {
                self.watch.add(p);
            }
        }
        if !changes.is_empty() {
            self.changes_logged.log(changes, known, &attribution);
        }
        let mut sharing = evaluate(&fresh, &attribution, cx.policy);
        for f in &mut sharing.findings {
            f.declared = self.judgement.declaration(f, &fresh);
        }
        self.judge_privilege(cx, &fresh, &attribution, &mut sharing.findings);
        let new = cx
            .state
            .findings
            .sweep(&sharing.findings, &fresh, &attribution);
        (read, new)
    }
}

impl Between {
    /// Reads the privilege of each process read between scans that is its container's, new
    /// since the last scan, and differs from the container's first process as the scan would
    /// read it ([`differs`]); a `privilege_exceeds_declared` finding where it exceeds its
    /// spec or, without one, the first process.
    fn judge_privilege(
        &self,
        cx: &mut Context<'_>,
        fresh: &Snapshot,
        attribution: &Attribution,
        findings: &mut Vec<Finding>,
    ) {
        let specs = cx.sources.spec_view();
        for p in fresh.processes.values() {
            let Workload::Container(c) = attribution.of(p.id.pid) else {
                continue;
            };
            let Some((known, first_uid, first_user)) = self.privilege.get(&c.id) else {
                continue;
            };
            let inside = |pid: i32| {
                matches!(attribution.of(pid), Workload::Container(o) if o.id == c.id)
                    || self.members.get(&c.id).is_some_and(|m| m.contains(&pid))
            };
            if p.id.pid == known.first.pid
                || in_setup(p, &fresh.time, inside(p.ppid))
                || !differs(p, *first_uid, *first_user, inside(p.ppid))
            {
                continue;
            }
            let privilege = match super::privilege::read_one(cx.scanner.procfs(), p.id.pid) {
                Ok(Some(privilege)) => privilege,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(pid = p.id.pid, error = %e, "privilege unread");
                    continue;
                }
            };
            let user_namespace = user_namespace_of(
                p.namespaces[NsType::User],
                *first_user,
                fresh.host.inodes[NsType::User],
                privilege.uid_map.is_identity(),
            );
            let one = ContainerPrivilege {
                others: vec![ProcessSeen {
                    pid: p.id.pid,
                    privilege,
                    user_namespace,
                }],
                ..known.clone()
            };
            let declared = declared_privilege(specs, &c.id);
            findings.extend(privilege_finding(&one, declared, Some(p.id.pid)));
        }
    }
}

/// Namespace changes logged since the last scan: each (process, namespace) once, and at most
/// [`CHANGES_LOGGED`] of them.
#[derive(Default)]
struct ChangesLogged {
    logged: HashSet<(ProcessId, NamespaceId)>,
    /// Whether the bound was said.
    said: bool,
}

impl ChangesLogged {
    /// Logs each namespace change once per process and namespace until the next scan, with
    /// its process's container: at most [`CHANGES_LOGGED`] a scan, so that a flood of
    /// changes (counted all the same) does not flood the log.
    fn log(&mut self, changes: &[NsChange], known: &Snapshot, attribution: &Attribution) {
        for change in changes {
            let container = match attribution.of(change.process.pid) {
                Workload::Container(c) => Some(c),
                _ => None,
            };
            let names = container.and_then(|c| c.names.as_ref());
            for id in change.entered() {
                let (logged, said) = (&mut self.logged, &mut self.said);
                if logged.contains(&(change.process, id)) {
                    continue;
                }
                if logged.len() >= CHANGES_LOGGED {
                    if !std::mem::replace(said, true) {
                        tracing::info!(
                            most = CHANGES_LOGGED,
                            "more namespace changes than are logged between two scans; the rest are counted in nsexporter_ebpf_namespace_changes_total"
                        );
                    }
                    continue;
                }
                logged.insert((change.process, id));
                tracing::info!(
                    pid = change.process.pid,
                    tid = change.tid,
                    comm = %change.comm,
                    syscall = change.syscall.as_str(),
                    r#type = id.ns_type.as_str(),
                    namespace = id.inode,
                    host = known.host.contains(id),
                    container_id = container.map_or("", |c| c.id.as_str()),
                    container = names.map_or("", |n| n.container.as_str()),
                    pod = names.map_or("", |n| n.pod.as_str()),
                    k8s_namespace = names.map_or("", |n| n.k8s_namespace.as_str()),
                    "namespace change (eBPF)"
                );
            }
        }
    }
}

/// The process `id` as the last scan read it, or as it is read now; `None` where it is
/// gone, or its pid is another process's by now.
fn read_one(scanner: &mut Scanner, id: ProcessId, known: &Snapshot) -> Option<Process> {
    match known.processes.get(&id.pid) {
        Some(p) if p.id == id => Some(p.clone()),
        _ => scanner
            .read_pids(&[id.pid], known)
            .into_iter()
            .find(|p| p.id == id),
    }
}

/// The exposition with the live families as they are now.
fn encode_live(cx: &mut Context<'_>) -> Exposition {
    let events = cx.events;
    cx.metrics.record(Outcome::ReaderLosses {
        proc_events: events.and_then(|e| e.proc_drops.as_deref()),
        ebpf: events.and_then(|e| e.ebpf_lost.as_deref()),
    });
    cx.metrics.exposition()
}

/// Gives the pid namespaces of `fresh` (read between scans: no kernel ids) that were
/// learnt as a container's their kernel id, where the process they were learnt from is
/// in a namespace of that id still: then the inode is that namespace's, not a new one's,
/// and attribution may place by it a process that left its container's cgroup before
/// any read, or was gone before its own (a child the eBPF source reported). One open and
/// one ioctl per such namespace, and only for those.
fn confirm_pid_namespaces(cx: &Context<'_>, fresh: &mut Snapshot) {
    let Ok(root) = crate::procfs::open_dir_at(None, cx.scanner.procfs().root()) else {
        return;
    };
    let mut digits = itoa::Buffer::new();
    for (id, ns) in fresh.namespaces.iter_mut() {
        if id.ns_type != NsType::Pid || fresh.host.contains(*id) {
            continue;
        }
        let Some((witness, kernel_id)) = cx.state.memberships.witness(id.inode) else {
            continue;
        };
        let Ok(link) = std::ffi::CString::new(format!("{}/ns/pid", digits.format(witness))) else {
            continue;
        };
        let facts = crate::procfs::ns_facts(root.as_fd(), &link, NsType::Pid);
        if facts.is_ok_and(|f| f.inode == id.inode && f.kernel_id == Some(kernel_id)) {
            ns.kernel_id = Some(kernel_id);
        }
    }
}

/// A process that changed namespaces and was gone before `/proc` was read: in the namespaces
/// the kernel reported for it, its own pid namespace among them, which places it in its
/// container whatever its parent is (`CLONE_PARENT`, a subreaper); its parent's cgroup file
/// is only a claim beside that. What it wrote itself (`comm`) is the kernel's report of it, a
/// claim as every `comm`.
fn born_of(change: &NsChange, parent: &Process) -> Process {
    let mut namespaces = parent.namespaces;
    for t in NsType::ALL {
        namespaces[t] = change.namespaces[t].or(namespaces[t]);
    }
    Process {
        id: change.process,
        ppid: parent.id.pid,
        comm: change.comm.as_str().into(),
        namespaces,
        thread_namespaces: Vec::new(),
        ..parent.clone()
    }
}

/// A process that changed namespaces and was gone before `/proc` was read, whose parent is
/// gone too: what the kernel reported of it and nothing else. Without a cgroup file, only its
/// own pid namespace can place it in a container; elsewhere it is no one's.
fn reported(change: &NsChange) -> Process {
    Process {
        id: change.process,
        ppid: change.parent.map_or(0, |p| p.pid),
        uid: u32::MAX,
        comm: change.comm.as_str().into(),
        namespaces: change.namespaces,
        cgroup: None,
        thread_namespaces: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inode;

    /// A child that entered the host's net and exited unread is in the namespaces the kernel
    /// reported for it, its own pid namespace among them (which attribution places it by),
    /// and its parent's where the report has none.
    #[test]
    fn a_process_gone_unread_is_in_the_namespaces_the_kernel_reported() {
        let parent = Process {
            cgroup: Some(Arc::from(&b"0::/kubepods/pod1/abc\n"[..])),
            uid: 1000,
            ..Process::fixture(40, PerType::splat(inode(7)))
        };
        let mut namespaces = PerType::splat(None);
        namespaces[NsType::Net] = inode(4026531840);
        namespaces[NsType::Pid] = inode(4026532000);
        let mut changed = PerType::splat(false);
        changed[NsType::Net] = true;
        let child = ProcessId {
            pid: 41,
            start_ticks: 90,
        };
        let change = NsChange {
            process: child,
            tid: 41,
            parent: Some(parent.id),
            syscall: crate::model::ChangeSyscall::Setns,
            changed,
            namespaces,
            comm: "nsenter".into(),
        };
        let born = born_of(&change, &parent);
        assert_eq!((born.id, born.ppid, &*born.comm), (child, 40, "nsenter"));
        assert_eq!(born.cgroup, parent.cgroup, "born in its parent's cgroup");
        assert_eq!(born.uid, 1000);
        let mut want = parent.namespaces;
        want[NsType::Net] = inode(4026531840);
        want[NsType::Pid] = inode(4026532000);
        assert_eq!(born.namespaces, want);
        assert!(born.thread_namespaces.is_empty());
    }
}

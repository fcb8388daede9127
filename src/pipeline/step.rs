//! The full scan's pipeline as a step: the last state and a new snapshot in, the scan's result
//! out (process-exporter's `Tracker.Update(ProcIter)`). Lifecycle, attribution, sharing under
//! the policy, declared against observed, the findings log and the orphans, in that order,
//! with no I/O: what the name and spec sources say is read before, in [`super::sources`].
//!
//! The step is cut once, after attribution ([`attribute`], then [`step`]): which containers'
//! specs are read depends on that attribution, and a spec that gives a container the names it
//! lacked has it attributed again ([`Attributed::again`]) before the rest runs. The binary,
//! the between-scans judge and the golden scenario (`metrics/scenario.rs`) all go through
//! these two functions and consume the same [`ScanResult`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::attribution::{Attribution, Memberships, Names};
use crate::declared::{Judgement, Specs, judge};
use crate::lifecycle::{Changes, Orphan, Tracker};
use crate::metrics::ScanRecord;
use crate::model::{NsType, Snapshot};
use crate::policy::{Policy, Rule};
use crate::privilege::container::ContainerPrivilege;
use crate::privilege::exceeds::Excess;
use crate::privilege::{DeclaredPrivilege, Level};
use crate::scan::pins::SocketSkips;
use crate::scan::{ErrorReason, ProcessFailure, ScanErrors, ScanOutcome};
use crate::sharing::{Declaration, Finding, FindingLog, Sharing, evaluate};

use super::privilege::PrivilegeRead;

/// What the pipeline keeps from one full scan to the next.
#[derive(Debug, Default)]
pub struct State {
    /// Each namespace's life across scans, and the last snapshot.
    pub tracker: Tracker,
    /// Which container each process and pid namespace was found in, kept for their lives.
    pub memberships: Memberships,
    /// The findings of the last scan: each new one is counted and logged once.
    pub findings: FindingLog,
    /// The processes whose reads failed in the last scan, and why: the same failure again is
    /// standing, counted when it began and not every scan since.
    failed: HashSet<ProcessFailure>,
}

impl State {
    /// The state before the first scan.
    pub fn new() -> Self {
        Self::default()
    }

    /// The processes whose reads failed in the last scan, and why.
    pub fn failed(&self) -> &HashSet<ProcessFailure> {
        &self.failed
    }
}

/// What the spec sources read for this scan's containers, before the step.
#[derive(Debug, Default)]
pub struct SpecView {
    /// The specs of this scan's containers, by id.
    pub specs: Specs,
    /// The bind-mounted namespace paths those specs join, each resolved on the host to the
    /// inode of the namespace it pins; a path that pins none is absent.
    pub resolved: HashMap<PathBuf, u64>,
}

/// A scan taken through lifecycle and attribution: the step's first half.
#[derive(Debug)]
pub struct Attributed {
    /// The scan's snapshot, which the tracker holds too.
    pub snapshot: Arc<Snapshot>,
    /// The namespaces created and destroyed since the last scan.
    pub changes: Changes,
    /// Each process's workload.
    pub attribution: Attribution,
    /// The rest of what the scan read, handed on to the result.
    pub counts: Counts,
    /// The containers' privilege, where it was read after attribution
    /// ([`super::privilege::read_privileges`]).
    pub privilege: Option<PrivilegeRead>,
}

/// What a scan counted beside its snapshot, as [`ScanOutcome`] gives it.
#[derive(Debug)]
pub struct Counts {
    /// The scan's failed reads, by reason.
    pub errors: ScanErrors,
    /// Processes skipped because they exited while being read.
    pub vanished: u64,
    /// Namespaces whose kernel id the scan asked for.
    pub id_queries: u64,
    /// Processes whose fds the last fd pass could not read.
    pub fds_skipped: u64,
    /// Socket fds whose network namespace the last fd pass could not learn, by reason.
    pub sockets_skipped: SocketSkips,
    /// Sockets asked for their network namespace in this scan.
    pub socket_queries: u64,
}

/// The step's first half: the tracker takes the new snapshot (the last one goes, before
/// attribution allocates), and each process is attributed by `names`.
pub fn attribute(state: &mut State, outcome: ScanOutcome, names: &Names) -> Attributed {
    let snapshot = Arc::new(outcome.snapshot);
    let changes = state.tracker.update(Arc::clone(&snapshot));
    let attribution = crate::attribution::attribute(&snapshot, &[], names, &mut state.memberships);
    Attributed {
        snapshot,
        changes,
        attribution,
        counts: Counts {
            errors: outcome.errors,
            vanished: outcome.vanished,
            id_queries: outcome.id_queries,
            fds_skipped: outcome.fds_skipped,
            sockets_skipped: outcome.sockets_skipped,
            socket_queries: outcome.socket_queries,
        },
        privilege: None,
    }
}

impl Attributed {
    /// Attributes the scan again by `names`, where a spec gave a container names it lacked;
    /// what attribution learnt the first time it learns again, unchanged.
    pub fn again(&mut self, state: &mut State, names: &Names) {
        self.attribution =
            crate::attribution::attribute(&self.snapshot, &[], names, &mut state.memberships);
    }
}

/// The scan's result: what the metrics record, the between-scans judge and the logs take.
#[derive(Debug)]
pub struct ScanResult {
    /// The scan's snapshot, which the tracker holds too.
    pub snapshot: Arc<Snapshot>,
    /// The namespaces created and destroyed since the last scan.
    pub changes: Changes,
    /// Each process's workload.
    pub attribution: Attribution,
    /// Sharing under the policy, each finding with its declaration, the declared judge's
    /// findings among them, sorted.
    pub sharing: Sharing,
    /// Declared against observed, for the sweeps' findings until the next scan.
    pub judgement: Judgement,
    /// The findings that first appeared in this scan.
    pub new_findings: Vec<(Rule, NsType)>,
    /// The namespaces held without a process for longer than the orphan age.
    pub orphans: Vec<Orphan>,
    /// Of the scan's errors, by reason, the processes that failed the same way the scan
    /// before.
    pub standing_errors: [u64; ErrorReason::ALL.len()],
    /// What the scan counted beside its snapshot.
    pub counts: Counts,
    /// Each container's privilege as read, with the level it meets; empty where it was not
    /// read.
    pub privilege: Vec<(ContainerPrivilege, Level)>,
    /// Privilege reads, and those that failed.
    pub privilege_reads: (u64, u64),
}

/// The step's second half: sharing under `policy`, declared against observed where `specs`
/// were read, the findings new since the last scan, the orphans older than `orphan_age`.
pub fn step(
    state: &mut State,
    scan: Attributed,
    specs: Option<&SpecView>,
    policy: &Policy,
    orphan_age: Duration,
) -> ScanResult {
    let Attributed {
        snapshot,
        changes,
        attribution,
        counts,
        privilege,
    } = scan;
    state.memberships.keep_only(&snapshot);
    let mut sharing = evaluate(&snapshot, &attribution, policy);
    let judgement = match specs {
        Some(view) => {
            let resolve = |path: &std::path::Path| view.resolved.get(path).copied();
            judge(&snapshot, &attribution, &view.specs, &resolve)
        }
        None => Judgement::default(),
    };
    for f in &mut sharing.findings {
        f.declared = judgement.declaration(f, &snapshot);
    }
    sharing.findings.extend(judgement.findings.iter().cloned());
    let privilege_reads = privilege.as_ref().map_or((0, 0), |p| (p.reads, p.errors));
    let privilege = match privilege {
        Some(read) => {
            let levels = judge_privilege(&read, specs, &mut sharing.findings);
            read.containers.into_iter().zip(levels).collect()
        }
        None => Vec::new(),
    };
    sharing.findings.sort();
    let new_findings = state.findings.update(&sharing.findings);
    let orphans = state.tracker.orphans(orphan_age);
    let standing_errors = counts.errors.standing(&state.failed);
    state.failed = counts.errors.processes().clone();
    ScanResult {
        snapshot,
        changes,
        attribution,
        sharing,
        judgement,
        new_findings,
        orphans,
        standing_errors,
        counts,
        privilege,
        privilege_reads,
    }
}

/// The spec's declared privilege of a container, where its spec was read and says it.
pub fn declared_privilege<'a>(
    specs: Option<&'a SpecView>,
    id: &str,
) -> Option<&'a DeclaredPrivilege> {
    specs?.specs.get(id).map(|s| &s.privilege)
}

/// The `privilege_exceeds_declared` finding of container `c` (of its process `only`, where
/// given), if any: type `user`, since what a capability is worth depends on the user namespace
/// it is held in. Against the spec where it was read (`declared="false"`); and against the
/// container's first process (`declared="unknown"`), which also catches what a spec cannot
/// say (a runc container whose bundle is gone gives no `process.user`): a later process that
/// holds more than what the runtime started gained it since (a setuid exec, a process entered
/// from the host).
pub fn privilege_finding(
    c: &ContainerPrivilege,
    declared: Option<&DeclaredPrivilege>,
    only: Option<i32>,
) -> Option<Finding> {
    // The processes that count, the first of them named in the detail.
    let counted = |excess: Vec<(i32, Vec<Excess>)>| -> Vec<(i32, Vec<Excess>)> {
        excess
            .into_iter()
            .filter(|(pid, _)| only.is_none_or(|o| o == *pid))
            .collect()
    };
    let (declaration, excess) = match declared.map(|d| counted(c.excess(Some(d)))) {
        Some(excess) if !excess.is_empty() => (Declaration::False, excess),
        _ => match counted(c.excess(None)) {
            excess if !excess.is_empty() => (Declaration::Unknown, excess),
            _ => return None,
        },
    };
    Some(Finding {
        rule: Rule::PrivilegeExceedsDeclared,
        ns_type: NsType::User,
        container: Arc::clone(&c.container),
        declared: declaration,
        detail: Some(excess_detail(&excess).into()),
    })
}

/// What the first process that exceeds holds beyond its declaration, and how many more do:
/// `pid 4242: uid 0 where the spec's user is uid 1000; no seccomp filter where the spec gives
/// one (and 2 more processes)`.
fn excess_detail(excess: &[(i32, Vec<Excess>)]) -> String {
    let Some((pid, first)) = excess.first() else {
        return String::new();
    };
    let what: Vec<String> = first.iter().map(ToString::to_string).collect();
    let mut detail = format!("pid {pid}: {}", what.join("; "));
    match excess.len() {
        1 => {}
        2 => detail.push_str(" (and 1 more process)"),
        n => detail.push_str(&format!(" (and {} more processes)", n - 1)),
    }
    detail
}

/// Each container's level, and its `privilege_exceeds_declared` finding ([`privilege_finding`]).
pub fn judge_privilege(
    read: &PrivilegeRead,
    specs: Option<&SpecView>,
    findings: &mut Vec<Finding>,
) -> Vec<Level> {
    read.containers
        .iter()
        .map(|c| {
            let declared = declared_privilege(specs, &c.container.id);
            findings.extend(privilege_finding(c, declared, None));
            c.assessment(read.node_bounding).level
        })
        .collect()
}

impl ScanResult {
    /// The record of this scan for the metrics, with the tracker after it and how long it
    /// took.
    pub fn record<'a>(&'a self, tracker: &'a Tracker, duration: Duration) -> ScanRecord<'a> {
        ScanRecord {
            snapshot: &self.snapshot,
            tracker,
            changes: &self.changes,
            errors: &self.counts.errors,
            standing_errors: self.standing_errors,
            id_queries: self.counts.id_queries,
            sharing: &self.sharing,
            new_findings: &self.new_findings,
            orphans: &self.orphans,
            fds_skipped: self.counts.fds_skipped,
            sockets_skipped: self.counts.sockets_skipped,
            socket_queries: self.counts.socket_queries,
            privilege: &self.privilege,
            privilege_errors: self.privilege_reads.1,
            duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::{Declared, Spec};
    use crate::procfs::ProcFs;
    use crate::scan::{PinScan, Scanner, ThreadScan};

    /// The podman container of the fixture tree: in the host's net, pid, ipc, uts and cgroup.
    const PODMAN: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn scanner() -> Scanner {
        let procfs = ProcFs::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc"));
        let pins = PinScan {
            mounts: false,
            fds: None,
        };
        Scanner::new(procfs, ThreadScan::Containers, pins)
    }

    /// The fixture tree through both halves of the step, as the scan loop takes a scan.
    fn run(
        scanner: &mut Scanner,
        state: &mut State,
        specs: Option<&SpecView>,
        drop: &[i32],
    ) -> ScanResult {
        let mut outcome = scanner
            .scan(state.tracker.previous())
            .expect("the fixture scans");
        outcome
            .snapshot
            .processes
            .retain(|pid, _| !drop.contains(pid));
        let scan = attribute(state, outcome, &Names::default());
        step(
            state,
            scan,
            specs,
            &Policy::default(),
            Duration::from_secs(60),
        )
    }

    /// A finding is new in the step that first sees it, not in the steps it lasts through,
    /// and new again once it was gone for a step.
    #[test]
    fn a_finding_is_new_once_while_it_lasts() {
        let (mut scanner, mut state) = (scanner(), State::new());
        let first = run(&mut scanner, &mut state, None, &[]);
        assert!(!first.sharing.findings.is_empty());
        assert_eq!(first.new_findings.len(), first.sharing.findings.len());
        let lasting = run(&mut scanner, &mut state, None, &[]);
        assert_eq!(lasting.sharing.findings, first.sharing.findings);
        assert!(
            lasting.new_findings.is_empty(),
            "{:?}",
            lasting.new_findings
        );
        let gone = run(&mut scanner, &mut state, None, &[200]);
        assert!(
            gone.sharing
                .findings
                .iter()
                .all(|f| f.container.id != PODMAN)
        );
        let back = run(&mut scanner, &mut state, None, &[]);
        assert!(
            back.new_findings
                .iter()
                .any(|&(rule, t)| rule == Rule::HostNamespace && t == NsType::Net)
        );
    }

    /// The declared judge inside the step takes a joined path's namespace from the sources'
    /// resolved paths: a spec that joins the host's net by a bind mount declares the finding
    /// where the path was resolved to it, and not where it was not.
    #[test]
    fn a_joined_path_is_judged_as_the_sources_resolved_it() {
        let path = PathBuf::from("/var/run/netns/host");
        // Every other type inherited from the runtime: the host's.
        let mut namespaces = crate::model::PerType::<Declared>::default();
        namespaces[NsType::Net] = Declared::Joined(path.clone());
        let spec = Arc::new(Spec {
            namespaces,
            uid_mappings: false,
            annotations: Default::default(),
            privilege: Default::default(),
        });
        let declared_net = |resolved: HashMap<PathBuf, u64>| {
            let view = SpecView {
                specs: HashMap::from([(PODMAN.to_owned(), Arc::clone(&spec))]),
                resolved,
            };
            let result = run(&mut scanner(), &mut State::new(), Some(&view), &[]);
            result
                .sharing
                .findings
                .iter()
                .find(|f| {
                    f.container.id == PODMAN
                        && f.rule == Rule::HostNamespace
                        && f.ns_type == NsType::Net
                })
                .expect("the host net finding")
                .declared
        };
        assert_eq!(
            declared_net(HashMap::from([(path.clone(), 4026531992)])),
            Declaration::True
        );
        assert_eq!(declared_net(HashMap::new()), Declaration::False);
    }

    /// A privilege finding's log names the first process that exceeds, what it holds beyond
    /// its declaration, and how many more do.
    #[test]
    fn a_privilege_findings_detail_names_the_process_and_what_it_holds_beyond() {
        use crate::privilege::exceeds::Excess;
        let one = vec![(
            4242,
            vec![Excess::Root { declared_uid: 1000 }, Excess::SeccompOff],
        )];
        assert_eq!(
            super::excess_detail(&one),
            "pid 4242: uid 0 where the spec's user is uid 1000; no seccomp filter where the spec gives one"
        );
        let three = [one.clone(), vec![(7, vec![Excess::HostRoot]); 2]].concat();
        assert!(
            super::excess_detail(&three).ends_with(" (and 2 more processes)"),
            "{}",
            super::excess_detail(&three)
        );
        assert_eq!(super::excess_detail(&[]), "");
    }
}

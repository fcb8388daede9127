//! What asking sockets for their network namespace costs the fd pass: `pins::read_fds` over
//! processes holding many sockets, three ways, in the same rotation:
//!
//! - links: no socket asked (`memo` `None`): the readlink of every fd the pass does anyway;
//! - cold: an empty memo, so every socket is fetched (pidfd_getfd), checked (fstat), asked
//!   (`SIOCGSKNS`), its namespace fstat'd, and both fds closed: a first pass, or every socket
//!   new;
//! - warm: the memo of the pass before: what a later pass pays for sockets that stayed open.
//!
//! (cold − links) ÷ sockets is the cost of one socket asked; (warm − links) ÷ sockets that
//! of one remembered.
//!
//! Needs root: each of `NSX_BENCH_HOLDERS` (10) bash processes opens `NSX_BENCH_SOCKETS`
//! (1,000) UDP sockets, half in its own network namespace and half in a new one that it then
//! leaves with nsenter(1), so the pass also records half as pins. Knobs: `NSX_BENCH_ROUNDS`
//! (20). Run: `cargo bench --bench sockets`.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nsexporter::model::{NsType, PerType, Process, ProcessId};
use nsexporter::procfs::ProcFs;
use nsexporter::scan::ScanErrors;
use nsexporter::scan::pins::{SocketMemo, read_fds};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// Bash processes holding sockets, each its own process group, killed on drop.
struct Holders(Vec<Child>);

impl Holders {
    fn spawn(holders: usize, sockets: usize) -> Holders {
        let (own, other) = (sockets / 2, sockets - sockets / 2);
        let open = r#"i=0; while [ $i -lt "$2" ]; do eval "exec $(($1 + i))<>/dev/udp/127.0.0.1/9"; i=$((i+1)); done"#;
        let inner = format!(
            r#"ip link set lo up && set -- $((100 + $1)) "$2" "$3" && {open} && exec nsenter --net="$3" sleep 86400"#
        );
        let outer = format!(
            r#"inner=$1; shift; set -- 100 "$@"; {open} && shift && exec unshare --net bash -c "$inner" bash "$@""#
        );
        let home = format!("/proc/{}/ns/net", std::process::id());
        let mut out = Holders(Vec::new());
        for _ in 0..holders {
            let child = Command::new("bash")
                .args(["-c", &outer, "bash", &inner])
                .args([own.to_string(), other.to_string(), home.clone()])
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("bash");
            out.0.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        for c in &out.0 {
            let pid = c.id();
            while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default()
                != "sleep\n"
            {
                assert!(Instant::now() < deadline, "holder {pid} not ready");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        out
    }
}

impl Drop for Holders {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
    }
}

/// Field `n` (1-based) of /proc/PID/stat.
fn stat_field(pid: i32, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(n - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// Process `pid`, as a scan reads what the fd pass needs of it.
fn process(pid: i32) -> Process {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let inode: u64 = link
        .to_string_lossy()
        .trim_start_matches("net:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let mut namespaces = PerType::splat(None);
    namespaces[NsType::Net] = nsexporter::model::inode(inode);
    Process {
        id: ProcessId {
            pid,
            start_ticks: stat_field(pid, 22),
        },
        ppid: stat_field(pid, 4) as i32,
        uid: 0,
        comm: "sleep".into(),
        namespaces,
        cgroup: None,
        thread_namespaces: Vec::new(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the socket bench needs root (unshare, pidfd_getfd, SIOCGSKNS)"
    );
    let holders = env_usize("NSX_BENCH_HOLDERS", 10);
    let per = env_usize("NSX_BENCH_SOCKETS", 1000);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 20).max(1);
    let started = Instant::now();
    let load = Holders::spawn(holders, per);
    eprintln!(
        "{holders} holders x {per} sockets ready after {:.1?}",
        started.elapsed()
    );
    let processes: BTreeMap<i32, Process> = load
        .0
        .iter()
        .map(|c| (c.id() as i32, process(c.id() as i32)))
        .collect();
    let root = ProcFs::new("/proc").open_root().unwrap();
    let procfs = Path::new("/proc");
    let sockets = (holders * per) as f64;

    let pass = |memo: Option<&mut SocketMemo>| {
        let mut errors = ScanErrors::default();
        let start = Instant::now();
        let pass = read_fds(root.as_fd(), procfs, &processes, memo, &mut errors);
        let took = start.elapsed();
        assert_eq!(errors.total(), 0, "{errors:?}");
        assert_eq!(pass.sockets_skipped, [0; 4]);
        (took, pass)
    };
    let mut warm_memo = SocketMemo::default();
    let (_, first) = pass(Some(&mut warm_memo));
    assert_eq!(first.sockets_asked as usize, holders * per);
    assert_eq!(first.sockets.len(), holders * (per - per / 2));
    let (mut links, mut cold, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        links.push(pass(None).0);
        let mut empty = SocketMemo::default();
        let (t, p) = pass(Some(&mut empty));
        assert_eq!(p.sockets_asked as usize, holders * per);
        cold.push(t);
        let (t, p) = pass(Some(&mut warm_memo));
        assert_eq!(p.sockets_asked, 0);
        warm.push(t);
    }
    let (links, cold, warm) = (median(links), median(cold), median(warm));
    let per_socket = |t: Duration| (t.as_secs_f64() - links.as_secs_f64()) / sockets * 1e6;
    println!(
        "{holders} processes, {} sockets, {rounds} rounds, median pass:",
        holders * per
    );
    println!(
        "  links (no socket asked): {links:.2?} ({:.2} us a socket fd)",
        links.as_secs_f64() / sockets * 1e6
    );
    println!(
        "  cold (every socket asked): {cold:.2?} -> {:.2} us a socket asked",
        per_socket(cold)
    );
    println!(
        "  warm (every socket remembered): {warm:.2?} -> {:.2} us a socket remembered",
        per_socket(warm)
    );
    drop(load);
}

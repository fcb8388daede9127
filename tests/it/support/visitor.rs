//! A container process as attribution and the rules see one: a process in a kubepods-shaped
//! cgroup (on every hierarchy) with namespaces of its own, made with unshare(2), that joins
//! the host's namespaces on cue. Shared by the evasion and eBPF tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cgroup::Cgroup;
use super::pod::Pod;
use super::runc::hex_id;
use super::{Spawned, ns_inode, wait_for};

/// A container process: unshares mount, net, uts and ipc (its pid namespace stays the host's,
/// as with hostPID), names itself `argv[1]` with prctl(PR_SET_NAME), and waits for the file
/// `argv[2]`. Then it joins the host's mount and net namespaces (kthreadd's, through fds it
/// opened first), stays `argv[3]` seconds, and goes back to its own; a negative stay never
/// goes back. With `argv[5]` `child`, a child it forks joins them instead and exits at once,
/// having written its pid to `argv[2]`.child.
const VISITOR: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWNET, NEWUTS, NEWIPC = 0x00020000, 0x40000000, 0x04000000, 0x08000000
def check(r, what):
    if r != 0:
        raise OSError(ctypes.get_errno(), what)
name, go, stay = sys.argv[1], sys.argv[2], float(sys.argv[3])
host = {t: os.open("/proc/2/ns/" + t, os.O_RDONLY) for t in ("mnt", "net")}
check(libc.unshare(NEWNS | NEWNET | NEWUTS | NEWIPC), "unshare")
own = {t: os.open("/proc/self/ns/" + t, os.O_RDONLY) for t in ("mnt", "net")}
check(libc.prctl(15, name.encode(), 0, 0, 0), "prctl")
while not os.path.exists(go):
    time.sleep(0.01)
if sys.argv[5:] == ["child"]:
    pid = os.fork()
    if pid == 0:
        for t, flag in (("mnt", NEWNS), ("net", NEWNET)):
            if t in sys.argv[4].split(","):
                check(libc.setns(host[t], flag), "setns " + t)
        os._exit(0)
    os.waitpid(pid, 0)
    with open(go + ".child", "w") as f:
        f.write(str(pid))
    time.sleep(1000)
for t, flag in (("mnt", NEWNS), ("net", NEWNET)):
    if t in sys.argv[4].split(","):
        check(libc.setns(host[t], flag), "setns " + t)
if stay >= 0:
    time.sleep(stay)
    for t, flag in (("mnt", NEWNS), ("net", NEWNET)):
        check(libc.setns(own[t], flag), "setns back " + t)
time.sleep(1000)
"#;

/// A process in a container's cgroup running [`VISITOR`]. Dropped in field order: the
/// process, then the cgroup, then the go file.
pub struct Visitor {
    pub process: Spawned,
    pub cgroup: Cgroup,
    pub id: String,
    go: PathBuf,
    _dir: tempfile::TempDir,
}

impl Visitor {
    /// `name` as its comm; at go, into the host's `types` (comma-separated, of mnt and net)
    /// for `stay` seconds (negative: for good). Returns once it is in its own namespaces,
    /// named, and in the cgroup.
    pub fn prepare(name: &str, types: &str, stay: f64) -> Visitor {
        Visitor::prepare_in(None, name, types, stay, false)
    }

    /// [`Visitor::prepare`] as container `container` of `pod`, named in the kubelet's `logs`
    /// as the kubelet would.
    pub fn in_pod(pod: &Pod, logs: &Path, container: &str, types: &str, stay: f64) -> Visitor {
        Visitor::prepare_in(Some((pod, logs, container)), container, types, stay, false)
    }

    /// As [`Visitor::in_pod`], but on cue a child joins the host's `types` and exits at once.
    pub fn in_pod_by_a_child(pod: &Pod, logs: &Path, container: &str, types: &str) -> Visitor {
        Visitor::prepare_in(Some((pod, logs, container)), container, types, -1.0, true)
    }

    fn prepare_in(
        pod: Option<(&Pod, &Path, &str)>,
        name: &str,
        types: &str,
        stay: f64,
        child: bool,
    ) -> Visitor {
        let id = hex_id();
        let cgroup = match pod {
            Some((pod, logs, container)) => {
                pod.log_entry(logs, container, &id);
                Cgroup::create(&pod.cgroup(&id))
            }
            None => Cgroup::create(&format!("/kubepods/besteffort/pod{}/{id}", uuid())),
        };
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let stay = stay.to_string();
        let mut args = vec!["-c", VISITOR, name, go.to_str().unwrap(), &stay, types];
        args.extend(child.then_some("child"));
        let process = Spawned::new("python3", &args);
        let pid = process.pid();
        let host_net = ns_inode(2, "net").unwrap();
        wait_for(
            "the visitor in its own namespaces, renamed",
            Duration::from_secs(10),
            || {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (ns_inode(pid, "net")? != host_net && comm.trim_end() == name).then_some(())
            },
        );
        cgroup.add(pid);
        Visitor {
            process,
            cgroup,
            id,
            go,
            _dir: dir,
        }
    }

    pub fn go(&self) {
        std::fs::write(&self.go, "").unwrap();
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The pid of the child that joined the host's namespaces and exited, once it has.
    pub fn child(&self) -> i32 {
        let file = self.go.with_extension("child");
        wait_for("the child to have gone", Duration::from_secs(10), || {
            std::fs::read_to_string(&file).ok()?.parse().ok()
        })
    }
}

/// A pod uid's shape (8-4-4-4-12 hex digits), unique per call.
pub fn uuid() -> String {
    let h = hex_id();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

//! The load the scan and events benches run against: groups of sleeps, each group in pid,
//! mount, net, uts, ipc and cgroup namespaces of its own (`unshare(1)`), so that /proc looks
//! like a busy container host. Killed on drop, also on panic.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The spawned `unshare` trees, each its own process group. Dropping it (also on panic) kills
/// every group and waits until no member is left.
pub struct LoadGroups {
    children: Vec<Child>,
    per_group: usize,
}

impl LoadGroups {
    pub fn spawn(groups: usize, per_group: usize) -> LoadGroups {
        let mut load = LoadGroups {
            children: Vec::with_capacity(groups),
            per_group,
        };
        // Seven more fds in every process (dash takes single-digit fds only), so that fd
        // discovery reads about ten links a process, as a modest real process has.
        let script = format!(
            "exec 3</dev/null 4</dev/null 5</dev/null 6</dev/null 7</dev/null 8</dev/null 9</dev/null; \
             i=0; while [ $i -lt {per_group} ]; do sleep 86400 & i=$((i+1)); done; wait"
        );
        for _ in 0..groups {
            let mut cmd = Command::new("unshare");
            cmd.args([
                "--fork",
                "--pid",
                "--mount-proc",
                "--net",
                "--uts",
                "--ipc",
                "--cgroup",
                // The namespace's init (sh) dies with unshare, and with it the whole pid
                // namespace.
                "--kill-child",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0);
            // pre_exec is unsafe by signature; std has no safe way to set PR_SET_PDEATHSIG.
            #[allow(unsafe_code)]
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent. It makes
            // unshare die with this bench even if the bench is killed before Drop runs.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            load.children.push(cmd.spawn().expect("spawn unshare"));
        }
        load.wait_running(Duration::from_secs(120));
        load
    }

    pub fn expected_members(&self) -> usize {
        self.children.len() * (self.per_group + 2)
    }

    fn pgids(&self) -> HashSet<i32> {
        self.children.iter().map(|c| c.id() as i32).collect()
    }

    /// Waits until every group has unshare, sh and all its sleeps exec'd.
    fn wait_running(&self, limit: Duration) {
        let pgids = self.pgids();
        let want_sleeps = self.children.len() * self.per_group;
        let deadline = Instant::now() + limit;
        loop {
            let (members, sleeps) = count_members(&pgids);
            if members >= self.expected_members() && sleeps >= want_sleeps {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "load did not start: {members}/{} members, {sleeps}/{want_sleeps} sleeps",
                self.expected_members()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LoadGroups {
    fn drop(&mut self) {
        for child in &self.children {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        // unshare is reaped above; the rest of each group is reaped inside its pid namespace.
        // Wait until the kernel has let go of every member.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut left: Vec<i32> = self.children.iter().map(|c| c.id() as i32).collect();
        while !left.is_empty() && Instant::now() < deadline {
            left.retain(|&pgid| {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                killpg(Pid::from_raw(pgid), None) != Err(Errno::ESRCH)
            });
            if !left.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if !left.is_empty() {
            eprintln!(
                "warning: {} process groups still have members: {left:?}",
                left.len()
            );
        }
    }
}

/// Processes whose process group is one of `pgids`, and how many of them are `sleep`.
fn count_members(pgids: &HashSet<i32>) -> (usize, usize) {
    let (mut members, mut sleeps) = (0, 0);
    let Ok(entries) = std::fs::read_dir(Path::new("/proc")) else {
        return (0, 0);
    };
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`; comm may hold anything, so split at the last ')'.
        let (Some(open), Some(close)) = (
            stat.iter().position(|&b| b == b'('),
            stat.iter().rposition(|&b| b == b')'),
        ) else {
            continue;
        };
        let rest = String::from_utf8_lossy(&stat[close + 1..]);
        let pgrp = rest
            .split_ascii_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok());
        if pgrp.is_some_and(|g: i32| pgids.contains(&g)) {
            members += 1;
            if &stat[open + 1..close] == b"sleep" {
                sleeps += 1;
            }
        }
    }
    (members, sleeps)
}

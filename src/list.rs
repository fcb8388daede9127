//! `nsexporter list`: one scan printed like lsns(8), as a table, a tree or JSON.
//!
//! The same scan code as the exporter. Columns follow `lsns`: NS, TYPE, NPROCS, PID (the oldest
//! member), USER (its owner), COMMAND (its command line, or `comm` for kernel threads), with
//! HELD_BY (what keeps the namespace alive: process, bind_mount, fd, socket) before COMMAND.
//! A namespace that no process is in has no PID, USER or COMMAND; its COMMAND column shows
//! where it is pinned instead. The JSON adds `pns` and `ons` with `lsns`'s meaning (the
//! parent and the owning user namespace, 0 where there is none or it is out of reach),
//! `nsfs` (the bind mount paths, like `lsns -o NSFS`), and the fds and sockets that hold it.
//! The table of every type ends with each container's Pod Security level and the
//! escape-relevant capabilities it holds in the host's user namespace.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;

use serde::Serialize;

use crate::model::{HeldBy, NsType, Snapshot};
use crate::procfs::ProcFs;

/// One row, named like `lsns --json`'s fields.
#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    pub ns: u64,
    #[serde(rename = "type")]
    pub ns_type: NsType,
    pub nprocs: usize,
    pub pid: Option<i32>,
    pub user: Option<String>,
    pub command: Option<String>,
    /// The parent pid or user namespace's inode; 0 where none (`lsns`'s PNS).
    pub pns: u64,
    /// The owning user namespace's inode; 0 where out of reach (`lsns`'s ONS).
    pub ons: u64,
    /// What keeps it alive (not in lsns).
    pub held_by: HeldBy,
    /// The paths it is bind-mounted at, comma-separated, like `lsns -o NSFS`.
    pub nsfs: Option<String>,
    /// The fds that hold it, as `PID:FD` (not in lsns).
    pub fds: Vec<String>,
    /// The sockets made in it that a process outside holds, as `PID:FD` (not in lsns).
    pub sockets: Vec<String>,
    /// Whether it is the host's namespace of its type (not in lsns).
    pub host: bool,
}

/// Which relation `list --tree` draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Tree {
    /// Each namespace under the user namespace that owns it (`lsns -T owner`).
    Owner,
    /// Each pid and user namespace under its parent (`lsns -T parent`).
    Parent,
}

/// The rows of a snapshot, optionally of one type, sorted by inode like lsns.
pub fn rows(snapshot: &Snapshot, procfs: &ProcFs, only: Option<NsType>) -> Vec<Row> {
    let mut users: HashMap<u32, String> = HashMap::new();
    let mut rows: Vec<Row> = snapshot
        .namespaces
        .values()
        .filter(|ns| only.is_none_or(|t| ns.id.ns_type == t))
        .map(|ns| {
            let oldest = snapshot.oldest_member(ns);
            let user = oldest.map(|p| {
                users
                    .entry(p.uid)
                    .or_insert_with(|| user_name(p.uid))
                    .clone()
            });
            let paths = ns.mount_paths();
            Row {
                ns: ns.id.inode,
                ns_type: ns.id.ns_type,
                nprocs: ns.members.len(),
                pid: oldest.map(|p| p.id.pid),
                user,
                command: oldest
                    .map(|p| command_line(procfs, p.id.pid).unwrap_or_else(|| p.comm.to_string())),
                pns: ns.parent.unwrap_or(0),
                ons: ns.owner.unwrap_or(0),
                held_by: ns.held_by(),
                nsfs: (!paths.is_empty()).then(|| paths.join(",")),
                fds: ns
                    .fds()
                    .iter()
                    .map(|f| format!("{}:{}", f.process.pid, f.fd))
                    .collect(),
                sockets: ns
                    .sockets()
                    .iter()
                    .map(|s| format!("{}:{}", s.process.pid, s.fd))
                    .collect(),
                host: snapshot.host.contains(ns.id),
            }
        })
        .collect();
    rows.sort_by_key(|r| (r.ns, r.ns_type));
    rows
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// `/proc/PID/cmdline` with NULs as spaces; `None` for kernel threads (empty) or on error.
fn command_line(procfs: &ProcFs, pid: i32) -> Option<String> {
    let bytes = std::fs::read(procfs.path(format!("{pid}/cmdline"))).ok()?;
    let text: String = String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .replace('\0', " ");
    (!text.is_empty()).then_some(text)
}

const HEADER: [&str; 7] = ["NS", "TYPE", "NPROCS", "PID", "USER", "HELD_BY", "COMMAND"];

/// One row's columns after NS, as the table prints them.
fn columns(r: &Row) -> String {
    // What the row's COMMAND column says: the oldest member's command line, or for a
    // namespace no process is in, where it is pinned.
    let command = match (&r.command, &r.nsfs) {
        (Some(c), _) => c.clone(),
        (None, Some(paths)) => paths.clone(),
        (None, None) => {
            let fds = r.fds.iter().map(|f| format!("fd {f}"));
            let sockets = r.sockets.iter().map(|s| format!("socket {s}"));
            fds.chain(sockets).collect::<Vec<_>>().join(",")
        }
    };
    // A command may hold control characters (comm can be anything but NUL): escape them so
    // one namespace stays one line.
    let command: String = command.escape_debug().collect();
    let pid = r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
    format!(
        "{:<6} {:>6} {:>7} {:<8} {:<28} {}",
        r.ns_type,
        r.nprocs,
        pid,
        r.user.as_deref().unwrap_or("-"),
        r.held_by.as_str(),
        command
    )
}

/// Writes the rows as an lsns-style table.
pub fn write_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>10} {:<6} {:>6} {:>7} {:<8} {:<28} {}",
        HEADER[0], HEADER[1], HEADER[2], HEADER[3], HEADER[4], HEADER[5], HEADER[6]
    )?;
    for r in rows {
        writeln!(out, "{:>10} {}", r.ns, columns(r))?;
    }
    Ok(())
}

/// One container's privilege, for the table after the namespaces.
#[derive(Debug, PartialEq)]
pub struct PrivilegeRow {
    pub container_id: String,
    pub runtime: &'static str,
    /// The Pod Security level its processes meet.
    pub level: &'static str,
    /// The escape-relevant capabilities effective in the host's user namespace.
    pub host_capabilities: String,
}

/// Writes each container's level and host capabilities, after a blank line, as a table of
/// its own (nothing where no container runs).
pub fn write_privilege(out: &mut impl Write, rows: &[PrivilegeRow]) -> std::io::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "\n{:<64} {:<10} {:<10} HOST_CAPABILITIES",
        "CONTAINER", "RUNTIME", "LEVEL"
    )?;
    for r in rows {
        let caps = if r.host_capabilities.is_empty() {
            "-"
        } else {
            &r.host_capabilities
        };
        writeln!(
            out,
            "{:<64} {:<10} {:<10} {caps}",
            r.container_id, r.runtime, r.level
        )?;
    }
    Ok(())
}

/// Writes the rows as a tree of `relation`, like `lsns --tree`: each namespace under the one
/// it points to, roots (none, or one not among the rows) in inode order.
pub fn write_tree(out: &mut impl Write, rows: &[Row], relation: Tree) -> std::io::Result<()> {
    // The namespace a row hangs under, as an index into `rows`.
    let key = |r: &Row| (r.ns_type, r.ns);
    let index: HashMap<(NsType, u64), usize> =
        rows.iter().enumerate().map(|(i, r)| (key(r), i)).collect();
    let up = |r: &Row| -> Option<usize> {
        let target = match relation {
            Tree::Owner => (NsType::User, r.ons),
            Tree::Parent => (r.ns_type, r.pns),
        };
        (target.1 != 0)
            .then(|| index.get(&target).copied())
            .flatten()
    };
    let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match up(r).filter(|&p| p != i) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    writeln!(
        out,
        "{:<24} {:<6} {:>6} {:>7} {:<8} {:<28} {}",
        HEADER[0], HEADER[1], HEADER[2], HEADER[3], HEADER[4], HEADER[5], HEADER[6]
    )?;
    let mut seen = HashSet::new();
    // Depth-first, iteratively: a hostile depth (user namespaces nest 32 deep at most, but a
    // fixture can say anything) cannot overflow the stack.
    let mut stack: Vec<(usize, String, bool, bool)> = roots
        .iter()
        .rev()
        .map(|&i| (i, String::new(), true, true))
        .collect();
    while let Some((i, indent, last, root)) = stack.pop() {
        if !seen.insert(i) {
            continue;
        }
        let branch = match (root, last) {
            (true, _) => "",
            (false, true) => "└─",
            (false, false) => "├─",
        };
        let ns = format!("{indent}{branch}{}", rows[i].ns);
        writeln!(out, "{ns:<24} {}", columns(&rows[i]))?;
        let below = match (root, last) {
            (true, _) => indent,
            (false, true) => format!("{indent}  "),
            (false, false) => format!("{indent}│ "),
        };
        let kids = children.get(&i).map_or(&[][..], Vec::as_slice);
        for (n, &c) in kids.iter().enumerate().rev() {
            stack.push((c, below.clone(), n + 1 == kids.len(), false));
        }
    }
    Ok(())
}

/// Writes the rows as `{"namespaces": [...]}`, the shape of `lsns --json`.
pub fn write_json(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Listing<'a> {
        namespaces: &'a [Row],
    }
    serde_json::to_writer_pretty(&mut *out, &Listing { namespaces: rows })?;
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ns_type: NsType, ns: u64, pns: u64, ons: u64) -> Row {
        Row {
            ns,
            ns_type,
            nprocs: 1,
            pid: Some(1),
            user: Some("root".into()),
            command: Some(format!("cmd{ns}")),
            pns,
            ons,
            held_by: HeldBy::default().with(crate::model::Holder::Process),
            nsfs: None,
            fds: Vec::new(),
            sockets: Vec::new(),
            host: false,
        }
    }

    fn tree(rows: &[Row], relation: Tree) -> Vec<String> {
        let mut out = Vec::new();
        write_tree(&mut out, rows, relation).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.chars().take(24).collect::<String>().trim_end().to_owned())
            .collect()
    }

    #[test]
    fn trees_hang_each_namespace_under_its_owner_or_parent() {
        use NsType::*;
        let rows = [
            row(User, 10, 0, 0),
            row(Net, 11, 0, 10),
            row(User, 20, 10, 10),
            row(Net, 21, 0, 20),
            row(Pid, 22, 30, 20),
            row(Pid, 30, 0, 10),
            row(User, 40, 20, 20),
            // Owned by a user namespace not among the rows: a root.
            row(Uts, 50, 0, 99),
        ];
        assert_eq!(
            tree(&rows, Tree::Owner),
            [
                "10",
                "├─11",
                "├─20",
                "│ ├─21",
                "│ ├─22",
                "│ └─40",
                "└─30",
                "50"
            ]
        );
        assert_eq!(
            tree(&rows, Tree::Parent),
            ["10", "└─20", "  └─40", "11", "21", "30", "└─22", "50"]
        );
    }

    #[test]
    fn a_namespace_without_processes_shows_where_it_is_pinned() {
        let mut r = row(NsType::Net, 7, 0, 1);
        (r.pid, r.user, r.command) = (None, None, None);
        r.nprocs = 0;
        r.held_by = HeldBy::default().with(crate::model::Holder::BindMount);
        r.nsfs = Some("/run/netns/blue".into());
        let mut out = Vec::new();
        write_table(&mut out, &[r]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let line: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            line,
            ["7", "net", "0", "-", "-", "bind_mount", "/run/netns/blue"]
        );
    }

    #[test]
    fn a_namespace_held_by_fds_and_sockets_lists_each_and_columns_stay_aligned() {
        let mut r = row(NsType::Net, 8, 0, 1);
        (r.pid, r.user, r.command) = (None, None, None);
        r.nprocs = 0;
        r.held_by = HeldBy::default()
            .with(crate::model::Holder::Fd)
            .with(crate::model::Holder::Socket);
        r.fds = vec!["40:7".into()];
        r.sockets = vec!["41:3".into(), "41:4".into()];
        let mut widest = row(NsType::Net, 9, 0, 1);
        widest.held_by = crate::model::Holder::ALL
            .into_iter()
            .fold(HeldBy::default(), HeldBy::with);
        let mut out = Vec::new();
        write_table(&mut out, &[r, widest]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let held: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            held,
            [
                "8",
                "net",
                "0",
                "-",
                "-",
                "fd,socket",
                "fd",
                "40:7,socket",
                "41:3,socket",
                "41:4"
            ]
        );
        // COMMAND starts in one column on every line, the header's included.
        let command_at = |l: &str, what: &str| l.find(what).unwrap();
        let at = command_at(lines[0], "COMMAND");
        assert_eq!(command_at(lines[1], "fd 40:7"), at, "{text}");
        assert_eq!(command_at(lines[2], "cmd9"), at, "{text}");
        assert!(lines[2].contains("process,bind_mount,fd,socket"), "{text}");
    }
}

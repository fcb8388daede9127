//! `nsexporter list`: one scan printed like lsns(8), as a table or JSON.
//!
//! The same scan code as the exporter. Columns follow `lsns`: NS, TYPE, NPROCS, PID (the oldest
//! member), USER (its owner), COMMAND (its command line, or `comm` for kernel threads).

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;

use crate::model::{NsType, Snapshot};
use crate::procfs::ProcFs;

/// One row, named like `lsns --json`'s fields.
#[derive(Debug, Serialize, PartialEq)]
pub struct Row {
    pub ns: u64,
    #[serde(rename = "type")]
    pub ns_type: NsType,
    pub nprocs: usize,
    pub pid: i32,
    pub user: String,
    pub command: String,
    /// Whether it is the host's namespace of its type (not in lsns).
    pub host: bool,
}

/// The rows of a snapshot, optionally of one type, sorted by inode like lsns.
pub fn rows(snapshot: &Snapshot, procfs: &ProcFs, only: Option<NsType>) -> Vec<Row> {
    let mut users: HashMap<u32, String> = HashMap::new();
    let mut rows: Vec<Row> = snapshot
        .namespaces
        .values()
        .filter(|ns| only.is_none_or(|t| ns.id.ns_type == t))
        .filter_map(|ns| {
            let oldest = snapshot.oldest_member(ns)?;
            let user = users
                .entry(oldest.uid)
                .or_insert_with(|| user_name(oldest.uid))
                .clone();
            Some(Row {
                ns: ns.id.inode,
                ns_type: ns.id.ns_type,
                nprocs: ns.members.len(),
                pid: oldest.id.pid,
                user,
                command: command_line(procfs, oldest.id.pid).unwrap_or_else(|| oldest.comm.clone()),
                host: snapshot.host.contains(ns.id),
            })
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

/// Writes the rows as an lsns-style table.
pub fn write_table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:>10} {:<6} {:>6} {:>7} {:<8} COMMAND",
        "NS", "TYPE", "NPROCS", "PID", "USER"
    )?;
    for r in rows {
        // A command may hold control characters (comm can be anything but NUL): escape them so
        // one namespace stays one line.
        let command: String = r.command.escape_debug().collect();
        writeln!(
            out,
            "{:>10} {:<6} {:>6} {:>7} {:<8} {}",
            r.ns, r.ns_type, r.nprocs, r.pid, r.user, command
        )?;
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

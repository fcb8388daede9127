//! Observed privilege on the real kernel: runc containers with crafted specs, each with the
//! values `nsexporter_container_privilege_info` must show and the level it must meet, judged
//! by one exporter's scan, beside the level Pod Security admission would give its spec; and a uid 1000 container without capabilities whose child execs a
//! setuid-root program: `privilege_exceeds_declared` within one sweep, with the container,
//! logged once. `declared="false"`: runc's `state.json`, the spec the exporter reads under
//! `--path.run`, keeps no `process.user`, so the exporter takes the uid (1000) from the
//! bundle's `config.json` that `state.json` names.
//!
//! This machine has SELinux built in but not enabled and no AppArmor: every row's `lsm` is
//! `none`; a label (`labelled`) and `unconfined` are covered by the parser's unit tests only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nsexporter::declared::{SpecSources, Wanted};
use nsexporter::privilege::Level;
use nsexporter::privilege::level::declared_level;

use serde_json::json;

use crate::support::declared::{Run, findings, scan_after, scans};
use crate::support::runc::{Bundle, Container};
use crate::support::*;

fn exporter(run: &Run) -> Exporter {
    exporter_under(&[], run)
}

/// [`exporter`] under `wrapper` (none: as root).
fn exporter_under(wrapper: &[&str], run: &Run) -> Exporter {
    let args = [
        &format!("--path.run={}", run.path().display()),
        "--path.kubelet-logs=/nonexistent",
        "--path.docker=/nonexistent",
        "--path.podman=/nonexistent",
        "--scan.interval=1s",
        "--scan.sweep-interval=0s",
    ];
    match wrapper {
        [] => Exporter::start(&args),
        wrapper => Exporter::start_under(wrapper, &args),
    }
}

/// One row: the container's bundle, and what its info series must say.
struct Row {
    name: &'static str,
    bundle: Bundle,
    host_user: &'static str,
    root_is_host_root: &'static str,
    seccomp: &'static str,
    no_new_privs: &'static str,
    host_capabilities: &'static str,
    level: &'static str,
}

/// A seccomp filter that allows all but `kexec_load`: a filter, whatever it filters.
fn seccomp(b: &mut Bundle) {
    b.config_mut()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"}],
    });
}

/// Every escape-relevant capability, in the kernel's order.
const ESCAPE_ALL: &str = "DAC_OVERRIDE,DAC_READ_SEARCH,NET_ADMIN,NET_RAW,SYS_MODULE,SYS_RAWIO,SYS_PTRACE,SYS_ADMIN,SYS_BOOT,SYS_TIME,MKNOD,SETFCAP,MAC_OVERRIDE,MAC_ADMIN,SYSLOG,PERFMON,BPF,CHECKPOINT_RESTORE";

fn rows() -> Vec<Row> {
    let sleeper = |name| Bundle::busybox(name).args(&["sleep", "100000"]);
    let row = |name, bundle| Row {
        name,
        bundle,
        host_user: "true",
        root_is_host_root: "true",
        seccomp: "disabled",
        no_new_privs: "true",
        host_capabilities: "",
        level: "baseline",
    };
    let all: Vec<&str> = ESCAPE_ALL.split(',').collect();
    let mut with_filter = sleeper("seccomp-filter");
    seccomp(&mut with_filter);
    let mut restricted = sleeper("restricted").user(1000, 1000).capabilities(&[]);
    seccomp(&mut restricted);
    let mut mapped = sleeper("userns").namespaces(&[
        ("pid", None),
        ("net", None),
        ("ipc", None),
        ("uts", None),
        ("mnt", None),
        ("user", None),
    ]);
    crate::declared::user_namespace(&mut mapped, true);
    let mut unmasked = sleeper("unmasked");
    unmasked.config_mut()["linux"]["maskedPaths"] = json!([]);
    unmasked.config_mut()["linux"]["readonlyPaths"] = json!([]);
    vec![
        // runc's default set (AUDIT_WRITE, KILL, NET_BIND_SERVICE), noNewPrivileges, masked
        // paths, no seccomp, root: baseline, not restricted (root, no filter).
        row("default", sleeper("default")),
        row("no capabilities", sleeper("no-caps").capabilities(&[])),
        Row {
            host_capabilities: "SYS_ADMIN",
            level: "privileged",
            ..row(
                "SYS_ADMIN",
                sleeper("sys-admin").capabilities(&["SYS_ADMIN"]),
            )
        },
        Row {
            host_capabilities: ESCAPE_ALL,
            level: "privileged",
            ..row("all", sleeper("all").capabilities(&all))
        },
        Row {
            seccomp: "filter",
            ..row("seccomp filter", with_filter)
        },
        Row {
            no_new_privs: "false",
            ..row(
                "noNewPrivileges off",
                sleeper("nnp-off").no_new_privileges(false),
            )
        },
        row("user 1000", sleeper("user-1000").user(1000, 1000)),
        Row {
            seccomp: "filter",
            level: "restricted",
            ..row("restricted: uid 1000, no capabilities, filter", restricted)
        },
        Row {
            host_user: "false",
            root_is_host_root: "false",
            ..row("user namespace mapped to 100000", mapped)
        },
        Row {
            level: "privileged",
            ..row("unmasked /proc", unmasked)
        },
    ]
}

/// The escape-relevant capabilities of the runtimes' default set, as `host_capabilities` lists
/// them.
pub const DEFAULT_CAPS: &str = "DAC_OVERRIDE,NET_RAW,MKNOD,SETFCAP";
/// Every escape-relevant capability, as a privileged container holds them.
pub const ALL: &str = "DAC_OVERRIDE,DAC_READ_SEARCH,NET_ADMIN,NET_RAW,SYS_MODULE,SYS_RAWIO,SYS_PTRACE,SYS_ADMIN,SYS_BOOT,SYS_TIME,MKNOD,SETFCAP,MAC_OVERRIDE,MAC_ADMIN,SYSLOG,PERFMON,BPF,CHECKPOINT_RESTORE";

/// The rows of `expected` (name, container id, then `host_user`, `root_is_host_root`,
/// `seccomp`, `no_new_privs`, `host_capabilities`, `level`) whose info series in `m` is not
/// one with those values and `lsm="none"`, each said.
pub fn wrong_rows(m: &Metrics, expected: &[(&str, String, [&str; 6])]) -> Vec<String> {
    let keys = [
        "host_user",
        "root_is_host_root",
        "seccomp",
        "no_new_privs",
        "host_capabilities",
        "level",
    ];
    let mut wrong = Vec::new();
    for (name, id, want) in expected {
        let series = m.find(
            "nsexporter_container_privilege_info",
            &[("container_id", id.as_str())],
        );
        let [s] = series.as_slice() else {
            wrong.push(format!("{name}: {} series", series.len()));
            continue;
        };
        let got: Vec<&str> = keys.iter().map(|k| s.labels[*k].as_str()).collect();
        if got != want || s.labels["lsm"] != "none" {
            wrong.push(format!(
                "{name}: got {got:?} lsm {}, want {want:?}",
                s.labels["lsm"]
            ));
        }
    }
    wrong
}

/// The level Pod Security admission would give the spec the exporter reads for container `id`,
/// whose first process is `pid`: found by the exporter's own [`SpecSources`] under the roots
/// it was given (`--path.run`, `--path.podman`), and last through the shim's working
/// directory (the first process's parent, as the exporter takes it).
pub fn admission_level(run: &Path, storage: &Path, id: &str, pid: i32) -> Result<Level, String> {
    let mut sources = SpecSources::new(run.into(), storage.into(), "/proc".into());
    let wanted = Wanted {
        id: id.to_owned(),
        shim: stat_field(pid, 4),
    };
    let found = sources.refresh(&[wanted], Instant::now());
    let spec = found
        .specs
        .get(id)
        .ok_or_else(|| format!("no spec for {id}: {:?}", found.errors))?;
    Ok(declared_level(&spec.privilege, spec.host_namespaces()).level)
}

/// One row of the matrix, observed beside admission's level, printed as every row is; a
/// declared level other than `want` is pushed to `wrong`.
pub fn side_by_side(
    name: &str,
    observed: &str,
    declared: Result<Level, String>,
    want: &str,
    wrong: &mut Vec<String>,
) {
    let got = declared.as_ref().map_or("-", |l| l.as_str());
    eprintln!("{name:<48} observed {observed:<10} declared {got}");
    match declared {
        Ok(l) if l.as_str() == want => {}
        Ok(l) => wrong.push(format!("{name}: the spec's level is {l:?}, want {want}")),
        Err(e) => wrong.push(format!("{name}: {e}")),
    }
}

/// runc containers with crafted specs, started together, judged by one scan: each row's
/// observed values and level.
#[test]
#[ignore = "needs root: runc containers"]
fn runc_containers_show_their_observed_privilege() {
    let _guard = crate::declared::serial();
    let run = Run::new();
    let rows = rows();
    let mut expected = Vec::new();
    let mut containers: Vec<Container> = Vec::new();
    for r in rows {
        let c = run.run(r.bundle);
        expected.push((
            r.name,
            c.id.clone(),
            [
                r.host_user,
                r.root_is_host_root,
                r.seccomp,
                r.no_new_privs,
                r.host_capabilities,
                r.level,
            ],
        ));
        containers.push(c);
    }
    let e = exporter(&run);
    let m = scan_after(&e, scans(&e));
    let mut wrong = wrong_rows(&m, &expected);
    // The level Pod Security admission would give each spec, beside the level observed: for
    // these specs the same, as runc applies what they ask.
    // The spec is what the exporter reads: runc's `state.json`, the uid from its bundle.
    for ((name, id, want), c) in expected.iter().zip(&containers) {
        let declared = admission_level(run.path(), Path::new("/nonexistent"), id, c.pid());
        side_by_side(name, want[5], declared, want[5], &mut wrong);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // None of them exceeds itself.
    let ids: Vec<&str> = expected.iter().map(|(_, id, _)| id.as_str()).collect();
    let exceeding: Vec<_> = findings(&m, "privilege_exceeds_declared")
        .into_iter()
        .filter(|(id, _, _)| ids.contains(&id.as_str()))
        .collect();
    assert!(exceeding.is_empty(), "{exceeding:?}");
    // The same rows as the DaemonSet reads them: uid 65534 with `SYS_PTRACE`, and with the
    // runtime-specs component's `DAC_READ_SEARCH` too (the test's run dir is root's, 0700).
    drop(e);
    for wrapper in [AS_THE_DAEMONSET, AS_THE_DAEMONSET_WITH_SPECS] {
        let least = exporter_under(wrapper, &run);
        let m = scan_after(&least, scans(&least));
        let wrong = wrong_rows(&m, &expected);
        assert!(
            wrong.is_empty(),
            "{wrapper:?}:\n{}\n{}",
            wrong.join("\n"),
            least.stderr()
        );
    }
}

/// A static program that sleeps: with the setuid bit and owned by root, what a uid 1000
/// process execs to become root. busybox drops a setuid bit for its applets, so it is built
/// here.
fn setuid_program(dir: &std::path::Path) -> std::path::PathBuf {
    let source = dir.join("suid.c");
    std::fs::write(
        &source,
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    )
    .unwrap();
    let binary = dir.join("suid");
    let (ok, _, err) = run(
        "cc",
        &[
            "-static",
            "-O1",
            "-o",
            binary.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    );
    assert!(ok, "cc: {err}");
    binary
}

/// A uid 1000 container without capabilities, `NoNewPrivs` off, whose shell forks a child
/// that execs a setuid-root program: `privilege_exceeds_declared` (type `user`) for its
/// container, logged once however many scans see it.
#[test]
#[ignore = "needs root: runc containers, cc -static"]
fn a_setuid_exec_in_a_uid_1000_container_exceeds_it() {
    let _guard = crate::declared::serial();
    let build = tempfile::tempdir().unwrap();
    let program = setuid_program(build.path());
    let run = Run::new();
    let bundle = Bundle::busybox("setuid")
        .user(1000, 1000)
        .capabilities(&[])
        .no_new_privileges(false)
        .args(&["sh", "-c", "sleep 5; /suid; sleep 100000"]);
    let target = bundle.rootfs().join("suid");
    std::fs::copy(&program, &target).unwrap();
    std::os::unix::fs::chown(&target, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let c = run.run(bundle);
    let exceeding = |m: &Metrics| {
        findings(m, "privilege_exceeds_declared")
            .into_iter()
            .filter(|(id, _, _)| *id == c.id)
            .collect::<Vec<_>>()
    };
    // Full scans a minute apart, sweeps every second: only a sweep can find it in time.
    let e = Exporter::start(&[
        &format!("--path.run={}", run.path().display()),
        "--path.kubelet-logs=/nonexistent",
        "--path.docker=/nonexistent",
        "--path.podman=/nonexistent",
        "--scan.interval=60s",
        "--scan.sweep-interval=1s",
    ]);
    // Before the exec: the first scan read the container as its spec says.
    wait_for("the first scan", Duration::from_secs(4), || {
        (scans(&e) >= 1.0).then_some(())
    });
    assert!(exceeding(&e.metrics()).is_empty());
    let found = wait_for(
        "privilege_exceeds_declared for the setuid exec",
        Duration::from_secs(20),
        || {
            let m = e.metrics();
            let f = exceeding(&m);
            (!f.is_empty()).then_some((m, f))
        },
    );
    let (m, f) = found;
    assert_eq!(
        f,
        vec![(c.id.clone(), "user".to_owned(), "false".to_owned())]
    );
    let info = m.find(
        "nsexporter_container_privilege_info",
        &[("container_id", c.id.as_str())],
    );
    assert_eq!(info.len(), 1);
    assert_eq!(scans(&e), 1.0, "found by a sweep, not a scan");
    // Logged once, however many sweeps see it.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(exceeding(&e.metrics()).len(), 1);
    let log = e.stderr();
    let ours = |what: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains("privilege_exceeds_declared") && l.contains(&c.id))
            .filter(|l| l.contains(what))
            .collect()
    };
    assert_eq!(ours("unexpected namespace sharing").len(), 1, "{log}");
    // And once what it saw: the process, and what it holds beyond the spec's uid 1000.
    let detail = ours("what the finding saw");
    assert_eq!(detail.len(), 1, "{log}");
    assert!(
        detail[0].contains("detail=\"pid ")
            && detail[0].contains("uid 0 where the spec")
            && detail[0].contains("user is uid 1000"),
        "{}",
        detail[0]
    );
}

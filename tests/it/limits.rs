//! A namespace limit reached for real (as root, with `python3`, `setpriv`, `unshare` and
//! Prometheus): uts namespaces made by one uid until the kernel refuses the next, the
//! shipped `NsexporterNamespacesNearLimit` firing in a real Prometheus before it does, and
//! the exporter bounded meanwhile.
//!
//! Root here cannot lower the host's `user.max_uts_namespaces` (no CAP_SYS_RESOURCE in the
//! initial user namespace), and a limit lowered in a child user namespace is one the exporter,
//! in the host's, does not read. So the host's own limit is filled, by a uid of the test's
//! own: the kernel counts per creating uid (kernel/ucount.c), so root's and every other
//! uid's namespaces, the other tests' containers among them, are not refused meanwhile.
//! Each holder is a process of that uid in a user namespace of its own, making uts
//! namespaces with unshare(2) and keeping each by an fd of `/proc/self/ns/uts`; the host's
//! RLIMIT_NOFILE caps how many one process holds, hence several.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::prometheus::{Prometheus, rules_without_for};
use crate::support::{Exporter, Spawned, status_bytes, wait_for};

/// A uid no account has: its namespace count starts at 0, and nothing else charges it.
const UID: &str = "64242";

/// Holders of the first fill; each holds under the hard RLIMIT_NOFILE of a test machine.
const HOLDERS: u64 = 6;

/// Makes up to argv[1] uts namespaces, each kept by an fd, says how many (and where the
/// kernel refused one, if it did), then sleeps until killed.
const HOLDER: &str = r#"
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
for _ in range(int(sys.argv[1])):
    if libc.unshare(0x04000000) != 0:
        print("refused", os.strerror(ctypes.get_errno()), flush=True)
        break
    fds.append(os.open("/proc/self/ns/uts", os.O_RDONLY))
print("made", len(fds), flush=True)
while True:
    time.sleep(3600)
"#;

/// A process of [`UID`] in a user namespace of its own, holding uts namespaces by fds; its
/// process group is killed on drop, and its namespaces go with its fds.
struct Holder {
    _process: Spawned,
    made: u64,
    refused: Option<String>,
}

impl Holder {
    /// Starts a holder making up to `n` namespaces, and waits until it has made them or been
    /// refused.
    fn start(n: u64) -> Holder {
        let child = Command::new("setpriv")
            .args(["--reuid", UID, "--regid", UID, "--clear-groups"])
            .args(["unshare", "--user", "--map-root-user"])
            .args(["python3", "-c", HOLDER, &n.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("setpriv, unshare, python3");
        let mut process = Spawned { child };
        let stdout = process.child.stdout.take().expect("piped");
        let mut refused = None;
        let mut made = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("the holder's stdout");
            if let Some(why) = line.strip_prefix("refused ") {
                refused = Some(why.to_owned());
            } else if let Some(n) = line.strip_prefix("made ") {
                made = Some(n.parse().expect("a count"));
                break;
            }
        }
        let made = made.expect("the holder said how many it made");
        Holder {
            _process: process,
            made,
            refused,
        }
    }
}

/// Whether [`UID`] can make one more uts namespace now, in a user namespace of its own, as a
/// container runtime would; with `unshare`'s error where not.
fn unshare_uts() -> Result<(), String> {
    let out = Command::new("setpriv")
        .args(["--reuid", UID, "--regid", UID, "--clear-groups"])
        .args(["unshare", "--user", "--map-root-user", "--uts", "true"])
        .output()
        .expect("setpriv, unshare");
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

/// The exporter's `nsexporter_namespaces_in_use{type="uts"}`, and the sum and count of its
/// scans' durations so far.
fn in_use_and_scans(e: &Exporter) -> (f64, (f64, f64)) {
    let m = e.metrics();
    let in_use = m
        .value("nsexporter_namespaces_in_use", &[("type", "uts")])
        .expect("in use");
    let sum = m
        .value("nsexporter_scan_duration_seconds_sum", &[])
        .unwrap();
    let count = m
        .value("nsexporter_scan_duration_seconds_count", &[])
        .unwrap();
    (in_use, (sum, count))
}

#[test]
#[ignore = "needs root, python3, setpriv and Prometheus; fills the host's uts namespace limit for one uid"]
fn the_limit_alert_fires_before_the_kernel_refuses_and_the_figure_is_the_kernels() {
    let began = Instant::now();
    let limit: u64 = std::fs::read_to_string("/proc/sys/user/max_uts_namespaces")
        .expect("the host's limit")
        .trim()
        .parse()
        .expect("a number");
    assert!(
        unshare_uts().is_ok(),
        "uid {UID} is refused a uts namespace before the test made any"
    );
    let e = Exporter::start(&["--scan.interval=1s", "--scan.fd-interval=1s"]);
    let exported = e
        .metrics()
        .value("nsexporter_namespaces_limit", &[("type", "uts")]);
    assert_eq!(exported, Some(limit as f64), "the limit as exported");
    let alert = "NsexporterNamespacesNearLimit";
    let prometheus = Prometheus::start_with_files(
        &format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [alerts.yaml]\n\
             scrape_configs:\n  - job_name: nsexporter\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            e.port
        ),
        &[("alerts.yaml".to_string(), rules_without_for(alert))],
        &[],
    );

    // To 92% of the limit: past the alert's 90% whatever else holds uts namespaces.
    let first = limit * 92 / 100;
    let started = Instant::now();
    let mut holders: Vec<Holder> = std::thread::scope(|s| {
        let each = first.div_ceil(HOLDERS);
        let spawned: Vec<_> = (0..HOLDERS)
            .map(|_| s.spawn(move || Holder::start(each)))
            .collect();
        spawned.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let made: u64 = holders.iter().map(|h| h.made).sum();
    assert!(
        holders.iter().all(|h| h.refused.is_none()),
        "refused below 92% of the limit"
    );
    let fill_time = started.elapsed();
    let firing = wait_for(
        "the near-limit alert to fire",
        Duration::from_secs(60),
        || {
            prometheus
                .alerts()
                .into_iter()
                .find(|(name, state, labels)| {
                    name == alert && state == "firing" && labels["type"] == "uts"
                })
        },
    );
    let fired_after = started.elapsed();
    let (_, (sum0, count0)) = in_use_and_scans(&e);
    // Fired while the kernel still makes them.
    assert_eq!(
        unshare_uts(),
        Ok(()),
        "refused when the alert fired: {firing:?}"
    );

    // The rest, until the kernel refuses: its refusal point is `limit` made by the uid.
    let last = Holder::start(limit);
    let refused_at = made + last.made;
    assert_eq!(
        last.refused.as_deref(),
        Some("No space left on device"),
        "the kernel's refusal"
    );
    holders.push(last);
    assert_eq!(refused_at, limit, "the kernel refused at its limit");
    let error = unshare_uts().expect_err("one more after the limit");
    assert!(error.contains("No space left on device"), "{error}");

    // The exporter's figure, once a scan saw them all, within 1% of the refusal point; and
    // the exporter bounded while it counts them.
    let pid = e.child.id();
    let (in_use, (sum, count)) = wait_for(
        "a scan that sees every namespace made",
        Duration::from_secs(60),
        || Some(in_use_and_scans(&e)).filter(|(n, _)| *n >= refused_at as f64),
    );
    let off = (in_use - refused_at as f64).abs() / refused_at as f64;
    assert!(
        off <= 0.01,
        "exported {in_use} uts namespaces in use, the kernel refused at {refused_at}"
    );
    // The scans since the alert fired: with 88,000 to 96,000 namespaces held.
    assert!(
        count > count0,
        "no scan between the alert and the full view"
    );
    let mean_scan = (sum - sum0) / (count - count0);
    let rss = status_bytes(pid, "VmRSS");
    let hwm = status_bytes(pid, "VmHWM");
    eprintln!(
        "limit {limit}; made {made} in {fill_time:?}, alert firing {fired_after:?} after the fill began; \
         refused at {refused_at}; exported in use {in_use} ({:.3}% off); exporter VmRSS {} MiB, \
         VmHWM {} MiB, mean scan at the limit {mean_scan:.3} s; test {:?}",
        off * 100.0,
        rss >> 20,
        hwm >> 20,
        began.elapsed()
    );
    assert!(hwm < 512 << 20, "the exporter's peak memory: {hwm} bytes");
    // A debug build, on a loaded machine: bounded, not fast (docs/performance.md has the
    // release build's figures).
    assert!(mean_scan < 30.0, "the exporter's mean scan: {mean_scan} s");

    // Gone with their holders: the uid may make one again.
    drop(holders);
    wait_for(
        "the uid's namespaces to be freed",
        Duration::from_secs(30),
        || unshare_uts().ok(),
    );
}

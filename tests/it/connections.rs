//! Clients that hold connections open, on loopback against the real binary: the kubelet's
//! probes are still answered, the scan still has its fds, SIGTERM still exits promptly, and
//! the log says it at most once a second. Latencies measured are printed (`--nocapture`).

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::*;

/// One at a time: each measures how quickly the exporter answers, and a flood beside it
/// measures the flood.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// What the exporter logs when it sheds a connection at the cap.
const SHED_LINE: &str = "closed the connection longest without a request";

/// Probes `/healthz` and `/readyz` in turn every `every` for `over`, each on a new
/// connection, as the kubelet does: how long each took. Every probe must be answered 200.
fn probe_throughout(port: u16, over: Duration, every: Duration) -> Vec<Duration> {
    let end = Instant::now() + over;
    let mut took = Vec::new();
    while Instant::now() < end {
        let path = ["/healthz", "/readyz"][took.len() % 2];
        let t = Instant::now();
        let r = http(port, "GET", path, &[]);
        let n = took.len() + 1;
        let r = r.unwrap_or_else(|e| panic!("probe {n} ({path}) after {:?}: {e}", t.elapsed()));
        took.push(t.elapsed());
        assert_eq!(r.status, 200, "probe {n} ({path}): {}", r.text());
        std::thread::sleep(every);
    }
    took
}

/// The number of fds `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Before, at the cap (256) the exporter stopped accepting, and 300 idle connections made each
/// probe wait in the listen backlog until the header timeout freed a slot: 10.0 s, against the
/// DaemonSet's 2 s probe timeout. Now the idlest connection is shed for each new one: measured
/// at most 10 to 90 ms over 10 s. The cap still holds: the exporter's fds stay below it.
#[test]
fn probes_are_answered_within_a_second_while_300_idle_connections_are_held() {
    let _serial = serial();
    let procfs = format!("--path.procfs={}", fixture_procfs().display());
    let e = Exporter::start(&[&procfs, "--scan.interval=1h"]);
    let pid = e.child.id();
    let before = open_fds(pid);
    let t = Instant::now();
    let idle = connections(e.port, 300, b"");
    let took = probe_throughout(e.port, Duration::from_secs(10), Duration::from_millis(100));
    let slowest = took.iter().max().unwrap();
    eprintln!(
        "300 idle connections: {} probes, the slowest {slowest:?}",
        took.len()
    );
    assert!(took.len() >= 20, "{} probes in 10 s", took.len());
    assert!(*slowest < Duration::from_secs(1), "{took:?}");
    let fds = open_fds(pid);
    assert!(
        fds <= before + 257,
        "{fds} fds open, {before} before: over the cap"
    );
    // At most a line a second, with the count.
    let log = e.stderr();
    let said = lines_with(&log, SHED_LINE);
    let seconds = t.elapsed().as_secs() as usize;
    assert!(
        (1..=seconds + 1).contains(&said),
        "{said} lines in {seconds} s: {log}"
    );
    // Each line with its count; all 44 beyond the cap are said, within a second of the last.
    let counts: Vec<u64> = log
        .lines()
        .filter(|l| l.contains(SHED_LINE))
        .filter_map(|l| l.split_once(" count=")?.1.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(counts.len(), said, "{log}");
    assert!(counts.iter().sum::<u64>() >= 44, "{counts:?}");
    drop(idle);
}

/// At the cap, the connection longest idle is closed for a new one, which is served at once;
/// the younger one is left alone.
#[test]
fn beyond_max_connections_the_longest_idle_is_shed_for_a_new_client() {
    let _serial = serial();
    let procfs = format!("--path.procfs={}", fixture_procfs().display());
    let e = Exporter::start(&[&procfs, "--scan.interval=1h", "--web.max-connections=2"]);
    // Start-up's readiness polls may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let mut older = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut younger = TcpStream::connect(("127.0.0.1", e.port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let served = e.get("/healthz");
    let took = t.elapsed();
    assert_eq!(served.status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(closed_by_server(&mut older, Duration::from_secs(2)));
    assert!(!closed_by_server(&mut younger, Duration::from_millis(300)));
}

/// Before, 52 idle connections took every fd under a limit of 64, and every scan failed
/// (`too_many_open_files`), as did accept(2). Now the cap is lowered at start to fit under the
/// limit with room for the scan (said once), and 100 idle connections, all but the cap's
/// shed, fail no scan of this machine's /proc.
#[test]
fn under_nofile_64_idle_connections_fail_no_scan() {
    let _serial = serial();
    let mut e = Exporter::start_with_nofile(&["--path.procfs=/proc", "--scan.interval=200ms"], 64);
    wait_for("a successful scan", Duration::from_secs(20), || {
        let r = e.try_get("/metrics").ok().filter(|r| r.status == 200)?;
        let m = Metrics::parse(&r.text());
        (m.value("nsexporter_scan_success", &[]) == Some(1.0)).then_some(())
    });
    let idle = connections(e.port, 100, b"");
    let scans = |m: &Metrics| m.value("nsexporter_scans_total", &[]).unwrap_or(0.0);
    let from = scans(&e.metrics());
    let m = wait_for("ten more scans", Duration::from_secs(30), || {
        let m = e.metrics();
        (scans(&m) >= from + 10.0).then_some(m)
    });
    let failures: f64 = m
        .find("nsexporter_scan_failures_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(
        failures,
        0.0,
        "{:?}",
        m.find("nsexporter_scan_failures_total", &[])
    );
    assert_eq!(m.value("nsexporter_scan_success", &[]), Some(1.0));
    assert_eq!(
        m.value(
            "nsexporter_scan_errors_total",
            &[("reason", "too_many_open_files")]
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(e.get("/healthz").status, 200);
    let log = e.stderr();
    assert_eq!(lines_with(&log, "accept failed"), 0, "{log}");
    assert_eq!(lines_with(&log, "scan failed"), 0, "{log}");
    assert_eq!(
        lines_with(
            &log,
            "web.max_connections lowered to fit under RLIMIT_NOFILE"
        ),
        1,
        "{log}"
    );
    assert!(log.contains("nofile=64"), "{log}");
    drop(idle);
    let t = Instant::now();
    let status = e.terminate();
    assert!(status.success(), "{status}");
    eprintln!(
        "nofile 64: {} scans, SIGTERM took {:?}",
        scans(&m),
        t.elapsed()
    );
}

/// Before, graceful shutdown waited for each request whose header had begun, up to its
/// header timeout (10 s), and then gave up at 5 s. Those are closed at once now: the exit
/// is measured at 4 ms (this test sees it to within the 50 ms it polls at).
#[test]
fn sigterm_exits_within_3s_with_50_half_sent_requests() {
    let _serial = serial();
    let procfs = format!("--path.procfs={}", fixture_procfs().display());
    let mut e = Exporter::start(&[&procfs, "--scan.interval=1h"]);
    let before = open_fds(e.child.id());
    let half = connections(e.port, 50, b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
    // `before` may count a readiness poll's connection still closing.
    wait_for("the exporter to hold them", Duration::from_secs(5), || {
        (open_fds(e.child.id()) >= before + 49).then_some(())
    });
    let t = Instant::now();
    let status = e.terminate();
    let took = t.elapsed();
    eprintln!("SIGTERM with 50 half-sent requests: {took:?}");
    assert!(status.success(), "{status}: {}", e.stderr());
    assert!(took < Duration::from_secs(3), "{took:?}");
    drop(half);
}

/// Whether the server closed `s` (non-blocking): it sends nothing unasked, so anything but
/// "no data yet" is its end of file or a reset.
fn closed(s: &TcpStream) -> bool {
    !matches!(s.peek(&mut [0]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// A client that opens connections as fast as it can and holds every one the exporter leaves
/// open (up to 6000, the file table of the test allowing): the kubelet's probes are still
/// answered, never two in a row beyond its 2 s timeout, and the log says the shedding once a
/// second. Measured with this (debug) build on this 2-core machine shared by others: the
/// median a few ms, the slowest 0.4 to 0.8 s, 1.6 s once with another test running beside it
/// (the flood's connects queue in the backlog ahead of a probe's while the exporter waits for
/// a core); with the release build, the slowest 0.10 to 0.16 s. Before, the flood held the
/// cap and the first probe waited 11 s, for the header timeout to free a slot.
#[test]
fn a_connect_flood_starves_no_probe_and_floods_no_log() {
    let _serial = serial();
    let procfs = format!("--path.procfs={}", fixture_procfs().display());
    let e = Exporter::start(&[&procfs, "--scan.interval=1h"]);
    let logged = e.stderr().lines().count();
    // More than the listen backlog and the cap together, where the file table allows.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    let (nofile, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let most = nofile.saturating_sub(100).min(6000) as usize;
    let t = Instant::now();
    let port = e.port;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let flood = {
        let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
        std::thread::spawn(move || {
            let mut held = std::collections::VecDeque::<TcpStream>::new();
            // Bounded: at most 6 s, whatever the probes do.
            let end = Instant::now() + Duration::from_secs(6);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                    s.set_nonblocking(true).unwrap();
                    opened.fetch_add(1, Ordering::Relaxed);
                    held.push_back(s);
                }
                // Let go of those the exporter closed (it sheds the oldest), and beyond the
                // bound.
                while held.front().is_some_and(closed) || held.len() > most {
                    held.pop_front();
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let probed = std::panic::catch_unwind(|| {
        probe_throughout(port, Duration::from_secs(5), Duration::from_millis(100))
    });
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    let took = probed.unwrap_or_else(|p| std::panic::resume_unwind(p));
    let opened = opened.load(Ordering::Relaxed);
    let mut sorted = took.clone();
    sorted.sort();
    let (median, slowest) = (sorted[sorted.len() / 2], sorted[sorted.len() - 1]);
    eprintln!(
        "flood of {opened} connects: {} probes, median {median:?}, the slowest {slowest:?}",
        took.len()
    );
    assert!(opened > 1000, "{opened} connects: no flood");
    // The kubelet restarts the pod after three probes in a row fail its 2 s timeout: no two in
    // a row may, and most are quick. (Before, the first probe waited 11 s.)
    let late = |d: &Duration| *d >= Duration::from_secs(2);
    // The median and the slowest are reported above, not asserted: they follow the machine's
    // load (547 ms median once, with CI and two builds beside it).
    assert!(!took.windows(2).any(|w| w.iter().all(late)), "{took:?}");
    let log = e.stderr();
    let seconds = t.elapsed().as_secs() as usize;
    let said = lines_with(&log, SHED_LINE);
    assert!(
        (1..=seconds + 1).contains(&said),
        "{said} lines in {seconds} s: {log}"
    );
    assert!(log.lines().count() - logged <= seconds + 1, "{log}");
}

/// A connection to `port` whose receive buffer is as small as the kernel allows, set before
/// the connect so that the window it offers is small too.
fn small_window(port: u16) -> TcpStream {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    setsockopt(&fd, sockopt::RcvBuf, &4096).unwrap();
    connect(fd.as_raw_fd(), &SockaddrIn::new(127, 0, 0, 1, port)).unwrap();
    TcpStream::from(fd)
}

/// A plain scrape (no `Accept-Encoding: gzip`) of a text longer than the kernel's send buffer
/// takes whole (`Exposition::SHARED_TEXT_MAX`, 4 MiB) is the exposition's text inflated from
/// its gzip as it is sent, so that slow clients pin no text. A client that sends its request
/// and never reads then holds the inflate state and what hyper has buffered for it, not a copy
/// of the text; and, as any client that stops reading, it is closed at the idle timeout. The text is 6.5 MB here: the kernel takes up to `tcp_wmem`'s 4 MB into the
/// exporter's send buffer whatever the client's window, and with 2 MB of text a copy held
/// until sent (one frame of the whole text) raised VmRSS by 79 KiB a client, which no bound
/// tells from the inflate. With 6.5 MB, 8 clients: that copy 6,555 KiB a client, the inflate
/// 501 KiB (hyper's write buffer of about 400 KB, a frame, the inflate state). The plain body
/// is the gzip body inflated, and its Content-Length the text's.
#[test]
#[ignore = "slow for plain `cargo test` (a 6.5 MB exposition held to the idle timeout); scripts/test runs it"]
fn plain_scrapes_never_read_hold_no_copy_of_the_text_and_end_at_the_idle_timeout() {
    const CLIENTS: usize = 8;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let e = Exporter::on_crowded_procfs(
        dir.path(),
        3000,
        // No per-workload cap: the fixture's 3,000 processes are no one's workload, and
        // capped they would write too little text to tell a copy from the inflate.
        &[
            "--scan.interval=1h",
            "--web.idle-timeout=5s",
            "--metrics.namespaces-per-workload=0",
        ],
    );
    let pid = e.child.id();
    let plain = e.get("/metrics");
    let gz = http(e.port, "GET", "/metrics", &[("Accept-Encoding", "gzip")]).unwrap();
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gz.body[..]),
        &mut inflated,
    )
    .unwrap();
    assert_eq!(
        inflated, plain.body,
        "the plain body is the gzip body inflated"
    );
    let text_len = plain.body.len();
    assert_eq!(plain.header("content-length"), Some(&*text_len.to_string()));
    assert!(
        text_len > 2_000_000,
        "{text_len} bytes of text: too few to tell"
    );
    // What the first plain scrapes allocate for good is in the baseline.
    for _ in 0..3 {
        assert_eq!(e.get("/metrics").body.len(), text_len);
    }
    let fds = open_fds(pid);
    let before = status_bytes(pid, "VmRSS");
    let stalled: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| {
            let mut s = small_window(e.port);
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    for s in &stalled {
        s.set_nonblocking(true).unwrap();
        wait_for("each response to start", Duration::from_secs(20), || {
            s.peek(&mut [0; 1]).ok().filter(|&n| n > 0)
        });
    }
    // The exporter writes until the sockets' buffers are full: the highest resident size
    // over the next second (the idle timeout is 5 s after the last byte written).
    let mut high = 0;
    for _ in 0..10 {
        high = high.max(status_bytes(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let rise = high.saturating_sub(before);
    let kib = |b: u64| b / 1024;
    eprintln!(
        "{CLIENTS} plain clients that never read, text {} KiB: VmRSS {} KiB before, {} KiB at the highest, {} KiB more ({} KiB a client)",
        kib(text_len as u64),
        kib(before),
        kib(high),
        kib(rise),
        kib(rise) / CLIENTS as u64
    );
    // A copy of the text each would be CLIENTS times the text.
    assert!(
        rise < (CLIENTS * text_len / 2) as u64,
        "{CLIENTS} stalled plain scrapes raised VmRSS by {rise} bytes, the text is {text_len}"
    );
    // The idle timeout closes them: the exporter's fds go back to what they were.
    wait_for(
        "the stalled clients to be closed",
        Duration::from_secs(60),
        || (open_fds(pid) <= fds).then_some(()),
    );
    drop(stalled);
}

//! Open connections: each one's deadline, and the table that holds them under the cap.
//!
//! Anything a client can hold open is bounded, and no client can make another wait. The
//! exporter always accepts: a connection beyond `--web.max-connections` is taken at once, and
//! another is closed to make room for it (shed), the one most worth closing (see
//! [`Table::admit`]). A kubelet probe therefore never waits in the kernel's listen backlog
//! behind idle connections, and its header's clock starts as it connects.
//!
//! The choice, measured on loopback with idle connections held from one client beyond the cap
//! (docs/performance.md, "Connections at the cap"): stopping accepting at the cap, as Go's
//! `netutil.LimitListener` does, made every `/healthz` wait in the backlog until the header
//! timeout freed a slot; shedding answers it at once. A lane of its own for health
//! (an over-cap connection read briefly and served only if it is a probe) would bound the same
//! thing with a second pool, a second timeout and a parser before hyper's; a per-peer cap
//! alone does nothing where the probe and the client share an address (loopback, a
//! hostNetwork pod); a deadline from connect alone still leaves the probe in the backlog.
//! Shedding prefers the peer holding the most connections, so a flood from one pod sheds its
//! own connections, not the kubelet's or Prometheus's keep-alive one, while it holds more.
//!
//! What shedding cannot help: a client on the same machine that connects faster than the
//! serving thread accepts fills the listen backlog, and a probe waits behind it there. Hence
//! the accept path is kept cheap ([`SHED_WINDOW`]), so that under a connect flood a probe
//! waits there as little as the machine allows.
//!
//! The cap is also kept under `RLIMIT_NOFILE` with room for the scan ([`connection_cap`]):
//! with the fd table full, accept(2) failed and so did every scan.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Limits;

/// Where a connection is in its request cycle, and by when it must move on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Reading a request's header, which must be complete by then.
    Head(Instant),
    /// A request is being answered: no deadline of ours.
    Busy,
    /// Waiting for the client to read the response or to send the next request.
    Idle(Instant),
}

/// Why a connection is asked to close before its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// To make room at the cap: whatever it is doing.
    Shed,
    /// The exporter is stopping: if it has not sent a whole request (hyper itself closes a
    /// keep-alive connection waiting for its next one, and finishes a request it has).
    Shutdown,
}

/// How a connection's deadline ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The phase's deadline passed.
    TimedOut(Phase),
    /// Closed to make room for a new connection at the cap.
    Shed,
    /// Closed at shutdown with no whole request.
    ShutDown,
}

#[derive(Clone, Copy, Debug)]
struct State {
    phase: Phase,
    /// When the phase began, or, while idle, when a byte of the response last left: the order
    /// in which connections are shed.
    since: Instant,
    close: Option<Close>,
}

/// One connection's deadline: [`Limits::read_header_timeout`] while a header is read,
/// [`Limits::idle_timeout`] while nothing is asked. hyper's own header timeout would do for the
/// first, but it starts when a keep-alive connection goes idle, so that it would also be the
/// idle timeout; this one starts at the first byte of the next request, as Go's
/// `ReadHeaderTimeout` does after `IdleTimeout`. The first header's clock starts at accept,
/// which is as the client connects: the exporter never leaves a connection in the backlog.
///
/// Every change of phase happens while the connection is polled (its socket, its service, its
/// response body), and [`Deadline::ended`] is polled right after it in the same task, so that
/// it sees each change without a wake-up of its own. A close asked by the [`Table`] comes from
/// outside the task, and wakes it.
pub(super) struct Deadline {
    limits: Limits,
    state: Mutex<State>,
    woken: Notify,
}

impl Deadline {
    pub(super) fn new(limits: Limits) -> Deadline {
        let now = Instant::now();
        Deadline {
            limits,
            state: Mutex::new(State {
                phase: Phase::Head(now + limits.read_header_timeout),
                since: now,
                close: None,
            }),
            woken: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> State {
        *self.lock()
    }

    #[cfg(test)]
    fn phase(&self) -> Phase {
        self.state().phase
    }

    /// Moves to the phase `f` gives, if any, starting now.
    fn set(&self, f: impl FnOnce(Phase) -> Option<Phase>) {
        let mut state = self.lock();
        if let Some(next) = f(state.phase) {
            state.phase = next;
            state.since = Instant::now();
        }
    }

    /// Bytes arrived: after an idle wait they start the next request's header.
    pub(super) fn read(&self) {
        let header = self.limits.read_header_timeout;
        self.set(|p| matches!(p, Phase::Idle(_)).then(|| Phase::Head(Instant::now() + header)));
    }

    /// Bytes of a response left: a client that reads slowly is not idle.
    pub(super) fn wrote(&self) {
        let idle = self.limits.idle_timeout;
        self.set(|p| matches!(p, Phase::Idle(_)).then(|| Phase::Idle(Instant::now() + idle)));
    }

    /// A request's header is complete.
    pub(super) fn busy(&self) {
        self.set(|_| Some(Phase::Busy));
    }

    /// A response's body is with hyper.
    pub(super) fn idle(&self) {
        let idle = self.limits.idle_timeout;
        self.set(|_| Some(Phase::Idle(Instant::now() + idle)));
    }

    /// Asks the connection to close (the first reason asked is kept), and wakes its task.
    fn close(&self, why: Close) {
        self.lock().close.get_or_insert(why);
        self.woken.notify_one();
    }

    /// Resolves once the connection must end: its phase's deadline has passed, or the
    /// [`Table`] asked. Poll it after the connection, in its task (see above). The timer is
    /// re-armed only when a deadline comes nearer (an idle wait's first byte); a later one
    /// waits for the armed timer to fire, so that a busy keep-alive connection does not touch
    /// the timer on every request.
    pub(super) async fn ended(&self) -> Ended {
        let timer = tokio::time::sleep(self.limits.read_header_timeout);
        tokio::pin!(timer);
        let woken = self.woken.notified();
        tokio::pin!(woken);
        std::future::poll_fn(|cx| {
            // Polled, a `Notified` is registered: a close asked from now on wakes this task.
            while woken.as_mut().poll(cx).is_ready() {
                woken.set(self.woken.notified());
            }
            let State { phase, close, .. } = self.state();
            match (close, phase) {
                (Some(Close::Shed), _) => return Poll::Ready(Ended::Shed),
                (Some(Close::Shutdown), Phase::Head(_)) => return Poll::Ready(Ended::ShutDown),
                _ => {}
            }
            let by = match phase {
                Phase::Head(by) | Phase::Idle(by) => by,
                Phase::Busy => return Poll::Pending,
            };
            if by < timer.deadline() {
                timer.as_mut().reset(by);
            }
            while timer.as_mut().poll(cx).is_ready() {
                if timer.deadline() >= by {
                    return Poll::Ready(Ended::TimedOut(phase));
                }
                timer.as_mut().reset(by);
            }
            Poll::Pending
        })
        .await
    }
}

/// The fds kept free beside the connections, beyond those open at start. A scan holds a few at
/// once (the procfs root and its dup, a pid directory and a file in it, a task directory and
/// its dup: the fewest with which scans still worked are in docs/performance.md). This leaves
/// several times that for the scan, the name sources' listings, a reload of the
/// config or web config file, the self-metrics' listing of `/proc/self/fd`, and the one
/// connection accepted beyond the cap before the one shed for it has gone.
pub const FD_RESERVE: u64 = 32;

/// The cap on open connections: `configured` (0: none), lowered so that the connections fit
/// under the soft `RLIMIT_NOFILE` (`nofile`) beside the `open` fds and [`FD_RESERVE`]. With the
/// table full, accept(2) failed with EMFILE and so did every scan, while idle connections held
/// it. At least one, so that something is served.
pub fn connection_cap(configured: usize, nofile: u64, open: u64) -> usize {
    let room = nofile.saturating_sub(open).saturating_sub(FD_RESERVE);
    let fits = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    match configured {
        0 => fits,
        n => n.min(fits),
    }
}

/// The open connections, by peer and, within a peer, in the order they were admitted.
#[derive(Default)]
struct Entries {
    next: u64,
    open: usize,
    peers: HashMap<IpAddr, BTreeMap<u64, Arc<Deadline>>>,
    /// (connections, peer), for the peer that holds the most.
    by_count: BTreeSet<(usize, IpAddr)>,
}

impl Entries {
    /// `peer`'s count moves from `from` to `to`.
    fn recount(&mut self, peer: IpAddr, from: usize, to: usize) {
        self.by_count.remove(&(from, peer));
        if to > 0 {
            self.by_count.insert((to, peer));
        }
    }

    /// The connection to shed: see [`Table::admit`].
    fn victim(&self) -> Option<&Arc<Deadline>> {
        let &(_, peer) = self.by_count.last()?;
        self.peers
            .get(&peer)?
            .values()
            .map(|d| (d, d.state()))
            .filter(|(_, s)| s.close.is_none())
            .take(SHED_WINDOW)
            .max_by_key(|(_, s)| (s.phase != Phase::Busy, Reverse(s.since)))
            .map(|(d, _)| d)
    }
}

/// How many of the top peer's longest-open connections are weighed for shedding. Weighing
/// them all (a walk of the cap's entries for each new connection) was a large share of the
/// serving thread's time under a connect flood, and a flood that outpaces the accept loop
/// fills the listen backlog, where a probe then waits; within a peer, the first admitted are nearly
/// always the longest waiting.
const SHED_WINDOW: usize = 16;

/// The open connections, for the cap and for shutdown.
pub(super) struct Table {
    cap: usize,
    entries: Mutex<Entries>,
    /// A connection has gone: the accept loop may be waiting for room.
    gone: Notify,
}

impl Table {
    /// A table of at most `cap` connections (0: no limit).
    pub(super) fn new(cap: usize) -> Arc<Table> {
        Arc::new(Table {
            cap: if cap == 0 { usize::MAX } else { cap },
            entries: Mutex::default(),
            gone: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a new connection from `peer`, given back when the [`Slot`] drops. At the cap,
    /// first asks the open connection most worth closing to close, and says whether it did:
    /// one from the peer that holds the most; of its longest open ([`SHED_WINDOW`]), one that
    /// is not answering a request (reading a header, or idle) before one that is; and of
    /// those, the one longest at it: the slowest header, the longest keep-alive wait. A probe
    /// or a scrape, connected last and answered at its first read, is the last to go; a
    /// client that opens connections as fast as it can sheds its own.
    pub(super) fn admit(self: &Arc<Self>, peer: IpAddr, deadline: Arc<Deadline>) -> (Slot, bool) {
        let peer = peer.to_canonical();
        let mut entries = self.lock();
        let shed = entries.open >= self.cap;
        if shed && let Some(victim) = entries.victim() {
            victim.close(Close::Shed);
        }
        let id = entries.next;
        entries.next += 1;
        entries.open += 1;
        let held = entries.peers.entry(peer).or_default();
        held.insert(id, deadline);
        let n = held.len();
        entries.recount(peer, n - 1, n);
        let slot = Slot {
            table: Arc::clone(self),
            peer,
            id,
        };
        (slot, shed)
    }

    /// Resolves once at most the cap are open: the connection shed for the last one admitted
    /// has gone, and given its fd back.
    pub(super) async fn room(&self) {
        loop {
            let gone = self.gone.notified();
            if self.lock().open <= self.cap {
                return;
            }
            gone.await;
        }
    }

    /// Closes every connection that has not sent a whole request, now and when it next
    /// starts one, for a shutdown that waits for no client.
    pub(super) fn shut_down(&self) {
        for d in self.lock().peers.values().flat_map(BTreeMap::values) {
            d.close(Close::Shutdown);
        }
    }
}

/// A connection's place in the [`Table`].
pub(super) struct Slot {
    table: Arc<Table>,
    peer: IpAddr,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut entries = self.table.lock();
        let Some(held) = entries.peers.get_mut(&self.peer) else {
            return;
        };
        if held.remove(&self.id).is_some() {
            let n = held.len();
            if n == 0 {
                entries.peers.remove(&self.peer);
            }
            entries.open -= 1;
            entries.recount(self.peer, n + 1, n);
        }
        drop(entries);
        self.table.gone.notify_one();
    }
}

/// A connection's socket, telling its [`Deadline`] of the bytes that move.
pub(super) struct Watched<T> {
    pub(super) io: T,
    pub(super) deadline: Arc<Deadline>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.deadline.read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.deadline.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.deadline.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Events said at most once a second, each line with how many happened since the last.
#[derive(Debug, Default)]
pub struct OncePerSecond {
    unsaid: u64,
    said_at: Option<std::time::Instant>,
}

impl OncePerSecond {
    const EVERY: Duration = Duration::from_secs(1);

    /// Counts one at `now`: the count to log, if a line is due.
    pub fn count(&mut self, now: std::time::Instant) -> Option<u64> {
        self.unsaid += 1;
        self.flush(now)
    }

    /// The count not yet said, if a line is due at `now`.
    pub fn flush(&mut self, now: std::time::Instant) -> Option<u64> {
        let due = self
            .said_at
            .is_none_or(|at| now.saturating_duration_since(at) >= Self::EVERY);
        if !due || self.unsaid == 0 {
            return None;
        }
        self.said_at = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }

    /// When the count not yet said is due, if there is one: a burst that ends within its
    /// first second is said in full a second later, not only its first.
    pub fn due(&self) -> Option<std::time::Instant> {
        (self.unsaid > 0).then(|| {
            self.said_at
                .map_or_else(std::time::Instant::now, |at| at + Self::EVERY)
        })
    }
}

/// Failed accepts, said at most once a second with how many failed since the last line.
#[derive(Debug, Default)]
pub struct AcceptFailures {
    said: OncePerSecond,
    /// Consecutive failures, for the backoff.
    run: u32,
}

impl AcceptFailures {
    /// The shortest and longest waits after a failed accept (Go's net/http waits 5 ms, doubled
    /// up to 1 s; axum sleeps 1 s).
    const FIRST_WAIT: Duration = Duration::from_millis(5);
    const LAST_WAIT: Duration = Duration::from_secs(1);

    /// Counts a failure at `now`: how long to wait before the next accept, and the count to
    /// log if a line is due.
    pub fn failed(&mut self, now: std::time::Instant) -> (Duration, Option<u64>) {
        let wait = Self::FIRST_WAIT
            .saturating_mul(1 << self.run.min(16))
            .min(Self::LAST_WAIT);
        self.run = self.run.saturating_add(1);
        (wait, self.said.count(now))
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.run = 0;
    }

    /// Whether a failed accept is the client's doing (it reset or abandoned the connection
    /// while it waited in the backlog, `ECONNABORTED`, or a signal came, `EINTR`): no shortage
    /// of the server's, so no back-off and nothing to say.
    pub fn is_the_clients(e: &std::io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(nix::libc::ECONNABORTED) | Some(nix::libc::EINTR)
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::task::Waker;

    use super::*;

    /// A move of a connection through its request cycle.
    type Step = fn(&Deadline);

    const LIMITS: Limits = Limits {
        read_header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        max_requests: 0,
        max_connections: 0,
    };

    #[test]
    fn an_aborted_connection_is_the_clients_and_a_full_fd_table_ours() {
        use nix::libc::{ECONNABORTED, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM};
        let is = |errno| AcceptFailures::is_the_clients(&std::io::Error::from_raw_os_error(errno));
        assert!(is(ECONNABORTED) && is(EINTR));
        for ours in [EMFILE, ENFILE, ENOBUFS, ENOMEM] {
            assert!(!is(ours), "errno {ours} backs off");
        }
    }

    #[test]
    fn accept_failures_back_off_and_are_said_once_a_second_with_a_count() {
        let t0 = std::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut f = AcceptFailures::default();
        // (at, wait, said)
        let cases = [
            (0, 5, Some(1)),
            (5, 10, None),
            (15, 20, None),
            (35, 40, None),
            (75, 80, None),
            (155, 160, None),
            (315, 320, None),
            (635, 640, None),
            (1275, 1000, Some(8)),
            (2275, 1000, Some(1)),
            (3275, 1000, Some(1)),
        ];
        for (at, wait, said) in cases {
            assert_eq!(
                f.failed(ms(at)),
                (Duration::from_millis(wait), said),
                "at {at} ms"
            );
        }
        f.succeeded();
        // The backoff starts again; the line stays at most one a second.
        assert_eq!(f.failed(ms(3300)), (Duration::from_millis(5), None));
        assert_eq!(f.failed(ms(4275)), (Duration::from_millis(10), Some(2)));
    }

    #[test]
    fn a_burst_is_said_at_once_and_in_full_a_second_later() {
        let t0 = std::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut said = OncePerSecond::default();
        assert_eq!(said.due(), None);
        assert_eq!(said.count(ms(0)), Some(1));
        assert_eq!(said.due(), None, "nothing unsaid");
        for at in 1..=44 {
            assert_eq!(said.count(ms(at)), None);
        }
        assert_eq!(said.due(), Some(ms(1000)));
        assert_eq!(said.flush(ms(999)), None);
        assert_eq!(said.flush(ms(1000)), Some(44));
        assert_eq!((said.due(), said.flush(ms(5000))), (None, None));
        assert_eq!(said.count(ms(5000)), Some(1));
    }

    #[test]
    fn a_connection_deadline_follows_the_request_cycle() {
        let d = Deadline::new(LIMITS);
        let phase = || d.phase();
        let start = Instant::now();
        let Phase::Head(first) = phase() else {
            panic!("{:?}", phase())
        };
        assert!(first >= start + Duration::from_secs(9), "{first:?}");
        // More bytes of the same header do not extend its deadline.
        d.read();
        assert_eq!(phase(), Phase::Head(first));
        d.wrote();
        assert_eq!(phase(), Phase::Head(first));
        d.busy();
        assert_eq!(phase(), Phase::Busy);
        d.read();
        assert_eq!(phase(), Phase::Busy, "a request body is no new header");
        d.idle();
        let Phase::Idle(idle) = phase() else {
            panic!("{:?}", phase())
        };
        assert!(idle >= start + Duration::from_secs(119), "{idle:?}");
        // The first byte after the wait starts the next header's clock.
        d.read();
        assert!(
            matches!(phase(), Phase::Head(by) if by < idle),
            "{:?}",
            phase()
        );
    }

    /// Whether `d.ended()` resolves at its first poll, and how.
    fn ended_now(d: &Deadline) -> Option<Ended> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = rt.enter();
        let mut ended = std::pin::pin!(d.ended());
        match ended.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(e) => Some(e),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_shutdown_closes_only_connections_without_a_whole_request() {
        // (phase the connection is in, closed at shutdown)
        let cases: [(Step, Option<Ended>); 3] = [
            (|_| {}, Some(Ended::ShutDown)),
            (Deadline::busy, None),
            (Deadline::idle, None),
        ];
        for (i, (into, closed)) in cases.into_iter().enumerate() {
            let d = Deadline::new(LIMITS);
            into(&d);
            assert_eq!(ended_now(&d), None, "case {i} before");
            d.close(Close::Shutdown);
            assert_eq!(ended_now(&d), closed, "case {i}");
        }
        // Idle, then the first byte of a next request: that header is not waited for.
        let d = Deadline::new(LIMITS);
        d.idle();
        d.close(Close::Shutdown);
        d.read();
        assert_eq!(ended_now(&d), Some(Ended::ShutDown));
        // Shed whatever it does; the first reason stays.
        let d = Deadline::new(LIMITS);
        d.busy();
        d.close(Close::Shed);
        d.close(Close::Shutdown);
        assert_eq!(ended_now(&d), Some(Ended::Shed));
    }

    /// `n` connections from `peer`, admitted to `table` in turn with deadlines moved by
    /// `into`, a millisecond apart so that their order is their age.
    fn admit(table: &Arc<Table>, peer: u8, n: usize, into: Step) -> Vec<Conn> {
        (0..n)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(1));
                let d = Arc::new(Deadline::new(LIMITS));
                into(&d);
                let (slot, _) =
                    table.admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer)), Arc::clone(&d));
                (slot, d)
            })
            .collect()
    }

    type Conn = (Slot, Arc<Deadline>);

    /// Which of `conns` were asked to close to make room.
    fn shed(conns: &[Conn]) -> Vec<usize> {
        conns
            .iter()
            .enumerate()
            .filter(|(_, (_, d))| d.state().close == Some(Close::Shed))
            .map(|(i, _)| i)
            .collect()
    }

    const HEAD: Step = |_| {};

    #[test]
    fn at_the_cap_the_peer_with_most_sheds_its_longest_waiting_connection() {
        let table = Table::new(8);
        // A probe from the node, reading its header; Prometheus's two, idle and answering.
        let node = admit(&table, 1, 1, HEAD);
        let mut prometheus = admit(&table, 2, 1, Deadline::idle);
        prometheus.extend(admit(&table, 2, 1, Deadline::busy));
        // A flood from one pod: one answering, then four that sent nothing yet.
        let mut flood = admit(&table, 3, 1, Deadline::busy);
        flood.extend(admit(&table, 3, 4, HEAD));
        assert!(shed(&flood).is_empty(), "below the cap");
        // At the cap, from anyone: the pod's oldest not answering goes, then its next.
        let other = admit(&table, 4, 1, HEAD);
        assert_eq!(shed(&flood), [1]);
        drop(flood.remove(1));
        let newer = admit(&table, 1, 1, HEAD);
        assert_eq!(shed(&flood), [1]);
        for conns in [&node, &prometheus, &other, &newer] {
            assert!(shed(conns).is_empty());
        }
    }

    #[test]
    fn of_a_peer_the_longest_waiting_goes_and_one_answering_last() {
        let table = Table::new(3);
        let mut a = admit(&table, 1, 1, Deadline::busy);
        a.extend(admit(&table, 1, 1, Deadline::idle));
        a.extend(admit(&table, 1, 1, HEAD));
        let b = admit(&table, 2, 1, HEAD);
        assert_eq!(shed(&a), [1], "idle longest");
        assert!(shed(&b).is_empty());

        let table = Table::new(2);
        let a = admit(&table, 1, 2, Deadline::busy);
        let _b = admit(&table, 2, 1, HEAD);
        assert_eq!(shed(&a), [0], "every one answering: the longest");
    }

    #[test]
    fn only_the_longest_open_of_a_peer_are_weighed() {
        let table = Table::new(SHED_WINDOW + 1);
        let mut a = admit(&table, 1, SHED_WINDOW, Deadline::busy);
        // Idle longer than any, but admitted after the window.
        a.extend(admit(&table, 1, 1, Deadline::idle));
        a[SHED_WINDOW].1.lock().since -= Duration::from_secs(60);
        let _b = admit(&table, 2, 1, HEAD);
        assert_eq!(shed(&a), [0]);
    }

    #[test]
    fn a_slot_gives_its_place_back() {
        let table = Table::new(2);
        let conns = admit(&table, 1, 3, HEAD);
        assert_eq!(shed(&conns), [0]);
        let room = std::pin::pin!(table.room());
        let mut room = room;
        let mut cx = Context::from_waker(Waker::noop());
        assert!(room.as_mut().poll(&mut cx).is_pending(), "3 open, cap 2");
        let mut conns = conns;
        drop(conns.remove(0));
        assert!(room.as_mut().poll(&mut cx).is_ready());
        assert_eq!(
            table.lock().by_count.iter().collect::<Vec<_>>(),
            [&(2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))]
        );
        drop(conns);
        let entries = table.lock();
        assert!(entries.peers.is_empty() && entries.by_count.is_empty());
        assert_eq!(entries.open, 0);
    }

    #[test]
    fn the_cap_fits_under_the_fd_limit_with_the_reserve() {
        // (configured, nofile, open, cap)
        let cases = [
            (256, 1_048_576, 10, 256),
            (256, 8192, 10, 256),
            (256, 64, 10, 22),
            (256, 1024, 10, 256),
            (0, 1024, 10, 982),
            (0, 64, 10, 22),
            // Too few fds for any reserve: one connection all the same.
            (256, 16, 10, 1),
            (256, 5, 10, 1),
        ];
        for (configured, nofile, open, cap) in cases {
            assert_eq!(
                connection_cap(configured, nofile, open),
                cap,
                "{configured} {nofile} {open}"
            );
        }
    }
}

//! HTTP: the telemetry path, `/healthz`, `/readyz` and a landing page, on hyper 1 over tokio.
//! What each answers comes from a [`Site`] the binary provides; this module routes, negotiates
//! gzip, bounds what clients hold and speaks TLS.
//!
//! A scrape never triggers or waits for work: it is sent what the site has ready, gzip bytes
//! or, if it does not accept gzip, the text as the site produces it chunk by chunk ([`Body`]).
//! With `--web.config.file` ([`crate::web_config`]) connections speak TLS (tokio-rustls, with
//! the same timeouts and caps: the handshake counts as header time), and requests pass basic
//! auth first. The runtime has one thread, which serves every connection: the handshake's
//! signature and the bcrypt comparison, CPU-bound steps (their cost: docs/performance.md),
//! run on tokio's blocking pool, a bounded number at a time. What a client can hold open, and
//! how no client makes a probe wait: `connections.rs`.

mod connections;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, ALLOW, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE,
    HeaderValue, VARY, WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::web_config::{Tls, WebConfig, WebConfigFile};

use connections::Deadline;
pub use connections::{AcceptFailures, FD_RESERVE, OncePerSecond, connection_cap};
use connections::{Ended, Table, Watched};

/// What the exporter serves, which the binary provides: the metrics, the answers of the health
/// probes and the landing page. Each is asked for afresh at each request, and must answer at
/// once: it runs on the serving thread.
pub trait Site: Send + Sync + 'static {
    /// The telemetry path's answer: the metrics, gzip-encoded when `gzip`, else as text; or
    /// why there are none yet (answered 503, with that line).
    fn metrics(&self, gzip: bool) -> Result<Metrics, String>;
    /// `/healthz`: Ok, or why not (answered 503, with that line).
    fn healthy(&self) -> Result<(), String>;
    /// `/readyz`: Ok, or why not (answered 503, with that line).
    fn ready(&self) -> Result<(), String>;
    /// The landing page at `/`, HTML.
    fn landing_page(&self) -> Bytes;
}

/// The metrics a [`Site`] serves: their content type and body.
pub struct Metrics {
    pub content_type: &'static str,
    pub body: Payload,
}

/// A body a [`Site`] hands over: bytes, or text produced as hyper asks for it.
pub enum Payload {
    Bytes(Bytes),
    Chunks(Box<dyn Chunks>),
}

/// Text produced a chunk at a time, so that a slow client holds no copy of it.
pub trait Chunks: Send + 'static {
    /// The next at most `max` bytes; `None` after the last.
    fn next_chunk(&mut self, max: usize) -> Option<std::io::Result<Bytes>>;
    /// The bytes still to come: the first call's answer is the Content-Length.
    fn remaining(&self) -> usize;
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub telemetry_path: Arc<str>,
    pub site: Arc<dyn Site>,
}

type Resp = Response<Body>;

/// A response's body: bytes in memory, or a site's text produced as hyper asks for it, in
/// frames of at most [`PLAIN_FRAME`]. A plain scrape, however slow its client, holds what
/// the site's [`Chunks`] hold and the frames hyper has not yet written (hyper asks for more
/// while its write buffer holds under about 400 KB), never a copy of the text.
pub enum Body {
    Bytes(Full<Bytes>),
    Chunks(Box<dyn Chunks>),
}

/// The largest frame of a plain scrape's body.
pub const PLAIN_FRAME: usize = 64 * 1024;

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            Body::Bytes(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
            // Produced at once: a chunk is cheap next to the write that sends it.
            Body::Chunks(p) => Poll::Ready(
                p.next_chunk(PLAIN_FRAME)
                    .map(|c| c.map(hyper::body::Frame::data)),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Bytes(b) => b.is_end_stream(),
            Body::Chunks(p) => p.remaining() == 0,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Bytes(b) => b.size_hint(),
            Body::Chunks(p) => hyper::body::SizeHint::with_exact(p.remaining() as u64),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::Bytes(Full::new(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Whether an `Accept-Encoding` value accepts gzip (a `gzip` or `*` token whose q is not 0).
pub fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let q_zero = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
    })
}

/// Routes one request. HEAD is answered as GET without a body (hyper drops it). Generic over
/// the request body, which no route reads, so that tests can route a `Request<()>`.
pub fn handle<B>(state: &AppState, req: &Request<B>) -> Resp {
    let path = req.uri().path();
    let known = path == &*state.telemetry_path || ["/", "/healthz", "/readyz"].contains(&path);
    if !known {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let site = &state.site;
    match path {
        "/healthz" => match site.healthy() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
        "/readyz" => match site.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
        p if p == &*state.telemetry_path => {
            let gzip = req
                .headers()
                .get(ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(accepts_gzip);
            match site.metrics(gzip) {
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
                Ok(metrics) => {
                    let (body, length) = match metrics.body {
                        Payload::Bytes(b) => {
                            let length = b.len();
                            (Body::Bytes(Full::new(b)), length)
                        }
                        Payload::Chunks(c) => {
                            let length = c.remaining();
                            (Body::Chunks(c), length)
                        }
                    };
                    let mut r = Response::new(body);
                    let h = r.headers_mut();
                    h.insert(CONTENT_TYPE, HeaderValue::from_static(metrics.content_type));
                    h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                    if gzip {
                        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    }
                    // Also where hyper would take it from the body: a HEAD's answer is GET's.
                    h.insert(CONTENT_LENGTH, HeaderValue::from(length));
                    r
                }
            }
        }
        _ => {
            let mut r = text(StatusCode::OK, site.landing_page());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    }
}

/// What a client can hold open, and for how long. Without a timer hyper applies no timeout at
/// all: a connection that sent half a header stayed open for good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From a connection's opening, or from the first byte after an idle keep-alive wait, to
    /// the end of the request's header.
    pub read_header_timeout: Duration,
    /// From a response's body handed to the connection (or the last byte written of it) to the
    /// first byte of the next request.
    pub idle_timeout: Duration,
    /// Scrapes of the telemetry path answered at once; beyond them, 503. 0: no limit.
    pub max_requests: usize,
    /// Connections open at once; 0: no limit. At the cap the exporter goes on accepting, and
    /// closes an open connection for each new one (see [`serve`]): no new connection, a
    /// kubelet probe's included, waits for a client to let go. The binary lowers it to fit
    /// under `RLIMIT_NOFILE` ([`connection_cap`]).
    pub max_connections: usize,
}

/// The listen backlog: where connects wait while the serving thread is busy (never for a free
/// slot: at [`Limits::max_connections`] the exporter still accepts). std's and mio's 128
/// overflowed under a burst of scrapers connecting at once (the dropped connects retried a
/// second later, their TLS handshakes then landing among the others' scrapes; numbers in
/// docs/performance.md). Go listens with `net.core.somaxconn`; the kernel caps this one there
/// too.
const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` (`SO_REUSEADDR`, as tokio's `bind` sets it) with [`LISTEN_BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A semaphore of `n` permits, or none for 0 (no limit).
fn cap(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n.min(Semaphore::MAX_PERMITS))))
}

/// Admits a request to the telemetry path under `--web.max-requests`, or answers 503 as
/// node_exporter does. Other paths are not counted: a health probe is never refused for
/// scrapes. The permit lives in the response's body until hyper has taken it all: a gzip body
/// is taken at once, a plain one as its client reads it, so the limit binds under a flood of
/// scrapes, or of plain clients that read slowly.
pub fn respond<B>(state: &AppState, requests: Option<&Arc<Semaphore>>, req: &Request<B>) -> Answer {
    let scrape = req.uri().path() == &*state.telemetry_path;
    let permit = match requests.filter(|_| scrape) {
        None => None,
        Some(requests) => match Arc::clone(requests).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                return answer(text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many scrapes at once (--web.max-requests); try again later\n",
                ));
            }
        },
    };
    let mut answered = answer(handle(state, req));
    answered.body_mut().permit = permit;
    answered
}

/// A response whose body holds what its request holds: a `--web.max-requests` permit, and the
/// connection's `Deadline`, which goes idle when hyper first asks for the body (the response
/// is then with hyper; bytes written of it keep the connection from the idle timeout, and a
/// client that stops reading a plain scrape meets it), and again when hyper drops the body.
pub type Answer = Response<AnswerBody>;

/// See [`Answer`].
pub struct AnswerBody {
    body: Body,
    permit: Option<OwnedSemaphorePermit>,
    deadline: Option<Arc<Deadline>>,
    /// Whether hyper has asked for the body yet.
    asked: bool,
}

/// `r`, holding nothing yet.
fn answer(r: Resp) -> Answer {
    r.map(|body| AnswerBody {
        body,
        permit: None,
        deadline: None,
        asked: false,
    })
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if !std::mem::replace(&mut this.asked, true)
            && let Some(deadline) = &this.deadline
        {
            deadline.idle();
        }
        Pin::new(&mut this.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for AnswerBody {
    fn drop(&mut self) {
        if let Some(deadline) = &self.deadline {
            deadline.idle();
        }
    }
}

/// [`respond`], behind the web config's rate limit and basic auth, with its headers added to
/// every answer but a 429 (a 401 too), in exporter-toolkit's order. `/healthz` and `/readyz`
/// answer without credentials and outside the rate limit (over TLS where it is on): they say
/// only whether the scan loop is well, and a kubelet probe has no password to give and must
/// not be refused for a scraper's haste. exporter-toolkit guards every path.
async fn guarded(
    web: &WebConfig,
    state: &AppState,
    requests: Option<&Arc<Semaphore>>,
    req: &Request<Incoming>,
) -> Answer {
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz");
    if !probe && web.rate_limit.as_ref().is_some_and(|limit| !limit.allow()) {
        return answer(text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n"));
    }
    let allowed = match &web.users {
        None => true,
        Some(_) if probe => true,
        Some(users) => users.allow(req.headers().get(AUTHORIZATION)).await,
    };
    let mut answered = if allowed {
        respond(state, requests, req)
    } else {
        let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
        answer(r)
    };
    for (name, value) in &web.headers {
        answered.headers_mut().insert(name, value.clone());
    }
    answered
}

/// Whether a connection's first byte is a TLS handshake record's (22). Go's server answers
/// anything else on a TLS port with a 400, and so does this one: a client that forgot
/// `https://` gets a reason rather than a reset.
async fn starts_tls(stream: &tokio::net::TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16)
}

/// Whether the ClientHello that has arrived (as much of it as has) asks for TLS 1.1 or older:
/// its version, which a TLS 1.2 or 1.3 client sets to 3.3. Go answers such a client with the
/// alert protocol_version; rustls, which wants the signature_algorithms extension that such a
/// client does not send, would answer handshake_failure, which a client reports as another
/// problem.
async fn asks_for_old_tls(stream: &tokio::net::TcpStream) -> bool {
    let mut head = [0u8; 11];
    match stream.peek(&mut head).await {
        // A handshake record holding a ClientHello (type 1), then its version.
        Ok(11) => head[0] == 0x16 && head[5] == 1 && (head[9], head[10]) < (3, 3),
        _ => false,
    }
}

/// The alert protocol_version, fatal, as Go's server sends it to a TLS 1.1 client.
async fn refuse_old_tls(mut io: impl AsyncWrite + Unpin) {
    use tokio::io::AsyncWriteExt;
    let _ = io
        .write_all(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 70])
        .await;
    let _ = io.shutdown().await;
}

/// Handshakes answered at once on the blocking pool: every core but one, which is left to the
/// serving thread (and the scan), and at least one.
fn handshake_turns() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// A TLS handshake whose CPU is spent off the serving thread. Reading the ClientHello and the
/// exchange after the server's answer are I/O, done here; answering the ClientHello (the key
/// exchange and the signature with the certificate's key, an RSA signature the costliest) is
/// done on tokio's blocking pool, at most `turns` at once. On the serving thread, a burst of
/// connections opened at once queued every connection's first scrape behind the others'
/// handshakes (docs/performance.md, "The scrape endpoint under load"). (A HelloRetryRequest's
/// second ClientHello, for a client whose key shares the server does not take, is still
/// answered here.)
async fn handshake<IO>(io: IO, tls: &Tls, turns: &Semaphore) -> std::io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let hello = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io).await?;
    // Go's server order of suites depends on the client's first one.
    let config = tls.for_hello(&hello.client_hello());
    let rest = {
        let _turn = turns.acquire().await.expect("never closed");
        tokio::task::spawn_blocking(move || hello.into_stream(config))
            .await
            .map_err(std::io::Error::other)?
    };
    rest.await
}

/// Go's answer to plain HTTP on a TLS port.
async fn refuse_plain_http(mut io: impl AsyncWrite + Unpin) {
    use tokio::io::AsyncWriteExt;
    let _ = io
        .write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )
        .await;
    let _ = io.shutdown().await;
}

/// Says that `count` connections were shed at the cap, at most once a second.
fn say_shed(count: u64, cap: usize) {
    tracing::warn!(
        count,
        cap,
        "at web.max_connections: closed the connection longest without a request, of the peer with the most, for each new one"
    );
}

/// How long, at shutdown, a request being answered has to finish. Responses are bytes in
/// memory, or inflated from them as they are sent, so this binds only a client that reads its
/// response slowly, or a password check.
pub const DRAIN: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves, then closes the connections that have not sent a whole
/// request and gives those that have up to [`DRAIN`] to be answered. It never stops
/// accepting: at [`Limits::max_connections`] an open connection is shed for each new one
/// (`connections.rs` says which, and why this design). `web`: the TLS, users and
/// headers of `--web.config.file`, read afresh for each connection (TLS) and request (users,
/// headers).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    web: Option<Arc<WebConfigFile>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let table = Table::new(limits.max_connections);
    let requests = cap(limits.max_requests);
    let handshakes = Arc::new(Semaphore::new(handshake_turns()));
    let mut failures = AcceptFailures::default();
    let mut sheds = OncePerSecond::default();
    tokio::pin!(shutdown);
    loop {
        // Sheds not yet said are said a second after the last line, if no shed comes first.
        let said = sheds.due().map(tokio::time::Instant::from_std);
        let say = tokio::time::sleep_until(said.unwrap_or_else(tokio::time::Instant::now));
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = say, if said.is_some() => {
                if let Some(count) = sheds.flush(std::time::Instant::now()) {
                    say_shed(count, limits.max_connections);
                }
                continue;
            }
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                failures.succeeded();
                a
            }
            // A connection its client reset while it waited in the backlog: the client's
            // doing, not a shortage of ours. Go's net/http and axum accept again at once.
            Err(e) if AcceptFailures::is_the_clients(&e) => {
                tracing::debug!(error = %e, "a connection was gone before it was accepted");
                continue;
            }
            Err(e) => {
                // EMFILE and the like persist while the listener stays readable: retrying at
                // once spins and floods the log.
                let (wait, say) = failures.failed(std::time::Instant::now());
                if let Some(count) = say {
                    tracing::warn!(error = %e, count, "accept failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        // As Go does on every TCP connection. With Nagle's algorithm on, the first response
        // after a TLS 1.3 handshake was written while the session tickets sent before it were
        // not yet acknowledged, and waited for the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let deadline = Arc::new(Deadline::new(limits));
        let (slot, shed) = table.admit(peer.ip(), Arc::clone(&deadline));
        if shed && let Some(count) = sheds.count(std::time::Instant::now()) {
            say_shed(count, limits.max_connections);
        }
        // The certificate is the connection's; users and headers are looked up per request, so
        // that a keep-alive connection sees a changed password at its next request.
        let web_now = web.as_ref().map(|w| w.current());
        let service = {
            let (state, requests, deadline, web) = (
                state.clone(),
                requests.clone(),
                Arc::clone(&deadline),
                web.clone(),
            );
            service_fn(move |req: Request<Incoming>| {
                deadline.busy();
                let (state, requests, deadline, web) = (
                    state.clone(),
                    requests.clone(),
                    Arc::clone(&deadline),
                    web.as_ref().map(|w| w.current()),
                );
                async move {
                    let mut answer = match &web {
                        Some(web) => guarded(web, &state, requests.as_ref(), &req).await,
                        None => respond(&state, requests.as_ref(), &req),
                    };
                    answer.body_mut().deadline = Some(deadline);
                    Ok::<_, Infallible>(answer)
                }
            })
        };
        let io = Watched {
            io: stream,
            deadline: Arc::clone(&deadline),
        };
        let watcher = graceful.watcher();
        let handshakes = Arc::clone(&handshakes);
        let served = async move {
            let ended = match web_now.as_ref().and_then(|w| w.tls.as_ref()) {
                None => {
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
                    watcher.watch(conn).await
                }
                Some(tls) => {
                    if asks_for_old_tls(&io.io).await {
                        refuse_old_tls(io).await;
                        tracing::debug!(%peer, "TLS 1.1 or older asked for: protocol_version");
                        return;
                    }
                    if !starts_tls(&io.io).await {
                        refuse_plain_http(io).await;
                        tracing::debug!(%peer, "plain HTTP on the TLS port: 400");
                        return;
                    }
                    let stream = match handshake(io, tls, &handshakes).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let conn =
                        http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        };
        tokio::spawn(async move {
            // Biased: the deadline is polled after the connection, whose progress it reads.
            // The TLS handshake is part of the first request's header time.
            tokio::select! {
                biased;
                () = served => {},
                ended = deadline.ended() => match ended {
                    Ended::TimedOut(phase) => {
                        tracing::debug!(%peer, ?phase, "connection closed: timed out");
                    }
                    Ended::Shed => tracing::debug!(%peer, "connection closed: shed at the cap"),
                    Ended::ShutDown => tracing::debug!(%peer, "connection closed: shutting down"),
                },
            }
            drop(slot);
        });
        // The connection shed for this one gives its fd back before the next accept: at most
        // one beyond the cap is ever open. This is also where the loop yields at the cap, so
        // that each new connection has its first read before the next is accepted.
        tokio::select! {
            () = table.room() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    table.shut_down();
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain = %humantime::format_duration(DRAIN),
            "requests still being answered at shutdown; closing them"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::task::{Context, Poll, Waker};

    use http_body_util::BodyExt;

    use super::*;

    const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    /// A site whose answers the test sets: the metrics' text (with a stand-in for its gzip),
    /// and the probes' answers.
    #[derive(Default)]
    struct TestSite {
        text: Mutex<Option<Bytes>>,
        healthy: Mutex<Option<String>>,
        not_ready: Mutex<Option<String>>,
        path: String,
    }

    /// A site's text, handed over a chunk at a time.
    struct Text(Bytes);

    impl Chunks for Text {
        fn next_chunk(&mut self, max: usize) -> Option<std::io::Result<Bytes>> {
            (!self.0.is_empty()).then(|| Ok(self.0.split_to(max.min(self.0.len()))))
        }

        fn remaining(&self) -> usize {
            self.0.len()
        }
    }

    /// The stand-in for a text's gzip: what matters here is which of the two is sent.
    fn gzip_of(text: &[u8]) -> Bytes {
        [b"gzip of ".as_slice(), text].concat().into()
    }

    impl Site for TestSite {
        fn metrics(&self, gzip: bool) -> Result<Metrics, String> {
            let text = self.text.lock().unwrap().clone();
            let text = text.ok_or("no scan has completed yet")?;
            let body = match gzip {
                true => Payload::Bytes(gzip_of(&text)),
                false => Payload::Chunks(Box::new(Text(text))),
            };
            Ok(Metrics {
                content_type: METRICS_CONTENT_TYPE,
                body,
            })
        }

        fn healthy(&self) -> Result<(), String> {
            self.healthy.lock().unwrap().clone().map_or(Ok(()), Err)
        }

        fn ready(&self) -> Result<(), String> {
            self.not_ready.lock().unwrap().clone().map_or(Ok(()), Err)
        }

        fn landing_page(&self) -> Bytes {
            format!("<a href=\"{0}\">{0}</a>\n", self.path).into()
        }
    }

    /// State with the telemetry path `path` and nothing to serve yet, and the site, whose
    /// answers the test sets.
    fn state(path: &str) -> (AppState, Arc<TestSite>) {
        let site = Arc::new(TestSite {
            path: path.to_owned(),
            ..TestSite::default()
        });
        let state = AppState {
            telemetry_path: path.into(),
            site: Arc::clone(&site) as Arc<dyn Site>,
        };
        (state, site)
    }

    const EXPOSITION: &[u8] = b"nsexporter_up 1\n";

    /// Publishes `text` as the site's metrics.
    fn publish(site: &TestSite, text: &[u8]) {
        *site.text.lock().unwrap() = Some(Bytes::copy_from_slice(text));
    }

    fn request(method: &Method, path: &str, accept_encoding: Option<&str>) -> Request<()> {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(value) = accept_encoding {
            req = req.header(ACCEPT_ENCODING, value);
        }
        req.body(()).unwrap()
    }

    fn get(state: &AppState, path: &str) -> Resp {
        handle(state, &request(&Method::GET, path, None))
    }

    fn header(r: &Resp, name: hyper::header::HeaderName) -> Option<&str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    fn body(r: Resp) -> Bytes {
        // Every body is ready at once (bytes, or inflated as asked): no runtime needed.
        let mut collect = std::pin::pin!(r.into_body().collect());
        match collect
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(collected)) => collected.to_bytes(),
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => panic!("a body was not ready"),
        }
    }

    /// The body's frames, polled one at a time as hyper polls them.
    fn frames(r: Resp) -> Vec<Bytes> {
        use hyper::body::Body as _;
        let mut body = r.into_body();
        let mut frames = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let left = body.size_hint().exact();
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let data = frame.into_data().expect("data frames only");
                    assert_eq!(
                        left,
                        Some(body.size_hint().exact().unwrap() + data.len() as u64)
                    );
                    frames.push(data);
                }
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("a body was not ready"),
            }
            if body.is_end_stream() {
                assert!(matches!(
                    Pin::new(&mut body).poll_frame(&mut cx),
                    Poll::Ready(None)
                ));
                break;
            }
        }
        frames
    }

    #[test]
    fn unknown_paths_are_404_for_any_method() {
        let (state, site) = state("/metrics");
        publish(&site, EXPOSITION);
        for method in [Method::GET, Method::HEAD, Method::POST, Method::DELETE] {
            for path in [
                "/nope",
                "/metrics/",
                "/metricsx",
                "/healthz/x",
                "//",
                "/index.html",
            ] {
                let r = handle(&state, &request(&method, path, None));
                assert_eq!(r.status(), StatusCode::NOT_FOUND, "{method} {path}");
                assert_eq!(header(&r, ALLOW), None, "{method} {path}");
            }
        }
    }

    #[test]
    fn other_methods_are_405_with_allow() {
        let (state, _site) = state("/metrics");
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            for path in ["/", "/metrics", "/healthz", "/readyz"] {
                let r = handle(&state, &request(&method, path, None));
                assert_eq!(
                    r.status(),
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}"
                );
                assert_eq!(header(&r, ALLOW), Some("GET, HEAD"), "{method} {path}");
            }
        }
    }

    #[test]
    fn head_is_answered_as_get() {
        let (state, site) = state("/metrics");
        let paths = ["/", "/metrics", "/healthz", "/readyz", "/nope"];
        let compare = |state: &AppState| {
            for path in paths {
                for gzip in [None, Some("gzip")] {
                    let get = handle(state, &request(&Method::GET, path, gzip));
                    let head = handle(state, &request(&Method::HEAD, path, gzip));
                    assert_eq!(head.status(), get.status(), "{path} {gzip:?}");
                    assert_eq!(head.headers(), get.headers(), "{path} {gzip:?}");
                }
            }
        };
        *site.healthy.lock().unwrap() = Some("the scan loop has stopped".into());
        *site.not_ready.lock().unwrap() = Some("no scan has succeeded yet".into());
        compare(&state);
        *site.healthy.lock().unwrap() = None;
        *site.not_ready.lock().unwrap() = None;
        publish(&site, EXPOSITION);
        compare(&state);
    }

    #[test]
    fn metrics_are_503_until_published_then_negotiate_gzip() {
        let (state, site) = state("/metrics");
        let r = get(&state, "/metrics");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "no scan has completed yet\n");

        publish(&site, EXPOSITION);
        // (Accept-Encoding, gzipped)
        let cases = [
            (None, false),
            (Some("identity"), false),
            (Some("gzip"), true),
            (Some("deflate, gzip;q=0.5"), true),
            (Some("*"), true),
            (Some("gzip;q=0"), false),
        ];
        for (accept, gzipped) in cases {
            let r = handle(&state, &request(&Method::GET, "/metrics", accept));
            assert_eq!(r.status(), StatusCode::OK, "{accept:?}");
            assert_eq!(header(&r, CONTENT_TYPE), Some(METRICS_CONTENT_TYPE));
            assert_eq!(header(&r, VARY), Some("Accept-Encoding"), "{accept:?}");
            let encoding = header(&r, CONTENT_ENCODING).map(str::to_owned);
            let length = header(&r, CONTENT_LENGTH).map(str::to_owned);
            if gzipped {
                let want = gzip_of(EXPOSITION);
                assert_eq!(encoding.as_deref(), Some("gzip"), "{accept:?}");
                assert_eq!(body(r), want, "{accept:?}");
                assert_eq!(length, Some(want.len().to_string()), "{accept:?}");
            } else {
                assert_eq!(encoding, None, "{accept:?}");
                assert_eq!(body(r), EXPOSITION, "{accept:?}");
                assert_eq!(length, Some(EXPOSITION.len().to_string()), "{accept:?}");
            }
        }
    }

    /// A plain scrape is the text inflated as hyper asks for it: frames of at most 64 KiB,
    /// each ready at once, whose lengths sum to the Content-Length, the stored text length.
    #[test]
    fn a_plain_scrape_is_sent_in_frames_of_at_most_64_kib() {
        let (state, site) = state("/metrics");
        let text: Vec<u8> = (0..30_000)
            .flat_map(|i| format!("nsexporter_x{{inode=\"{i}\"}} {}\n", i % 9).into_bytes())
            .collect();
        publish(&site, &text);
        let plain = get(&state, "/metrics");
        let length: usize = header(&plain, CONTENT_LENGTH).unwrap().parse().unwrap();
        assert_eq!(length, text.len());
        let sent = frames(plain);
        assert!(sent.iter().all(|f| !f.is_empty() && f.len() <= PLAIN_FRAME));
        assert_eq!(sent.len(), text.len().div_ceil(PLAIN_FRAME));
        assert_eq!(sent.iter().map(Bytes::len).sum::<usize>(), length);
        assert_eq!(sent.concat(), text);
        // A gzip scrape is the gzip, one frame.
        let gz = handle(&state, &request(&Method::GET, "/metrics", Some("gzip")));
        let length: usize = header(&gz, CONTENT_LENGTH).unwrap().parse().unwrap();
        assert_eq!(length, gzip_of(&text).len());
        assert_eq!(frames(gz), vec![gzip_of(&text)]);
    }

    /// The probes answer as the site says: 200 with `ok` or `ready`, else 503 with its reason.
    #[test]
    fn healthz_and_readyz_answer_as_the_site_says() {
        let (state, site) = state("/metrics");
        assert_eq!(body(get(&state, "/healthz")), "ok\n");
        assert_eq!(body(get(&state, "/readyz")), "ready\n");
        *site.healthy.lock().unwrap() = Some("the scan loop has stopped".into());
        *site.not_ready.lock().unwrap() = Some("no scan has succeeded yet".into());
        for (path, why) in [
            ("/healthz", "the scan loop has stopped\n"),
            ("/readyz", "no scan has succeeded yet\n"),
        ] {
            let r = get(&state, path);
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
            assert_eq!(header(&r, CONTENT_TYPE), Some("text/plain; charset=utf-8"));
            assert_eq!(body(r), why, "{path}");
        }
    }

    #[test]
    fn a_custom_telemetry_path_replaces_metrics() {
        let (state, site) = state("/custom/path");
        publish(&site, EXPOSITION);
        let r = get(&state, "/custom/path");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r), EXPOSITION);
        assert_eq!(get(&state, "/metrics").status(), StatusCode::NOT_FOUND);
        let landing = get(&state, "/");
        assert_eq!(landing.status(), StatusCode::OK);
        assert_eq!(
            header(&landing, CONTENT_TYPE),
            Some("text/html; charset=utf-8")
        );
        let html = String::from_utf8(body(landing).to_vec()).unwrap();
        assert!(
            html.contains(r#"<a href="/custom/path">/custom/path</a>"#),
            "{html}"
        );
    }

    #[test]
    fn scrapes_beyond_max_requests_are_503_until_one_is_answered() {
        let (state, site) = state("/metrics");
        publish(&site, EXPOSITION);
        let requests = cap(1);
        let scrape = || {
            respond(
                &state,
                requests.as_ref(),
                &request(&Method::GET, "/metrics", None),
            )
        };
        let first = scrape();
        assert_eq!(first.status(), StatusCode::OK);
        let refused = scrape();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Health probes are not counted, and are never refused for scrapes.
        let health = &request(&Method::GET, "/healthz", None);
        assert_eq!(
            respond(&state, requests.as_ref(), health).status(),
            StatusCode::OK
        );
        // The permit is held by the body, until hyper drops it.
        drop(first);
        assert_eq!(scrape().status(), StatusCode::OK);
        // 0: no limit.
        let many: Vec<Answer> = (0..100)
            .map(|_| {
                respond(
                    &state,
                    cap(0).as_ref(),
                    &request(&Method::GET, "/metrics", None),
                )
            })
            .collect();
        assert!(many.iter().all(|a| a.status() == StatusCode::OK));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, GZIP;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip("gzipx"));
        assert!(!accepts_gzip(""));
    }
}

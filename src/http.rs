//! HTTP: `/metrics` from the last published exposition, `/healthz`, `/readyz` and a landing
//! page, on hyper 1 over tokio.
//!
//! A scrape never triggers or waits for a scan: it clones the bytes encoded after the last one.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::health::Health;
use crate::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Exposition};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub telemetry_path: Arc<str>,
    pub published: watch::Receiver<Option<Arc<Exposition>>>,
    pub health: Arc<Health>,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
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
    let published = state.published.borrow().clone();
    match path {
        "/healthz" => match state.health.check() {
            Ok(()) => text(StatusCode::OK, "ok\n"),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        },
        "/readyz" => match state.health.ready() {
            true => text(StatusCode::OK, "ready\n"),
            false => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no scan has succeeded yet\n",
            ),
        },
        p if p == &*state.telemetry_path => match published {
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no scan has completed yet\n",
            ),
            Some(p) => {
                let gzip = req
                    .headers()
                    .get(ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(accepts_gzip);
                let body = if gzip { p.gzip.clone() } else { p.text.clone() };
                let mut r = Response::new(Full::new(body));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
                h.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
                if gzip {
                    h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
                r
            }
        },
        _ => {
            let html = format!(
                "<!DOCTYPE html>\n<html><head><title>nsexporter</title></head><body>\n\
<h1>nsexporter</h1>\n<p>Linux namespaces as Prometheus metrics.</p>\n\
<ul><li><a href=\"{0}\">{0}</a></li><li><a href=\"/healthz\">/healthz</a></li>\
<li><a href=\"/readyz\">/readyz</a></li></ul>\n</body></html>\n",
                state.telemetry_path
            );
            let mut r = text(StatusCode::OK, html);
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    }
}

/// Serves until `shutdown` resolves, then lets open connections finish their request.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut accept_failing = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => {
                        accept_failing = false;
                        a
                    }
                    Err(e) => {
                        // EMFILE and the like persist while the listener stays readable:
                        // retrying at once spins and floods the log (axum sleeps too). Said
                        // once per run of failures.
                        if !std::mem::replace(&mut accept_failing, true) {
                            tracing::warn!(error = %e, "accept failed; retrying every second");
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req: Request<Incoming>| {
                    let resp = handle(&state, &req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5s; closing them");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicI32;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;

    /// State with the telemetry path `path`, no exposition yet and no scan yet, and the sender
    /// that publishes expositions to it.
    fn state(path: &str) -> (AppState, watch::Sender<Option<Arc<Exposition>>>) {
        let (publish, published) = watch::channel(None);
        let health = Health::new(Duration::from_secs(15), Arc::new(AtomicI32::new(0)));
        let state = AppState {
            telemetry_path: path.into(),
            published,
            health: Arc::new(health),
        };
        (state, publish)
    }

    fn exposition() -> Arc<Exposition> {
        Arc::new(Exposition {
            text: Bytes::from_static(b"nsexporter_up 1\n"),
            gzip: Bytes::from_static(b"\x1f\x8b gzipped"),
        })
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
        // A `Full` body is ready at once: no runtime needed to collect it.
        let mut collect = std::pin::pin!(r.into_body().collect());
        match collect
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(collected)) => collected.to_bytes(),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => panic!("a Full body was not ready"),
        }
    }

    #[test]
    fn unknown_paths_are_404_for_any_method() {
        let (state, publish) = state("/metrics");
        publish.send_replace(Some(exposition()));
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
        let (state, _publish) = state("/metrics");
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
        let (state, publish) = state("/metrics");
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
        compare(&state);
        state.health.scan_started();
        state.health.scan_finished(Ok(()));
        publish.send_replace(Some(exposition()));
        compare(&state);
    }

    #[test]
    fn metrics_are_503_until_published_then_negotiate_gzip() {
        let (state, publish) = state("/metrics");
        let r = get(&state, "/metrics");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "no scan has completed yet\n");

        publish.send_replace(Some(exposition()));
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
            let want = exposition();
            if gzipped {
                assert_eq!(encoding.as_deref(), Some("gzip"), "{accept:?}");
                assert_eq!(body(r), want.gzip, "{accept:?}");
            } else {
                assert_eq!(encoding, None, "{accept:?}");
                assert_eq!(body(r), want.text, "{accept:?}");
            }
        }
    }

    #[test]
    fn healthz_and_readyz_follow_the_scan_loop() {
        let (state, _publish) = state("/metrics");
        let status = |path| get(&state, path).status();
        // Within the deadline of the start, healthy; not ready before a scan has succeeded.
        assert_eq!(status("/healthz"), StatusCode::OK);
        let r = get(&state, "/readyz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "no scan has succeeded yet\n");
        state.health.scan_started();
        state
            .health
            .scan_finished(Err("cannot list the procfs".into()));
        assert_eq!(status("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        state.health.scan_started();
        state.health.scan_finished(Ok(()));
        assert_eq!(body(get(&state, "/healthz")), "ok\n");
        assert_eq!(body(get(&state, "/readyz")), "ready\n");
        // Ready stays true once a scan has succeeded; healthy does not.
        state.health.stopped();
        let r = get(&state, "/healthz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body(r), "the scan loop has stopped\n");
        assert_eq!(status("/readyz"), StatusCode::OK);
    }

    #[test]
    fn a_custom_telemetry_path_replaces_metrics() {
        let (state, publish) = state("/custom/path");
        publish.send_replace(Some(exposition()));
        let r = get(&state, "/custom/path");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(body(r), exposition().text);
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

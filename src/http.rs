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

/// Routes one request. HEAD is answered as GET without a body (hyper drops it).
pub fn handle(state: &AppState, req: &Request<Incoming>) -> Resp {
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
    use super::accepts_gzip;

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

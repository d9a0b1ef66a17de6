//! The metrics endpoint's HTTP, served by hyper: one request per connection (no
//! keep-alive), its head read within a deadline (hyper's header read timeout, which a
//! client sending a byte at a time does not extend) and a size bound, the whole
//! connection within another; `GET /metrics` (and `HEAD`) answered, everything else
//! refused with the right status (hyper itself answers a malformed request 400 and an
//! oversized head 431).
use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    header::{ALLOW, CONTENT_TYPE, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE as PROMETHEUS_TEXT;
use tokio::{
    net::TcpStream,
    sync::{mpsc, oneshot},
    time::timeout,
};
use tracing::debug;

use crate::api::{Metrics, Request as ApiRequest, Response as ApiResponse, server::Call};

/// Longest request head (request line and headers) read: hyper's smallest buffer.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its whole request head.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The daemon's main loop has this long to give a snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// And the whole exchange this long, however slowly the client takes its answer.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) const PATH: &str = "/metrics";

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `GET` or `HEAD /metrics` (hyper leaves out a HEAD answer's body).
    Metrics,
    /// `/metrics` with another method.
    MethodNotAllowed,
    NotFound,
}

/// The route of a request by its method and path (the query is not part of it).
pub(super) fn route(method: &Method, path: &str) -> Route {
    match (method, path) {
        (&Method::GET | &Method::HEAD, PATH) => Route::Metrics,
        (_, PATH) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// One snapshot from the daemon's main loop.
async fn snapshot(calls: &mpsc::Sender<Call>) -> Option<Metrics> {
    let ask = async {
        let (tx, rx) = oneshot::channel();
        calls.send((ApiRequest::Metrics, tx)).await.ok()?;
        match rx.await.ok()? {
            ApiResponse::Metrics(m) => Some(*m),
            _ => None,
        }
    };
    timeout(SNAPSHOT_TIMEOUT, ask).await.ok().flatten()
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    calls: mpsc::Sender<Call>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match route(req.method(), req.uri().path()) {
        Route::NotFound => text(StatusCode::NOT_FOUND, "only /metrics is served here"),
        Route::MethodNotAllowed => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        Route::Metrics => match snapshot(&calls).await.map(|m| super::render(&m)) {
            Some(Ok(body)) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                r.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
                r
            }
            Some(Err(e)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot encode: {e}"),
            ),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the daemon did not give a snapshot in time",
            ),
        },
    })
}

/// Serve one connection: one request, one answer, closed; a client that does not send
/// its head within `READ_TIMEOUT`, or is not done within `CONNECTION_TIMEOUT`, is cut.
pub(super) async fn connection(stream: TcpStream, calls: mpsc::Sender<Call>) {
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .keep_alive(false)
        // `Content-Type`, as scrapers and the tests have always read it.
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| answer(req, calls.clone())),
        );
    match timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(error = %e, "metrics connection ended"),
        Err(_) => debug!("metrics client took too long; closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let cases = [
            (Method::GET, "/metrics", Route::Metrics),
            (Method::HEAD, "/metrics", Route::Metrics),
            (Method::POST, "/metrics", Route::MethodNotAllowed),
            (Method::GET, "/", Route::NotFound),
            (Method::GET, "/metricsx", Route::NotFound),
            (Method::DELETE, "/other", Route::NotFound),
        ];
        for (method, path, want) in cases {
            assert_eq!(route(&method, path), want, "{method} {path}");
        }
    }
}

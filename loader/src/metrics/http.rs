//! A minimal HTTP/1.1 responder: one request per connection, its head read within a
//! deadline and a size bound, `GET /metrics` (and `HEAD`) answered, everything else
//! refused with the right status.
use std::time::Duration;

use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::{mpsc, oneshot},
    time::timeout,
};
use tracing::debug;

use crate::api::{Metrics, Request, Response, server::Call};

/// Longest request head (request line and headers) read.
const MAX_HEAD: usize = 8 * 1024;
/// A client has this long to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// And this long to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The daemon's main loop has this long to give a snapshot.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

pub const PATH: &str = "/metrics";

/// Why a request head was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum HeadError {
    #[error("request head longer than {max} bytes")]
    TooLarge { max: usize },
    #[error("the client closed the connection before its request was complete")]
    Closed,
    #[error("malformed request line `{line}`")]
    Malformed { line: String },
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `GET /metrics`; `HEAD` when `body` is false.
    Metrics {
        body: bool,
    },
    /// `/metrics` with another method.
    MethodNotAllowed,
    NotFound,
}

/// The route of a request line `METHOD TARGET HTTP/1.x`; the query is ignored.
pub(super) fn route(line: &str) -> Result<Route, HeadError> {
    let malformed = || HeadError::Malformed {
        line: line.chars().take(80).collect(),
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(malformed());
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Ok(match (method, path) {
        ("GET", PATH) => Route::Metrics { body: true },
        ("HEAD", PATH) => Route::Metrics { body: false },
        (_, PATH) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    })
}

/// Where a request head ends in `buf` (past its empty line), if it does yet.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    crlf.into_iter().chain(lf).min()
}

/// Read a request head, at most `MAX_HEAD` bytes; what follows it (a body) is ignored.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| {
            debug!(error = %e, "metrics request read failed");
            HeadError::Closed
        })?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge { max: MAX_HEAD });
        }
    }
}

/// An answer: status line, content type, body; `body` false for HEAD (length kept).
struct Answer {
    status: &'static str,
    content_type: &'static str,
    extra: &'static str,
    body: String,
    send_body: bool,
}

impl Answer {
    fn text(status: &'static str, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            extra: "",
            body: format!("{body}\n"),
            send_body: true,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        if self.send_body {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// One snapshot from the daemon's main loop.
async fn snapshot(calls: &mpsc::Sender<Call>) -> Option<Metrics> {
    let ask = async {
        let (tx, rx) = oneshot::channel();
        calls.send((Request::Metrics, tx)).await.ok()?;
        match rx.await.ok()? {
            Response::Metrics(m) => Some(*m),
            _ => None,
        }
    };
    timeout(SNAPSHOT_TIMEOUT, ask).await.ok().flatten()
}

async fn answer(head: Result<Vec<u8>, HeadError>, calls: &mpsc::Sender<Call>) -> Option<Answer> {
    let head = match head {
        Ok(h) => h,
        Err(HeadError::Closed) => return None,
        Err(e @ HeadError::TooLarge { .. }) => {
            return Some(Answer::text(
                "431 Request Header Fields Too Large",
                &e.to_string(),
            ));
        }
        Err(e @ HeadError::Malformed { .. }) => {
            return Some(Answer::text("400 Bad Request", &e.to_string()));
        }
    };
    let text = String::from_utf8_lossy(&head);
    let line = text.lines().next().unwrap_or_default().trim_end();
    let route = match route(line) {
        Ok(r) => r,
        Err(e) => return Some(Answer::text("400 Bad Request", &e.to_string())),
    };
    Some(match route {
        Route::NotFound => Answer::text("404 Not Found", "only /metrics is served here"),
        Route::MethodNotAllowed => Answer {
            extra: "Allow: GET, HEAD\r\n",
            ..Answer::text("405 Method Not Allowed", "use GET")
        },
        Route::Metrics { body } => match snapshot(calls).await.map(|m| super::render(&m)) {
            Some(Ok(text)) => Answer {
                status: "200 OK",
                content_type: CONTENT_TYPE,
                extra: "",
                body: text,
                send_body: body,
            },
            Some(Err(e)) => {
                Answer::text("500 Internal Server Error", &format!("cannot encode: {e}"))
            }
            None => Answer::text(
                "503 Service Unavailable",
                "the daemon did not give a snapshot in time",
            ),
        },
    })
}

/// Serve one connection: one request, one answer, closed.
pub(super) async fn connection(mut stream: TcpStream, calls: &mpsc::Sender<Call>) {
    let head = timeout(READ_TIMEOUT, read_head(&mut stream))
        .await
        .unwrap_or(Err(HeadError::Closed));
    let Some(answer) = answer(head, calls).await else {
        debug!("metrics client sent no complete request in time; closed");
        return;
    };
    match timeout(WRITE_TIMEOUT, stream.write_all(&answer.bytes())).await {
        Ok(Ok(())) => {
            let _ = timeout(WRITE_TIMEOUT, stream.shutdown()).await;
        }
        Ok(Err(e)) => debug!(error = %e, "metrics answer write failed"),
        Err(_) => debug!("metrics client did not take its answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let cases = [
            ("GET /metrics HTTP/1.1", Ok(Route::Metrics { body: true })),
            (
                "GET /metrics?x=1 HTTP/1.0",
                Ok(Route::Metrics { body: true }),
            ),
            ("HEAD /metrics HTTP/1.1", Ok(Route::Metrics { body: false })),
            ("POST /metrics HTTP/1.1", Ok(Route::MethodNotAllowed)),
            ("GET / HTTP/1.1", Ok(Route::NotFound)),
            ("GET /metricsx HTTP/1.1", Ok(Route::NotFound)),
            ("DELETE /other HTTP/1.1", Ok(Route::NotFound)),
        ];
        for (line, want) in cases {
            assert_eq!(route(line), want, "{line}");
        }
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET metrics HTTP/1.1",
            "GET /metrics HTTP/2",
            "GET  /metrics HTTP/1.1",
            "GET /metrics HTTP/1.1 extra",
        ] {
            assert!(
                matches!(route(bad), Err(HeadError::Malformed { .. })),
                "`{bad}` is malformed"
            );
        }
    }

    #[test]
    fn a_head_ends_at_its_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}

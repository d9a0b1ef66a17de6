//! The daemon's side of the control API: accepts connections and forwards each request
//! to the daemon's main loop, which owns all state.
use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{
        UnixListener, UnixStream,
        unix::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

use super::{
    Request, Response,
    monitor::{Filter, Record},
};

/// Longest request line accepted; anything longer is answered with an error.
const MAX_REQUEST: u64 = 64 * 1024;

/// Events a monitor client may have waiting before it counts as behind.
pub const CLIENT_QUEUE: usize = 4096;

pub type Call = (Request, oneshot::Sender<Response>);

/// A monitor client, handed to the daemon's monitor hub: its filter, the datapath mask
/// it needs (`Filter::mask`, checked here) and where its records go.
pub struct Subscriber {
    pub filter: Filter,
    pub mask: u64,
    pub records: mpsc::Sender<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on `{path}`: {source}")]
    Listen { path: PathBuf, source: io::Error },
}

/// Bind the control socket (root-only), replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let err = |source| ServerError::Listen {
        path: path.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(err)?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Accept connections forever, passing requests to `calls` and monitor clients to
/// `monitors`.
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::Sender<Call>,
    monitors: mpsc::Sender<Subscriber>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, calls.clone(), monitors.clone()));
            }
            Err(e) => warn!(error = %e, "control socket accept failed"),
        }
    }
}

async fn connection(
    stream: UnixStream,
    calls: mpsc::Sender<Call>,
    monitors: mpsc::Sender<Subscriber>,
) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut read = BufReader::new(read).take(MAX_REQUEST);
    let read_line = read.read_line(&mut line).await;
    let response = match read_line {
        Err(e) => {
            debug!(error = %e, "control connection read failed");
            return;
        }
        // Connected and gone without a word (a readiness probe): nothing to answer.
        Ok(0) => return,
        Ok(_) if !line.ends_with('\n') => Response::Error {
            message: format!("request is not one JSON line of at most {MAX_REQUEST} bytes"),
        },
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("invalid request: {e}"),
            },
            Ok(Request::Monitor { filter }) => match filter.mask() {
                Ok(mask) => return monitor(filter, mask, read.into_inner(), write, monitors).await,
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            },
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if calls.send((req, tx)).await.is_err() {
                    return;
                }
                rx.await.unwrap_or(Response::Error {
                    message: "the daemon is shutting down".into(),
                })
            }
        },
    };
    if let Err(e) = write.write_all(&line_of(&response)).await {
        debug!(error = %e, "control connection write failed");
    }
}

/// `value` as one JSON line.
fn line_of<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"message\":\"cannot encode reply: {e}\"}}").into_bytes()
    });
    out.push(b'\n');
    out
}

/// A monitor client: `ok`, then its records, one line each, until it hangs up (or the
/// daemon's monitor stops).
async fn monitor(
    filter: Filter,
    mask: u64,
    mut read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
    monitors: mpsc::Sender<Subscriber>,
) {
    let (records, mut rx) = mpsc::channel(CLIENT_QUEUE);
    let joined = monitors.send(Subscriber {
        filter,
        mask,
        records,
    });
    if joined.await.is_err() {
        let gone = Response::Error {
            message: "the daemon's monitor is not running".into(),
        };
        let _unused: Result<_, _> = write.write_all(&line_of(&gone)).await;
        return;
    }
    if write.write_all(&line_of(&Response::Ok)).await.is_err() {
        return;
    }
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            record = rx.recv() => {
                let Some(record) = record else { return };
                if write.write_all(&line_of(&record)).await.is_err() {
                    return;
                }
            }
            // The client sends nothing more: a read returns only when it hangs up.
            n = read.read(&mut sink) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
            }
        }
    }
}

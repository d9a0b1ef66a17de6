//! The daemon's side of the control API: accepts connections and forwards each request
//! to the daemon's main loop, which owns all state.
use std::{
    fs, io,
    os::unix::fs::{DirBuilderExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};
use tracing::{debug, warn};

use super::{Request, Response};

/// Longest request line accepted; anything longer is answered with an error.
const MAX_REQUEST: u64 = 64 * 1024;

pub type Call = (Request, oneshot::Sender<Response>);

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

/// Accept connections forever, passing requests to `calls`.
pub async fn serve(listener: UnixListener, calls: mpsc::Sender<Call>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, calls.clone()));
            }
            Err(e) => warn!(error = %e, "control socket accept failed"),
        }
    }
}

async fn connection(stream: UnixStream, calls: mpsc::Sender<Call>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read)
        .take(MAX_REQUEST)
        .read_line(&mut line)
        .await;
    let response = match read {
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
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|e| {
        format!("{{\"result\":\"error\",\"message\":\"cannot encode reply: {e}\"}}").into_bytes()
    });
    out.push(b'\n');
    if let Err(e) = write.write_all(&out).await {
        debug!(error = %e, "control connection write failed");
    }
}

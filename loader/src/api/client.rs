//! The CLI's side of the control API.
use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the bpfnet daemon at `{path}`: {source} (is `bpfnet daemon` running?)")]
    Connect { path: PathBuf, source: io::Error },
    #[error("lost the connection to the bpfnet daemon: {source}")]
    Io { source: io::Error },
    #[error("the bpfnet daemon sent a reply this CLI does not understand: {source}")]
    Reply { source: serde_json::Error },
    #[error("{message}")]
    Daemon { message: String },
}

/// Send one request and wait for its reply; a daemon-side error becomes `Daemon`.
pub fn call(socket: &Path, req: &Request) -> Result<Response, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.into(),
        source,
    })?;
    let io = |source| ClientError::Io { source };
    stream
        .set_read_timeout(Some(Duration::from_mins(1)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(req).map_err(|e| io(io::Error::other(e)))?;
    line.push(b'\n');
    (&stream).write_all(&line).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io)?;
    if reply.is_empty() {
        return Err(io(io::ErrorKind::UnexpectedEof.into()));
    }
    match serde_json::from_str(&reply).map_err(|source| ClientError::Reply { source })? {
        Response::Error { message } => Err(ClientError::Daemon { message }),
        r => Ok(r),
    }
}

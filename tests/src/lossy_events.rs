//! A Docker API proxy that can lose events: between bpfnet and a real dockerd it passes
//! every request and answer unchanged, except that while losing it swallows the event
//! stream's chunks, as a congested engine drops a slow subscriber's events. What a
//! level-triggered daemon must heal.
use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
};

pub struct LossyEvents {
    socket: PathBuf,
    losing: Arc<AtomicBool>,
    swallowed: Arc<AtomicU64>,
}

impl LossyEvents {
    /// Listen on `socket`, forwarding to the engine at `upstream`.
    pub fn start(upstream: &Path, socket: PathBuf) -> Self {
        let _unused: Result<_, _> = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).expect("bind the proxy socket");
        let p = Self {
            socket,
            losing: Arc::default(),
            swallowed: Arc::default(),
        };
        let (upstream, losing, swallowed) = (
            upstream.to_path_buf(),
            p.losing.clone(),
            p.swallowed.clone(),
        );
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, losing, swallowed) =
                    (upstream.clone(), losing.clone(), swallowed.clone());
                thread::spawn(move || {
                    let _unused: Result<_, _> = serve(client, &upstream, &losing, &swallowed);
                });
            }
        });
        p
    }

    /// `DOCKER_HOST` for a client of the proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn set_losing(&self, on: bool) {
        self.losing.store(on, Ordering::SeqCst);
    }

    /// Events swallowed so far.
    pub fn swallowed(&self) -> u64 {
        self.swallowed.load(Ordering::SeqCst)
    }
}

/// An HTTP/1.1 message head, through the blank line.
fn read_head(r: &mut impl io::BufRead) -> io::Result<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(head);
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Ok(head);
        }
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_ascii_lowercase())
    })
}

fn copy_exact(r: &mut impl io::Read, w: &mut impl io::Write, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), w)?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Requests one after another on a kept-alive connection: each request goes up, its
/// answer comes back, chunk by chunk; an event chunk is dropped while losing.
fn serve(
    client: UnixStream,
    upstream: &Path,
    losing: &AtomicBool,
    swallowed: &AtomicU64,
) -> io::Result<()> {
    let up = UnixStream::connect(upstream)?;
    let (mut from_client, mut to_client) = (BufReader::new(client.try_clone()?), client);
    let (mut from_up, mut to_up) = (BufReader::new(up.try_clone()?), up);
    loop {
        let request = read_head(&mut from_client)?;
        if request.is_empty() {
            return Ok(());
        }
        let events = request
            .lines()
            .next()
            .is_some_and(|l| l.contains("/events"));
        to_up.write_all(request.as_bytes())?;
        if let Some(n) = header(&request, "content-length").and_then(|v| v.parse().ok()) {
            copy_exact(&mut from_client, &mut to_up, n)?;
        }
        let answer = read_head(&mut from_up)?;
        if answer.is_empty() {
            return Ok(());
        }
        to_client.write_all(answer.as_bytes())?;
        if header(&answer, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size_line = String::new();
                from_up.read_line(&mut size_line)?;
                let size =
                    u64::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                        .map_err(io::Error::other)?;
                let mut chunk = Vec::new();
                (&mut from_up).take(size + 2).read_to_end(&mut chunk)?;
                if events && size > 0 && losing.load(Ordering::SeqCst) {
                    swallowed.fetch_add(1, Ordering::SeqCst);
                } else {
                    to_client.write_all(size_line.as_bytes())?;
                    to_client.write_all(&chunk)?;
                    to_client.flush()?;
                }
                if size == 0 {
                    break;
                }
            }
        } else if let Some(n) = header(&answer, "content-length").and_then(|v| v.parse().ok()) {
            copy_exact(&mut from_up, &mut to_client, n)?;
        } else if !answer.starts_with("HTTP/1.1 204") && !answer.starts_with("HTTP/1.1 304") {
            // Delimited by the end of the connection.
            io::copy(&mut from_up, &mut to_client)?;
            return Ok(());
        }
    }
}

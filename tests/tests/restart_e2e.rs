//! A daemon crash and restart: pinned maps and links keep the datapath running, the
//! new daemon swaps its programs in atomically, and the desired state comes back.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

use bpfnet_tests::{
    daemon::cli_ok,
    echo::{EchoServer, tcp_connect, tcp_roundtrip, udp_roundtrip},
    require_root,
    topo::{SERVER_IP, Topology},
};

const TOTAL: u64 = 48 << 20;
const CHUNK: usize = 64 << 10;
/// Longest a socket call may wait before the transfer counts as cut.
const STALL: Duration = Duration::from_secs(10);

/// Send `msg` on an echo connection and read it back.
fn echo_once(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).expect("send on the egress connection");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .expect("echo on the egress connection");
    assert_eq!(back, msg);
}

fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

#[test]
fn kill_9_and_restart_keeps_a_running_transfer_and_the_state() {
    if !require_root() {
        return;
    }
    let t = Topology::new("rst");
    let daemon = t.start_daemon();
    let _e1 = EchoServer::start(&t.container, 8038);
    let _e2 = EchoServer::start(&t.container, 8039);
    cli_ok(&t.files.socket, &["publish", "8038:172.17.0.4:8038"]);
    cli_ok(
        &t.files.socket,
        &["publish", "9000-9001:172.17.0.4:8038-8039/udp"],
    );
    let before = cli_ok(&t.files.socket, &["ls", "--json"]);
    // A masqueraded connection open across the restart: it only survives if the SNAT
    // state (its source port) does.
    let _srv = EchoServer::start(&t.server, 7000);
    let mut egress = tcp_connect(&t.container, SocketAddr::from((SERVER_IP, 7000)))
        .expect("connect through SNAT");
    let mut prefix = [0u8; 5];
    egress.read_exact(&mut prefix).expect("egress echo prefix");
    echo_once(&mut egress, b"before");

    let stream = tcp_connect(&t.client, Topology::host_addr(8038)).expect("connect through DNAT");
    // Bounded waits everywhere: a datapath that blackholes the flow fails the test in
    // seconds instead of hanging it.
    stream.set_read_timeout(Some(STALL)).expect("read timeout");
    stream
        .set_write_timeout(Some(STALL))
        .expect("write timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let w = thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        let mut off = 0u64;
        while off < TOTAL {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = pattern(off + i as u64);
            }
            writer
                .write_all(&buf)
                .map_err(|e| format!("write at {off}: {e}"))?;
            off += CHUNK as u64;
            thread::sleep(Duration::from_millis(3));
        }
        Ok::<u64, String>(off)
    });
    // What the reader got, as it goes: the measure of traffic flowing with no daemon.
    let received = Arc::new(AtomicU64::new(0));
    let progress = received.clone();
    let mut reader = stream;
    let r = thread::spawn(move || {
        let mut prefix = [0u8; 5];
        reader
            .read_exact(&mut prefix)
            .map_err(|e| format!("echo prefix: {e}"))?;
        assert_eq!(&prefix, b"8038:");
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < TOTAL {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("read after {got} of {TOTAL} bytes: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed after {got} of {TOTAL} bytes"));
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b,
                    pattern(got + i as u64),
                    "corrupt byte at {}",
                    got + i as u64
                );
            }
            got += n as u64;
            progress.store(got, Ordering::Relaxed);
        }
        Ok(got)
    });

    thread::sleep(Duration::from_millis(400));
    daemon.kill9();
    let at_kill = received.load(Ordering::Relaxed);
    assert!(
        at_kill > 0 && at_kill < TOTAL,
        "the transfer should be running when the daemon dies ({at_kill} of {TOTAL} received)"
    );
    thread::sleep(Duration::from_millis(600));
    let at_restart = received.load(Ordering::Relaxed);
    assert!(
        at_restart >= at_kill + (1 << 20),
        "at least 1 MiB should arrive through the datapath with no daemon running \
         ({} bytes did)",
        at_restart - at_kill
    );
    let _daemon = t.start_daemon();

    // The reader first: it ends (by its timeouts) whatever happens to the path.
    assert_eq!(r.join().expect("reader thread"), Ok(TOTAL));
    assert_eq!(w.join().expect("writer thread"), Ok(TOTAL));
    echo_once(&mut egress, b"after the restart");
    let flows = cli_ok(&t.files.socket, &["conntrack", "--json"]);
    assert!(
        flows.contains("\"dst_port\": 7000"),
        "the egress flow is still tracked: {flows}"
    );

    assert_eq!(
        tcp_roundtrip(&t.client, Topology::host_addr(8038), b"new")
            .expect("new TCP connection after restart"),
        b"8038:new"
    );
    assert_eq!(
        udp_roundtrip(&t.client, Topology::host_addr(9001), b"new")
            .expect("UDP range after restart"),
        b"8039:new"
    );
    assert_eq!(
        cli_ok(&t.files.socket, &["ls", "--json"]),
        before,
        "ls after restart"
    );
}

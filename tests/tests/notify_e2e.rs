//! systemd's readiness protocol, as `Type=notify` in packaging/bpfnet.service relies on
//! it: a daemon started with `NOTIFY_SOCKET` sends READY=1 only once its datapath is
//! attached and its control socket answers, and STOPPING=1 when SIGTERM stops it.
use std::{
    io::IoSliceMut, mem::MaybeUninit, os::unix::net::UnixDatagram, path::Path, thread,
    time::Duration,
};

use bpfnet::api::{Listing, Program};
use bpfnet_tests::{
    daemon::{Daemon, cli, with_xdp},
    netns::Netns,
    require_root,
    scratch::Scratch,
    topo::wire_uplink,
    unique, wait_for,
};
use rustix::{
    net::{
        RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg, sockopt::set_socket_passcred,
    },
    process::{Pid, Signal, kill_process},
};

/// One notification and the PID of the process that sent it (the kernel's credentials,
/// which systemd checks against the service's main PID under `NotifyAccess=main`).
fn recv_notification(sock: &UnixDatagram, what: &str) -> (String, Pid) {
    let mut buf = [0u8; 4096];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let n = recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::empty(),
    )
    .unwrap_or_else(|e| panic!("no {what} from the daemon: {e}"))
    .bytes;
    let first = control.drain().next();
    let Some(RecvAncillaryMessage::ScmCredentials(cred)) = first else {
        panic!("{what} came without the sender's credentials (SO_PASSCRED is on)");
    };
    (String::from_utf8_lossy(&buf[..n]).into_owned(), cred.pid)
}

fn passcred(sock: &UnixDatagram) {
    set_socket_passcred(sock, true).expect("SO_PASSCRED");
}

#[test]
fn ready_once_attached_and_answering_stopping_on_sigterm() {
    if !require_root() {
        return;
    }
    let id = unique("ntf");
    let (host, client) = (
        Netns::new(&format!("{id}-host")),
        Netns::new(&format!("{id}-cli")),
    );
    let files = Scratch::new("ntf");
    wire_uplink(&host, &client);
    let notify_path = files.socket.with_file_name("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    passcred(&notify);
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("notify socket timeout");

    // At READY=1 the daemon is asked at once, as systemd lets docker.service start then.
    let socket = files.socket.clone();
    let listener = thread::spawn(move || {
        let (ready, pid) = recv_notification(&notify, "READY=1");
        let ls = cli(&socket, &["ls", "--json"]);
        (notify, ready, pid, ls)
    });
    let mut args = files.daemon_args();
    args.push("--no-docker".into());
    let notify_env = notify_path.display().to_string();
    let _d = Daemon::start_env(
        &host.path(),
        &files.socket,
        &args,
        &[("NOTIFY_SOCKET", &notify_env)],
    );
    let (notify, ready, pid, ls) = listener.join().expect("the notification listener");

    assert!(
        ready.lines().any(|l| l == "READY=1") && ready.lines().any(|l| l.starts_with("STATUS=")),
        "the first notification should be READY=1 with a STATUS line, got {ready:?}"
    );
    assert!(
        ls.status.success(),
        "`bpfnet ls` right at READY=1 should be answered: {}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let ls: Listing = serde_json::from_slice(&ls.stdout).expect("ls --json prints a listing");
    assert_eq!(
        ls.attached,
        with_xdp(&[("up0", Program::FromUplink)]),
        "at READY=1 the uplink's program is attached"
    );

    kill_process(pid, Signal::TERM)
        .unwrap_or_else(|e| panic!("SIGTERM to the daemon (PID {pid}): {e}"));
    let (stopping, from) = recv_notification(&notify, "STOPPING=1");
    assert!(
        stopping.lines().any(|l| l == "STOPPING=1"),
        "SIGTERM should bring STOPPING=1, got {stopping:?}"
    );
    assert_eq!(from, pid, "STOPPING=1 comes from the daemon that was ready");
    let sock = files.socket.clone();
    wait_for(
        "the daemon to leave after STOPPING=1 (its socket removed)",
        Duration::from_secs(10),
        move || !Path::new(&sock).exists(),
    );
}

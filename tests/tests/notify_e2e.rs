//! systemd's readiness protocol, as `Type=notify` in packaging/bpfnet.service relies on
//! it: a daemon started with `NOTIFY_SOCKET` sends READY=1 only once its datapath is
//! attached and its control socket answers, and STOPPING=1 when SIGTERM stops it.
use std::{
    mem,
    os::{fd::AsRawFd as _, unix::net::UnixDatagram},
    path::Path,
    thread,
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

/// One notification and the PID of the process that sent it (the kernel's credentials,
/// which systemd checks against the service's main PID under `NotifyAccess=main`).
fn recv_notification(sock: &UnixDatagram, what: &str) -> (String, libc::pid_t) {
    let mut buf = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let ucred_len = u32::try_from(size_of::<libc::ucred>()).expect("ucred size");
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(ucred_len) } as usize;
    // u64 words: the control buffer must be aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; all-zero is its empty value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg points at iov and control, both alive and as long as stated.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &raw mut msg, 0) };
    assert!(
        n >= 0,
        "no {what} from the daemon: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR checks the length it reported.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    assert!(
        !cmsg.is_null(),
        "{what} came without credentials (SO_PASSCRED is on)"
    );
    // SAFETY: cmsg is non-null and inside control.
    let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
    assert_eq!(
        (level, kind),
        (libc::SOL_SOCKET, libc::SCM_CREDENTIALS),
        "{what}'s control message should be the sender's credentials"
    );
    // SAFETY: an SCM_CREDENTIALS message carries one ucred; read unaligned to be safe.
    let cred: libc::ucred = unsafe { libc::CMSG_DATA(cmsg).cast::<libc::ucred>().read_unaligned() };
    let len = usize::try_from(n).expect("non-negative length");
    (String::from_utf8_lossy(&buf[..len]).into_owned(), cred.pid)
}

fn passcred(sock: &UnixDatagram) {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with a pointer to an int and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&raw const on).cast(),
            size_of_val(&on) as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_PASSCRED: {}", std::io::Error::last_os_error());
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

    // SAFETY: kill(2) on the PID that sent READY=1, our own child.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM to the daemon (PID {pid})");
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

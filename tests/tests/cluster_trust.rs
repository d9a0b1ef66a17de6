//! A cluster that trusts only its members: etcd over TLS with client certificates and
//! RBAC (made by the test with openssl and etcd's auth API), daemons that join with a
//! good certificate or password and refuse to start with a bad one, fail static when
//! etcd starts refusing them, and node entries believed only when their reservation
//! names them.
use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use bpfnet::{
    api::{NodeListing, RouteKind},
    cluster::{ConflictReason, PASSWORD_ENV},
};
use bpfnet_tests::{
    cluster::{Cluster, Host, etcd_flags},
    daemon::{bin, ls, status},
    echo::{Server, WhoamiServer, tcp_roundtrip},
    etcd::EtcdServer,
    netns::Netns,
    require_root, wait_for,
};

const PORT: u16 = 8080;
const INIT: &[&str] = &[
    "--cidr",
    "10.244.0.0/16",
    "--node-prefix",
    "24",
    "--mode",
    "host-gw",
    "--lease-ttl",
    "3",
];
const PREFIX: &str = "/bpfnet";
/// Where h1 serves its metrics, inside its namespace.
const METRICS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9477);
/// The node users etcd's RBAC knows (each a role of its own keys) and their passwords.
const USERS: &[(&str, &str)] = &[("h1", "pw-h1"), ("h2", "pw-h2"), ("h3", "pw-h3")];

/// `hosts` hosts and a TLS etcd with RBAC on for `USERS`, the config written by root.
fn tls_cluster(tag: &str, hosts: u8) -> (Cluster, Netns, EtcdServer) {
    let mut c = Cluster::new(tag, hosts);
    let (ns, etcd) = c.add_etcd_tls(INIT);
    etcd.enable_rbac(PREFIX, USERS);
    (c, ns, etcd)
}

/// `--etcd-cacert`, `--etcd-cert`, `--etcd-key` for node `name`'s certificate.
fn cert_flags(etcd: &EtcdServer, name: &str) -> Vec<String> {
    etcd_flags(etcd, Some(&etcd.pki().client(name)))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `bpfnet daemon` on `h` with `extra`, expected to exit within 30 s: its exit code and
/// stderr.
fn start_refused(h: &Host, url: &str, extra: &[String], env: &[(&str, &str)]) -> (i32, String) {
    // A host with no daemon: its files are free.
    let mut args = h.daemon_args(&["--etcd", url, "--node-name", "h3"]);
    args.extend(extra.iter().cloned());
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", h.ns.path()))
        .arg(bin())
        .arg("--socket")
        .arg(&h.files.socket)
        .arg("daemon")
        .args(&args)
        .env("BPFNET_LOG", "bpfnet=debug,info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bpfnet daemon starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _unused: Result<_, _> = child.kill();
            let out = child.wait_with_output().expect("its output");
            panic!(
                "bpfnet daemon {extra:?} kept running: it should refuse to start:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("its output");
    eprintln!(
        "refused start {extra:?}: {}",
        error_line(&String::from_utf8_lossy(&out.stderr))
    );
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line of a refused start: the error.
fn error_line(stderr: &str) -> &str {
    stderr.lines().last().unwrap_or_default()
}

/// The names of the live nodes a daemon lists.
fn live_names(h: &Host) -> Vec<String> {
    h.nodes()
        .nodes
        .into_iter()
        .filter(|n| n.alive)
        .map(|n| n.name)
        .collect()
}

/// `(prefix, node)` of each host-gw route in `bpfnet ls`'s `cluster`.
fn host_gw_routes(h: &Host) -> Vec<(String, String)> {
    ls(&h.files.socket)
        .cluster
        .iter()
        .filter(|r| r.kind == RouteKind::HostGw)
        .map(|r| {
            (
                r.prefix.to_string(),
                r.node.map(|n| n.to_string()).unwrap_or_default(),
            )
        })
        .collect()
}

/// `bpfnet_cluster_node_conflicts` as `h`'s daemon serves it at `METRICS`.
fn conflicts_metric(h: &Host) -> f64 {
    let body = h.ns.run(|| {
        let mut s = std::net::TcpStream::connect(METRICS).expect("the metrics port answers");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a read timeout");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .expect("send the request");
        let mut body = String::new();
        let _unused: Result<_, _> = s.read_to_string(&mut body);
        body
    });
    body.lines()
        .find_map(|l| l.strip_prefix("bpfnet_cluster_node_conflicts "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no bpfnet_cluster_node_conflicts in:\n{body}"))
}

/// A container on `h` at the second address of its prefix, serving whoami.
fn add_served_container(h: &mut Host) -> (Ipv4Addr, Server) {
    let (gateway, len) = h.await_prefix();
    let ip = Ipv4Addr::from(u32::from(gateway) + 1);
    let ns = h.add_container(ip, len, gateway);
    (ip, WhoamiServer::start(ns, PORT))
}

/// Whether the first container of `from` gets whoami's answer from `to`, and who it
/// saw.
fn reaches(from: &Host, to: Ipv4Addr) -> Option<String> {
    tcp_roundtrip(&from.containers[0], SocketAddr::from((to, PORT)), b"who")
        .ok()
        .map(|r| WhoamiServer::seen(&r).ip().to_string())
}

#[test]
fn a_tls_etcd_with_rbac_lets_members_in_and_refuses_the_rest_at_start_and_later() {
    if !require_root() {
        return;
    }
    let (mut c, _etcd_ns, mut etcd) = tls_cluster("tls", 3);
    let url = etcd.url();
    let log_file = etcd.pki().dir().join("h1.log");
    // h1 by its certificate (CN h1); h2 by its password, over a certificate whose CN
    // names no user: the password is what lets it in.
    let d1 = c.hosts[0].join_logged(&url, &strs(&cert_flags(&etcd, "h1")), &log_file);
    let password = etcd.pki().write("h2.password", "pw-h2\n");
    let mut h2_args = etcd_flags(&etcd, Some(&etcd.pki().client("nobody")));
    h2_args.extend([
        "--etcd-user".into(),
        "h2".into(),
        "--etcd-password-file".into(),
        password.display().to_string(),
    ]);
    let d2 = c.hosts[1].join(&url, &strs(&h2_args));
    c.hosts[0].await_peers(1);
    c.hosts[1].await_peers(1);
    let (_, s1) = add_served_container(&mut c.hosts[0]);
    let (h2_ip, s2) = add_served_container(&mut c.hosts[1]);
    let (s, _) = status(&c.hosts[0].files.socket);
    assert!(
        !s.warnings.iter().any(|w| w.contains("etcd")),
        "no etcd warning over TLS with a client certificate: {:?}",
        s.warnings
    );

    // Refused at start, exit 2 and one line naming what was refused.
    let h3 = &c.hosts[2];
    let foreign = etcd.pki().foreign_client("h3");
    let (code, err) = start_refused(h3, &url, &etcd_flags(&etcd, Some(&foreign)), &[]);
    assert_eq!(code, 2, "a certificate of another CA: {err}");
    assert!(
        error_line(&err).contains("etcd refused") && error_line(&err).contains("certificate"),
        "a certificate of another CA is named as refused: {err}"
    );
    let mut wrong_ca = cert_flags(&etcd, "h3");
    wrong_ca[1] = etcd.pki().foreign_ca().display().to_string();
    let (code, err) = start_refused(h3, &url, &wrong_ca, &[]);
    assert_eq!(code, 2, "etcd's certificate checked by another CA: {err}");
    assert!(
        error_line(&err).contains("etcd's certificate"),
        "a wrong CA is named: {err}"
    );
    let mut wrong_password = cert_flags(&etcd, "h3");
    wrong_password.extend(["--etcd-user".into(), "h3".into()]);
    let (code, err) = start_refused(h3, &url, &wrong_password, &[(PASSWORD_ENV, "wrong")]);
    assert_eq!(code, 2, "a wrong password: {err}");
    assert!(
        error_line(&err).contains("password"),
        "a wrong password is named: {err}"
    );
    let mut missing = cert_flags(&etcd, "h3");
    missing[3] = "/nonexistent/h3.pem".into();
    let (code, err) = start_refused(h3, &url, &missing, &[]);
    assert_eq!(code, 2, "a missing certificate file: {err}");
    assert!(
        error_line(&err).contains("/nonexistent/h3.pem"),
        "the missing file is named: {err}"
    );

    // etcd starts refusing h1 (its CA revoked): h1 keeps its peer and its route, says
    // etcd is away, and logs the refusal.
    let routes = host_gw_routes(&c.hosts[0]);
    assert_eq!(routes.len(), 1, "h2's prefix routed: {routes:?}");
    etcd.trust(etcd.pki().foreign_ca());
    wait_for("h1 logs etcd's refusal", Duration::from_secs(30), || {
        std::fs::read_to_string(&log_file).is_ok_and(|l| l.contains("etcd refuses this node"))
    });
    wait_for("h1 says etcd is away", Duration::from_secs(10), || {
        !c.hosts[0].nodes().etcd_connected
    });
    assert_eq!(live_names(&c.hosts[0]), ["h2"], "the last-known peer stays");
    assert_eq!(host_gw_routes(&c.hosts[0]), routes, "and its route");
    assert!(
        reaches(&c.hosts[0], h2_ip).is_some(),
        "h1's container still reaches h2's"
    );
    drop((s1, s2, d1, d2));
}

#[test]
fn a_forged_node_entry_is_not_believed_and_a_legitimate_one_is() {
    if !require_root() {
        return;
    }
    let (mut c, etcd_ns, etcd) = tls_cluster("forge", 3);
    let url = etcd.url();
    let mut h1_args = cert_flags(&etcd, "h1");
    h1_args.extend(["--metrics".into(), METRICS.to_string()]);
    let d1 = c.hosts[0].join(&url, &strs(&h1_args));
    let d2 = c.hosts[1].join(&url, &strs(&cert_flags(&etcd, "h2")));
    let (_, s1) = add_served_container(&mut c.hosts[0]);
    let (victim_ip, s2) = add_served_container(&mut c.hosts[1]);
    c.hosts[0].await_peers(1);
    let victim = c.hosts[1]
        .nodes()
        .this
        .expect("h2's subnet")
        .subnet
        .to_string();
    assert!(
        reaches(&c.hosts[0], victim_ip).is_some(),
        "the control: h1's container reaches h2's"
    );

    // h3's identity is a member's: RBAC lets it write its own entry only.
    let h3 = etcd.access_as(&etcd.pki().client("h3"));
    let entry = |subnet: &str| {
        format!(
            r#"{{"subnet":"{subnet}","underlay":"192.0.2.3","mode":"host-gw","vni":1,"last_seen":1}}"#
        )
    };
    let refused = etcd.put_as(
        &h3,
        &format!("{PREFIX}/nodes/h2"),
        &entry(&victim),
        Some(30),
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("permission denied")),
        "RBAC refuses h3 another node's key: {refused:?}"
    );
    // h3 claims h2's prefix in its own entry, towards its own address.
    etcd.put_as(
        &h3,
        &format!("{PREFIX}/nodes/h3"),
        &entry(&victim),
        Some(30),
    )
    .expect("h3 writes its own key");
    wait_for("h1 sees h3's entry", Duration::from_secs(10), || {
        let n = c.hosts[0].nodes();
        n.nodes.iter().any(|p| p.name == "h3") || n.conflicts.iter().any(|p| p.name == "h3")
    });
    assert_eq!(live_names(&c.hosts[0]), ["h2"], "h3 is not a peer");
    assert_eq!(
        host_gw_routes(&c.hosts[0]),
        [(victim.clone(), "192.0.2.2".to_owned())],
        "h2's prefix still goes to h2"
    );
    assert!(
        reaches(&c.hosts[0], victim_ip).is_some(),
        "traffic to h2's prefix still reaches h2's container"
    );
    let conflicts = c.hosts[0].nodes().conflicts;
    assert_eq!(conflicts.len(), 1, "h3 is the one conflict: {conflicts:?}");
    assert_eq!(
        (conflicts[0].name.as_str(), &conflicts[0].reason),
        ("h3", &ConflictReason::ReservedFor { node: "h2".into() }),
        "h2's prefix is reserved for h2: {conflicts:?}"
    );
    assert_eq!(conflicts_metric(&c.hosts[0]), 1.0, "the metric counts it");
    let (s, _) = status(&c.hosts[0].files.socket);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("1 node entries not believed")),
        "status warns: {:?}",
        s.warnings
    );
    // `node ls --etcd` judges the same way, over TLS as root.
    let mut args = vec![
        "node".to_owned(),
        "ls".into(),
        "--json".into(),
        "--etcd".into(),
        url.clone(),
    ];
    args.extend(cert_flags(&etcd, "root"));
    let listed: NodeListing = serde_json::from_str(
        &etcd_ns.output(
            &std::iter::once(bin().display().to_string())
                .chain(args)
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        ),
    )
    .expect("node ls --etcd --json");
    assert_eq!(
        listed
            .networks
            .first()
            .and_then(|n| n.conflicts.first())
            .map(|c| c.name.as_str()),
        Some("h3"),
        "node ls --etcd lists the conflict: {listed:?}"
    );

    // The control: the same identity with its own reservation is believed.
    let own = "10.244.200.0/24";
    etcd.put_as(
        &h3,
        &format!("{PREFIX}/subnets/10.244.200.0-24"),
        r#"{"node":"h3","last_seen":1}"#,
        Some(60),
    )
    .expect("h3 reserves a free prefix");
    etcd.put_as(&h3, &format!("{PREFIX}/nodes/h3"), &entry(own), Some(30))
        .expect("h3 registers it");
    wait_for("h1 believes h3", Duration::from_secs(10), || {
        live_names(&c.hosts[0]) == ["h2", "h3"]
    });
    assert_eq!(c.hosts[0].nodes().conflicts, []);
    assert!(
        host_gw_routes(&c.hosts[0]).contains(&(own.to_owned(), "192.0.2.3".to_owned())),
        "h3's own prefix is routed to it"
    );
    assert_eq!(conflicts_metric(&c.hosts[0]), 0.0, "no conflict left");

    // Only the reservation changes (h3 may write under subnets/: RBAC cannot narrow
    // it): judged again, h3 is a conflict once more.
    etcd.put_as(
        &h3,
        &format!("{PREFIX}/subnets/10.244.200.0-24"),
        r#"{"node":"someone-else","last_seen":1}"#,
        Some(60),
    )
    .expect("h3 rewrites the reservation");
    wait_for("h1 drops h3 again", Duration::from_secs(10), || {
        live_names(&c.hosts[0]) == ["h2"]
    });
    assert!(
        matches!(
            c.hosts[0].nodes().conflicts.first().map(|c| &c.reason),
            Some(ConflictReason::ReservedFor { .. })
        ),
        "a reservation naming another node"
    );
    drop((s1, s2, d1, d2));
}

#[test]
fn status_warns_when_etcd_traffic_is_plain_http() {
    if !require_root() {
        return;
    }
    let mut c = Cluster::new("plain", 1);
    let (_ns, etcd) = c.add_etcd(INIT);
    let d = c.hosts[0].join(&etcd.url(), &[]);
    c.hosts[0].await_prefix();
    let (s, code) = status(&c.hosts[0].files.socket);
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("unauthenticated and unencrypted")),
        "plain http is a warning: {:?}",
        s.warnings
    );
    assert_eq!(code, 1, "a status with warnings exits 1");
    drop(d);
}

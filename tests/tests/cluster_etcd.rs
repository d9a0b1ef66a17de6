//! The cluster control plane against a real etcd (one per test): subnet allocation under
//! contention, reservations kept and reclaimed, peers joining and leaving, fail static
//! while etcd is down, and the config written once.
use std::{
    net::{IpAddr, Ipv4Addr},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use bpfnet::{
    cluster::{
        self, ClusterConfig, ClusterError, ClusterEvent, EtcdAccess, InitOutcome, Ipv4Net,
        JoinOptions, Mode, Node,
    },
    endpoint::Mac,
};
use bpfnet_tests::{etcd::EtcdServer, netns::Netns, unique};
use tokio::{
    sync::{Barrier, mpsc},
    task::JoinHandle,
};

const PREFIX: &str = "/bpfnet-test";
const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Short leases keep the file's run short.
const LEASE_TTL: u64 = 2;
/// Room for etcd's lease expiry (checked every 500 ms) and the watch to deliver.
const MARGIN: Duration = Duration::from_secs(3);
/// The longest a member waits between two tries to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

fn config(cidr: &str, node_prefix: u8) -> ClusterConfig {
    let mut cfg = ClusterConfig::new(cidr.parse().expect("valid CIDR"), node_prefix, Mode::HostGw);
    cfg.lease_ttl = LEASE_TTL;
    cfg.reclaim_after = 60;
    cfg
}

async fn init(etcd: &EtcdServer, cfg: &ClusterConfig) {
    cluster::init(&etcd.access(), PREFIX, cfg)
        .await
        .expect("cluster init");
}

/// A temporary state directory, removed on drop.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(unique("cluster")))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _unused: Result<_, _> = std::fs::remove_dir_all(&self.0);
    }
}

/// A `cluster::run` task and what it sent.
struct Member {
    name: String,
    rx: mpsc::Receiver<ClusterEvent>,
    task: JoinHandle<()>,
    /// Every event received, in order.
    seen: Vec<ClusterEvent>,
}

impl Member {
    fn start(etcd: &EtcdServer, name: &str, host: u8, state_dir: &StateDir) -> Self {
        Self::start_with_mac(etcd, name, host, [2, 0, 0, 0, 0, host], state_dir)
    }

    /// `start` on an underlay interface with `mac`.
    fn start_with_mac(
        etcd: &EtcdServer,
        name: &str,
        host: u8,
        mac: [u8; 6],
        state_dir: &StateDir,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let opts = JoinOptions {
            etcd: EtcdAccess::plain(vec![etcd.url()]),
            prefix: PREFIX.into(),
            name: name.into(),
            underlay: underlay(host),
            mac: Some(Mac(mac)),
            incarnation: cluster::incarnation(),
            state_dir: state_dir.0.clone(),
        };
        Self {
            name: name.into(),
            rx,
            task: tokio::spawn(cluster::run(opts, tx)),
            seen: Vec::new(),
        }
    }

    /// The next event, if one comes within `within`.
    async fn next(&mut self, within: Duration) -> Option<ClusterEvent> {
        let ev = tokio::time::timeout(within, self.rx.recv()).await.ok()??;
        self.seen.push(ev.clone());
        Some(ev)
    }

    /// Events until one satisfies `ok`; panics after `within`.
    async fn until(
        &mut self,
        what: &str,
        within: Duration,
        mut ok: impl FnMut(&ClusterEvent) -> bool,
    ) -> ClusterEvent {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some(ev) if ok(&ev) => return ev,
                Some(_) => {}
                None => panic!(
                    "{}: waited {within:?} for {what}; saw {:#?}",
                    self.name, self.seen
                ),
            }
        }
    }

    /// The subnet of the next `Joined`.
    async fn joined(&mut self, within: Duration) -> Ipv4Net {
        match self
            .until("Joined", within, |e| {
                matches!(e, ClusterEvent::Joined { .. })
            })
            .await
        {
            ClusterEvent::Joined { subnet, .. } => subnet,
            _ => unreachable!(),
        }
    }

    /// The next peer list whose names are exactly `names`.
    async fn peers_are(&mut self, names: &[&str], within: Duration) -> Vec<Node> {
        let what = format!("peers {names:?}");
        match self
            .until(
                &what,
                within,
                |e| matches!(e, ClusterEvent::Peers(p) if peer_names(p) == names),
            )
            .await
        {
            ClusterEvent::Peers(p) => p,
            _ => unreachable!(),
        }
    }

    /// The last peer list received.
    fn last_peers(&self) -> Option<&Vec<Node>> {
        self.seen.iter().rev().find_map(|e| match e {
            ClusterEvent::Peers(p) => Some(p),
            _ => None,
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn underlay(host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, host)
}

fn peer_names(peers: &[Node]) -> Vec<&str> {
    peers.iter().map(|p| p.name.as_str()).collect()
}

async fn client(etcd: &EtcdServer) -> etcd_client::Client {
    cluster::connect(&etcd.access()).await.expect("etcd client")
}

async fn lease(client: &mut etcd_client::Client, ttl: i64) -> i64 {
    client.lease_grant(ttl, None).await.expect("lease").id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_nodes_joining_at_once_get_disjoint_subnets() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    // 64 /26s: 50 claimers all start from the lowest and collide.
    let cfg = config("10.244.0.0/20", 26);
    init(&etcd, &cfg).await;
    let start = Arc::new(Barrier::new(50));
    let claimers: Vec<_> = (0..50)
        .map(|i| {
            let (url, cfg, start) = (etcd.url(), cfg.clone(), start.clone());
            tokio::spawn(async move {
                let mut c = cluster::connect(&EtcdAccess::plain(vec![url]))
                    .await
                    .expect("etcd client");
                let l = lease(&mut c, 60).await;
                start.wait().await;
                cluster::claim(&mut c, PREFIX, &cfg, &format!("n{i}"), l).await
            })
        })
        .collect();
    let mut got = Vec::new();
    for c in claimers {
        got.push(c.await.expect("claimer").expect("claim"));
    }
    let disjoint = |nets: &[Ipv4Net]| {
        for (i, a) in nets.iter().enumerate() {
            assert!(cfg.is_node_subnet(a), "{a} is no /26 of {}", cfg.cidr);
            for b in &nets[i + 1..] {
                assert!(
                    !cluster::net::overlaps(a, b),
                    "{a} and {b} overlap: {nets:?}"
                );
            }
        }
    };
    disjoint(&got);
    // The pool's remaining 14 fit; the 65th does not.
    let mut c = client(&etcd).await;
    for i in 50..64 {
        let l = lease(&mut c, 60).await;
        let net = cluster::claim(&mut c, PREFIX, &cfg, &format!("n{i}"), l)
            .await
            .expect("the pool is not exhausted yet");
        got.push(net);
    }
    disjoint(&got);
    assert_eq!(got.len(), 64);
    let l = lease(&mut c, 60).await;
    let e = cluster::claim(&mut c, PREFIX, &cfg, "n64", l)
        .await
        .expect_err("the pool is exhausted");
    assert!(matches!(e, ClusterError::PoolExhausted { .. }), "{e}");
    // etcd holds exactly these reservations, each for the node that got it.
    let listed = cluster::nodes(&etcd.access(), PREFIX)
        .await
        .expect("nodes")
        .nodes;
    assert_eq!(listed.len(), 64);
    for n in &listed {
        let i: usize = n.name[1..].parse().expect("node number");
        assert_eq!(n.subnet, got[i], "{}", n.name);
        assert!(!n.alive, "reserved only, never registered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_gets_its_subnet_back() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    let cfg = config("10.244.0.0/16", 24);
    init(&etcd, &cfg).await;
    // Through `claim`: a new lease, the same subnet.
    let mut c = client(&etcd).await;
    let mut claim = async |name: &str| {
        let l = lease(&mut c, 60).await;
        let net = cluster::claim(&mut c, PREFIX, &cfg, name, l).await;
        (net.expect("claim"), l)
    };
    let (a, _) = claim("a").await;
    let (b, old) = claim("b").await;
    let (b_again, _) = claim("b").await;
    assert_eq!(b_again, b, "b restarted gets its subnet back");
    let (d, _) = claim("d").await;
    assert!(![a, b].contains(&d), "d gets a subnet of its own: {d}");
    // The reservation moved to the new lease: the old one's end frees nothing.
    c.lease_revoke(old).await.expect("revoke the old lease");
    let listed = cluster::nodes(&etcd.access(), PREFIX)
        .await
        .expect("nodes")
        .nodes;
    assert!(
        listed.iter().any(|n| n.name == "b" && n.subnet == b),
        "{listed:?}"
    );

    // Through `run`, without its persisted file: etcd gives the same subnet back, and
    // its key from before (same underlay) is its own to overwrite.
    let (s1, s2) = (StateDir::new(), StateDir::new());
    let mut r = Member::start(&etcd, "r", 1, &s1);
    let first = r.joined(MARGIN).await;
    drop(r);
    let mut r = Member::start(&etcd, "r", 1, &s2);
    assert_eq!(r.joined(MARGIN).await, first);
    // A namesake with another underlay waits while `r` lives, then takes over.
    let s3 = StateDir::new();
    let mut twin = Member::start(&etcd, "r", 9, &s3);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        twin.next(Duration::ZERO).await,
        Some(ClusterEvent::Connected(true))
    );
    assert_eq!(
        twin.next(Duration::from_secs(1)).await,
        None,
        "no Joined while `r` lives"
    );
    drop(r);
    let took = twin
        .joined(Duration::from_secs(LEASE_TTL) + MAX_BACKOFF + MARGIN)
        .await;
    assert_eq!(took, first, "the name's reservation comes with it");
}

/// Dual stack: each node reserves an IPv6 prefix beside its IPv4 subnet, on the same
/// lease; a restarted node gets both back, and an IPv4-only config claims none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_node_reserves_an_ipv6_prefix_too_and_gets_it_back() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    let v4 = config("10.244.0.0/16", 24);
    let mut c = client(&etcd).await;
    let l = lease(&mut c, 60).await;
    assert_eq!(
        cluster::claim6(&mut c, PREFIX, &v4, "a", l)
            .await
            .expect("claim6"),
        None,
        "an IPv4-only cluster has no IPv6 prefixes"
    );
    let cfg = ClusterConfig {
        cidr6: Some("fd00:10:244::/62".parse().expect("net")),
        ..v4
    };
    init(&etcd, &cfg).await;
    let mut claim = async |name: &str| {
        let l = lease(&mut c, 60).await;
        let v4 = cluster::claim(&mut c, PREFIX, &cfg, name, l).await;
        let v6 = cluster::claim6(&mut c, PREFIX, &cfg, name, l).await;
        (v4.expect("claim"), v6)
    };
    let (a, a6) = claim("a").await;
    let (b, b6) = claim("b").await;
    let (a6, b6) = (a6.expect("claim6"), b6.expect("claim6"));
    assert_ne!(a6, b6);
    for p in [a6, b6] {
        assert!(p.is_some_and(|p| cfg.is_node_subnet6(&p)), "{p:?}");
    }
    let (b_again, b6_again) = claim("b").await;
    assert_eq!(
        (b_again, b6_again.expect("claim6")),
        (b, b6),
        "b restarted gets both back"
    );
    let (_, c6) = claim("c").await;
    let (_, d6) = claim("d").await;
    assert!(c6.expect("claim6").is_some() && d6.expect("claim6").is_some());
    // Four /64s in a /62: the fifth node finds the IPv6 pool exhausted.
    let (_, e6) = claim("e").await;
    let e = e6.expect_err("the IPv6 pool is exhausted");
    assert!(
        matches!(e, ClusterError::PoolExhausted { .. })
            && e.to_string().contains("fd00:10:244::/62"),
        "{e}"
    );
    let listed = cluster::nodes(&etcd.access(), PREFIX)
        .await
        .expect("nodes")
        .nodes;
    let a_listed = listed.iter().find(|n| n.name == "a").expect("a listed");
    assert_eq!((a_listed.subnet, a_listed.subnet6), (a, a6), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_is_reclaimed_after_the_grace_period() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    let mut cfg = config("10.244.0.0/16", 24);
    cfg.reclaim_after = 3;
    init(&etcd, &cfg).await;
    let (s1, s2, s3) = (StateDir::new(), StateDir::new(), StateDir::new());
    let mut gone = Member::start(&etcd, "gone", 1, &s1);
    let freed = gone.joined(MARGIN).await;
    let mut keep = Member::start(&etcd, "keep", 2, &s2);
    assert_ne!(keep.joined(MARGIN).await, freed);
    drop(gone);
    let stopped = Instant::now();
    // Within the grace period the subnet stays reserved.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let listed = cluster::nodes(&etcd.access(), PREFIX)
        .await
        .expect("nodes")
        .nodes;
    assert!(
        listed.iter().any(|n| n.name == "gone" && n.subnet == freed),
        "{listed:?}"
    );
    // Then etcd deletes it.
    loop {
        let listed = cluster::nodes(&etcd.access(), PREFIX)
            .await
            .expect("nodes")
            .nodes;
        if !listed.iter().any(|n| n.name == "gone") {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(cfg.reclaim_after) + MARGIN,
            "still reserved: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut new = Member::start(&etcd, "new", 3, &s3);
    assert_eq!(
        new.joined(MARGIN).await,
        freed,
        "the reclaimed subnet is the lowest free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_see_a_node_join_and_leave_within_the_lease_ttl() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    let cfg = config("10.244.0.0/16", 24);
    init(&etcd, &cfg).await;
    // Garbage in etcd is skipped, never followed: bad JSON, a subnet outside the CIDR.
    let mut c = client(&etcd).await;
    let junk = [
        ("nodes/junk", "{not json".to_string()),
        (
            "nodes/stray",
            r#"{"subnet": "10.9.0.0/24", "underlay": "192.0.2.99", "mode": "host-gw", "vni": 1, "last_seen": 1}"#.into(),
        ),
        ("subnets/10.244.0.0-24", "[]".into()),
    ];
    for (key, value) in junk {
        c.put(format!("{PREFIX}/{key}"), value, None)
            .await
            .expect("put junk");
    }
    let dirs = [StateDir::new(), StateDir::new(), StateDir::new()];
    let mut a = Member::start(&etcd, "a", 1, &dirs[0]);
    let mut b = Member::start(&etcd, "b", 2, &dirs[1]);
    let mut c_member = Member::start(&etcd, "c", 3, &dirs[2]);
    let mut subnets = Vec::new();
    for m in [&mut a, &mut b, &mut c_member] {
        let s = m.joined(MARGIN).await;
        assert_ne!(
            s,
            "10.244.0.0/24".parse().expect("net"),
            "a reserved subnet, even garbled, is taken"
        );
        subnets.push(s);
    }
    let seen_by_a = a.peers_are(&["b", "c"], MARGIN).await;
    assert_eq!(
        (
            seen_by_a[0].subnet,
            seen_by_a[0].underlay,
            seen_by_a[0].alive
        ),
        (subnets[1], underlay(2), true)
    );
    assert_eq!(
        (seen_by_a[1].subnet, seen_by_a[1].underlay),
        (subnets[2], underlay(3))
    );
    b.peers_are(&["a", "c"], MARGIN).await;
    c_member.peers_are(&["a", "b"], MARGIN).await;
    // `c` stops keeping its lease alive: gone from every peer list within the TTL.
    drop(c_member);
    let stopped = Instant::now();
    let within = Duration::from_secs(LEASE_TTL) + MARGIN;
    a.peers_are(&["b"], within).await;
    b.peers_are(&["a"], within).await;
    assert!(stopped.elapsed() <= within, "{:?}", stopped.elapsed());
    let mut listed = cluster::nodes(&etcd.access(), PREFIX)
        .await
        .expect("nodes")
        .nodes;
    listed.sort_by(|x, y| x.name.cmp(&y.name));
    let state: Vec<(&str, bool)> = listed.iter().map(|n| (n.name.as_str(), n.alive)).collect();
    assert_eq!(
        state,
        [("a", true), ("b", true), ("c", false)],
        "{listed:?}"
    );
    assert!(listed[2].last_seen > 0 && listed[2].subnet == subnets[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_within_the_lease_ttl_is_a_new_registration_to_its_peers() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    init(&etcd, &config("10.244.0.0/16", 24)).await;
    let dirs = [StateDir::new(), StateDir::new(), StateDir::new()];
    let mut a = Member::start(&etcd, "a", 1, &dirs[0]);
    let r = Member::start(&etcd, "r", 2, &dirs[1]);
    let before = a.peers_are(&["r"], MARGIN).await.remove(0);
    assert_eq!(before.mac, Some(Mac([2, 0, 0, 0, 0, 2])), "{before:?}");
    assert_ne!(before.incarnation, 0, "{before:?}");
    // Its machine rebuilt: a new interface, the same address, back before its lease ends.
    drop(r);
    let new_mac = [2, 0, 0, 0, 0, 0x22];
    let _r = Member::start_with_mac(&etcd, "r", 2, new_mac, &dirs[2]);
    let seen = a
        .until("r registered anew", MARGIN, |e| {
            matches!(e, ClusterEvent::Peers(p) if p.iter().any(|n| n.incarnation != before.incarnation))
        })
        .await;
    let ClusterEvent::Peers(now) = seen else {
        unreachable!()
    };
    assert_eq!(
        (now[0].subnet, now[0].underlay, now[0].mac),
        (before.subnet, before.underlay, Some(Mac(new_mac))),
        "the same place, the new MAC: {now:?}"
    );
    assert!(
        !a.seen
            .iter()
            .any(|e| matches!(e, ClusterEvent::Peers(p) if p.is_empty())),
        "it never left the peer list: {:?}",
        a.seen
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_static_keeps_peers_while_etcd_is_down() {
    let mut etcd = EtcdServer::start(LOCALHOST, None);
    let cfg = config("10.244.0.0/16", 24);
    init(&etcd, &cfg).await;
    let (da, db, dc) = (StateDir::new(), StateDir::new(), StateDir::new());
    let mut a = Member::start(&etcd, "a", 1, &da);
    let mut b = Member::start(&etcd, "b", 2, &db);
    let subnet = a.joined(MARGIN).await;
    b.joined(MARGIN).await;
    a.peers_are(&["b"], MARGIN).await;

    etcd.stop();
    a.until("Connected(false)", MARGIN, |e| {
        *e == ClusterEvent::Connected(false)
    })
    .await;
    // Past the lease TTL, b is still a's peer: no event of the outage touched the list.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(LEASE_TTL) + MARGIN {
        if let Some(ev) = a.next(Duration::from_millis(200)).await {
            assert!(
                !matches!(ev, ClusterEvent::Peers(_)),
                "Peers during the outage: {ev:?}"
            );
        }
    }
    assert_eq!(peer_names(a.last_peers().expect("peers")), ["b"]);

    // A restart while etcd is down comes back with the persisted place and peers.
    drop(a);
    let mut a = Member::start(&etcd, "a", 1, &da);
    let first = a.next(Duration::from_secs(1)).await;
    let second = a.next(Duration::from_secs(1)).await;
    assert!(
        matches!(&first, Some(ClusterEvent::Joined { subnet: s, config, .. }) if *s == subnet && *config == cfg),
        "{first:?}"
    );
    assert!(
        matches!(&second, Some(ClusterEvent::Peers(p)) if peer_names(p) == ["b"]),
        "{second:?}"
    );
    a.until("Connected(false)", MARGIN, |e| {
        *e == ClusterEvent::Connected(false)
    })
    .await;

    // etcd back: a rejoins with its subnet, and learns a node that joins now.
    etcd.restart();
    let back = MAX_BACKOFF + MARGIN;
    assert_eq!(a.joined(back).await, subnet);
    let mut c = Member::start(&etcd, "c", 3, &dc);
    c.joined(back).await;
    a.peers_are(&["b", "c"], back).await;
    // Each rejoin revoked its previous session's leases: two per live node remain.
    b.joined(back).await;
    let leases = client(&etcd).await.leases().await.expect("leases");
    assert_eq!(leases.leases().len(), 6, "{leases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_a_different_config() {
    let etcd = EtcdServer::start(LOCALHOST, None);
    let endpoints = etcd.access();
    let cfg = config("10.244.0.0/16", 24);
    let created = cluster::init(&endpoints, PREFIX, &cfg).await.expect("init");
    assert_eq!(created, InitOutcome::Created);
    let again = cluster::init(&endpoints, PREFIX, &cfg)
        .await
        .expect("init again");
    assert_eq!(again, InitOutcome::AlreadyTheSame);
    let mut other = cfg.clone();
    other.node_prefix = 25;
    match cluster::init(&endpoints, PREFIX, &other).await {
        Err(ClusterError::ConfigDiffers { existing, wanted }) => {
            assert_eq!((*existing, *wanted), (cfg.clone(), other.clone()));
        }
        r => panic!("a different config must be refused: {r:?}"),
    }
    // Another prefix is another cluster.
    let elsewhere = cluster::init(&endpoints, "/elsewhere", &other)
        .await
        .expect("init");
    assert_eq!(elsewhere, InitOutcome::Created);
    // An invalid config never reaches etcd.
    let mut bad = cfg.clone();
    bad.vni = 0;
    let e = cluster::init(&endpoints, "/bad", &bad)
        .await
        .expect_err("invalid");
    assert!(matches!(e, ClusterError::InvalidConfig { .. }), "{e}");
}

#[test]
fn etcd_answers_inside_a_namespace() {
    if !bpfnet_tests::require_root() {
        return;
    }
    let ns = Netns::new(&unique("etcdns"));
    let mut etcd = EtcdServer::start(LOCALHOST, Some(&ns.name));
    let init_inside = |etcd: &EtcdServer| {
        let url = etcd.url();
        ns.run(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(cluster::init(
                &EtcdAccess::plain(vec![url]),
                PREFIX,
                &config("10.244.0.0/16", 24),
            ))
        })
    };
    assert_eq!(init_inside(&etcd).expect("init"), InitOutcome::Created);
    // Its data survives a restart.
    etcd.restart();
    assert_eq!(
        init_inside(&etcd).expect("init"),
        InitOutcome::AlreadyTheSame
    );
    // The host's own loopback has no etcd on that port.
    let addr: std::net::SocketAddr = etcd.url()["http://".len()..].parse().expect("addr");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

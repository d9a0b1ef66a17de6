//! BPF_PROG_TEST_RUN tables: input frame → verdict, output headers (checksums verified
//! from scratch), counters and CT entries. Runs in a namespace of its own whose routes
//! and permanent neighbours make the route lookups deterministic.
use std::net::Ipv4Addr;

use aya::programs::{TestRun as _, TestRunOptions};
use bpfnet::datapath::{Datapath, Hook};
use bpfnet_tests::{
    netns::Netns,
    packet::{Addr, IpOpts, TCP_ACK, TCP_SYN, View, tcp, tcp_with, udp},
    require_root, unique,
};
use common::{Backend, CtKey, CtKind, Endpoint, PROTO_TCP, PublishedKey, Reason, TcpState};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const HOST: [u8; 4] = [192, 0, 2, 1];
const CLIENT: [u8; 4] = [192, 0, 2, 2];
const BACKEND: [u8; 4] = [172, 17, 0, 4];
const ENDPOINT: [u8; 4] = [172, 17, 0, 5];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BACKEND_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x04];
const ENDPOINT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];
const ENDPOINT_IFINDEX: u32 = 4242;

fn ip(a: [u8; 4]) -> u32 {
    u32::from_ne_bytes(a)
}

enum Out {
    Unchanged,
    /// Expected source, destination and destination MAC after translation.
    Translated {
        src: Addr,
        dst: Addr,
        dst_mac: [u8; 6],
    },
}

struct Case {
    name: &'static str,
    hook: Hook,
    frame: Vec<u8>,
    verdict: u32,
    out: Out,
    /// Counters that must move by exactly one packet.
    counted: &'static [Reason],
}

fn edit(mut f: Vec<u8>, at: usize, bytes: &[u8]) -> Vec<u8> {
    f[at..at + bytes.len()].copy_from_slice(bytes);
    f
}

fn published(dp: &mut Datapath, host: [u8; 4], port: u16, proto: u8, to: Addr) {
    let key = PublishedKey {
        host_ip: ip(host),
        port: port.to_be(),
        proto,
        _pad: 0,
    };
    let backend = Backend {
        ip: ip(to.0),
        port: to.1.to_be(),
        _pad: 0,
    };
    dp.maps
        .published
        .insert(key, backend, 0)
        .expect("insert published");
}

/// Run one frame; `ingress` is the ifindex the frame pretends to arrive on.
fn test_run(dp: &mut Datapath, hook: Hook, frame: &[u8], ingress: u32) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; frame.len() + 256];
    // __sk_buff up to and including ifindex: ingress_ifindex at 36, ifindex at 40.
    let mut ctx = [0u8; 44];
    ctx[36..40].copy_from_slice(&ingress.to_ne_bytes());
    ctx[40..44].copy_from_slice(&ingress.to_ne_bytes());
    let opts = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(&ctx),
        ..Default::default()
    };
    let r = dp
        .program(hook)
        .test_run(opts)
        .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN of a {}-byte frame: {e}", frame.len()));
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

fn cases() -> Vec<Case> {
    use Hook::{FromContainer as C, FromUplink as U};
    let syn = tcp((CLIENT, 40000), (HOST, 8038), TCP_SYN, b"");
    let translated_in = |dst: Addr, mac| Out::Translated {
        src: (CLIENT, 40000),
        dst,
        dst_mac: mac,
    };
    let mut short_tcp = tcp((CLIENT, 40001), (HOST, 8038), TCP_SYN, b"");
    short_tcp.truncate(14 + 20 + 10);
    let short_tcp = edit(short_tcp, 16, &30u16.to_be_bytes());
    let long_len = edit(syn.clone(), 16, &200u16.to_be_bytes());
    vec![
        Case {
            name: "TCP SYN to a wildcard publish: CT created, routed to the backend",
            hook: U,
            frame: syn.clone(),
            verdict: TC_ACT_REDIRECT,
            out: translated_in((BACKEND, 8080), BACKEND_MAC),
            counted: &[Reason::DnatNew, Reason::RedirectNeigh],
        },
        Case {
            name: "next packet of that flow follows its CT entry",
            hook: U,
            frame: tcp((CLIENT, 40000), (HOST, 8038), TCP_ACK, b"data"),
            verdict: TC_ACT_REDIRECT,
            out: translated_in((BACKEND, 8080), BACKEND_MAC),
            counted: &[Reason::DnatEstablished, Reason::RedirectNeigh],
        },
        Case {
            name: "backend reply is translated back to the published address",
            hook: C,
            frame: tcp((BACKEND, 8080), (CLIENT, 40000), TCP_SYN | TCP_ACK, b""),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (HOST, 8038),
                dst: (CLIENT, 40000),
                dst_mac: CLIENT_MAC,
            },
            counted: &[Reason::DnatReply, Reason::RedirectNeigh],
        },
        Case {
            name: "UDP to a wildcard publish",
            hook: U,
            frame: udp((CLIENT, 5000), (HOST, 8038), b"ping", true),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 5000),
                dst: (BACKEND, 8080),
                dst_mac: BACKEND_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectNeigh],
        },
        Case {
            name: "UDP without a checksum keeps none",
            hook: U,
            frame: udp((CLIENT, 5001), (HOST, 8038), b"ping", false),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 5001),
                dst: (BACKEND, 8080),
                dst_mac: BACKEND_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectNeigh],
        },
        Case {
            name: "UDP reply without a checksum keeps none",
            hook: C,
            frame: udp((BACKEND, 8080), (CLIENT, 5001), b"pong", false),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (HOST, 8038),
                dst: (CLIENT, 5001),
                dst_mac: CLIENT_MAC,
            },
            counted: &[Reason::DnatReply, Reason::RedirectNeigh],
        },
        Case {
            name: "IP options move the TCP header",
            hook: U,
            frame: tcp_with(
                (CLIENT, 40002),
                (HOST, 8038),
                TCP_SYN,
                b"",
                IpOpts {
                    options: 8,
                    ..IpOpts::default()
                },
            ),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 40002),
                dst: (BACKEND, 8080),
                dst_mac: BACKEND_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectNeigh],
        },
        Case {
            name: "address-bound publish to a known endpoint goes straight to its peer",
            hook: U,
            frame: tcp((CLIENT, 40003), (HOST, 9000), TCP_SYN, b""),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 40003),
                dst: (ENDPOINT, 9090),
                dst_mac: ENDPOINT_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectPeer],
        },
        Case {
            name: "a backend without a route is a counted drop",
            hook: U,
            frame: tcp((CLIENT, 40004), (HOST, 8040), TCP_SYN, b""),
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DnatNew, Reason::DropNoRoute],
        },
        Case {
            name: "unpublished port passes untouched",
            hook: U,
            frame: tcp((CLIENT, 40005), (HOST, 22), TCP_SYN, b""),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::Pass],
        },
        Case {
            name: "wildcard publish does not apply to an address that is not the host's",
            hook: U,
            frame: tcp((CLIENT, 40006), ([198, 51, 100, 7], 8038), TCP_SYN, b""),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::Pass],
        },
        Case {
            name: "untracked container traffic passes untouched",
            hook: C,
            frame: tcp((BACKEND, 8080), (CLIENT, 49999), TCP_ACK, b""),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::Pass],
        },
        Case {
            name: "ARP passes",
            hook: U,
            frame: edit(vec![0xff; 42], 12, &[0x08, 0x06]),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::Pass],
        },
        Case {
            name: "ICMP passes (translated in a later phase)",
            hook: U,
            frame: edit(syn.clone(), 14 + 9, &[1]),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::Pass],
        },
        Case {
            name: "a later fragment to the host passes, counted",
            hook: U,
            frame: tcp_with(
                (CLIENT, 40007),
                (HOST, 8038),
                0,
                b"",
                IpOpts {
                    options: 0,
                    frag_off: 0x0010,
                },
            ),
            verdict: TC_ACT_OK,
            out: Out::Unchanged,
            counted: &[Reason::FragmentPassed],
        },
        Case {
            name: "IHL below 5 is dropped",
            hook: U,
            frame: edit(syn.clone(), 14, &[0x44]),
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropMalformed],
        },
        Case {
            name: "IP version 6 in an IPv4 frame is dropped",
            hook: U,
            frame: edit(syn.clone(), 14, &[0x65]),
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropMalformed],
        },
        Case {
            name: "total length beyond the frame is dropped",
            hook: U,
            frame: long_len,
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropMalformed],
        },
        Case {
            name: "IHL longer than the packet is dropped",
            hook: U,
            frame: edit(syn.clone(), 14, &[0x4f]),
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropMalformed],
        },
        Case {
            name: "TCP header cut short is dropped",
            hook: U,
            frame: short_tcp,
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropTruncated],
        },
    ]
}

fn check(dp: &mut Datapath, case: &Case, uplink: u32, bridge: u32) {
    let ingress = if case.hook == Hook::FromUplink {
        uplink
    } else {
        bridge
    };
    let before = dp.maps.stats();
    let (verdict, out) = test_run(dp, case.hook, &case.frame, ingress);
    let after = dp.maps.stats();
    let name = case.name;
    assert_eq!(verdict, case.verdict, "{name}: verdict");
    match case.out {
        Out::Unchanged if case.verdict != TC_ACT_SHOT => {
            assert_eq!(out, case.frame, "{name}: frame should be untouched")
        }
        Out::Unchanged => {}
        Out::Translated { src, dst, dst_mac } => {
            let v = View(&out);
            assert_eq!(out.len(), case.frame.len(), "{name}: length");
            assert_eq!(v.src(), src, "{name}: source");
            assert_eq!(v.dst(), dst, "{name}: destination");
            assert_eq!(v.dst_mac(), dst_mac, "{name}: destination MAC");
            if let Err(e) = v.verify_checksums() {
                panic!("{name}: {e}");
            }
            if v.proto() == 17 {
                let sent_none = View(&case.frame).udp_csum() == 0;
                assert_eq!(
                    v.udp_csum() == 0,
                    sent_none,
                    "{name}: UDP checksum presence"
                );
            }
        }
    }
    for (i, (reason, c)) in after.iter().enumerate() {
        let moved = c.packets - before[i].1.packets;
        let want = u64::from(case.counted.contains(reason));
        assert_eq!(
            moved,
            want,
            "{name}: counter {} moved by {moved}",
            reason.name()
        );
    }
}

#[test]
fn datapath_tables() {
    if !require_root() {
        return;
    }
    let ns = Netns::new(&format!("{}-tbl", unique("dt")));
    ns.ip(&["link", "add", "t0", "type", "veth", "peer", "name", "t1"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "t0"]);
    ns.ip(&["addr", "add", "172.17.0.1/16", "dev", "t1"]);
    ns.ip(&["link", "set", "t0", "up"]);
    ns.ip(&["link", "set", "t1", "up"]);
    ns.ip(&[
        "neigh",
        "add",
        "192.0.2.2",
        "lladdr",
        "02:00:00:00:00:02",
        "dev",
        "t0",
        "nud",
        "permanent",
    ]);
    ns.ip(&[
        "neigh",
        "add",
        "172.17.0.4",
        "lladdr",
        "02:00:00:00:00:04",
        "dev",
        "t1",
        "nud",
        "permanent",
    ]);
    ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    let (uplink, bridge) = (ns.ifindex("t0"), ns.ifindex("t1"));
    let pin_dir = format!("/sys/fs/bpf/bpfnet-test-{}", unique("dt"));
    let pins = pin_dir.clone();
    let result = std::panic::catch_unwind(move || {
        ns.run(move || {
            let mut dp = Datapath::load(pins.as_ref()).expect("datapath loads");
            published(&mut dp, [0; 4], 8038, PROTO_TCP, (BACKEND, 8080));
            published(&mut dp, [0; 4], 8038, 17, (BACKEND, 8080));
            published(&mut dp, HOST, 9000, PROTO_TCP, (ENDPOINT, 9090));
            published(&mut dp, [0; 4], 8040, PROTO_TCP, ([203, 0, 113, 9], 80));
            dp.maps.host_ips.insert(ip(HOST), 0, 0).expect("host ip");
            let ep = Endpoint {
                ifindex: ENDPOINT_IFINDEX,
                mac: ENDPOINT_MAC,
                network: 1,
            };
            dp.maps
                .endpoints
                .insert(ip(ENDPOINT), ep, 0)
                .expect("endpoint");
            for case in cases() {
                check(&mut dp, &case, uplink, bridge);
            }
            check_ct(&dp);
        })
    });
    let _ = std::fs::remove_dir_all(&pin_dir);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The first flow's two entries, as the SYN, ACK and SYN-ACK of the table left them.
fn check_ct(dp: &Datapath) {
    let fwd = CtKey {
        src_ip: ip(CLIENT),
        dst_ip: ip(HOST),
        src_port: 40000u16.to_be(),
        dst_port: 8038u16.to_be(),
        proto: PROTO_TCP,
        _pad: [0; 3],
    };
    let v = dp.maps.ct.get(&fwd, 0).expect("forward CT entry");
    assert_eq!(v.kind, CtKind::DnatForward as u8);
    assert_eq!(
        (
            Ipv4Addr::from(v.nat_ip.to_ne_bytes()),
            u16::from_be(v.nat_port)
        ),
        (Ipv4Addr::from(BACKEND), 8080)
    );
    assert_eq!(v.packets, 2, "SYN and ACK");
    assert_eq!(TcpState::from_u8(v.state), TcpState::Established);
    let rev = fwd.twin(&v);
    assert_eq!(
        (rev.src_ip, u16::from_be(rev.src_port)),
        (ip(BACKEND), 8080)
    );
    let r = dp.maps.ct.get(&rev, 0).expect("reply CT entry");
    assert_eq!(r.kind, CtKind::DnatReply as u8);
    assert_eq!((r.nat_ip, u16::from_be(r.nat_port)), (ip(HOST), 8038));
    assert_eq!(r.packets, 1, "SYN-ACK");
    assert!(
        r.last_seen_ns >= v.last_seen_ns,
        "reply seen after the forward packets"
    );
}

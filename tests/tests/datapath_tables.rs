//! `BPF_PROG_TEST_RUN` tables: input frame → verdict, output headers (checksums verified
//! from scratch), counters and CT entries. Runs in a namespace of its own whose routes
//! and permanent neighbours make the route lookups deterministic.
use bpfnet::datapath::{Datapath, Hook};
use bpfnet_tests::{
    fixture::{
        CLIENT_MAC, CONTAINER_MAC, Fixture, OTHER_MAC as ENDPOINT_MAC, TC_ACT_OK, TC_ACT_REDIRECT,
        TC_ACT_SHOT, with_fixture,
    },
    packet::{Addr, IpOpts, TCP_ACK, TCP_SYN, View, tcp, tcp_seq, tcp_with, udp},
    require_root,
};
use common::{
    Backend, Be16, CT_DNAT, CT_REPLY, CT_REPLY_LOCAL, CT_SIDE_UPLINK, CT_SIDE_VETH, CtKey,
    Endpoint, PROTO_TCP, PublishedKey, Reason, TcpState,
};

const HOST: [u8; 4] = [192, 0, 2, 1];
const CLIENT: [u8; 4] = [192, 0, 2, 2];
const BACKEND: [u8; 4] = [172, 17, 0, 4];
const ENDPOINT: [u8; 4] = [172, 17, 0, 5];
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
    let key = PublishedKey::new(ip(host), Be16::new(port), proto);
    let backend = Backend::new(ip(to.0), Be16::new(to.1));
    dp.maps
        .published
        .insert(key, backend, 0)
        .expect("insert published");
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
            out: translated_in((BACKEND, 8080), CONTAINER_MAC),
            counted: &[Reason::DnatNew, Reason::RedirectPeer],
        },
        Case {
            name: "next packet of that flow follows its CT entry",
            hook: U,
            frame: tcp((CLIENT, 40000), (HOST, 8038), TCP_ACK, b"data"),
            verdict: TC_ACT_REDIRECT,
            out: translated_in((BACKEND, 8080), CONTAINER_MAC),
            counted: &[Reason::CtForward, Reason::RedirectPeer],
        },
        Case {
            name: "backend reply is translated back to the published address",
            hook: C,
            frame: tcp_seq(
                (BACKEND, 8080),
                (CLIENT, 40000),
                TCP_SYN | TCP_ACK,
                (5000, 1001),
                b"",
            ),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (HOST, 8038),
                dst: (CLIENT, 40000),
                dst_mac: CLIENT_MAC,
            },
            counted: &[Reason::CtReply, Reason::RedirectRoute],
        },
        Case {
            name: "UDP to a wildcard publish",
            hook: U,
            frame: udp((CLIENT, 5000), (HOST, 8038), b"ping", true),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 5000),
                dst: (BACKEND, 8080),
                dst_mac: CONTAINER_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectPeer],
        },
        Case {
            name: "UDP without a checksum keeps none",
            hook: U,
            frame: udp((CLIENT, 5001), (HOST, 8038), b"ping", false),
            verdict: TC_ACT_REDIRECT,
            out: Out::Translated {
                src: (CLIENT, 5001),
                dst: (BACKEND, 8080),
                dst_mac: CONTAINER_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectPeer],
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
            counted: &[Reason::CtReply, Reason::RedirectRoute],
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
                dst_mac: CONTAINER_MAC,
            },
            counted: &[Reason::DnatNew, Reason::RedirectPeer],
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
            name: "an untracked reply-like packet from a container is dropped, not masqueraded",
            hook: C,
            frame: tcp((BACKEND, 8080), (CLIENT, 49999), TCP_ACK, b""),
            verdict: TC_ACT_SHOT,
            out: Out::Unchanged,
            counted: &[Reason::DropNoFlow],
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
            name: "ICMP other than echo and errors passes",
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

fn check(fx: &mut Fixture, case: &Case) {
    let (verdict, out) = fx.run_counted(case.name, case.hook, &case.frame, case.counted);
    let name = case.name;
    assert_eq!(verdict, case.verdict, "{name}: verdict");
    match case.out {
        Out::Unchanged if case.verdict != TC_ACT_SHOT => {
            assert_eq!(out, case.frame, "{name}: frame should be untouched");
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
}

#[test]
fn datapath_tables() {
    if !require_root() {
        return;
    }
    with_fixture("dt", 1024, |fx| {
        let dp = &mut fx.dp;
        published(dp, [0; 4], 8038, PROTO_TCP, (BACKEND, 8080));
        published(dp, [0; 4], 8038, 17, (BACKEND, 8080));
        published(dp, HOST, 9000, PROTO_TCP, (ENDPOINT, 9090));
        published(dp, [0; 4], 8040, PROTO_TCP, ([203, 0, 113, 9], 80));
        dp.maps.host_ips.insert(ip(HOST), 0, 0).expect("host ip");
        let ep = Endpoint::new(ENDPOINT_IFINDEX, 1, ENDPOINT_MAC, 0);
        dp.maps
            .endpoints
            .insert(ip(ENDPOINT), ep, 0)
            .expect("endpoint");
        for case in cases() {
            check(fx, &case);
        }
        check_ct(&fx.dp);
    });
}

/// The first flow's two entries, as the SYN, ACK and SYN-ACK of the table left them:
/// still in the new-flow table, as no packet of the client's acknowledged the answer.
fn check_ct(dp: &Datapath) {
    let fwd = CtKey::new(
        ip(CLIENT),
        ip(HOST),
        Be16::new(40000),
        Be16::new(8038),
        PROTO_TCP,
    );
    let v = dp.maps.ct_new.get(&fwd, 0).expect("forward CT entry");
    assert_eq!(
        v.flags,
        CT_DNAT | CT_REPLY_LOCAL | CT_SIDE_UPLINK,
        "translated destination, answered by a local endpoint, begun off an uplink"
    );
    assert_eq!((v.dst_ip, v.dst_port.get()), (ip(BACKEND), 8080));
    assert_eq!(
        (v.src_ip, v.src_port),
        (fwd.src_ip, fwd.src_port),
        "source kept"
    );
    assert_eq!(v.packets, 2, "SYN and ACK");
    let rev = fwd.twin(&v);
    assert_eq!((rev.src_ip, rev.src_port.get()), (ip(BACKEND), 8080));
    let r = dp.maps.ct_new.get(&rev, 0).expect("reply CT entry");
    assert_eq!(
        r.flags,
        CT_DNAT | CT_REPLY | CT_REPLY_LOCAL | CT_SIDE_VETH,
        "the reply entry's packets come from the backend's veth"
    );
    assert_eq!(
        rev.translated(&r),
        fwd.reversed(),
        "replies leave from the published address"
    );
    assert_eq!(r.packets, 1, "SYN-ACK");
    // The client's ACK came before the answer: it proves no handshake.
    assert_eq!(TcpState::of(v.tcp_seen, r.tcp_seen), TcpState::SynSent);
    assert!(
        r.last_seen_ns >= v.last_seen_ns,
        "reply seen after the forward packets"
    );
}

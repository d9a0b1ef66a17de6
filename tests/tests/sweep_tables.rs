//! The in-kernel sweep (`ct_sweep`, run with `BPF_PROG_TEST_RUN` as the daemon runs it):
//! flows in every state and of every age written into both CT tables, one sweep, and
//! exactly the expired flows gone (both halves), their SNAT quota counts released, and
//! the entries counted by kind.
use std::time::Duration;

use bpfnet::{
    conntrack::{Timeouts, monotonic_ns},
    datapath::Hook,
};
use bpfnet_tests::{
    fixture::{TC_ACT_SHOT, with_fixture},
    packet, require_root,
    tables::{self, C1, SERVER, entries},
};
use common::{
    Be16, CT_DNAT, CT_REPLY, CT_SNAT, Clock, CtKey, CtTimeouts, CtValue, Ip6, PROTO_TCP, PROTO_UDP,
    SWEPT_TABLES,
    ct::{TCP_ACK, TCP_RST, TCP_SYN},
};

const SECOND: u64 = 1_000_000_000;

/// One flow to write: its forward tuple, flags, the TCP flags each half has seen, how
/// long ago each half was seen (None: that half is missing), which table it is in.
struct Case {
    name: &'static str,
    proto: u8,
    flags: u8,
    seen: (u8, u8),
    idle_s: (Option<u64>, Option<u64>),
    main: bool,
    expired: bool,
}

/// An IPv6 flow from `fd00:17::4` to `2001:db8:2::``i`, port 443.
fn key6(i: u8) -> CtKey<Ip6> {
    let mut src = [0u8; 16];
    src[..4].copy_from_slice(&[0xfd, 0, 0, 0x17]);
    src[15] = 4;
    let mut dst = [0u8; 16];
    dst[..6].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 2]);
    dst[15] = i;
    CtKey::new(
        Ip6::from_octets(src),
        Ip6::from_octets(dst),
        Be16::new(40000 + u16::from(i)),
        Be16::new(443),
        PROTO_TCP,
    )
}

fn key(i: u8, proto: u8) -> CtKey {
    CtKey::new(
        u32::from_ne_bytes([172, 17, 0, 4]),
        u32::from_ne_bytes([198, 51, 100, i]),
        Be16::new(40000 + u16::from(i)),
        Be16::new(443),
        proto,
    )
}

#[test]
fn expired_flows_go_whole_and_nothing_else_does() {
    if !require_root() {
        return;
    }
    with_fixture("sweep", 4096, |fx| {
        let t = Timeouts {
            syn: Duration::from_secs(20),
            established: Duration::from_mins(1),
            closing: Duration::from_secs(30),
            time_wait: Duration::from_secs(30),
            closed: Duration::from_secs(10),
            udp: Duration::from_secs(10),
            icmp: Duration::from_secs(10),
        };
        fx.dp
            .set_sweep_timeouts(CtTimeouts::from(&t))
            .expect("timeouts set");
        let est = (TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK);
        let cases = [
            Case {
                name: "established, idle 30 s of 60",
                proto: PROTO_TCP,
                flags: CT_SNAT,
                seen: est,
                idle_s: (Some(30), Some(30)),
                main: true,
                expired: false,
            },
            Case {
                name: "established, idle 90 s of 60",
                proto: PROTO_TCP,
                flags: CT_SNAT,
                seen: est,
                idle_s: (Some(90), Some(90)),
                main: true,
                expired: true,
            },
            Case {
                name: "established, forward idle 90 s, reply seen 1 s ago",
                proto: PROTO_TCP,
                flags: CT_DNAT,
                seen: est,
                idle_s: (Some(90), Some(1)),
                main: true,
                expired: false,
            },
            Case {
                name: "reset, idle 15 s of 10 (its quota count released when it closed)",
                proto: PROTO_TCP,
                flags: CT_SNAT,
                seen: (TCP_SYN | TCP_ACK | TCP_RST, TCP_SYN | TCP_ACK),
                idle_s: (Some(15), Some(15)),
                main: true,
                expired: true,
            },
            Case {
                name: "UDP, idle 5 s of 10",
                proto: PROTO_UDP,
                flags: CT_SNAT,
                seen: (0, 0),
                idle_s: (Some(5), Some(5)),
                main: true,
                expired: false,
            },
            Case {
                name: "UDP, idle 15 s of 10",
                proto: PROTO_UDP,
                flags: CT_SNAT,
                seen: (0, 0),
                idle_s: (Some(15), Some(15)),
                main: true,
                expired: true,
            },
            Case {
                name: "unanswered SYN, idle 25 s of 20, new-flow table",
                proto: PROTO_TCP,
                flags: CT_SNAT,
                seen: (TCP_SYN, 0),
                idle_s: (Some(25), Some(25)),
                main: false,
                expired: true,
            },
            Case {
                name: "unanswered SYN, idle 5 s of 20, new-flow table",
                proto: PROTO_TCP,
                flags: CT_SNAT,
                seen: (TCP_SYN, 0),
                idle_s: (Some(5), Some(5)),
                main: false,
                expired: false,
            },
            Case {
                name: "a reply half whose forward half is gone, idle 70 s",
                proto: PROTO_TCP,
                flags: CT_DNAT,
                seen: est,
                idle_s: (None, Some(70)),
                main: true,
                expired: true,
            },
            Case {
                name: "a forward half whose reply half is gone, idle 40 s of 60",
                proto: PROTO_TCP,
                flags: CT_DNAT,
                seen: est,
                idle_s: (Some(40), None),
                main: true,
                expired: false,
            },
        ];
        let now = monotonic_ns();
        // The container's SNAT quota count: its SNAT flows, and after the sweep those
        // that did not expire.
        let (mut held, mut kept) = (0u64, 0u64);
        for (i, c) in cases.iter().enumerate() {
            let fwd = key(i as u8 + 1, c.proto);
            // Masqueraded to 192.0.2.1 with the same port.
            let to = CtKey {
                src_ip: u32::from_ne_bytes([192, 0, 2, 1]),
                ..fwd
            };
            let table = if c.main {
                &mut fx.dp.maps.ct
            } else {
                &mut fx.dp.maps.ct_new
            };
            if let Some(idle) = c.idle_s.0 {
                let mut v = CtValue::new(&to, c.flags, now - idle * SECOND);
                v.tcp_seen = c.seen.0;
                table.insert(fwd, v, 0).expect("forward half");
            }
            if let Some(idle) = c.idle_s.1 {
                let mut v = CtValue::new(&fwd.reversed(), c.flags | CT_REPLY, now - idle * SECOND);
                v.tcp_seen = c.seen.1;
                table.insert(to.reversed(), v, 0).expect("reply half");
            }
            if c.flags == CT_SNAT && c.seen.0 & TCP_RST == 0 {
                held += 1;
                kept += u64::from(!c.expired);
            }
        }
        // IPv6 flows, published (no SNAT quota): (idle s, main table, expired).
        let cases6 = [
            (30, true, false),
            (90, true, true),
            (70, true, true),
            (5, false, false),
            (25, false, true),
        ];
        for (i, &(idle, main, _)) in cases6.iter().enumerate() {
            let fwd = key6(i as u8 + 1);
            let seen = if main { est } else { (TCP_SYN, 0) };
            let table = if main {
                &mut fx.dp.maps.ct6
            } else {
                &mut fx.dp.maps.ct6_new
            };
            let mut v = CtValue::new(&fwd, CT_DNAT, now - idle * SECOND);
            v.tcp_seen = seen.0;
            table.insert(fwd, v, 0).expect("IPv6 forward half");
            let mut v = CtValue::new(&fwd.reversed(), CT_DNAT | CT_REPLY, now - idle * SECOND);
            v.tcp_seen = seen.1;
            table.insert(fwd.reversed(), v, 0).expect("IPv6 reply half");
        }
        // Entries each table holds before the sweep and after it (`SWEPT_TABLES` order).
        let mut held_by = [0u64; 4];
        let mut kept_by = [0u64; 4];
        for c in &cases {
            let halves = u64::from(c.idle_s.0.is_some()) + u64::from(c.idle_s.1.is_some());
            let t = usize::from(!c.main);
            held_by[t] += halves;
            kept_by[t] += if c.expired { 0 } else { halves };
        }
        for &(_, main, expired) in &cases6 {
            let t = 2 + usize::from(!main);
            held_by[t] += 2;
            kept_by[t] += if expired { 0 } else { 2 };
        }
        let container = key(0, PROTO_TCP).src_ip;
        fx.dp
            .maps
            .snat_use
            .insert(container, held, 0)
            .expect("quota count");
        let before = entries(fx).len() as u64
            + fx.dp.maps.ct6.keys().count() as u64
            + fx.dp.maps.ct6_new.keys().count() as u64;
        assert_eq!(before, held_by.iter().sum::<u64>(), "every entry written");
        let s = fx.dp.sweep_ct().expect("ct_sweep runs");
        assert!(
            s.entries <= before && s.entries + s.removed / 2 >= before,
            "every entry visited once, but an expired flow's half its twin took along: {s:?} of {before}"
        );
        assert_eq!(
            s.left, kept_by,
            "each table's entries left, counted as the sweep went ({SWEPT_TABLES:?}): \
             {held_by:?} held before"
        );
        assert_eq!(
            [
                fx.dp.maps.ct.keys().count() as u64,
                fx.dp.maps.ct_new.keys().count() as u64,
                fx.dp.maps.ct6.keys().count() as u64,
                fx.dp.maps.ct6_new.keys().count() as u64,
            ],
            kept_by,
            "and what each table holds"
        );
        let in_new = held_by[1] + held_by[3];
        assert!(
            s.main <= before - in_new,
            "main-table entries counted apart: {s:?}"
        );
        let left = entries(fx);
        let mut removed = 0;
        for (i, c) in cases.iter().enumerate() {
            let fwd = key(i as u8 + 1, c.proto);
            let present = left
                .iter()
                .any(|(k, _)| k.dst_ip == fwd.dst_ip || k.src_ip == fwd.dst_ip);
            let halves = u64::from(c.idle_s.0.is_some()) + u64::from(c.idle_s.1.is_some());
            if c.expired {
                removed += halves;
            }
            assert_eq!(!present, c.expired, "{}: expired {}", c.name, c.expired);
        }
        let removed6: u64 = cases6.iter().filter(|c| c.2).count() as u64 * 2;
        assert_eq!(
            s.removed,
            removed + removed6,
            "both halves of each expired flow counted"
        );
        let n = fx.dp.maps.snat_use.get(&container, 0).unwrap_or(0);
        assert_eq!(
            n, kept,
            "the container's quota count loses exactly its expired SNAT flows"
        );
    });
}

/// The datapath stamps flows from `jiffies` once two sweeps a second apart have measured
/// the tick: the time it derives is monotonic time (within a tick), and it is read from
/// the clock the daemon set (a clock skewed by 100 s shows in the next packet's stamp).
#[test]
fn the_datapath_clock_is_measured_by_the_sweeps_and_stamps_flows() {
    if !require_root() {
        return;
    }
    with_fixture("clock", 4096, |fx| {
        tables::setup(fx, tables::PORTS);
        fx.dp
            .set_sweep_timeouts(CtTimeouts::from(&Timeouts::default()))
            .expect("timeouts set");
        fx.dp.sweep_ct().expect("first sweep");
        assert_eq!(fx.dp.clock(), None, "one reading measures nothing");
        std::thread::sleep(Duration::from_millis(1_100));
        fx.dp.sweep_ct().expect("second sweep");
        let clock = fx
            .dp
            .clock()
            .expect("measured by two sweeps a second apart");
        let hz = SECOND / clock.tick_ns;
        assert!(
            (24..=1200).contains(&hz),
            "HZ {hz} from a tick of {clock:?}"
        );

        let frame = packet::udp((C1, 40_000), (SERVER, 53), b"q", true);
        let stamp = |fx: &mut bpfnet_tests::fixture::Fixture| {
            let (verdict, _) = fx.run(Hook::FromContainer, &frame);
            assert_ne!(verdict, TC_ACT_SHOT, "egress passes");
            let now = monotonic_ns();
            let seen = entries(fx)
                .into_iter()
                .find(|(k, v)| k.src_ip == u32::from_ne_bytes(C1) && !v.is_reply())
                .expect("the flow's entry")
                .1
                .last_seen_ns;
            (seen, now)
        };
        let (seen, now) = stamp(fx);
        let tick = clock.tick_ns;
        assert!(
            seen.abs_diff(now) <= 2 * tick + 10_000_000,
            "stamped {seen}, monotonic {now}: off by more than two ticks"
        );
        fx.dp
            .set_clock(Clock {
                base_ns: clock.base_ns.wrapping_sub(100 * SECOND),
                ..clock
            })
            .expect("skewed clock");
        let (seen, now) = stamp(fx);
        assert!(
            seen.abs_diff(now + 100 * SECOND) <= 2 * tick + 10_000_000,
            "stamped {seen}, monotonic {now}: the skewed clock was not read"
        );
    });
}

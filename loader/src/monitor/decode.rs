//! An event's captured bytes and translated tuple, read into addresses and ports. The
//! bytes come from the datapath, whatever a packet held: every read is bounds-checked
//! and a header cut short yields less, never a panic.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{Be32, EventTuple, Ip6, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

use crate::api::monitor::{Packet, Tuple};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Decode `data`, a frame whose IP header starts after a link-layer header when `l2`.
pub(super) fn packet(data: &[u8], len: u32, l2: bool) -> Packet {
    let mut p = Packet {
        len,
        ..Packet::default()
    };
    let (ethertype, l3) = if l2 {
        match u16_at(data, 12) {
            Some(ETH_P_8021Q) => (u16_at(data, 16), ETH_HLEN + 4),
            t => (t, ETH_HLEN),
        }
    } else {
        match data.first().map(|b| b >> 4) {
            Some(4) => (Some(ETH_P_IP), 0),
            Some(6) => (Some(ETH_P_IPV6), 0),
            _ => (None, 0),
        }
    };
    let Some(ip) = data.get(l3..) else {
        return p;
    };
    let found = match ethertype {
        Some(ETH_P_IP) => ipv4(ip),
        Some(ETH_P_IPV6) => ipv6(ip),
        other => {
            p.ethertype = other;
            return p;
        }
    };
    let Some((src, dst, proto, l4)) = found else {
        return p;
    };
    let (mut sport, mut dport) = (None, None);
    match (proto, l4) {
        (PROTO_TCP | PROTO_UDP, Some(l4)) => {
            sport = u16_at(l4, 0);
            dport = u16_at(l4, 2);
            if proto == PROTO_TCP {
                p.tcp_flags = l4.get(13).map(|&f| tcp_flags(f));
            }
        }
        (PROTO_ICMP | PROTO_ICMPV6, Some(l4)) => {
            if let (Some(&t), Some(&c)) = (l4.first(), l4.get(1)) {
                p.icmp = Some((t, c));
                // Echo request and reply carry the identifier the flow is keyed by.
                if matches!(t, 0 | 8 | 128 | 129) {
                    sport = u16_at(l4, 4);
                    dport = sport;
                }
            }
        }
        _ => {}
    }
    p.before = Some(Tuple {
        proto: proto.into(),
        src,
        sport,
        dst,
        dport,
    });
    p
}

/// (source, destination, protocol, the L4 header unless a later fragment).
type L3<'a> = (IpAddr, IpAddr, u8, Option<&'a [u8]>);

fn ipv4(ip: &[u8]) -> Option<L3<'_>> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let frag = u16_at(ip, 6)? & 0x1fff;
    let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
    let l4 = (frag == 0 && ihl >= 20).then(|| ip.get(ihl..)).flatten();
    Some((
        Ipv4Addr::from(src).into(),
        Ipv4Addr::from(dst).into(),
        *ip.get(9)?,
        l4,
    ))
}

fn ipv6(ip: &[u8]) -> Option<L3<'_>> {
    let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
    let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
    let (mut next, mut at) = (*ip.get(6)?, 40);
    // Hop-by-hop, routing and destination options; a fragment header ends the walk
    // for a later fragment.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            44 => {
                let later = u16_at(ip, at + 2)? & 0xfff8 != 0;
                next = *ip.get(at)?;
                at += 8;
                if later {
                    return Some((
                        Ipv6Addr::from(src).into(),
                        Ipv6Addr::from(dst).into(),
                        next,
                        None,
                    ));
                }
            }
            _ => break,
        }
    }
    Some((
        Ipv6Addr::from(src).into(),
        Ipv6Addr::from(dst).into(),
        next,
        ip.get(at..),
    ))
}

fn tcp_flags(f: u8) -> String {
    let mut s: String = [(0x02, 'S'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P')]
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|&(_, c)| c)
        .collect();
    if f & 0x10 != 0 {
        s.push('.');
    }
    if s.is_empty() { "none".into() } else { s }
}

/// The datapath's translated tuple, if it sent one.
pub(super) fn xlate(t: &EventTuple) -> Option<Tuple> {
    let (src, dst) = match t.family {
        4 => (
            Ipv4Addr::from(Be32::from_raw(t.src[0])).into(),
            Ipv4Addr::from(Be32::from_raw(t.dst[0])).into(),
        ),
        6 => (
            Ipv6Addr::from(Ip6 { words: t.src }).into(),
            Ipv6Addr::from(Ip6 { words: t.dst }).into(),
        ),
        _ => return None,
    };
    let ports = matches!(t.proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP | PROTO_ICMPV6);
    Some(Tuple {
        proto: t.proto.into(),
        src,
        sport: ports.then(|| t.src_port.get()),
        dst,
        dport: ports.then(|| t.dst_port.get()),
    })
}

#[cfg(test)]
mod tests {
    use common::Be16;

    use super::*;
    use crate::api::flow::Proto;

    fn tcp_syn_v4() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend([172, 17, 0, 2, 172, 18, 0, 3]);
        f.extend(ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[13] = 0x02;
        f.extend(tcp);
        f
    }

    #[test]
    fn reads_a_tcp_syn() {
        let p = packet(&tcp_syn_v4(), 54, true);
        let t = p.before.unwrap();
        assert_eq!(t.proto, Proto::Tcp);
        assert_eq!(t.src, "172.17.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((t.sport, t.dport), (Some(40000), Some(80)));
        assert_eq!(p.tcp_flags.as_deref(), Some("S"));
    }

    #[test]
    fn every_cut_of_a_frame_decodes_without_panic() {
        let f = tcp_syn_v4();
        for n in 0..f.len() {
            let _ = packet(&f[..n], n as u32, true);
            let _ = packet(&f[..n], n as u32, false);
        }
        // Garbage as an IPv6 header chain, including a loop of options.
        let mut g = vec![0x60u8; 200];
        g[6] = 0;
        let _ = packet(&g, 200, false);
    }

    #[test]
    fn an_l3_packet_has_no_link_header() {
        let p = packet(&tcp_syn_v4()[14..], 40, false);
        assert_eq!(p.before.unwrap().dport, Some(80));
    }

    #[test]
    fn a_translated_tuple_reads_back() {
        let t = EventTuple {
            src: [Be32::from_bytes([198, 51, 100, 7]).raw(), 0, 0, 0],
            dst: [Be32::from_bytes([172, 17, 0, 2]).raw(), 0, 0, 0],
            src_port: Be16::new(5555),
            dst_port: Be16::new(80),
            proto: PROTO_TCP,
            family: 4,
            _pad: [0; 2],
        };
        let x = xlate(&t).unwrap();
        assert_eq!(x.dst, "172.17.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((x.sport, x.dport), (Some(5555), Some(80)));
        assert!(xlate(&EventTuple::default()).is_none());
    }
}

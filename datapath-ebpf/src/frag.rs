//! IPv4 fragments of translated datagrams: the first fragment's ports are kept by
//! (addresses, IP id, protocol) so the later ones, which carry none, can be matched.
use common::{FragKey, FragPorts};

use crate::{
    maps::FRAGS,
    parse::{Frag, Packet},
};

#[inline(always)]
fn key(p: &Packet) -> FragKey {
    FragKey {
        src_ip: p.src_ip,
        dst_ip: p.dst_ip,
        id: p.ip_id,
        proto: p.proto,
        _pad: 0,
    }
}

/// Keep the ports of a first fragment (call before translating it).
#[inline(always)]
pub fn remember(p: &Packet) {
    if p.frag == Frag::First {
        let ports = FragPorts {
            src_port: p.src_port,
            dst_port: p.dst_port,
        };
        let _ = FRAGS.insert(key(p), ports, 0);
    }
}

/// Give a later fragment its datagram's ports; false when its first fragment was not
/// translated here.
#[inline(always)]
pub fn recall(p: &mut Packet) -> bool {
    // SAFETY: plain lookup, value copied out.
    match unsafe { FRAGS.get(key(p)) } {
        Some(ports) => {
            p.src_port = ports.src_port;
            p.dst_port = ports.dst_port;
            true
        }
        None => false,
    }
}

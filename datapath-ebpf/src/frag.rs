//! Fragments of translated datagrams, both families: the first fragment's ports are
//! kept by (addresses, identification, protocol) so the later ones, which carry none,
//! can be matched (IPv4's 16-bit id, IPv6's fragment header's 32-bit one).
use common::FragPorts;

use crate::{
    family::Family,
    packet::{Frag, Packet},
};

/// Keep the ports of a first fragment (call before translating it).
#[inline(always)]
pub(crate) fn remember<A: Family>(p: &Packet<A>) {
    if p.frag == Frag::First {
        let ports = FragPorts {
            src_port: p.src_port,
            dst_port: p.dst_port,
        };
        let _unused: Result<_, _> = A::frags().insert(A::frag_key(p), ports, 0);
    }
}

/// Give a later fragment its datagram's ports; false when its first fragment was not
/// translated here.
#[inline(always)]
pub(crate) fn recall<A: Family>(p: &mut Packet<A>) -> bool {
    // SAFETY: plain lookup, value copied out.
    match unsafe { A::frags().get(A::frag_key(p)) } {
        Some(ports) => {
            p.src_port = ports.src_port;
            p.dst_port = ports.dst_port;
            true
        }
        None => false,
    }
}

//! Verdict and drop counters of `stats_v1`, one slot per reason.

macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident = $n:literal, $name:literal, $drop:literal;)*) => {
        /// Why a packet got the verdict it got. The index into `stats_v1`.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$doc])* $variant = $n,)*
        }

        impl Reason {
            pub const ALL: &[Reason] = &[$(Self::$variant,)*];
            pub const COUNT: u32 = Self::ALL.len() as u32;

            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }

            pub fn is_drop(self) -> bool {
                match self {
                    $(Self::$variant => $drop,)*
                }
            }
        }
    };
}

reasons! {
    /// Not for bpfnet: handed to the kernel unchanged.
    Pass = 0, "pass", false;
    /// First packet to a published port: flow created, destination rewritten.
    DnatNew = 1, "dnat-new", false;
    /// First packet of a container's egress flow: source masqueraded.
    SnatNew = 2, "snat-new", false;
    /// Packet of a tracked flow, original direction.
    CtForward = 3, "ct-forward", false;
    /// Packet of a tracked flow, reply direction.
    CtReply = 4, "ct-reply", false;
    /// ICMP error about a tracked flow, translated through its embedded header.
    IcmpError = 5, "icmp-error", false;
    /// A later IPv4 fragment translated with its first fragment's ports.
    FragmentTranslated = 6, "fragment-translated", false;
    /// A later fragment not of a translated datagram, passed up.
    FragmentPassed = 7, "fragment-passed", false;
    /// Delivered into a known endpoint's namespace with `bpf_redirect_peer`.
    RedirectPeer = 8, "redirect-peer", false;
    /// Delivered by `bpf_fib_lookup` + redirect.
    RedirectRoute = 9, "redirect-route", false;
    /// Drop: IPv4 header with a bad version, IHL or total length; an IPv6 header chain
    /// cut short, or longer than bpfnet walks. (Also this CPU's scratch space missing,
    /// which the verifier makes every lookup of it allow for.)
    DropMalformed = 10, "drop-malformed", true;
    /// Drop: packet too short for its L4 header.
    DropTruncated = 11, "drop-truncated", true;
    /// Drop: the route lookup for a translated packet failed (or, dual stack, an IPv6
    /// packet's host-gw node has no resolved neighbour entry yet).
    DropNoRoute = 12, "drop-no-route", true;
    /// Drop: a CT entry could not be created.
    DropCtInsert = 13, "drop-ct-insert", true;
    /// Drop: header rewrite or checksum helper failed.
    DropRewrite = 14, "drop-rewrite", true;
    /// Drop: no free SNAT source port for this destination.
    DropSnatPorts = 15, "drop-snat-ports", true;
    /// Drop: a later fragment from a container whose first fragment was not seen.
    DropFragment = 16, "drop-fragment", true;
    /// Container to container on one network, handed over with `bpf_redirect_peer`.
    ForwardLocal = 17, "forward-local", false;
    /// Drop: traffic between two networks (Docker's isolation rules).
    DropIsolation = 18, "drop-isolation", true;
    /// Drop: source IPv4, IPv6 or MAC not the sending endpoint's own, or a claim no port
    /// may make (a host address such as the gateway's, a subnet's network or broadcast
    /// address, the bridge's MAC); from an uplink, a local endpoint's address (IP
    /// source, ARP sender).
    DropSpoof = 19, "drop-spoof", true;
    /// A switched frame handed to its bridge's own transmit path, past the host's
    /// bridge netfilter hooks.
    ForwardBridge = 20, "forward-bridge", false;
    /// Drop: a packet from an uplink to a managed network that is neither a tracked flow
    /// nor a published port (Docker 28's inbound policy).
    DropInbound = 21, "drop-inbound", true;
    /// Drop: a TCP packet that is not a SYN, or an ICMP echo reply, from a container with
    /// no tracked flow: only a flow's first packet creates NAT state.
    DropNoFlow = 22, "drop-no-flow", true;
    /// Drop: a new flow whose reply tuple another flow holds.
    DropCtClash = 23, "drop-ct-clash", true;
    /// Drop: a TCP segment that would change the flow's state (RST, FIN, SYN-ACK, a SYN
    /// from the answering side) outside both directions' windows, or a SYN-ACK that is
    /// not the answer to the flow's SYN.
    DropTcpWindow = 24, "drop-tcp-window", true;
    /// Drop: an ICMP error a container or outsider had no business sending (it quotes a
    /// packet that sender never received).
    DropIcmpForged = 25, "drop-icmp-forged", true;
    /// Drop: IPv6 from a container's link-local address routed beyond its link.
    DropIpv6 = 26, "drop-ipv6", true;
    /// Drop: a frame from a container veth whose endpoint is not known and whose source
    /// cannot be bound to it.
    DropUnbound = 27, "drop-unbound", true;
    /// A veth's endpoint bound from its first packet (source in its network, unowned).
    EndpointLearned = 28, "endpoint-learned", false;
    /// A packet of a host socket's own flow, left to the host although a publish covers
    /// its port.
    HostSocket = 29, "host-socket", false;
    /// A flow that had lost its forward half got it back from its reply half.
    CtRepaired = 30, "ct-repaired", false;
    /// A frame of another protocol or ethertype passed within its network.
    PassOther = 31, "pass-other", false;
    /// A container's routed packet whose TTL ends at the host: left untranslated to the
    /// kernel, which answers time-exceeded.
    TtlExpired = 32, "ttl-expired", false;
    /// Drop: a packet from outside whose TTL ends at the host.
    DropTtl = 33, "drop-ttl", true;
    /// Too big for the egress device, don't-fragment set: left untranslated to the
    /// kernel, which answers fragmentation-needed (path MTU discovery).
    FragNeeded = 34, "frag-needed", false;
    /// Drop: too big for the egress device and fragmenting allowed; bpfnet does not
    /// fragment.
    DropMtu = 35, "drop-mtu", true;
    /// Drop: the container already holds masqueraded flows for half the SNAT port range,
    /// the most one container may take from the others (toward any destination).
    DropSnatQuota = 36, "drop-snat-quota", true;
    /// A packet from outside whose TTL ended at the host, answered with time-exceeded.
    IcmpTimeExceeded = 37, "icmp-time-exceeded", false;
    /// Drop: routed traffic into or out of an internal network (Docker's `--internal`).
    DropInternal = 38, "drop-internal", true;
    /// Drop: traffic between two containers of a network without inter-container
    /// communication (`enable_icc=false`).
    DropIcc = 39, "drop-icc", true;
    /// Drop (`--xdp`): a new flow from outside beyond the new-flow budget: more first
    /// packets to published ports in one second than the new-flow table holds, which
    /// would evict half-open flows before their handshakes complete.
    DropFlood = 40, "drop-flood", true;
    /// Drop: an IPv6 router advertisement or redirect from a container (only the host
    /// routes), or neighbour discovery that came fragmented.
    DropRouterAdvert = 41, "drop-router-advert", true;
    /// Drop: an IPv6 neighbour advertisement from a container for an address it does not
    /// own, or neighbour discovery naming a link-layer address other than its MAC or sent
    /// from an address it may not claim; from an uplink, one for a local endpoint's
    /// address (neighbour cache poisoning).
    DropNeighSpoof = 42, "drop-neigh-spoof", true;
    /// Drop: a container's new flow beyond its share of the flow tables (`--ct-per-endpoint`
    /// flows it originated), so no container can fill them for the others.
    DropCtQuota = 43, "drop-ct-quota", true;
    /// Drop: a packet from outside whose TTL ends at the host, its time-exceeded withheld
    /// by the ICMP rate limit (per destination prefix or over all, as the sysctls say).
    DropIcmpRatelimit = 44, "drop-icmp-ratelimit", true;
    /// A container's broadcast or multicast frame on a network without inter-container
    /// communication, given to the host (its gateway) alone, not to its neighbours.
    IccHostOnly = 45, "icc-host-only", false;
    /// Drop: a VXLAN datagram to this host (UDP to the tunnel's port) whose outer source
    /// is not a registered cluster node, or is one but did not come the way back to that
    /// node leads (the route to it leaves by another device, or the frame's sender is not
    /// its neighbour, or the neighbour is unresolved): a forged tunnel packet.
    DropTunnelSource = 46, "drop-tunnel-source", true;
}

/// Value of `stats_v1` (per CPU).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

crate::pod::aya_pod!(Counter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{} is out of place", r.name());
        }
    }
}

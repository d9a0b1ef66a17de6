//! `to_tunnel` (TC egress on the cluster's VXLAN device), frame by frame: the host's own
//! packet to a VXLAN peer's prefix leaves with the tunnel's inner MACs (the receiving
//! node's driver drops a frame from its own MAC, which the kernel's would carry); the
//! datapath's frames pass untouched and uncounted; a packet the host forwards into the
//! tunnel (its source no host address) is `drop-spoof`, one for no tunnel prefix
//! `drop-no-route`.
use aya::maps::lpm_trie::Key;
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{Fixture, TC_ACT_OK, TC_ACT_SHOT, with_fixture},
    packet::{TCP_SYN, tcp},
    require_root,
    tables::{BRIDGE_IP, PORTS, ROUTER, SERVER, setup, step},
};
use common::{
    Be32, CLUSTER_HOST_GW, CLUSTER_VXLAN, CLUSTER_VXLAN_MAC, CLUSTER_VXLAN_SRC_MAC, ClusterRoute,
    Reason::*,
};

const PEER_VXLAN: [u8; 4] = [10, 244, 1, 5];
const PEER_GW: [u8; 4] = [10, 244, 2, 7];

/// A VXLAN peer's prefix and a host-gw peer's, both of node `ROUTER`.
fn cluster(fx: &mut Fixture) {
    let node = Be32::from_bytes(ROUTER);
    let uplink = fx.uplink;
    for (net, kind, ifindex) in [
        ([10, 244, 1, 0], CLUSTER_VXLAN, uplink),
        ([10, 244, 2, 0], CLUSTER_HOST_GW, 0),
    ] {
        let r = ClusterRoute {
            node,
            vni: 1,
            kind,
            ifindex,
        };
        fx.dp
            .maps
            .cluster
            .insert(&Key::new(24, Be32::from_bytes(net)), r, 0)
            .expect("cluster prefix");
    }
}

#[test]
fn only_the_hosts_own_packets_for_a_tunnel_prefix_get_the_tunnels_frame() {
    if !require_root() {
        return;
    }
    with_fixture("totun", 4096, |fx| {
        setup(fx, PORTS);
        cluster(fx);
        let out = step(
            fx,
            "the host's own SYN to a VXLAN peer's container",
            Hook::ToTunnel,
            &tcp((BRIDGE_IP, 40000), (PEER_VXLAN, 80), TCP_SYN, b""),
            TC_ACT_OK,
            &[Pass],
        );
        assert_eq!(
            out[0..6],
            CLUSTER_VXLAN_MAC,
            "the MAC every node's device has"
        );
        assert_eq!(
            out[6..12],
            CLUSTER_VXLAN_SRC_MAC,
            "a source MAC no node has"
        );

        let mut own = tcp((PEER_GW, 40000), (PEER_VXLAN, 80), TCP_SYN, b"");
        own[6..12].copy_from_slice(&CLUSTER_VXLAN_SRC_MAC);
        let out = step(
            fx,
            "the datapath's own frame into the tunnel",
            Hook::ToTunnel,
            &own,
            TC_ACT_OK,
            &[],
        );
        assert_eq!(out, own, "untouched");

        for (name, frame, reason) in [
            (
                "a packet the host forwards into the tunnel",
                tcp((SERVER, 40000), (PEER_VXLAN, 80), TCP_SYN, b""),
                DropSpoof,
            ),
            (
                "a packet from a host-gw peer's prefix forwarded into the tunnel",
                tcp((PEER_GW, 40000), (PEER_VXLAN, 80), TCP_SYN, b""),
                DropSpoof,
            ),
            (
                "the host's packet to a host-gw peer's prefix",
                tcp((BRIDGE_IP, 40000), (PEER_GW, 80), TCP_SYN, b""),
                DropNoRoute,
            ),
            (
                "the host's packet to no cluster prefix",
                tcp((BRIDGE_IP, 40000), (SERVER, 80), TCP_SYN, b""),
                DropNoRoute,
            ),
        ] {
            step(fx, name, Hook::ToTunnel, &frame, TC_ACT_SHOT, &[reason]);
        }
    });
}

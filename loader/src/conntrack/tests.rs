use common::{
    Be16, Be32, CT_REPLY, CT_SNAT, PROTO_UDP,
    ct::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use super::*;

fn key(s: [u8; 4], sp: u16, d: [u8; 4], dp: u16, proto: u8) -> CtKey {
    CtKey::new(
        Be32::from_bytes(s).raw(),
        Be32::from_bytes(d).raw(),
        Be16::new(sp),
        Be16::new(dp),
        proto,
    )
}

/// A masqueraded TCP flow: 172.17.0.4:40000 → 198.51.100.2:80 leaves as 192.0.2.1:61000.
fn snat_flow(fwd_seen: u8, rep_seen: u8, last_ns: u64) -> Vec<(CtKey, CtValue)> {
    let orig = key([172, 17, 0, 4], 40000, [198, 51, 100, 2], 80, PROTO_TCP);
    let to = key([192, 0, 2, 1], 61000, [198, 51, 100, 2], 80, PROTO_TCP);
    let mut fwd = CtValue::new(&to, CT_SNAT, last_ns);
    fwd.tcp_seen = fwd_seen;
    let mut rep = CtValue::new(&orig.reversed(), CT_SNAT | CT_REPLY, last_ns);
    rep.tcp_seen = rep_seen;
    vec![(orig, fwd), (to.reversed(), rep)]
}

#[test]
fn pairs_entries_into_flows() {
    let flows = flows(snat_flow(TCP_SYN | TCP_ACK, TCP_SYN | TCP_ACK, 0));
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert!(
        f.reply.is_some(),
        "the reply entry pairs with the forward one"
    );
    let info = FlowInfo::new(f, 0, &Timeouts::default());
    assert_eq!(info.nat, Nat::Snat);
    assert_eq!(info.state, FlowState::Established);
    assert_eq!(
        info.original.to_string(),
        "172.17.0.4:40000 -> 198.51.100.2:80"
    );
    assert_eq!(
        info.translated.to_string(),
        "192.0.2.1:61000 -> 198.51.100.2:80"
    );
    assert_eq!(info.expires_in_s, 6 * 3600);
}

#[test]
fn an_orphaned_reply_is_a_flow_of_its_own() {
    let mut entries = snat_flow(TCP_SYN, 0, 0);
    entries.remove(0);
    let flows = flows(entries);
    assert_eq!(flows.len(), 1);
    assert_eq!(
        FlowInfo::new(&flows[0], 0, &Timeouts::default()).state,
        FlowState::Orphan
    );
    assert_eq!(flows[0].keys().len(), 1);
}

#[test]
fn timeouts_follow_state_and_idle_time() {
    let t = Timeouts::default();
    let s = 1_000_000_000u64;
    let syn = &flows(snat_flow(TCP_SYN, 0, 0))[0];
    assert_eq!(syn.expires_in(10 * s, &t), Duration::from_secs(50));
    assert_eq!(syn.expires_in(61 * s, &t), Duration::ZERO);
    let finished = &flows(snat_flow(TCP_ACK | TCP_FIN, TCP_ACK | TCP_FIN, 0))[0];
    assert_eq!(finished.timeout(&t), t.time_wait);
    let reset = &flows(snat_flow(TCP_ACK, TCP_RST, 0))[0];
    assert_eq!(reset.timeout(&t), t.closed);
    let udp = key([172, 17, 0, 4], 5000, [198, 51, 100, 2], 53, PROTO_UDP);
    let f = Flow {
        key: udp,
        fwd: CtValue::new(&udp, CT_SNAT, 0),
        reply: None,
    };
    assert_eq!(f.timeout(&t), t.udp);
}

#[test]
fn timeouts_parse_overrides_and_reject_nonsense() {
    let t: Timeouts = "udp=2,closed=1".parse().expect("valid timeouts");
    assert_eq!(t.udp, Duration::from_secs(2));
    assert_eq!(t.closed, Duration::from_secs(1));
    assert_eq!(t.syn, Timeouts::default().syn);
    for bad in ["", "udp", "udp=", "udp=0", "udp=x", "tcp=5", "udp=5,"] {
        assert!(
            bad.parse::<Timeouts>().is_err(),
            "`{bad}` should be rejected"
        );
    }
}

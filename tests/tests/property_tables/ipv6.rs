//! The IPv6 programs under generated and mutated IPv6 frames (`property::frames6`), as
//! many as the IPv4 ones get, in two shards: `from_uplink6` and `from_container6` give
//! every frame a documented verdict; a frame bpfnet must refuse is dropped under the
//! reason the oracle (`property::oracle6`) names; `xdp_uplink` passes every IPv6 frame
//! to TC and counts nothing; a drop moves exactly one drop counter; a rewritten frame's
//! checksum verifies from scratch; malformed and non-initial frames create no flow; the
//! reply to a NAT66 (or routed) flow's first packet comes back with exactly the original
//! tuple reversed.
use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use Hook::{FromContainer as OUT, FromUplink as IN};
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{
        BRIDGE_MAC, CONTAINER_MAC, Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_MAX_FRAME,
        XDP_PASS, with_fixture,
    },
    packet::{ETH_HLEN, TCP_ACK, TCP_SYN},
    property::{
        frames::HOOKS,
        frames6::{
            Ip6, NEXT_ICMPV6, Via6, any_frame6, echo6_frame, first_packet6, follow_up6, mutate6,
            outside6, side6, syn_data6, tcp6_frame, udp6_frame,
        },
        oracle::{Class, hex},
        oracle6::{Parsed6, Tuple6, parse6, sums6},
        rng::{Rng, env_u64},
    },
    require_root,
    tables6::{C1_6, HOST6, SERVER6, setup6},
};
use common::{CT_REPLY, CtKey, CtValue, Ip6 as Addr6, PROTO_TCP, PROTO_UDP, Reason};

use super::{BATCH, DEFAULT_FRAMES, DEFAULT_SEED, EXACT_EVERY, MIXED, OUT_OF_WINDOW_FLAGS, SEEDS};

/// An address and port.
type Addr = ([u8; 16], u16);

const VERDICTS: &str = "no verdict outside OK, SHOT and REDIRECT";
const NAMED: &str = "a frame bpfnet must refuse is dropped under the reason the oracle names";
const XDP6: &str = "xdp_uplink passes every IPv6 frame to TC";
const DROPS: &str = "a drop moves exactly one drop counter, any other verdict none";
const SUMS: &str = "a rewritten frame's checksum verifies from scratch";
const NO_FLOW: &str = "no CT entry from a malformed or non-initial packet";
const IDENTITY: &str = "translate then reverse-translate is the identity";

#[test]
fn generated_ipv6_frames_keep_every_property_shard1() {
    shard6(1, "prop6a");
}

#[test]
fn generated_ipv6_frames_keep_every_property_shard2() {
    shard6(2, "prop6b");
}

fn shard6(n: u64, tag: &'static str) {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    let frames = env_u64("BPFNET_PROPTEST_FRAMES", DEFAULT_FRAMES).div_ceil(2);
    with_fixture(tag, 65_536, move |fx| {
        setup6(fx);
        let start = Instant::now();
        let mut r = Runner6::new(fx, seed, n);
        while r.frames < frames {
            r.round();
        }
        r.finish(start.elapsed());
    });
}

/// A flow's first packet, as it arrived and as it left.
struct Flow6 {
    hook: Hook,
    t_in: Tuple6,
    t_out: Tuple6,
}

#[derive(Default)]
struct Tally {
    hooks: [u64; 2],
    /// Flows whose reply came back, by `Via6`.
    identity: [u64; 3],
    untranslated: u64,
    /// Frames the oracle expected dropped, by reason.
    named: BTreeMap<&'static str, u64>,
    /// Frames of the no-new-flow batches, by class.
    batch: BTreeMap<&'static str, u64>,
    /// Frames with extension headers.
    exts: u64,
    sums_checked: u64,
    exact: u64,
}

type Snapshot6 = [Vec<(CtKey<Addr6>, CtValue<Addr6>)>; 2];

struct Runner6<'a> {
    fx: &'a mut Fixture,
    rng: Rng,
    seed: u64,
    shard: u64,
    round: u64,
    frames: u64,
    exact: Option<Vec<(Reason, common::Counter)>>,
    shot: (u64, u64),
    tally: Tally,
    findings: BTreeMap<String, (u64, Vec<String>)>,
}

impl<'a> Runner6<'a> {
    fn new(fx: &'a mut Fixture, seed: u64, shard: u64) -> Self {
        Runner6 {
            fx,
            rng: Rng(seed ^ 0x6970_7636 ^ shard.wrapping_mul(0xd1b5_4a32_d192_ed03)),
            seed,
            shard,
            round: 0,
            frames: 0,
            exact: None,
            shot: (0, 0),
            tally: Tally::default(),
            findings: BTreeMap::new(),
        }
    }

    fn finding(&mut self, property: &str, hook: Hook, f: &[u8], want: &str, got: &str) {
        let text = format!(
            "round {} frame {}, {hook:?}, frame {}: expected {want}; got {got}",
            self.round,
            self.frames,
            hex(f)
        );
        self.note(property, text);
    }

    fn note(&mut self, property: &str, text: String) {
        let (n, examples) = self.findings.entry(property.to_string()).or_default();
        *n += 1;
        if examples.len() < 3 {
            examples.push(text);
        }
    }

    fn round(&mut self) {
        flush6(self.fx);
        let before = self.fx.stats();
        self.exact = self
            .round
            .is_multiple_of(EXACT_EVERY)
            .then(|| before.clone());
        self.shot = (0, 0);
        let flows: Vec<Flow6> = (0..SEEDS).filter_map(|_| self.start_flow()).collect();

        let ct = snapshot6(self.fx);
        let (mut batch, mut later) = (Vec::new(), Vec::new());
        for _ in 0..BATCH {
            let (hook, mut f) = match self.rng.below(10) {
                0..=3 if !flows.is_empty() => {
                    let fl = &flows[self.rng.below(flows.len())];
                    follow_up6(&mut self.rng, fl.hook, fl.t_in, fl.t_out)
                }
                _ => {
                    let hook = self.rng.pick(&HOOKS);
                    (hook, any_frame6(&mut self.rng, hook))
                }
            };
            if self.rng.one_in(2) {
                mutate6(&mut self.rng, &mut f);
            }
            let p = parse6(&f);
            if p.class == Class::First {
                later.push((hook, f));
                continue;
            }
            *self.tally.batch.entry(p.what).or_default() += 1;
            self.run(hook, &f, &p);
            batch.push((hook, f));
        }
        self.no_new_flow(&ct, &batch);
        for (hook, f) in later {
            let p = parse6(&f);
            self.run(hook, &f, &p);
        }
        for _ in 0..MIXED {
            let hook = self.rng.pick(&HOOKS);
            let mut f = any_frame6(&mut self.rng, hook);
            if self.rng.one_in(2) {
                mutate6(&mut self.rng, &mut f);
            }
            let p = parse6(&f);
            self.run(hook, &f, &p);
        }
        self.drop_totals(&before);
        self.round += 1;
    }

    /// Run one frame through `xdp_uplink` (off the uplink) and its TC program; check the
    /// verdicts, the named drop, the sums of what it became and, in an exact round, the
    /// counters it moved.
    fn run(&mut self, hook: Hook, f: &[u8], p: &Parsed6) -> (u32, Vec<u8>) {
        if hook == IN && f.len() <= XDP_MAX_FRAME {
            let x = self.fx.run_xdp(f);
            if x != XDP_PASS {
                self.finding(XDP6, hook, f, "XDP_PASS", &x.to_string());
            }
        }
        let (v, out) = self.fx.run(hook, f);
        self.frames += 1;
        self.tally.hooks[usize::from(hook == OUT)] += 1;
        if p.exts > 0 {
            self.tally.exts += 1;
        }
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&v) {
            self.finding(VERDICTS, hook, f, "0, 2 or 7", &v.to_string());
        }
        let named = p.drop_on(hook, f);
        if let Some(r) = named {
            *self.tally.named.entry(r.name()).or_default() += 1;
            if v != TC_ACT_SHOT {
                let want = format!("SHOT ({})", r.name());
                let got = format!("verdict {v} ({})", p.what);
                self.finding(NAMED, hook, f, &want, &got);
            }
        }
        if v == TC_ACT_SHOT {
            self.shot.0 += 1;
            self.shot.1 += f.len() as u64;
        } else if out.get(ETH_HLEN..) != f.get(ETH_HLEN..)
            && matches!(p.class, Class::First | Class::NotFirst)
            && p.exts == 0
            && sums6(f).is_ok()
        {
            self.tally.sums_checked += 1;
            let q = parse6(&out);
            let r = if q.class == Class::Malformed || q.class == Class::NotIp {
                Err(format!("a malformed frame ({})", q.what))
            } else {
                sums6(&out)
            };
            if let Err(e) = r {
                self.finding(SUMS, hook, f, "valid sums", &format!("{e}: {}", hex(&out)));
            }
        }
        if let Some(before) = self.exact.take() {
            let after = self.fx.stats();
            self.tally.exact += 1;
            let moved: Vec<(Reason, u64)> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1.packets != b.1.packets)
                .map(|(a, b)| (a.0, a.1.packets - b.1.packets))
                .collect();
            let drops: Vec<&(Reason, u64)> = moved.iter().filter(|m| m.0.is_drop()).collect();
            let shown = || {
                moved
                    .iter()
                    .map(|(r, n)| format!("{} +{n}", r.name()))
                    .collect::<Vec<_>>()
            };
            if let Some(r) = named
                && drops != [&(r, 1)]
            {
                let want = format!("{} +1", r.name());
                self.finding(NAMED, hook, f, &want, &format!("{:?}", shown()));
            } else if drops.iter().map(|d| d.1).sum::<u64>() != u64::from(v == TC_ACT_SHOT) {
                let want = if v == TC_ACT_SHOT {
                    "one drop counter +1 (xdp_uplink counts nothing)"
                } else {
                    "no drop counter"
                };
                let got = format!("verdict {v}, counters {:?}", shown());
                self.finding(DROPS, hook, f, want, &got);
            }
            self.exact = Some(after);
        }
        (v, out)
    }

    /// Drops counted this round against the frames that got SHOT.
    fn drop_totals(&mut self, before: &[(Reason, common::Counter)]) {
        let after = self.fx.stats();
        let (mut packets, mut bytes) = (0, 0);
        for (a, b) in after.iter().zip(before).filter(|(a, _)| a.0.is_drop()) {
            packets += a.1.packets - b.1.packets;
            bytes += a.1.bytes - b.1.bytes;
        }
        if (packets, bytes) != self.shot {
            let text = format!(
                "round {}: {} frames ({} bytes) got SHOT, drop counters moved by {packets} \
                 packets ({bytes} bytes)",
                self.round, self.shot.0, self.shot.1
            );
            self.note(DROPS, text);
        }
    }

    /// No flow that was not there before the batch; if there is one, the batch is
    /// replayed from the same CT state a frame at a time to name the frames.
    fn no_new_flow(&mut self, before: &Snapshot6, batch: &[(Hook, Vec<u8>)]) {
        let mut known: HashSet<CtKey<Addr6>> = before.iter().flatten().map(|(k, _)| *k).collect();
        if new_flows6(self.fx, &known).is_empty() {
            return;
        }
        restore6(self.fx, before);
        for (hook, f) in batch {
            let (v, _) = self.fx.run(*hook, f);
            if v == TC_ACT_SHOT {
                self.shot.0 += 1;
                self.shot.1 += f.len() as u64;
            }
            if let Some(k) = new_flows6(self.fx, &known).first() {
                let what = parse6(f).what;
                let got = format!("a new flow from {:?} ({what})", k.src_ip.octets());
                self.finding(NO_FLOW, *hook, f, "no new CT entry", &got);
                known.extend(keys6(self.fx));
            }
        }
        if self.exact.is_some() {
            self.exact = Some(self.fx.stats());
        }
    }

    /// Run a valid first packet; when it is forwarded, the reply to it must come back
    /// with the original tuple, reversed.
    fn start_flow(&mut self) -> Option<Flow6> {
        let (via, hook, frame) = first_packet6(&mut self.rng);
        let p = parse6(&frame);
        assert!(
            p.class == Class::First && sums6(&frame).is_ok(),
            "the generator made a first packet that is not one (a test bug): {}",
            hex(&frame)
        );
        let (v, out) = self.run(hook, &frame, &p);
        let (Some(t_in), Some(t_out)) = (p.tuple, parse6(&out).tuple) else {
            self.tally.untranslated += 1;
            return None;
        };
        let translated = t_in != t_out;
        if v != TC_ACT_REDIRECT || translated != (via != Via6::Routed) {
            self.tally.untranslated += 1;
            return None;
        }
        self.tally.identity[via as usize] += 1;
        self.reply_comes_back(t_in, t_out, &frame);
        Some(Flow6 { hook, t_in, t_out })
    }

    fn reply_comes_back(&mut self, t_in: Tuple6, t_out: Tuple6, first: &[u8]) {
        let rng = &mut self.rng;
        let t = t_out.reversed();
        let ip = Ip6::new(rng, t.src, t.dst);
        let body = rng.upto(48);
        let mut reply = match t.proto {
            PROTO_TCP => {
                let seq = u32::from_be_bytes(
                    first[ETH_HLEN + 44..ETH_HLEN + 48]
                        .try_into()
                        .expect("4 bytes"),
                );
                let ack = seq.wrapping_add(1 + syn_data6(first));
                let flags = TCP_SYN | TCP_ACK;
                tcp6_frame(&ip, (t.sport, t.dport), (rng.u32(), ack), flags, 0, &body)
            }
            PROTO_UDP => udp6_frame(&ip, (t.sport, t.dport), &body),
            NEXT_ICMPV6 => echo6_frame(&ip, false, t.dport, rng.u16(), &body),
            other => ip.build(other, body, None),
        };
        let hook = side6(t.src);
        if hook == OUT {
            reply[..6].copy_from_slice(&BRIDGE_MAC);
            reply[6..12].copy_from_slice(&CONTAINER_MAC);
        }
        let p = parse6(&reply);
        let (v, back) = self.run(hook, &reply, &p);
        let want = t_in.reversed();
        let got = parse6(&back).tuple;
        let valid = sums6(&back);
        if v != TC_ACT_REDIRECT || got != Some(want) || valid.is_err() {
            let want = format!(
                "verdict 7, {want}, valid sums (first packet {})",
                hex(first)
            );
            let got = format!("verdict {v}, {got:?}, {valid:?}: {}", hex(&back));
            self.finding(IDENTITY, hook, &reply, &want, &got);
        }
    }

    fn finish(self, took: Duration) {
        let t = &self.tally;
        eprintln!(
            "IPv6 shard {} (seed {:#x}): {} frames ({} from_uplink6, {} from_container6; {} \
             with extension headers) in {took:.1?}, {} rounds; {} with exact counters; sums \
             checked on {} rewritten frames; flows reversed: {} NAT66 in, {} NAT66 out, {} \
             routed; {} first packets not forwarded; named drops expected: {:?}; \
             no-new-flow batches: {:?}",
            self.shard,
            self.seed,
            self.frames,
            t.hooks[0],
            t.hooks[1],
            t.exts,
            self.round,
            t.exact,
            t.sums_checked,
            t.identity[Via6::Dnat66 as usize],
            t.identity[Via6::Snat66 as usize],
            t.identity[Via6::Routed as usize],
            t.untranslated,
            t.named,
            t.batch,
        );
        if !self.findings.is_empty() {
            let mut report = String::new();
            for (property, (n, examples)) in &self.findings {
                report.push_str(&format!("\n- {property}: {n} violation(s)"));
                for e in examples {
                    report.push_str(&format!("\n    {e}"));
                }
            }
            panic!(
                "IPv6 shard {} with BPFNET_PROPTEST_SEED={:#x}: properties violated:{report}",
                self.shard, self.seed
            );
        }
        assert!(
            t.identity.iter().all(|&n| n > 0),
            "the generator forwarded too few flows to test the identity (a test bug): {:?}",
            t.identity
        );
        let named = [
            Reason::DropMalformed,
            Reason::DropTruncated,
            Reason::DropRouterAdvert,
            Reason::DropNeighSpoof,
        ];
        assert!(
            named.iter().all(|r| t.named.contains_key(r.name())),
            "the generator made too few frames of each named drop (a test bug): {:?}",
            t.named
        );
    }
}

fn snapshot6(fx: &Fixture) -> Snapshot6 {
    let m = &fx.dp.maps;
    [&m.ct6, &m.ct6_new].map(|map| map.iter().filter_map(Result::ok).collect())
}

fn keys6(fx: &Fixture) -> Vec<CtKey<Addr6>> {
    snapshot6(fx)
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect()
}

/// Forward entries (a flow's original direction) not among `known`.
fn new_flows6(fx: &Fixture, known: &HashSet<CtKey<Addr6>>) -> Vec<CtKey<Addr6>> {
    snapshot6(fx)
        .into_iter()
        .flatten()
        .filter(|(k, v)| v.flags & CT_REPLY == 0 && !known.contains(k))
        .map(|(k, _)| k)
        .collect()
}

fn flush6(fx: &mut Fixture) {
    let m = &mut fx.dp.maps;
    for map in [&mut m.ct6, &mut m.ct6_new] {
        let keys: Vec<CtKey<Addr6>> = map.keys().filter_map(Result::ok).collect();
        for k in keys {
            map.remove(&k).expect("remove a CT entry");
        }
    }
}

fn restore6(fx: &mut Fixture, s: &Snapshot6) {
    flush6(fx);
    let m = &mut fx.dp.maps;
    for (map, entries) in [&mut m.ct6, &mut m.ct6_new].into_iter().zip(s) {
        for (k, v) in entries {
            map.insert(k, v, 0).expect("restore a CT entry");
        }
    }
}

const OUT_OF_WINDOW: &str = "a segment out of window never changes an IPv6 flow";

/// As `a_segment_out_of_window_never_changes_a_flow`, for IPv6: established NAT66 flows
/// (DNAT in to the ULA container, masquerade out, each through its whole handshake) take
/// seeded random TCP segments in either direction whose sequence and acknowledgment
/// numbers lie far outside both directions' windows: every one leaves both CT entries
/// byte-identical.
#[test]
fn a_segment_out_of_window_never_changes_an_ipv6_flow() {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    with_fixture("propwin6", 4096, move |fx| {
        setup6(fx);
        let mut rng = Rng(seed ^ 0x7763_705f_7769_6e36);
        let mut findings: Vec<String> = Vec::new();
        let mut checked = 0u64;
        for round in 0..40u16 {
            flush6(fx);
            // (hook, source, destination) of each direction, as packets reach the datapath.
            let dnat = rng.one_in(2);
            let (fwd, rev) = if dnat {
                let client = (outside6(&mut rng), 20_000 + round);
                ((IN, client, (HOST6, 8038)), (OUT, (C1_6, 8080), client))
            } else {
                let server = (SERVER6, 443);
                (
                    (OUT, (C1_6, 20_000 + round), server),
                    (IN, server, (HOST6, 0)),
                )
            };
            let (c_isn, s_isn) = (rng.u32(), rng.u32());
            let seg = |rng: &mut Rng, (_, s, d): (Hook, Addr, Addr), sa, flags, body: &[u8]| {
                tcp6_frame(&Ip6::new(rng, s.0, d.0), (s.1, d.1), sa, flags, 0, body)
            };
            let syn = seg(&mut rng, fwd, (c_isn, 0), TCP_SYN, &[]);
            let (v, out) = fx.run(fwd.0, &syn);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN is translated");
            let rev = if dnat {
                rev
            } else {
                let port = parse6(&out).tuple.expect("a translated SYN").sport;
                (rev.0, rev.1, (HOST6, port))
            };
            let syn_ack = (s_isn, c_isn.wrapping_add(1));
            let answer = seg(&mut rng, rev, syn_ack, TCP_SYN | TCP_ACK, &[]);
            let (v, _) = fx.run(rev.0, &answer);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN-ACK is tracked");
            let acked = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
            let last = seg(&mut rng, fwd, acked, TCP_ACK, &[]);
            let (v, _) = fx.run(fwd.0, &last);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the last ACK is tracked");
            let before = snapshot6(fx);
            assert_eq!(before[0].len(), 2, "round {round}: established, main table");
            for _ in 0..200 {
                let (dir, isn, peer_isn) = if rng.one_in(2) {
                    (fwd, c_isn, s_isn)
                } else {
                    (rev, s_isn, c_isn)
                };
                // At least 2^24 from anything either side sent or acknowledged.
                let far = |rng: &mut Rng, base: u32| {
                    base.wrapping_add(0x0100_0000 + rng.below(0xfe00_0000) as u32)
                };
                let seq = far(&mut rng, isn);
                let ack = far(&mut rng, peer_isn);
                let flags = rng.pick(&OUT_OF_WINDOW_FLAGS);
                let body = rng.upto(32);
                let frame = seg(&mut rng, dir, (seq, ack), flags, &body);
                let (v, _) = fx.run(dir.0, &frame);
                checked += 1;
                if snapshot6(fx) != before {
                    findings.push(format!(
                        "round {round}, {:?}, flags {flags:#04x}, verdict {v}: {}",
                        dir.0,
                        hex(&frame)
                    ));
                    restore6(fx, &before);
                }
            }
        }
        eprintln!("{checked} IPv6 segments out of window (seed {seed:#x})");
        assert!(
            findings.is_empty(),
            "{OUT_OF_WINDOW} (BPFNET_PROPTEST_SEED={seed:#x}): {} violation(s), first: {:?}",
            findings.len(),
            &findings[..findings.len().min(3)]
        );
    });
}

//! Property tests (issue #11): generated and mutated frames, seeded and reproducible, at
//! least 1,000,000 of them through both hooks in two shards that run in parallel. Every
//! frame gets a documented verdict; `xdp_uplink` drops exactly the uplink frames the
//! oracle says it must, under the named reason; a drop moves exactly one drop counter;
//! a rewritten frame's checksums verify from scratch; batches of malformed and
//! non-initial frames create no CT entry; the reply to a translated first packet, and an
//! ICMP error about it, come back with exactly the original tuple reversed. Violations
//! are collected, then reported with the seed (`BPFNET_PROPTEST_SEED` replays it), the
//! hook and the frame.
//! The generator and the oracle live in `bpfnet_tests::property`; this file runs them,
//! `property_tables/ipv6.rs` the same for the IPv6 programs.
use std::{
    collections::{BTreeMap, HashSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use Hook::{FromContainer as OUT, FromUplink as IN};
use bpfnet::datapath::Hook;
use bpfnet_tests::{
    fixture::{
        Fixture, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_MAX_FRAME, XDP_PASS,
        with_fixture,
    },
    packet::{ETH_HLEN, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    property::{
        frames::{
            Flow, HOOKS, Ip, TCP_PSH, Via, any_frame, echo_frame, error_frame, first_packet,
            follow_up, icmp_frame, mutate, not_first, outside, side, tcp_frame, udp_frame,
        },
        oracle::{
            Class, FragId, Parsed, Tuple, ct_key, hex, in_managed, key_tuple, parse, sums,
            syn_data, xdp_expect,
        },
        rng::{Rng, env_u64},
    },
    require_root,
    tables::{C1, C2, HOST, PORTS, ROUTER, entries, setup},
};
use common::{CT_REPLY, CtKey, CtValue, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Reason};

#[path = "property_tables/ipv6.rs"]
mod ipv6;

const DEFAULT_SEED: u64 = 0x6270_666e_6574_0011;
/// Frames over both shards; `BPFNET_PROPTEST_FRAMES` overrides it.
const DEFAULT_FRAMES: u64 = 1_000_000;
/// Per round: flows started, frames in the no-new-flow batch, frames of any kind.
const SEEDS: usize = 16;
const BATCH: usize = 400;
const MIXED: usize = 400;
/// Every this many rounds the counters are read around each frame, not once a round.
const EXACT_EVERY: u64 = 16;

#[test]
fn generated_and_mutated_frames_keep_every_property_shard1() {
    shard(1, "prop1");
}

#[test]
fn generated_and_mutated_frames_keep_every_property_shard2() {
    shard(2, "prop2");
}

fn shard(n: u64, tag: &'static str) {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    let frames = env_u64("BPFNET_PROPTEST_FRAMES", DEFAULT_FRAMES).div_ceil(2);
    with_fixture(tag, 65_536, move |fx| {
        setup(fx, PORTS);
        let start = Instant::now();
        let mut r = Runner::new(fx, seed, n);
        while r.frames < frames {
            r.round();
        }
        r.finish(start.elapsed());
    });
}

const VERDICTS: &str = "no verdict outside OK, SHOT and REDIRECT";
const DROPS: &str = "a drop moves exactly one drop counter, any other verdict none";
const SUMS: &str = "a rewritten frame's checksums verify from scratch";
const NOT_IP: &str = "only IPv4 frames are rewritten past their Ethernet header";
const NO_FLOW: &str = "no CT entry from a malformed or non-initial packet";
const IDENTITY: &str = "translate then reverse-translate is the identity";
const XDP_SUBSET: &str = "xdp_uplink drops only what from_uplink drops, for the same reason";
const XDP_ORACLE: &str = "xdp_uplink drops exactly what from_uplink drops before any state \
     (malformed, truncated, a managed source, untracked into the managed network), counted \
     under its named reason, and passes the rest";
const FORGED: &str = "a forged uplink source (a managed network's address) never creates a flow";
const ICMP_BACK: &str = "an ICMP error about a translated flow comes back with the original tuple";

#[derive(Default)]
struct Tally {
    hooks: [u64; 2],
    /// Frames of the no-new-flow batches, by class.
    batch: BTreeMap<&'static str, u64>,
    sums_checked: u64,
    /// Rewritten, but malformed or with bad sums on the way in: nothing to expect.
    unchecked: u64,
    identity: [u64; 3],
    untranslated: u64,
    errors_back: u64,
    exact: u64,
    /// Uplink frames `xdp_uplink` dropped early.
    xdp_drops: u64,
    /// Uplink frames the oracle expects `xdp_uplink` to drop, by reason.
    xdp_reasons: BTreeMap<&'static str, u64>,
    /// First packets off the uplink from a managed network's address, checked to create no
    /// flow.
    forged: u64,
}

struct Runner<'a> {
    fx: &'a mut Fixture,
    rng: Rng,
    seed: u64,
    shard: u64,
    round: u64,
    frames: u64,
    /// The counters after the last frame, in a round that checks them frame by frame.
    exact: Option<Vec<(Reason, common::Counter)>>,
    /// Drops this round: frames and bytes.
    shot: (u64, u64),
    firsts: HashSet<FragId>,
    tally: Tally,
    /// Per property: how many violations, and the first few.
    findings: BTreeMap<String, (u64, Vec<String>)>,
}

impl<'a> Runner<'a> {
    fn new(fx: &'a mut Fixture, seed: u64, shard: u64) -> Self {
        Runner {
            fx,
            rng: Rng(seed ^ shard.wrapping_mul(0xd1b5_4a32_d192_ed03)),
            seed,
            shard,
            round: 0,
            frames: 0,
            exact: None,
            shot: (0, 0),
            firsts: HashSet::new(),
            tally: Tally::default(),
            findings: BTreeMap::new(),
        }
    }

    fn parse(&self, f: &[u8]) -> Parsed {
        parse(f, &self.firsts)
    }

    fn finding(&mut self, property: &str, hook: Hook, frame: &[u8], want: &str, got: &str) {
        self.finding_at(self.frames, property, hook, frame, want, got);
    }

    /// A violation by the `n`th frame (counted from 1).
    fn finding_at(&mut self, n: u64, property: &str, hook: Hook, f: &[u8], want: &str, got: &str) {
        let text = format!(
            "round {} frame {n}, {hook:?}, frame {}: expected {want}; got {got}",
            self.round,
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

    /// One round: flows started (each checked against its reply), a batch of frames that
    /// may create no CT entry, then frames of any kind; CT flushed before, drop counters
    /// compared after.
    fn round(&mut self) {
        flush(self.fx);
        let before = self.fx.stats();
        self.exact = self
            .round
            .is_multiple_of(EXACT_EVERY)
            .then(|| before.clone());
        self.shot = (0, 0);
        let flows: Vec<Flow> = (0..SEEDS).filter_map(|_| self.start_flow()).collect();

        let ct = snapshot(self.fx);
        let (mut batch, mut later) = (Vec::new(), Vec::new());
        for _ in 0..BATCH {
            let (hook, mut f) = match self.rng.below(10) {
                0..=3 if !flows.is_empty() => {
                    let i = self.rng.below(flows.len());
                    follow_up(&mut self.rng, &flows[i])
                }
                0..=5 => not_first(&mut self.rng),
                _ => {
                    let hook = self.rng.pick(&HOOKS);
                    (hook, any_frame(&mut self.rng, hook))
                }
            };
            if self.rng.one_in(2) {
                mutate(&mut self.rng, &mut f);
            }
            let p = self.parse(&f);
            if p.class == Class::First {
                later.push((hook, f));
                continue;
            }
            *self.tally.batch.entry(p.what).or_default() += 1;
            self.run(hook, &f, &p);
            batch.push((hook, f, self.frames));
        }
        self.no_new_flow(&ct, &batch);

        for (hook, f) in later {
            let p = self.parse(&f);
            self.run(hook, &f, &p);
        }
        for _ in 0..MIXED {
            let hook = self.rng.pick(&HOOKS);
            let mut f = any_frame(&mut self.rng, hook);
            if self.rng.one_in(2) {
                mutate(&mut self.rng, &mut f);
            }
            let p = self.parse(&f);
            self.run(hook, &f, &p);
        }
        self.drop_totals(&before);
        self.round += 1;
    }

    /// Run one frame; check its verdict, the sums of what it became and, in an exact
    /// round, the counters it moved.
    fn run(&mut self, hook: Hook, frame: &[u8], p: &Parsed) -> (u32, Vec<u8>) {
        if let Some(id) = p.first_frag {
            self.firsts.insert(id);
        }
        // `--xdp` runs `xdp_uplink` first on the uplink: it must drop a subset of what
        // `from_uplink` drops (same state, same reason), and pass the rest untouched.
        let forged = forged_key(hook, p);
        let had_flow = forged.is_some_and(|(key, _)| self.has_flow(&key));
        let on_xdp = hook == IN && frame.len() <= XDP_MAX_FRAME;
        let xdp_want = on_xdp.then(|| {
            let tracked = p.tuple.is_some_and(|t| self.has_flow(&ct_key(&t)));
            xdp_expect(frame, p, tracked)
        });
        let xdp = on_xdp.then(|| self.fx.run_xdp(frame));
        let (v, out) = self.fx.run(hook, frame);
        self.frames += 1;
        match (xdp, xdp_want) {
            (Some(x), Some(want)) if x != want.map_or(XDP_PASS, |_| XDP_DROP) => {
                let want = want.map_or("XDP_PASS".into(), |r| format!("XDP_DROP ({})", r.name()));
                let got = format!("verdict {x} ({})", p.what);
                self.finding(XDP_ORACLE, hook, frame, &want, &got);
            }
            (Some(XDP_DROP), _) if v != TC_ACT_SHOT => {
                let got = format!("XDP_DROP, from_uplink's verdict {v}");
                self.finding(XDP_SUBSET, hook, frame, "a drop by both", &got);
            }
            _ => {}
        }
        let xdp_dropped = xdp == Some(XDP_DROP);
        if let Some(r) = xdp_want.flatten() {
            *self.tally.xdp_reasons.entry(r.name()).or_default() += 1;
        }
        if xdp_dropped {
            self.tally.xdp_drops += 1;
            // Counted by each program.
            self.shot.0 += 1;
            self.shot.1 += frame.len() as u64;
        }
        self.tally.hooks[usize::from(hook == OUT)] += 1;
        if let Some((key, t)) = forged {
            self.tally.forged += 1;
            if !had_flow && self.has_flow(&key) {
                self.finding(
                    FORGED,
                    hook,
                    frame,
                    "no new CT entry",
                    &format!("a flow {t}"),
                );
            }
        }
        if ![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].contains(&v) {
            self.finding(VERDICTS, hook, frame, "0, 2 or 7", &v.to_string());
        }
        if v == TC_ACT_SHOT {
            self.shot.0 += 1;
            self.shot.1 += frame.len() as u64;
        } else if out.get(ETH_HLEN..) != frame.get(ETH_HLEN..) {
            self.rewritten(hook, frame, p, &out);
        }
        if let Some(before) = self.exact.take() {
            let after = self.fx.stats();
            self.tally.exact += 1;
            let moved: Vec<String> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1.packets != b.1.packets)
                .map(|(a, b)| format!("{} +{}", a.0.name(), a.1.packets - b.1.packets))
                .collect();
            let drops: u64 = after
                .iter()
                .zip(&before)
                .filter(|(a, _)| a.0.is_drop())
                .map(|(a, b)| a.1.packets - b.1.packets)
                .sum();
            let reason = xdp_want.flatten().filter(|_| xdp_dropped);
            if let Some(r) = reason
                && moved != [format!("{} +2", r.name())]
            {
                let want = format!("{} +2 (xdp_uplink and from_uplink)", r.name());
                let got = format!("counters {moved:?}");
                self.finding(XDP_ORACLE, hook, frame, &want, &got);
            } else if xdp_dropped && (moved.len() != 1 || drops != 2) {
                let got = format!("counters {moved:?}");
                self.finding(XDP_SUBSET, hook, frame, "one drop counter +2", &got);
            } else if !xdp_dropped && drops != u64::from(v == TC_ACT_SHOT) {
                let want = if v == TC_ACT_SHOT {
                    "one drop counter"
                } else {
                    "no drop counter"
                };
                let got = format!("verdict {v}, counters {moved:?}");
                self.finding(DROPS, hook, frame, want, &got);
            }
            self.exact = Some(after);
        }
        (v, out)
    }

    fn has_flow(&self, key: &CtKey) -> bool {
        let m = &self.fx.dp.maps;
        m.ct.get(key, 0).is_ok() || m.ct_new.get(key, 0).is_ok()
    }

    fn rewritten(&mut self, hook: Hook, frame: &[u8], p: &Parsed, out: &[u8]) {
        match p.class {
            Class::NotIp => self.finding(NOT_IP, hook, frame, "the frame unchanged", &hex(out)),
            Class::Malformed => self.tally.unchecked += 1,
            _ if sums(frame).is_err() => self.tally.unchecked += 1,
            _ => {
                self.tally.sums_checked += 1;
                let q = self.parse(out);
                let r = if matches!(q.class, Class::Malformed | Class::NotIp) {
                    Err(format!("a malformed frame ({})", q.what))
                } else {
                    sums(out)
                };
                if let Err(e) = r {
                    self.finding(
                        SUMS,
                        hook,
                        frame,
                        "valid sums",
                        &format!("{e}: {}", hex(out)),
                    );
                }
            }
        }
    }

    /// Drops counted this round against the frames that got SHOT: as many, as many bytes.
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

    /// No entry of either CT table that was not there before the batch.
    /// No flow in either CT table that was not there before the batch. If there is one,
    /// the batch is replayed from the same CT state, a frame at a time, to name the
    /// frames that create one.
    fn no_new_flow(&mut self, before: &Snapshot, batch: &[(Hook, Vec<u8>, u64)]) {
        let mut known: HashSet<CtKey> = before.iter().flatten().map(|(k, _)| *k).collect();
        if new_flows(self.fx, &known).is_empty() {
            return;
        }
        restore(self.fx, before);
        let mut named = false;
        for (hook, f, n) in batch {
            let (v, _) = self.fx.run(*hook, f);
            if v == TC_ACT_SHOT {
                self.shot.0 += 1;
                self.shot.1 += f.len() as u64;
            }
            let new = new_flows(self.fx, &known);
            if let Some(t) = new.first() {
                named = true;
                let what = self.parse(f).what;
                let got = format!("a new flow {t}");
                let property = format!("{NO_FLOW} ({what})");
                self.finding_at(*n, &property, *hook, f, "no new CT entry", &got);
                known.extend(ct_keys(self.fx));
            }
        }
        if !named {
            let text = format!(
                "round {}: the batch created flows, its replay none",
                self.round
            );
            self.note(NO_FLOW, text);
        }
        if self.exact.is_some() {
            self.exact = Some(self.fx.stats());
        }
    }

    /// Run a valid first packet; when it is translated, an ICMP error about it and the
    /// reply to it must come back with the original tuple, reversed.
    fn start_flow(&mut self) -> Option<Flow> {
        let (via, hook, frame) = first_packet(&mut self.rng);
        let p = self.parse(&frame);
        assert!(
            p.class == Class::First && sums(&frame).is_ok(),
            "the generator made a first packet that is not one (a test bug): {}",
            hex(&frame)
        );
        let (v, out) = self.run(hook, &frame, &p);
        let t_out = self.parse(&out).tuple;
        let (Some(t_in), Some(t_out)) = (p.tuple, t_out) else {
            self.tally.untranslated += 1;
            return None;
        };
        if v != TC_ACT_REDIRECT || t_in == t_out {
            self.tally.untranslated += 1;
            return None;
        }
        self.tally.identity[via as usize] += 1;
        let flow = Flow {
            hook,
            t_in,
            t_out,
            seq: p.seq,
            icmp: p.icmp,
            out,
        };
        if self.rng.one_in(2) {
            self.error_comes_back(&flow, &frame);
        }
        self.reply_comes_back(&flow, &frame);
        Some(flow)
    }

    fn reply_comes_back(&mut self, flow: &Flow, first: &[u8]) {
        let rng = &mut self.rng;
        let t = flow.t_out.reversed();
        let ip = Ip::new(rng, t.src, t.dst);
        let body = rng.upto(48);
        let reply = match (t.proto, flow.icmp) {
            (PROTO_TCP, _) => {
                // The SYN-ACK acknowledges all the SYN occupies, its data too.
                let seq_ack = (rng.u32(), flow.seq.wrapping_add(1 + syn_data(first)));
                tcp_frame(
                    &ip,
                    (t.sport, t.dport),
                    seq_ack,
                    TCP_SYN | TCP_ACK,
                    0,
                    &body,
                )
            }
            (PROTO_UDP, _) => udp_frame(&ip, (t.sport, t.dport), &body, rng.one_in(2)),
            (PROTO_ICMP, Some(8)) => echo_frame(&ip, false, t.dport, rng.u16(), &body),
            (PROTO_ICMP, _) => icmp_frame(&ip, 14, 0, [0; 4], &[0; 12]),
            (proto, _) => ip.build(proto, body, None),
        };
        let hook = side(t.src);
        let p = self.parse(&reply);
        let (v, back) = self.run(hook, &reply, &p);
        let want = flow.t_in.reversed();
        let got = self.parse(&back).tuple;
        let valid = if got.is_some() {
            sums(&back)
        } else {
            Err("malformed".into())
        };
        if v != TC_ACT_REDIRECT || got != Some(want) || valid.is_err() {
            let want = format!(
                "verdict 7, {want}, valid sums (first packet {} left as {})",
                hex(first),
                hex(&flow.out)
            );
            let got = format!("verdict {v}, {got:?}, {valid:?}: {}", hex(&back));
            self.finding(IDENTITY, hook, &reply, &want, &got);
        }
    }

    /// An error from the translated packet's destination (or a router on the way to
    /// it) quoting the packet as it left.
    fn error_comes_back(&mut self, flow: &Flow, first: &[u8]) {
        let echo = flow.icmp == Some(8);
        if !echo && ![PROTO_TCP, PROTO_UDP].contains(&flow.t_in.proto) {
            return;
        }
        let rng = &mut self.rng;
        let sender = if side(flow.t_out.dst) == OUT || rng.one_in(2) {
            flow.t_out.dst
        } else {
            ROUTER
        };
        let ip = Ip::new(rng, sender, flow.t_out.src);
        let err = error_frame(rng, &ip, &flow.out);
        let hook = side(sender);
        let p = self.parse(&err);
        let (v, back) = self.run(hook, &err, &p);
        self.tally.errors_back += 1;
        let from = if sender == flow.t_out.dst {
            flow.t_in.dst
        } else {
            sender
        };
        let want = (Some((from, flow.t_in.src)), Some(flow.t_in));
        let q = self.parse(&back);
        let got = (q.tuple.map(|t| (t.src, t.dst)), q.quoted);
        let valid = if q.class == Class::NotFirst {
            sums(&back)
        } else {
            Err(q.what.into())
        };
        if v != TC_ACT_REDIRECT || got != want || valid.is_err() {
            let want = format!(
                "verdict 7, from {} to {}, quoting {}, valid sums (first packet {})",
                Ipv4Addr::from(from),
                Ipv4Addr::from(flow.t_in.src),
                flow.t_in,
                hex(first)
            );
            let got = format!("verdict {v}, {got:?}, {valid:?}: {}", hex(&back));
            self.finding(ICMP_BACK, hook, &err, &want, &got);
        }
    }

    fn finish(self, took: Duration) {
        let t = &self.tally;
        eprintln!(
            "shard {} (seed {:#x}): {} frames ({} from_uplink, {} from_container) in {took:.1?}, \
             {} rounds; {} with exact counters; sums checked on {} rewritten frames ({} rewritten \
             from bad input, not checked); flows translated and reversed: {} DNAT, {} SNAT, {} \
             hairpin ({} ICMP errors), {} first packets not translated; {} uplink frames \
             dropped early by xdp_uplink (expected: {:?}); {} first packets from a managed source off the \
             uplink; no-new-flow batches: {:?}",
            self.shard,
            self.seed,
            self.frames,
            t.hooks[0],
            t.hooks[1],
            self.round,
            t.exact,
            t.sums_checked,
            t.unchecked,
            t.identity[Via::Dnat as usize],
            t.identity[Via::Snat as usize],
            t.identity[Via::Hairpin as usize],
            t.errors_back,
            t.untranslated,
            t.xdp_drops,
            t.xdp_reasons,
            t.forged,
            t.batch
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
                "shard {} with BPFNET_PROPTEST_SEED={:#x}: properties violated:{report}",
                self.shard, self.seed
            );
        }
        assert!(
            t.identity.iter().all(|&n| n > 0)
                && t.errors_back > 0
                && t.xdp_drops > 0
                && t.forged > 0,
            "the generator translated too little to test the identity (a test bug)"
        );
        let named = [
            Reason::DropMalformed,
            Reason::DropTruncated,
            Reason::DropSpoof,
            Reason::DropInbound,
        ];
        assert!(
            named.iter().all(|r| t.xdp_reasons.contains_key(r.name())),
            "the generator made too few frames xdp_uplink must drop (a test bug): {:?}",
            t.xdp_reasons
        );
    }
}

/// The CT key a first packet off the uplink would create when its source lies in the
/// fixture's managed network (172.17.0.0/16: its containers, free addresses, the
/// bridge's): such a packet is forged and must create none.
fn forged_key(hook: Hook, p: &Parsed) -> Option<(CtKey, Tuple)> {
    let t = p.tuple.filter(|t| in_managed(t.src))?;
    if hook != IN || p.class != Class::First {
        return None;
    }
    Some((ct_key(&t), t))
}

/// The entries of both CT tables: main, new.
type Snapshot = [Vec<(CtKey, CtValue)>; 2];

fn snapshot(fx: &Fixture) -> Snapshot {
    let m = &fx.dp.maps;
    [&m.ct, &m.ct_new].map(|map| map.iter().filter_map(Result::ok).collect())
}

fn restore(fx: &mut Fixture, s: &Snapshot) {
    flush(fx);
    let m = &mut fx.dp.maps;
    for (map, entries) in [&mut m.ct, &mut m.ct_new].into_iter().zip(s) {
        for (k, v) in entries {
            map.insert(k, v, 0).expect("restore a CT entry");
        }
    }
}

/// The original tuples of flows whose forward entry is not among `known`.
fn new_flows(fx: &Fixture, known: &HashSet<CtKey>) -> Vec<Tuple> {
    entries(fx)
        .iter()
        .filter(|(k, v)| v.flags & CT_REPLY == 0 && !known.contains(k))
        .map(|(k, _)| key_tuple(k))
        .collect()
}

fn ct_keys(fx: &Fixture) -> HashSet<CtKey> {
    entries(fx).into_iter().map(|(k, _)| k).collect()
}

/// Empty both CT tables.
fn flush(fx: &mut Fixture) {
    let m = &mut fx.dp.maps;
    for map in [&mut m.ct, &mut m.ct_new] {
        let keys: Vec<CtKey> = map.keys().filter_map(Result::ok).collect();
        for k in keys {
            map.remove(&k).expect("remove a CT entry");
        }
    }
}

const OUT_OF_WINDOW: &str = "a segment out of window never changes a flow";
/// The flags of the segments out of window.
const OUT_OF_WINDOW_FLAGS: [u8; 10] = [
    TCP_ACK,
    TCP_ACK | TCP_PSH,
    TCP_ACK | TCP_FIN,
    TCP_FIN,
    TCP_RST,
    TCP_RST | TCP_ACK,
    TCP_SYN,
    TCP_SYN | TCP_ACK,
    TCP_SYN | TCP_RST,
    TCP_SYN | TCP_FIN,
];

/// Established flows (DNAT in, SNAT out, each through its whole handshake) take seeded
/// random TCP segments in either direction, any flags and payload, whose sequence and
/// acknowledgment numbers lie far outside both directions' windows: every one leaves
/// both CT entries byte-identical (dropped as `drop-tcp-window`, or passed untaught).
#[test]
fn a_segment_out_of_window_never_changes_a_flow() {
    if !require_root() {
        return;
    }
    let seed = env_u64("BPFNET_PROPTEST_SEED", DEFAULT_SEED);
    with_fixture("propwin", 4096, move |fx| {
        setup(fx, PORTS);
        let mut rng = Rng(seed ^ 0x7763_705f_7769_6e64);
        let mut findings: Vec<String> = Vec::new();
        let mut checked = 0u64;
        for round in 0..40u16 {
            flush(fx);
            // (hook, tuple) of each direction, as packets reach the datapath.
            let dnat = rng.one_in(2);
            let (fwd, rev) = if dnat {
                let client = (outside(&mut rng), 20_000 + round);
                ((IN, client, (HOST, 8038)), (OUT, (C1, 8080), client))
            } else {
                let server = (outside(&mut rng), 443);
                ((OUT, (C2, 20_000 + round), server), (IN, server, (HOST, 0)))
            };
            let (c_isn, s_isn) = (rng.u32(), rng.u32());
            let ip = |rng: &mut Rng, s: [u8; 4], d: [u8; 4]| Ip::new(rng, s, d);
            let f = ip(&mut rng, fwd.1.0, fwd.2.0);
            let syn = tcp_frame(&f, (fwd.1.1, fwd.2.1), (c_isn, 0), TCP_SYN, 0, &[]);
            let (v, out) = fx.run(fwd.0, &syn);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN is translated");
            // The SNAT port the server answers to.
            let rev = if dnat {
                rev
            } else {
                let l4 = ETH_HLEN + usize::from(out[ETH_HLEN] & 0x0f) * 4;
                let port = u16::from_be_bytes([out[l4], out[l4 + 1]]);
                (rev.0, rev.1, (HOST, port))
            };
            let r = ip(&mut rng, rev.1.0, rev.2.0);
            let syn_ack = (s_isn, c_isn.wrapping_add(1));
            let answer = tcp_frame(&r, (rev.1.1, rev.2.1), syn_ack, TCP_SYN | TCP_ACK, 0, &[]);
            let (v, _) = fx.run(rev.0, &answer);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the SYN-ACK is tracked");
            let acked = (c_isn.wrapping_add(1), s_isn.wrapping_add(1));
            let last = tcp_frame(&f, (fwd.1.1, fwd.2.1), acked, TCP_ACK, 0, &[]);
            let (v, _) = fx.run(fwd.0, &last);
            assert_eq!(v, TC_ACT_REDIRECT, "round {round}: the last ACK is tracked");
            let before = snapshot(fx);
            assert_eq!(before[0].len(), 2, "round {round}: established, main table");
            for _ in 0..200 {
                let (hook, t, isn, peer_isn) = if rng.one_in(2) {
                    (fwd.0, (fwd.1, fwd.2), c_isn, s_isn)
                } else {
                    (rev.0, (rev.1, rev.2), s_isn, c_isn)
                };
                // At least 2^24 from anything either side sent or acknowledged.
                let far = |rng: &mut Rng, base: u32| {
                    base.wrapping_add(0x0100_0000 + rng.below(0xfe00_0000) as u32)
                };
                let seq = far(&mut rng, isn);
                let ack = far(&mut rng, peer_isn);
                let flags = rng.pick(&OUT_OF_WINDOW_FLAGS);
                let body = rng.upto(32);
                let ip = Ip::new(&mut rng, t.0.0, t.1.0);
                let frame = tcp_frame(&ip, (t.0.1, t.1.1), (seq, ack), flags, 0, &body);
                let (v, _) = fx.run(hook, &frame);
                checked += 1;
                if snapshot(fx) != before {
                    findings.push(format!(
                        "round {round}, {hook:?}, flags {flags:#04x}, verdict {v}: {}",
                        hex(&frame)
                    ));
                    restore(fx, &before);
                }
            }
        }
        eprintln!("{checked} segments out of window (seed {seed:#x})");
        assert!(
            findings.is_empty(),
            "{OUT_OF_WINDOW} (BPFNET_PROPTEST_SEED={seed:#x}): {} violation(s), first: {:?}",
            findings.len(),
            &findings[..findings.len().min(3)]
        );
    });
}

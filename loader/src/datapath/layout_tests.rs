//! The map key and value layouts userspace compiles, checked against the BTF of the eBPF
//! object this crate embeds: a field that moves on one side only fails here.
use std::{
    any::type_name,
    collections::BTreeSet,
    mem::{offset_of, size_of},
};

use btf_rs::{Btf, Struct, Type};
use common::{
    Backend, Be32, Clock, ClusterRoute, Config, Counter, CtKey, CtTimeouts, CtValue, DropKey,
    Endpoint, Event, EventTuple, FragKey, FragKey6, FragPorts, IcmpLimit, Ip6, MonitorConfig,
    MonitorState, MonitorWindow, Network, Port, PublishedKey, RateBucket, SockKey, SockKey6,
    SockOrig, SockOrig6, SweepStats,
};
use object::{Object as _, ObjectSection as _};

use super::OBJECT;

/// A type as userspace compiles it.
struct Layout {
    /// `common::ct::CtKey`: the BTF struct is named by the last segment.
    path: &'static str,
    size: usize,
    /// Every field and its byte offset.
    fields: &'static [(&'static str, usize)],
}

macro_rules! layout {
    ($ty:ty { $($field:ident),* $(,)? }) => {
        Layout {
            path: type_name::<$ty>(),
            size: size_of::<$ty>(),
            fields: &[$((stringify!($field), offset_of!($ty, $field))),*],
        }
    };
}

/// Every type a map stores (keys of plain `u32` aside).
fn userspace() -> [Layout; 34] {
    [
        // A map key itself (`endpoints_v1`, `ct_use_v1`, ...): its one field, as rustc
        // names a tuple struct's, is at 0 (`#[repr(transparent)]`).
        Layout {
            path: type_name::<Be32>(),
            size: size_of::<Be32>(),
            fields: &[("__0", 0)],
        },
        layout!(PublishedKey {
            host_ip,
            port,
            proto,
            _pad
        }),
        layout!(PublishedKey<Ip6> {
            host_ip,
            port,
            proto,
            _pad
        }),
        layout!(Backend { ip, port, _pad }),
        layout!(Backend<Ip6> { ip, port, _pad }),
        layout!(Endpoint {
            ifindex,
            network,
            mac,
            flags,
            _pad
        }),
        layout!(Network { bridge, flags }),
        layout!(ClusterRoute {
            node,
            vni,
            kind,
            ifindex
        }),
        layout!(Ip6 { words }),
        layout!(Port {
            network,
            flags,
            bridge_mac,
            mac,
            ip
        }),
        layout!(CtKey {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            proto,
            _pad
        }),
        layout!(CtValue {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            flags,
            tcp_seen,
            wscale,
            hop,
            seq_end,
            max_win,
            last_seen_ns,
            packets,
            bytes,
            hop_ifindex,
            hop_gen,
            hop_mtu,
            hop_macs,
        }),
        layout!(CtKey<Ip6> {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            proto,
            _pad
        }),
        layout!(CtValue<Ip6> {
            src_ip,
            dst_ip,
            src_port,
            dst_port,
            flags,
            tcp_seen,
            wscale,
            hop,
            seq_end,
            max_win,
            last_seen_ns,
            packets,
            bytes,
            hop_ifindex,
            hop_gen,
            hop_mtu,
            hop_macs,
        }),
        layout!(FragKey {
            src_ip,
            dst_ip,
            id,
            proto,
            _pad
        }),
        layout!(FragKey6 {
            src_ip,
            dst_ip,
            id,
            proto,
            _pad
        }),
        layout!(FragPorts { src_port, dst_port }),
        layout!(SockKey {
            cookie,
            ip,
            port,
            _pad
        }),
        layout!(SockOrig { ip, port, _pad }),
        layout!(SockKey6 {
            cookie,
            ip,
            port,
            _pad
        }),
        layout!(SockOrig6 { ip, port, _pad }),
        layout!(Config {
            snat_port_min,
            snat_port_max,
            hash_seed,
            netns_cookie
        }),
        layout!(IcmpLimit {
            interval4_ms,
            interval6_ms,
            msgs_per_sec,
            msgs_burst,
            flags,
            _pad
        }),
        layout!(RateBucket { credit, last_ns }),
        layout!(Counter { packets, bytes }),
        layout!(CtTimeouts {
            syn,
            established,
            closing,
            time_wait,
            closed,
            udp,
            icmp
        }),
        layout!(SweepStats {
            entries,
            main,
            removed,
            jiffies,
            now_ns,
            left
        }),
        layout!(Clock { tick_ns, base_ns }),
        layout!(DropKey { ifindex, reason }),
        layout!(MonitorConfig {
            reasons,
            sample,
            rate
        }),
        layout!(MonitorState {
            seen,
            sampled_out,
            rate_limited,
            ring_full,
            now_ns,
            reason,
            _pad
        }),
        layout!(MonitorWindow { start_ns, sent }),
        layout!(EventTuple {
            src,
            dst,
            src_port,
            dst_port,
            proto,
            family,
            _pad
        }),
        layout!(Event {
            time_ns,
            ifindex,
            len,
            reason,
            hook,
            _pad,
            captured,
            xlate,
            data
        }),
    ]
}

/// The `.BTF` section of the embedded object.
fn object_btf() -> Btf {
    let elf = object::File::parse(OBJECT).expect("the embedded eBPF object is an ELF file");
    let section = elf
        .section_by_name(".BTF")
        .expect("the eBPF object has a .BTF section (datapath-ebpf is built with debug = 2)");
    let data = section.data().expect("the .BTF section is readable");
    Btf::from_bytes(data).expect("the .BTF section parses")
}

/// The `common` types named by the maps' BTF types (e.g. `HashMap<common::be::Be32, ..>`),
/// and the paths where a long name was cut (`common::ct::`: some type of that module).
fn map_types(btf: &Btf) -> (BTreeSet<String>, BTreeSet<String>) {
    let sections = btf.resolve_types_by_name("maps").expect("BTF lookup");
    let [Type::Datasec(maps)] = sections.as_slice() else {
        panic!("the eBPF object's BTF has no single `maps` DATASEC: {sections:?}");
    };
    let mut paths = BTreeSet::new();
    let mut cut = BTreeSet::new();
    for var in &maps.variables {
        let Ok(Type::Var(var)) = btf.resolve_chained_type(var) else {
            panic!("a `maps` DATASEC entry is not a VAR: {var:?}");
        };
        let ty = btf.resolve_chained_type(&var).expect("BTF lookup");
        let Type::Struct(map) = ty else {
            panic!("a map's BTF type is not a struct: {ty:?}");
        };
        let name = unsanitize(&btf.resolve_name(&map).expect("BTF name"));
        for word in name
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .filter(|word| word.starts_with("common::"))
        {
            if truncated(word) {
                cut.insert(word[..word.len() - 16].trim_end_matches('_').to_owned());
            } else {
                paths.insert(word.to_owned());
            }
        }
    }
    (paths, cut)
}

/// Whether a word of a long BTF name is where the compiler cut it and appended a hash
/// (`common::maps_f98a19b4736a6f79`): the types cut off are checked all the same, through
/// `MapTypes`.
fn truncated(word: &str) -> bool {
    word.rsplit(['_', ':'])
        .next()
        .is_some_and(|tail| tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Undo bpf-linker's escaping of BTF names: every byte outside `[A-Za-z0-9_]` is `_XX_`.
fn unsanitize(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find('_') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let byte = rest
            .get(1..4)
            .filter(|s| s.ends_with('_'))
            .and_then(|s| u8::from_str_radix(&s[..2], 16).ok());
        if let Some(byte) = byte {
            out.push(char::from(byte));
            rest = &rest[4..];
        } else {
            out.push('_');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The one BTF struct named `name`.
fn btf_struct(btf: &Btf, name: &str) -> Result<Struct, String> {
    let types = btf.resolve_types_by_name(name).expect("BTF lookup");
    let structs: Vec<Struct> = types
        .into_iter()
        .filter_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .collect();
    match <[Struct; 1]>::try_from(structs) {
        Ok([s]) => Ok(s),
        Err(structs) if structs.is_empty() => Err(format!(
            "{name}: not in the eBPF object's BTF (datapath-ebpf's `MapTypes` must hold it)"
        )),
        Err(structs) => Err(format!(
            "{name}: {} structs of that name in the eBPF object's BTF, expected one",
            structs.len()
        )),
    }
}

/// The name the BTF gives a type: its path without the outer type's module
/// (`CtKey<common::ip6::Ip6>`), escaped as bpf-linker escapes it.
fn btf_name(path: &str) -> String {
    let (head, args) = path.split_once('<').map_or((path, ""), |(h, a)| (h, a));
    let name = head.rsplit("::").next().unwrap_or(head);
    let full = if args.is_empty() {
        name.to_owned()
    } else {
        format!("{name}<{args}")
    };
    full.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("_{b:02X}_")
            }
        })
        .collect()
}

/// A type's path without its generic arguments, as `map_types` lists it.
fn base_path(path: &str) -> &str {
    path.split('<').next().unwrap_or(path)
}

/// How `layout` differs from the BTF struct of the same name, one line per difference.
fn differences(btf: &Btf, layout: &Layout) -> Vec<String> {
    let btf_name = btf_name(layout.path);
    let name = btf_name.as_str();
    // `type_name` leaves out a default generic argument (`CtKey` is `CtKey<Be32>`, IPv4),
    // which the BTF name spells out.
    let found = btf_struct(btf, name).or_else(|e| {
        if layout.path.contains('<') {
            return Err(e);
        }
        let ipv4 = format!("{}<{}>", layout.path, type_name::<Be32>());
        btf_struct(btf, &self::btf_name(&ipv4)).map_err(|_| e)
    });
    let s = match found {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut diffs = Vec::new();
    if s.size() != layout.size {
        diffs.push(format!(
            "{name}: {} bytes in the eBPF object, {} in userspace",
            s.size(),
            layout.size
        ));
    }
    let mut seen = BTreeSet::new();
    for member in &s.members {
        let field = btf.resolve_name(member).expect("BTF member name");
        let bits = member.bit_offset();
        if bits % 8 != 0 || member.bitfield_size().is_some_and(|n| n != 0) {
            diffs.push(format!("{name}.{field}: a bitfield in the eBPF object"));
            continue;
        }
        let offset = (bits / 8) as usize;
        match layout.fields.iter().find(|(f, _)| *f == field) {
            Some(&(_, user)) if user != offset => diffs.push(format!(
                "{name}.{field}: at byte {offset} in the eBPF object, {user} in userspace"
            )),
            Some(_) => {}
            None => diffs.push(format!(
                "{name}.{field}: at byte {offset} in the eBPF object, not listed for userspace \
                 in this test"
            )),
        }
        seen.insert(field);
    }
    for (field, user) in layout.fields {
        if !seen.contains(*field) {
            diffs.push(format!(
                "{name}.{field}: at byte {user} in userspace, absent from the eBPF object"
            ));
        }
    }
    diffs
}

#[test]
fn layouts_match_the_datapath() {
    let btf = object_btf();
    let layouts = userspace();
    let checked: BTreeSet<String> = layouts
        .iter()
        .map(|l| base_path(l.path).to_owned())
        .collect();
    // Ring buffer records have no map type that names them.
    let records = ["common::monitor::Event", "common::monitor::EventTuple"];
    let (named, cut) = map_types(&btf);
    let unchecked: Vec<&String> = named.difference(&checked).collect();
    assert!(
        unchecked.is_empty(),
        "the eBPF object's maps store common types this test does not check: {unchecked:?}"
    );
    // A type in no map's name must be a record, or of a module where a long name was cut.
    let unused: Vec<&String> = checked
        .iter()
        .filter(|p| !named.contains(*p) && !records.contains(&p.as_str()))
        .filter(|p| !cut.iter().any(|c| p.starts_with(c.as_str())))
        .collect();
    assert!(
        unused.is_empty(),
        "this test checks common types no map of the eBPF object stores: {unused:?}"
    );
    let diffs: Vec<String> = layouts.iter().flat_map(|l| differences(&btf, l)).collect();
    assert!(
        diffs.is_empty(),
        "userspace layouts differ from the eBPF object's BTF:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn unsanitize_reverses_bpf_linker_names() {
    let escaped = btf_name("common::ct::CtKey<common::ip6::Ip6>");
    assert_eq!(unsanitize(&escaped), "CtKey<common::ip6::Ip6>");
    assert_eq!(btf_name("common::maps::Port"), "Port");
    assert_eq!(
        unsanitize("HashMap_3C_u32_2C__20_common_3A__3A_maps_3A__3A_Port_3E_"),
        "HashMap<u32, common::maps::Port>"
    );
    assert_eq!(unsanitize("snat_port_min"), "snat_port_min");
}

use super::*;

fn ok(s: &str) -> PublishSpec {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` should parse, got: {e}"))
}

fn range(start: u16, end: u16) -> PortRange {
    PortRange { start, end }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().expect("a valid IPv6 address in the test"))
}

#[test]
fn accepts_every_form_docker_accepts_with_a_container_address() {
    let ip = v4(172, 17, 0, 4);
    let cases = [
        (
            "8038:172.17.0.4:8038",
            None,
            range(8038, 8038),
            range(8038, 8038),
            Proto::Tcp,
        ),
        (
            "8038:172.17.0.4:80/tcp",
            None,
            range(8038, 8038),
            range(80, 80),
            Proto::Tcp,
        ),
        (
            "53:172.17.0.4:53/udp",
            None,
            range(53, 53),
            range(53, 53),
            Proto::Udp,
        ),
        (
            "53:172.17.0.4:53/UDP",
            None,
            range(53, 53),
            range(53, 53),
            Proto::Udp,
        ),
        (
            "127.0.0.1:8038:172.17.0.4:8038",
            Some(v4(127, 0, 0, 1)),
            range(8038, 8038),
            range(8038, 8038),
            Proto::Tcp,
        ),
        (
            "0.0.0.0:80:172.17.0.4:80",
            None,
            range(80, 80),
            range(80, 80),
            Proto::Tcp,
        ),
        (
            "8000-8009:172.17.0.4:9000-9009/udp",
            None,
            range(8000, 8009),
            range(9000, 9009),
            Proto::Udp,
        ),
        (
            "192.0.2.1:1-65535:172.17.0.4:1-65535",
            Some(v4(192, 0, 2, 1)),
            range(1, 65535),
            range(1, 65535),
            Proto::Tcp,
        ),
    ];
    for (s, host_ip, host_ports, container_ports, proto) in cases {
        let spec = ok(s);
        assert_eq!(
            spec,
            PublishSpec {
                host_ip,
                host_ports,
                container_ip: ip,
                container_ports,
                proto
            },
            "{s}"
        );
    }
}

#[test]
fn rejects_malformed_specs_naming_the_field() {
    let cases = [
        ("", "expected [HOSTIP:]"),
        ("8038", "expected [HOSTIP:]"),
        ("8038:8038", "expected [HOSTIP:]"),
        ("1.2.3.4:1:2:172.17.0.4:8038", "expected [HOSTIP:]"),
        ("8038:172.17.0.4:8038/sctp", "protocol `sctp`"),
        ("8038:172.17.0.4:8038/", "protocol ``"),
        ("8038:172.17.0.400:8038", "container address `172.17.0.400`"),
        ("8038:somehost:8038", "container address `somehost`"),
        ("1.2.3:8038:172.17.0.4:8038", "host address `1.2.3`"),
        (":172.17.0.4:8038", "host port ``"),
        ("127.0.0.1::172.17.0.4:8038", "host port ``"),
        ("0:172.17.0.4:8038", "host port `0`"),
        ("65536:172.17.0.4:8038", "host port `65536`"),
        ("+80:172.17.0.4:80", "host port `+80`"),
        ("-80:172.17.0.4:80", "host port `-80`"),
        ("90-80:172.17.0.4:80", "host port `90-80`"),
        ("80-:172.17.0.4:80", "host port `80-`"),
        ("80:172.17.0.4:x", "container port `x`"),
        ("8000-8009:172.17.0.4:80", "differ in length"),
        ("8000-8009:172.17.0.4:9000-9010", "differ in length"),
        ("80:0.0.0.0:80", "cannot be a backend"),
        ("80:127.0.0.1:80", "cannot be a backend"),
        ("80:255.255.255.255:80", "cannot be a backend"),
        ("80:224.0.0.1:80", "cannot be a backend"),
    ];
    for (s, want) in cases {
        match s.parse::<PublishSpec>() {
            Ok(spec) => panic!("`{s}` should be rejected, parsed as {spec:?}"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "`{s}`: error `{e}` should contain `{want}`"
            ),
        }
    }
}

#[test]
fn display_is_canonical_and_round_trips() {
    for (s, canon) in [
        ("8038:172.17.0.4:8038", "8038:172.17.0.4:8038/tcp"),
        (
            "0.0.0.0:8038:172.17.0.4:8038/TCP",
            "8038:172.17.0.4:8038/tcp",
        ),
        (
            "127.0.0.1:53-54:10.0.0.2:5353-5354/udp",
            "127.0.0.1:53-54:10.0.0.2:5353-5354/udp",
        ),
    ] {
        let spec = ok(s);
        assert_eq!(spec.to_string(), canon);
        assert_eq!(ok(canon), spec);
        let json = serde_json::to_string(&spec).expect("a spec serializes");
        assert_eq!(json, format!("\"{canon}\""));
        let back: PublishSpec = serde_json::from_str(&json).expect("a spec deserializes");
        assert_eq!(back, spec);
    }
}

#[test]
fn conflicts_follow_address_port_and_protocol() {
    let cases = [
        ("8038:10.0.0.2:80", "8038:10.0.0.3:80", true),
        ("8038:10.0.0.2:80", "8038:10.0.0.2:80/udp", false),
        ("8000-8010:10.0.0.2:8000-8010", "8010:10.0.0.3:80", true),
        ("8000-8010:10.0.0.2:8000-8010", "8011:10.0.0.3:80", false),
        (
            "127.0.0.1:8038:10.0.0.2:80",
            "192.0.2.1:8038:10.0.0.2:80",
            false,
        ),
        ("127.0.0.1:8038:10.0.0.2:80", "8038:10.0.0.2:80", true),
    ];
    for (a, b, want) in cases {
        assert_eq!(ok(a).conflicts_with(&ok(b)), want, "{a} vs {b}");
        assert_eq!(ok(b).conflicts_with(&ok(a)), want, "{b} vs {a}");
    }
}

#[test]
fn entries_are_in_network_order_one_per_port() {
    let spec = ok("192.0.2.1:8000-8002:172.17.0.4:9000-9002/udp");
    let entries: Vec<_> = spec.entries::<Be32>().collect();
    assert_eq!(entries.len(), 3);
    let (k, b) = entries[2];
    assert_eq!(k.host_ip.to_bytes(), [192, 0, 2, 1]);
    assert_eq!(k.port.to_bytes(), 8002u16.to_be_bytes());
    assert_eq!(k.proto, PROTO_UDP);
    assert_eq!(b.ip.to_bytes(), [172, 17, 0, 4]);
    assert_eq!(b.port.to_bytes(), 9002u16.to_be_bytes());
    let any = ok("80:172.17.0.4:80");
    assert_eq!(
        any.entries::<Be32>().next().map(|(k, _)| k.host_ip),
        Some(Be32::ZERO)
    );
    assert_eq!(
        spec.entries::<Ip6>().count(),
        0,
        "an IPv4 spec has no published6_v1 entry"
    );
}

#[test]
fn accepts_ipv6_in_brackets_as_docker_writes_it() {
    let backend = v6("fd00:beef::4");
    let cases = [
        (
            "[::]:8038:[fd00:beef::4]:8080",
            None,
            backend,
            range(8038, 8038),
            range(8080, 8080),
            Proto::Tcp,
        ),
        (
            "[2001:db8::1]:53:[fd00:beef::4]:53/udp",
            Some(v6("2001:db8::1")),
            backend,
            range(53, 53),
            range(53, 53),
            Proto::Udp,
        ),
        (
            "8080:[2001:db8:42::7]:8080",
            None,
            v6("2001:db8:42::7"),
            range(8080, 8080),
            range(8080, 8080),
            Proto::Tcp,
        ),
        (
            "[2001:DB8:0::1]:8000-8001:[FD00:BEEF::4]:80-81/udp",
            Some(v6("2001:db8::1")),
            backend,
            range(8000, 8001),
            range(80, 81),
            Proto::Udp,
        ),
    ];
    for (s, host_ip, container_ip, host_ports, container_ports, proto) in cases {
        assert_eq!(
            ok(s),
            PublishSpec {
                host_ip,
                host_ports,
                container_ip,
                container_ports,
                proto
            },
            "{s}"
        );
    }
}

#[test]
fn rejects_ipv6_docker_would_not_take_or_that_cannot_work() {
    let cases = [
        // Docker requires brackets around IPv6; the error says where they go.
        (
            "8080:fd00:beef::4:8080",
            "IPv6 address `fd00:beef::4` must be written in brackets: `[fd00:beef::4]`",
        ),
        ("80:2001:db8::4:80", "IPv6 address `2001:db8::4` must"),
        ("127.0.0.1:80:fd00::4:80", "IPv6 address `fd00::4` must"),
        ("[::1]:80:fd00::4:80", "IPv6 address `fd00::4` must"),
        ("::1:8038:172.17.0.4:8038", "IPv6 address `::1` must"),
        (
            "2001:db8::1:53:[fd00::4]:53",
            "IPv6 address `2001:db8::1` must",
        ),
        ("1:2:3:4:5:6:7", "expected [HOSTIP:]"),
        // Brackets hold IPv6 only.
        (
            "[192.0.2.1]:80:172.17.0.4:80",
            "host address `[192.0.2.1]` is not an IPv4 address or an IPv6 address in brackets",
        ),
        (
            "80:[172.17.0.4]:80",
            "container address `[172.17.0.4]` is not",
        ),
        ("80:[fd00::zz]:80", "container address `[fd00::zz]` is not"),
        ("80:[]:80", "container address `[]` is not"),
        (
            "[fe80::1%eth0]:80:[fd00::4]:80",
            "host address `[fe80::1%eth0]`",
        ),
        ("80:[fd00::4:80", "expected [HOSTIP:]"),
        ("80:fd00::4]:80", "expected [HOSTIP:]"),
        ("80:[fd00::4]x:80", "expected [HOSTIP:]"),
        ("80:x[fd00::4]:80", "expected [HOSTIP:]"),
        ("[[::1]]:80:[fd00::4]:80", "expected [HOSTIP:]"),
        // One family per spec, wildcards included.
        ("[::1]:8038:172.17.0.4:8038", "differ in family"),
        ("[::]:8038:172.17.0.4:8038", "differ in family"),
        ("0.0.0.0:8038:[fd00::4]:8038", "differ in family"),
        ("192.0.2.1:80:[fd00::4]:80", "differ in family"),
        // Not a container's own address.
        ("80:[::]:80", "container address `::` cannot be a backend"),
        ("80:[::1]:80", "cannot be a backend"),
        ("80:[ff02::1]:80", "cannot be a backend"),
        ("80:[::ffff:172.17.0.4]:80", "cannot be a backend"),
        ("[::]:80-81:[fd00::4]:80", "differ in length"),
    ];
    for (s, want) in cases {
        match s.parse::<PublishSpec>() {
            Ok(spec) => panic!("`{s}` should be rejected, parsed as {spec:?}"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "`{s}`: error `{e}` should contain `{want}`"
            ),
        }
    }
    assert_eq!(
        "[::1]:80:172.17.0.4:80".parse::<PublishSpec>(),
        Err(SpecError::Family {
            spec: "[::1]:80:172.17.0.4:80".into(),
            host: v6("::1"),
            container: v4(172, 17, 0, 4),
        }),
        "a family mismatch names both addresses"
    );
}

#[test]
fn ipv6_display_is_bracketed_canonical_and_round_trips() {
    for (s, canon) in [
        (
            "[::]:8038:[fd00:beef::4]:8080",
            "8038:[fd00:beef::4]:8080/tcp",
        ),
        (
            "[2001:DB8:0::1]:53:[FD00:BEEF:0::4]:53/UDP",
            "[2001:db8::1]:53:[fd00:beef::4]:53/udp",
        ),
        (
            "8080-8081:[2001:db8:42::7]:80-81",
            "8080-8081:[2001:db8:42::7]:80-81/tcp",
        ),
    ] {
        let spec = ok(s);
        assert_eq!(spec.to_string(), canon, "{s}");
        assert_eq!(ok(canon), spec, "{canon} parses back");
        let json = serde_json::to_string(&spec).expect("a spec serializes");
        assert_eq!(json, format!("\"{canon}\""));
        let back: PublishSpec = serde_json::from_str(&json).expect("a spec deserializes");
        assert_eq!(back, spec);
    }
}

#[test]
fn state_written_before_ipv6_still_loads() {
    let old = r#"["8038:172.17.0.4:8038/tcp","127.0.0.1:53-54:10.0.0.2:5353-5354/udp"]"#;
    let specs: Vec<PublishSpec> = serde_json::from_str(old).expect("older state loads");
    assert_eq!(
        specs,
        [
            ok("8038:172.17.0.4:8038"),
            ok("127.0.0.1:53-54:10.0.0.2:5353-5354/udp")
        ]
    );
    assert_eq!(specs[1].host_ip, Some(v4(127, 0, 0, 1)));
}

#[test]
fn conflicts_stay_within_a_family() {
    let cases = [
        ("8038:10.0.0.2:80", "8038:[fd00::2]:80", false),
        (
            "127.0.0.1:8038:10.0.0.2:80",
            "[::1]:8038:[fd00::2]:80",
            false,
        ),
        ("8038:[fd00::2]:80", "8038:[fd00::3]:80", true),
        ("8038:[fd00::2]:80", "8038:[fd00::3]:80/udp", false),
        ("[2001:db8::1]:8038:[fd00::2]:80", "8038:[fd00::3]:80", true),
        (
            "[2001:db8::1]:8038:[fd00::2]:80",
            "[2001:db8::2]:8038:[fd00::3]:80",
            false,
        ),
        (
            "[2001:db8::1]:8000-8010:[fd00::2]:8000-8010",
            "[2001:db8::1]:8010:[fd00::3]:80",
            true,
        ),
    ];
    for (a, b, want) in cases {
        assert_eq!(ok(a).conflicts_with(&ok(b)), want, "{a} vs {b}");
        assert_eq!(ok(b).conflicts_with(&ok(a)), want, "{b} vs {a}");
    }
}

#[test]
fn ipv6_entries_go_to_published6_only() {
    let spec = ok("[2001:db8::1]:8000-8001:[fd00:beef::4]:9000-9001/udp");
    assert_eq!(
        spec.entries::<Be32>().count(),
        0,
        "an IPv6 spec has no published_v1 entry"
    );
    let entries: Vec<_> = spec.entries::<Ip6>().collect();
    assert_eq!(entries.len(), 2);
    let (k, b) = entries[1];
    let host: Ipv6Addr = "2001:db8::1".parse().expect("address");
    let backend: Ipv6Addr = "fd00:beef::4".parse().expect("address");
    assert_eq!(
        k.host_ip.octets(),
        host.octets(),
        "address bytes as on the wire"
    );
    assert_eq!(k.port.to_bytes(), 8001u16.to_be_bytes());
    assert_eq!(k.proto, PROTO_UDP);
    assert_eq!(b.ip.octets(), backend.octets());
    assert_eq!(b.port.to_bytes(), 9001u16.to_be_bytes());
    let any = ok("8080:[fd00:beef::4]:80");
    assert_eq!(
        any.entries::<Ip6>().next().map(|(k, _)| k.host_ip),
        Some(Ip6::UNSPECIFIED),
        "a wildcard is ::"
    );
    assert_eq!(
        any.addrs::<Ip6>(),
        Some((Ip6::UNSPECIFIED, Ip6::from(backend)))
    );
    assert_eq!(any.addrs::<Be32>(), None);
}

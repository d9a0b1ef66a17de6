use super::*;

fn ok(s: &str) -> PublishSpec {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` should parse, got: {e}"))
}

fn range(start: u16, end: u16) -> PortRange {
    PortRange { start, end }
}

#[test]
fn accepts_every_form_docker_accepts_with_a_container_address() {
    let ip = Ipv4Addr::new(172, 17, 0, 4);
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
            Some(Ipv4Addr::LOCALHOST),
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
            Some(Ipv4Addr::new(192, 0, 2, 1)),
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
        ("::1:8038:172.17.0.4:8038", "expected [HOSTIP:]"),
        ("[::1]:8038:172.17.0.4:8038", "expected [HOSTIP:]"),
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
    let entries: Vec<_> = spec.entries().collect();
    assert_eq!(entries.len(), 3);
    let (k, b) = entries[2];
    assert_eq!(k.host_ip.to_ne_bytes(), [192, 0, 2, 1]);
    assert_eq!(k.port.to_ne_bytes(), 8002u16.to_be_bytes());
    assert_eq!(k.proto, PROTO_UDP);
    assert_eq!(b.ip.to_ne_bytes(), [172, 17, 0, 4]);
    assert_eq!(b.port.to_ne_bytes(), 9002u16.to_be_bytes());
    let any = ok("80:172.17.0.4:80");
    assert_eq!(any.entries().next().map(|(k, _)| k.host_ip), Some(0));
}

//! Published-port specs in Docker's `-p` syntax, with the container address spelled out:
//! `[HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]`, IPv6 addresses in
//! brackets as Docker writes them (`[::]:8038:[fd00:beef::4]:8080`).
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use common::{Addr, Backend, Be16, Be32, Ip6, PROTO_TCP, PROTO_UDP, PublishedKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "`{spec}`: expected [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]"
    )]
    Shape { spec: String },
    #[error("`{spec}`: protocol `{proto}` is not supported (tcp or udp)")]
    Protocol { spec: String, proto: String },
    #[error("`{spec}`: {field} `{value}` is not an IPv4 address or an IPv6 address in brackets")]
    Address {
        spec: String,
        field: &'static str,
        value: String,
    },
    #[error("`{spec}`: IPv6 address `{value}` must be written in brackets: `[{value}]`")]
    Unbracketed { spec: String, value: String },
    #[error("`{spec}`: host address `{host}` and container address `{container}` differ in family")]
    Family {
        spec: String,
        host: IpAddr,
        container: IpAddr,
    },
    #[error("`{spec}`: {field} `{value}` is not a port or range (1-65535, START-END)")]
    Port {
        spec: String,
        field: &'static str,
        value: String,
    },
    #[error("`{spec}`: host ports `{host}` and container ports `{container}` differ in length")]
    RangeLength {
        spec: String,
        host: PortRange,
        container: PortRange,
    },
    #[error("`{spec}`: container address `{ip}` cannot be a backend")]
    Backend { spec: String, ip: IpAddr },
}

/// A spec's address as the datapath's maps hold it: `Be32` for IPv4 (`published_v1`),
/// `Ip6` for IPv6 (`published6_v1`). The one place a spec's
/// addresses change representation.
pub trait MapAddr: Addr {
    /// `ip` in this family's form; None for an address of the other family.
    fn from_ip(ip: IpAddr) -> Option<Self>;
}

impl MapAddr for Be32 {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(ip) => Some(Be32::from(ip)),
            IpAddr::V6(_) => None,
        }
    }
}

impl MapAddr for Ip6 {
    fn from_ip(ip: IpAddr) -> Option<Self> {
        match ip {
            IpAddr::V4(_) => None,
            IpAddr::V6(ip) => Some(Ip6::from(ip)),
        }
    }
}

/// An address as the spec grammar writes it: IPv6 in brackets.
pub struct Bracketed(pub IpAddr);

impl fmt::Display for Bracketed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => write!(f, "{ip}"),
            IpAddr::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => PROTO_TCP,
            Self::Udp => PROTO_UDP,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port is `start == end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub fn count(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }

    pub fn overlaps(self, other: PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// `START-END` or a single port, 1-65535, digits only.
    pub fn parse(s: &str) -> Option<Self> {
        let port = |p: &str| {
            // u16::from_str would also take "+80"; Docker takes digits only.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse::<u16>().ok().filter(|&n| n != 0)
        };
        let (start, end) = match s.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(s)?, port(s)?),
        };
        (start <= end).then_some(Self { start, end })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `bpfnet publish` request: host ports leading to a container's ports. Both
/// addresses are of one family, the container's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishSpec {
    /// None: every host address of the container's family (Docker's `0.0.0.0`, `[::]`).
    pub host_ip: Option<IpAddr>,
    pub host_ports: PortRange,
    pub container_ip: IpAddr,
    pub container_ports: PortRange,
    pub proto: Proto,
}

impl PublishSpec {
    /// Whether both claim some host address, port and protocol. A wildcard publish
    /// claims the port on every address of its family, so it overlaps any publish of
    /// that port and family; the families have separate maps and never conflict.
    pub fn conflicts_with(&self, other: &PublishSpec) -> bool {
        self.container_ip.is_ipv6() == other.container_ip.is_ipv6()
            && self.proto == other.proto
            && self.host_ports.overlaps(other.host_ports)
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The host address (`A::ZERO`: every host address) and the backend address as
    /// family `A`'s maps hold them; None for a spec of the other family.
    pub fn addrs<A: MapAddr>(&self) -> Option<(A, A)> {
        let backend = A::from_ip(self.container_ip)?;
        let host = match self.host_ip {
            None => A::ZERO,
            Some(ip) => A::from_ip(ip)?,
        };
        Some((host, backend))
    }

    /// The entries this spec stands for in `published_v1` (`A = Be32`) or
    /// `published6_v1` (`A = Ip6`), one per port; none in the other family's map.
    pub fn entries<A: MapAddr>(&self) -> impl Iterator<Item = (PublishedKey<A>, Backend<A>)> + '_ {
        self.addrs::<A>()
            .into_iter()
            .flat_map(move |(host_ip, backend_ip)| {
                (0..self.host_ports.count()).map(move |i| {
                    let i = i as u16; // < 65536 by construction
                    (
                        PublishedKey::new(
                            host_ip,
                            Be16::new(self.host_ports.start + i),
                            self.proto.number(),
                        ),
                        Backend::new(backend_ip, Be16::new(self.container_ports.start + i)),
                    )
                })
            })
    }
}

/// The spec's `:`-separated fields, a bracketed IPv6 address kept whole (brackets
/// included); None when brackets are unbalanced, nested, or not a whole field.
fn fields(body: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let (mut start, mut inside) = (0, false);
    for (i, c) in body.char_indices() {
        match c {
            '[' if !inside && i == start => inside = true,
            ']' if inside => {
                inside = false;
                if !matches!(body.as_bytes().get(i + 1), None | Some(b':')) {
                    return None;
                }
            }
            '[' | ']' => return None,
            ':' if !inside => {
                out.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if inside {
        return None;
    }
    out.push(&body[start..]);
    Some(out)
}

/// The IPv6 address written without brackets in a spec split at every colon into
/// `fields`, for an error that says what to write instead: looked for where the
/// container address goes (after the host port, and after a host address that is one),
/// then where the host address goes.
fn unbracketed(fields: &[&str]) -> Option<String> {
    let v6 = |f: &[&str]| {
        let s = f.join(":");
        (f.len() >= 3 && s.parse::<Ipv6Addr>().is_ok()).then_some(s)
    };
    let n = fields.len();
    let skip = if fields.first().is_some_and(|f| address(f).is_some()) {
        2
    } else {
        1
    };
    fields
        .get(skip..n.checked_sub(1)?)
        .and_then(v6)
        .or_else(|| fields.get(..n.checked_sub(3)?).and_then(v6))
}

/// An address field: dotted IPv4, or IPv6 in brackets.
fn address(value: &str) -> Option<IpAddr> {
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => value.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Whether packets can be sent to `ip` as a container's own address.
fn is_backend(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
        }
        IpAddr::V6(ip) => {
            !(ip.is_unspecified()
                || ip.is_multicast()
                || ip.is_loopback()
                || ip.to_ipv4_mapped().is_some())
        }
    }
}

impl FromStr for PublishSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (body, proto) = match spec.rsplit_once('/') {
            Some((body, p)) => match p.to_ascii_lowercase().as_str() {
                "tcp" => (body, Proto::Tcp),
                "udp" => (body, Proto::Udp),
                _ => {
                    return Err(SpecError::Protocol {
                        spec: spec.into(),
                        proto: p.into(),
                    });
                }
            },
            None => (spec, Proto::Tcp),
        };
        let parts = fields(body).ok_or_else(|| SpecError::Shape { spec: spec.into() })?;
        let (host_ip, host_ports, container_ip, container_ports) = match parts[..] {
            [hp, cip, cp] => (None, hp, cip, cp),
            [hip, hp, cip, cp] => (Some(hip), hp, cip, cp),
            _ => {
                return Err(match unbracketed(&parts) {
                    Some(value) => SpecError::Unbracketed {
                        spec: spec.into(),
                        value,
                    },
                    None => SpecError::Shape { spec: spec.into() },
                });
            }
        };
        let addr = |field: &'static str, value: &str| {
            address(value).ok_or_else(|| SpecError::Address {
                spec: spec.into(),
                field,
                value: value.into(),
            })
        };
        let ports = |field: &'static str, value: &str| {
            PortRange::parse(value).ok_or_else(|| SpecError::Port {
                spec: spec.into(),
                field,
                value: value.into(),
            })
        };
        let host_ip = host_ip.map(|ip| addr("host address", ip)).transpose()?;
        let host_ports = ports("host port", host_ports)?;
        let container_ip = addr("container address", container_ip)?;
        let container_ports = ports("container port", container_ports)?;
        if let Some(host) = host_ip
            && host.is_ipv6() != container_ip.is_ipv6()
        {
            return Err(SpecError::Family {
                spec: spec.into(),
                host,
                container: container_ip,
            });
        }
        if host_ports.count() != container_ports.count() {
            return Err(SpecError::RangeLength {
                spec: spec.into(),
                host: host_ports,
                container: container_ports,
            });
        }
        if !is_backend(container_ip) {
            return Err(SpecError::Backend {
                spec: spec.into(),
                ip: container_ip,
            });
        }
        Ok(Self {
            // `0.0.0.0` and `[::]`: every address of the family.
            host_ip: host_ip.filter(|ip| !ip.is_unspecified()),
            host_ports,
            container_ip,
            container_ports,
            proto,
        })
    }
}

impl fmt::Display for PublishSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{}:", Bracketed(ip))?;
        }
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ports,
            Bracketed(self.container_ip),
            self.container_ports,
            self.proto
        )
    }
}

// Persisted and sent over the API as the canonical string, so the format is the CLI's.
serde_as_string!(PublishSpec);

#[cfg(test)]
mod tests;

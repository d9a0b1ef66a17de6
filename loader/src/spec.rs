//! Published-port specs in Docker's `-p` syntax, with the container address spelled out:
//! `[HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]`.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use common::{Backend, PROTO_TCP, PROTO_UDP, PublishedKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "`{spec}`: expected [HOSTIP:]HOSTPORT[-END]:CONTAINERIP:CONTAINERPORT[-END][/tcp|/udp]"
    )]
    Shape { spec: String },
    #[error("`{spec}`: protocol `{proto}` is not supported (tcp or udp)")]
    Protocol { spec: String, proto: String },
    #[error("`{spec}`: {field} `{value}` is not an IPv4 address")]
    Address {
        spec: String,
        field: &'static str,
        value: String,
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
    Backend { spec: String, ip: Ipv4Addr },
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

/// One `bpfnet publish` request: host ports leading to a container's ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublishSpec {
    /// None: every host address (Docker's 0.0.0.0).
    pub host_ip: Option<Ipv4Addr>,
    pub host_ports: PortRange,
    pub container_ip: Ipv4Addr,
    pub container_ports: PortRange,
    pub proto: Proto,
}

impl PublishSpec {
    /// Whether both claim some host address, port and protocol. A wildcard publish
    /// claims the port on every address, so it overlaps any publish of that port.
    pub fn conflicts_with(&self, other: &PublishSpec) -> bool {
        self.proto == other.proto
            && self.host_ports.overlaps(other.host_ports)
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The `published_v1` entries this spec stands for, one per port.
    pub fn entries(&self) -> impl Iterator<Item = (PublishedKey, Backend)> + '_ {
        let host_ip = self.host_ip.map_or(0, |ip| u32::from_ne_bytes(ip.octets()));
        let backend_ip = u32::from_ne_bytes(self.container_ip.octets());
        (0..self.host_ports.count()).map(move |i| {
            let i = i as u16; // < 65536 by construction
            (
                PublishedKey {
                    host_ip,
                    port: (self.host_ports.start + i).to_be(),
                    proto: self.proto.number(),
                    _pad: 0,
                },
                Backend {
                    ip: backend_ip,
                    port: (self.container_ports.start + i).to_be(),
                    _pad: 0,
                },
            )
        })
    }
}

impl FromStr for PublishSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let shape = || SpecError::Shape { spec: spec.into() };
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
        let parts: Vec<&str> = body.split(':').collect();
        let (host_ip, host_ports, container_ip, container_ports) = match parts[..] {
            [hp, cip, cp] => (None, hp, cip, cp),
            [hip, hp, cip, cp] => (Some(hip), hp, cip, cp),
            _ => return Err(shape()),
        };
        let addr = |field: &'static str, value: &str| {
            value.parse::<Ipv4Addr>().map_err(|_| SpecError::Address {
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
        let host_ip = match host_ip {
            None => None,
            Some(ip) => Some(addr("host address", ip)?).filter(|ip| !ip.is_unspecified()),
        };
        let host_ports = ports("host port", host_ports)?;
        let container_ip = addr("container address", container_ip)?;
        let container_ports = ports("container port", container_ports)?;
        if host_ports.count() != container_ports.count() {
            return Err(SpecError::RangeLength {
                spec: spec.into(),
                host: host_ports,
                container: container_ports,
            });
        }
        if container_ip.is_unspecified()
            || container_ip.is_broadcast()
            || container_ip.is_multicast()
            || container_ip.is_loopback()
        {
            return Err(SpecError::Backend {
                spec: spec.into(),
                ip: container_ip,
            });
        }
        Ok(Self {
            host_ip,
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
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}:{}/{}",
            self.host_ports, self.container_ip, self.container_ports, self.proto
        )
    }
}

// Persisted and sent over the API as the canonical string, so the format is the CLI's.
impl Serialize for PublishSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PublishSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;

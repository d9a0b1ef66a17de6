//! Values of the daemon's flags, each parsed (and refused) where it is read.
use std::{fmt, str::FromStr};

use crate::spec::PortRange;

/// The source ports masqueraded egress may use: START-END within 1024-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatPorts(pub PortRange);

impl FromStr for SnatPorts {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PortRange::parse(s)
            .filter(|r| r.start >= 1024)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is not a port range START-END within 1024-65535"))
    }
}

/// A network interface name as the kernel accepts it: 1-15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IfName(String);

impl FromStr for IfName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (1..libc::IF_NAMESIZE).contains(&s.len())
            && s != "."
            && s != ".."
            && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(format!(
                "`{s}` is not an interface name (1-15 characters, no `/`, `:` or spaces)"
            ))
        }
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<IfName> for String {
    fn from(n: IfName) -> String {
        n.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snat_ports_and_interface_names_parse_or_say_why_not() {
        assert_eq!(
            "20000-30000"
                .parse::<SnatPorts>()
                .map(|p| (p.0.start, p.0.end)),
            Ok((20000, 30000))
        );
        for bad in ["80-90", "30000-20000", "1023", "x-y", ""] {
            assert!(bad.parse::<SnatPorts>().is_err(), "{bad}");
        }
        assert_eq!(
            "docker0".parse::<IfName>().map(String::from),
            Ok("docker0".into())
        );
        for bad in ["", "a-very-long-name0", "eth0/1", "a b", "..", "eth0:1"] {
            let err = bad.parse::<IfName>().expect_err(bad);
            assert!(err.contains("interface name"), "{err}");
        }
    }
}

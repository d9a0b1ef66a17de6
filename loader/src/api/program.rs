//! Which bpfnet program an interface carries, as `bpfnet ls` and `bpfnet status` name it.
use std::{cmp::Ordering, fmt};

use serde::{Deserialize, Serialize};

use crate::datapath::{Hook, XDP_PROGRAM};

/// A bpfnet program attached to an interface, by its name in the object file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Program {
    FromUplink,
    FromL3Uplink,
    FromContainer,
    ToTunnel,
    /// The XDP program of an Ethernet uplink (`--xdp`), beside its TC program.
    XdpUplink,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Self::XdpUplink => XDP_PROGRAM,
            Self::FromUplink => Hook::FromUplink.program(),
            Self::FromL3Uplink => Hook::FromL3Uplink.program(),
            Self::FromContainer => Hook::FromContainer.program(),
            Self::ToTunnel => Hook::ToTunnel.program(),
        }
    }
}

impl From<Hook> for Program {
    fn from(h: Hook) -> Self {
        match h {
            Hook::FromUplink => Self::FromUplink,
            Hook::FromL3Uplink => Self::FromL3Uplink,
            Hook::FromContainer => Self::FromContainer,
            Hook::ToTunnel => Self::ToTunnel,
        }
    }
}

// By name, so a listing sorts as it did when programs were strings.
impl Ord for Program {
    fn cmp(&self, other: &Self) -> Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for Program {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_its_object_name_on_the_wire() {
        let all = Hook::ALL
            .into_iter()
            .map(Program::from)
            .chain([Program::XdpUplink]);
        for p in all {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        assert_eq!(Program::from(Hook::FromL3Uplink).name(), "from_l3_uplink");
        assert_eq!(Program::XdpUplink.name(), "xdp_uplink");
        let mut by_name = vec![Program::XdpUplink, Program::ToTunnel, Program::FromUplink];
        by_name.sort();
        assert_eq!(
            by_name,
            [Program::FromUplink, Program::ToTunnel, Program::XdpUplink]
        );
    }
}

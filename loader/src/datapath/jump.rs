//! `jump_v1`: the IPv6 programs the IPv4 ones tail-call for an IPv6 packet, so each
//! family's path has the whole stack to itself. The map is pinned (a program array
//! empties when its last user-space reference goes), so the attached datapath keeps
//! its IPv6 path while no daemon runs; each load points it at the new programs.
use aya::{
    Ebpf,
    maps::{MapData, ProgramArray},
    programs::SchedClassifier,
};
use common::{jump, names};

use super::{DatapathError, maps::take, program, program_err};

/// Each IPv6 program and its slot.
pub const IPV6_PROGRAMS: [(&str, u32); 3] = [
    ("from_container6", jump::FROM_CONTAINER6),
    ("from_uplink6", jump::FROM_UPLINK6),
    ("from_l3_uplink6", jump::FROM_L3_UPLINK6),
];

/// Put the loaded IPv6 programs in their slots (the attached datapath's IPv4 programs
/// tail-call them from the next packet on).
pub(super) fn point(ebpf: &mut Ebpf) -> Result<(), DatapathError> {
    let mut slots: ProgramArray<MapData> = take(ebpf, names::JUMP)?;
    for (name, slot) in IPV6_PROGRAMS {
        let prog = program::<SchedClassifier>(ebpf, name)?;
        let fd = prog.fd().map_err(program_err(name))?;
        slots
            .set(slot, fd, 0)
            .map_err(|e| DatapathError::JumpSlot {
                name: names::JUMP,
                slot,
                program: name,
                source: Box::new(e),
            })?;
    }
    Ok(())
}

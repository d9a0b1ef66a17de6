//! What verifying each program cost, and what a refusal said. The kernel processes at
//! most `KERNEL_INSN_LIMIT` instructions per program; each of ours must stay within a
//! quarter of that (`INSN_BUDGET`), so a kernel build or a toolchain release that moves
//! a program's figure a little never stops it loading.
use std::time::Duration;

use aya::{
    Ebpf,
    programs::{Program, ProgramError},
};
use serde::{Deserialize, Serialize};

/// `BPF_COMPLEXITY_LIMIT_INSNS`: the instructions the verifier processes before it gives
/// up on a program.
pub const KERNEL_INSN_LIMIT: u32 = 1_000_000;
/// What each program may use of it.
pub const INSN_BUDGET: u32 = KERNEL_INSN_LIMIT / 4;
/// What each program's load may take.
pub const LOAD_BUDGET: Duration = Duration::from_secs(1);

/// One loaded program's verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramCost {
    pub name: String,
    /// Instructions the verifier processed (`verified_insns`, kernel 5.16 on).
    pub verified_insns: Option<u32>,
    /// Wall time of its `BPF_PROG_LOAD` (verification included), in microseconds.
    pub load_micros: u64,
}

impl ProgramCost {
    /// Whether it stays within `INSN_BUDGET` and `LOAD_BUDGET`.
    pub fn within_budget(&self) -> bool {
        self.verified_insns.is_none_or(|n| n <= INSN_BUDGET)
            && self.load_micros <= LOAD_BUDGET.as_micros() as u64
    }
}

/// What verifying program `name`, loaded in `load_time`, cost.
pub(super) fn cost(ebpf: &Ebpf, name: &str, load_time: Duration) -> ProgramCost {
    let verified_insns = ebpf
        .program(name)
        .and_then(|p: &Program| p.info().ok())
        .and_then(|i| i.verified_instruction_count());
    ProgramCost {
        name: name.to_string(),
        verified_insns,
        load_micros: load_time.as_micros() as u64,
    }
}

/// The line of a refusal that says why: the verifier's last line but for its
/// statistics, or the syscall's error when there is no log.
pub fn refusal(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            log.lines()
                .map(str::trim)
                .rfind(|l| !l.is_empty() && !is_stats(l))
                .map_or_else(|| io_error.to_string(), |l| format!("{l} ({io_error})"))
        }
        other => other.to_string(),
    }
}

/// The summary lines the verifier appends to every log.
fn is_stats(line: &str) -> bool {
    ["processed ", "verification time ", "stack depth "]
        .iter()
        .any(|p| line.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_verifiers_reason_not_its_statistics() {
        let log = "0: (b7) r0 = 0\nBPF program is too large. Processed 1000001 insn\n\
                   verification time 14871958 usec\nstack depth 0+0\n\
                   processed 1000001 insns (limit 1000000) max_states_per_insn 46 \
                   total_states 1 peak_states 1 mark_read 1\n";
        let e = ProgramError::LoadError {
            io_error: std::io::Error::from(rustix::io::Errno::TOOBIG),
            verifier_log: aya_obj::VerifierLog::new(log.to_string()),
        };
        let line = refusal(&e);
        assert!(
            line.starts_with("BPF program is too large. Processed 1000001 insn ("),
            "the refusal should be the verifier's reason, got {line:?}"
        );
    }

    #[test]
    fn budget_is_a_quarter_of_the_kernels_and_a_second() {
        let mut c = ProgramCost {
            name: "p".into(),
            verified_insns: Some(INSN_BUDGET),
            load_micros: 1_000_000,
        };
        assert!(c.within_budget());
        c.verified_insns = Some(INSN_BUDGET + 1);
        assert!(!c.within_budget(), "250,001 instructions is over budget");
        c.verified_insns = Some(10);
        c.load_micros = 1_000_001;
        assert!(!c.within_budget(), "a load over a second is over budget");
    }
}

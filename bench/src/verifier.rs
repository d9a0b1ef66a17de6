//! What verifying each program costs: the instructions the kernel's verifier processed
//! and the load time, with the datapath's logs off and at `debug` (the builds the
//! project ships; `xdp_uplink`, for `--xdp`, is in both), against the budget of a
//! quarter of the kernel's limit.
use anyhow::{Context as _, Result};
use bpfnet::datapath::{
    CtEntries, Datapath, LoadOptions,
    log::DatapathLog,
    verifier::{INSN_BUDGET, KERNEL_INSN_LIMIT},
};
use bpfnet_tests::scratch::Scratch;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub(crate) struct VerifierRow {
    pub program: String,
    /// Verified instructions and load time, logs off.
    pub insns_off: u32,
    pub load_ms_off: f64,
    /// The same with the datapath's logs at `debug`.
    pub insns_debug: u32,
    pub load_ms_debug: f64,
}

impl VerifierRow {
    pub(crate) fn within_budget(&self) -> bool {
        self.insns_off.max(self.insns_debug) <= INSN_BUDGET
    }
}

/// (program, verified instructions, load ms) of every program, loaded at `log`.
fn load(log: DatapathLog) -> Result<Vec<(String, u32, f64)>> {
    let files = Scratch::new("bverif");
    let ct = CtEntries {
        ipv4: 1024,
        ipv6: 1024,
    };
    let opts = LoadOptions {
        log,
        ..LoadOptions::default()
    };
    let dp = Datapath::load_with(&files.pin_dir, ct, &opts)
        .with_context(|| format!("loading the datapath with logs {}", log.name()))?;
    anyhow::ensure!(
        dp.degraded().is_empty(),
        "logs {}: degraded: {:?}",
        log.name(),
        dp.degraded()
    );
    Ok(dp
        .costs()
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.verified_insns.unwrap_or(0),
                c.load_micros as f64 / 1e3,
            )
        })
        .collect())
}

pub(crate) fn rows() -> Result<Vec<VerifierRow>> {
    let off = load(DatapathLog::Off)?;
    let debug = load(DatapathLog::Debug)?;
    Ok(off
        .into_iter()
        .map(|(program, insns_off, load_ms_off)| {
            let (insns_debug, load_ms_debug) = debug
                .iter()
                .find(|(p, _, _)| *p == program)
                .map_or((0, f64::NAN), |&(_, n, ms)| (n, ms));
            VerifierRow {
                program,
                insns_off,
                load_ms_off,
                insns_debug,
                load_ms_debug,
            }
        })
        .collect())
}

/// The report's section; `measured`: when and where, if not with the rest of the report.
pub(crate) fn markdown(rows: &[VerifierRow], measured: Option<&str>) -> String {
    let mut s = String::from("\n## Verification\n\n");
    s += &format!(
        "Instructions the kernel's verifier processed to load each program, and the load's \
         wall time, with the datapath's logs off and at `debug`. The budget is a quarter of \
         the kernel's limit of {KERNEL_INSN_LIMIT} ({INSN_BUDGET}), so a kernel build or a \
         toolchain release that moves a figure never stops a program loading; \
         `verifier_budget` fails above it."
    );
    if let Some(m) = measured {
        s += &format!(" {m}");
    }
    s += "\n\n| program | insns (logs off) | share of budget | load ms | insns (debug) | share of budget | load ms |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let share = |n: u32| format!("{:.1}%", f64::from(n) * 100.0 / f64::from(INSN_BUDGET));
        s += &format!(
            "| `{}` | {} | {} | {:.1} | {} | {} | {:.1} |\n",
            r.program,
            r.insns_off,
            share(r.insns_off),
            r.load_ms_off,
            r.insns_debug,
            share(r.insns_debug),
            r.load_ms_debug
        );
    }
    s
}

/// `report.md` with its Verification section replaced by (or, without one, followed by)
/// `section`.
pub(crate) fn splice(report: &str, section: &str) -> String {
    const HEAD: &str = "\n## Verification\n";
    let Some(start) = report.find(HEAD) else {
        return format!("{}\n{section}", report.trim_end_matches('\n'));
    };
    let rest = &report[start + HEAD.len()..];
    let end = rest
        .find("\n## ")
        .map_or(report.len(), |i| start + HEAD.len() + i);
    format!(
        "{}{}\n{}",
        &report[..start],
        section.trim_end_matches('\n'),
        &report[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_verification_section() {
        let old = "# r\n\n## A\n\na\n\n## Verification\n\nold\n\n## B\n\nb\n";
        let new = splice(old, "\n## Verification\n\nnew\n");
        assert_eq!(
            new,
            "# r\n\n## A\n\na\n\n## Verification\n\nnew\n\n## B\n\nb\n"
        );
        let appended = splice("# r\n\n## A\n\na\n", "\n## Verification\n\nnew\n");
        assert_eq!(appended, "# r\n\n## A\n\na\n\n## Verification\n\nnew\n");
    }
}

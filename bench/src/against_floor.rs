//! bpfnet's programs against the floor (`floor.rs`): per test, each program's
//! nanoseconds per run over the floor's at the same place on the same test's packets,
//! and per program and family the worst such ratio over the tests of known flows (the
//! goal is at most `GOAL` times the floor).
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
};

use crate::{
    cost::{Cost, PROGRAMS},
    floor,
};

/// A known flow's packet may cost at most this many times the floor's.
pub(crate) const GOAL: f64 = 1.5;

/// Fewer runs than this in a test are stray packets (neighbour discovery, a reply to
/// the previous test), not the test's flows: no ratio.
const MIN_RUNS: u64 = 1000;

/// The families a test runs over, as its name tells (`Family::suffix`).
const FAMILIES: [&str; 2] = ["IPv4", "IPv6"];

/// The floor program that runs where `program` runs.
pub(crate) fn floor_of(program: &str) -> &'static str {
    if program == "from_container" {
        floor::CONTAINER_PROGRAM
    } else {
        floor::UPLINK_PROGRAM
    }
}

/// Whether a test's packets are of flows already known: every test but the connection
/// rates, whose every flow is new.
fn known_flows(test: &str) -> bool {
    !test.contains("connection rate")
}

fn family(test: &str) -> &'static str {
    if test.ends_with("(IPv6)") {
        FAMILIES[1]
    } else {
        FAMILIES[0]
    }
}

/// One program over one test, beside the floor at its place.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Against {
    pub test: String,
    pub program: &'static str,
    pub ns: f64,
    pub floor_ns: f64,
}

impl Against {
    pub(crate) fn ratio(&self) -> f64 {
        self.ns / self.floor_ns
    }
}

/// Every program that ran in a test whose floor ran there too (each at least
/// `MIN_RUNS` times), tests in `order`.
pub(crate) fn rows<'a>(
    order: impl IntoIterator<Item = &'a str>,
    costs: &BTreeMap<String, BTreeMap<String, Cost>>,
) -> Vec<Against> {
    let mut out = Vec::new();
    for (test, c) in order
        .into_iter()
        .filter_map(|t| costs.get(t).map(|c| (t, c)))
    {
        for program in PROGRAMS {
            if let (Some(p), Some(f)) = (c.get(program), c.get(floor_of(program)))
                && p.runs >= MIN_RUNS
                && f.runs >= MIN_RUNS
            {
                out.push(Against {
                    test: test.to_string(),
                    program,
                    ns: p.ns_per_run,
                    floor_ns: f.ns_per_run,
                });
            }
        }
    }
    out
}

/// Per program and family (in `PROGRAMS` order), the test of known flows where the
/// program is furthest above the floor; `None` where no such test ran the program.
pub(crate) fn worst(rows: &[Against]) -> Vec<(&'static str, &'static str, Option<&Against>)> {
    let mut out = Vec::new();
    for program in PROGRAMS {
        for fam in FAMILIES {
            let w = rows
                .iter()
                .filter(|r| r.program == program && family(&r.test) == fam && known_flows(&r.test))
                .max_by(|a, b| a.ratio().total_cmp(&b.ratio()));
            out.push((program, fam, w));
        }
    }
    out
}

/// The report's "Per-packet cost against the floor": the worst ratio per program and
/// family, then every test's.
pub(crate) fn markdown<'a>(
    order: impl IntoIterator<Item = &'a str>,
    costs: &BTreeMap<String, BTreeMap<String, Cost>>,
) -> Result<String, fmt::Error> {
    let rows = rows(order, costs);
    let mut s = String::from(
        "| program | family | worst test of known flows | ns/run | floor ns/run | × floor | \
         ≤ 1.5× |\n|---|---|---|---:|---:|---:|---|\n",
    );
    for (program, fam, w) in worst(&rows) {
        match w {
            Some(r) => {
                let ok = if r.ratio() <= GOAL { "yes" } else { "**no**" };
                writeln!(
                    s,
                    "| `{program}` | {fam} | {} | {:.0} | {:.0} | {:.2} | {ok} |",
                    r.test,
                    r.ns,
                    r.floor_ns,
                    r.ratio()
                )?;
            }
            None => {
                writeln!(
                    s,
                    "| `{program}` | {fam} | not run by the bench's tests | - | - | - | - |"
                )?;
            }
        }
    }
    s.push_str(
        "\n| test | program | ns/run | floor ns/run | × floor |\n|---|---|---:|---:|---:|\n",
    );
    for r in &rows {
        let new = if known_flows(&r.test) {
            ""
        } else {
            " (new flows)"
        };
        writeln!(
            s,
            "| {}{new} | `{}` | {:.0} | {:.0} | {:.2} |",
            r.test,
            r.program,
            r.ns,
            r.floor_ns,
            r.ratio()
        )?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(ns: f64) -> Cost {
        Cost {
            runs: 5000,
            ns_per_run: ns,
        }
    }

    /// Two tests of known flows and a connection rate, each family; the floor at 40 ns
    /// on the uplink and 50 ns on the veths.
    fn costs() -> BTreeMap<String, BTreeMap<String, Cost>> {
        let test = |up: f64, ctr: f64| -> BTreeMap<String, Cost> {
            [
                ("from_uplink", cost(up)),
                ("from_container", cost(ctr)),
                (floor::UPLINK_PROGRAM, cost(40.0)),
                (floor::CONTAINER_PROGRAM, cost(50.0)),
            ]
            .into_iter()
            .map(|(p, c)| (p.to_string(), c))
            .collect()
        };
        [
            ("TCP stream", test(60.0, 70.0)),
            ("TCP request/response", test(48.0, 100.0)),
            ("TCP connection rate (4 clients)", test(400.0, 500.0)),
            ("TCP stream (IPv6)", test(80.0, 55.0)),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_string(), c))
        .collect()
    }

    const ORDER: [&str; 4] = [
        "TCP stream",
        "TCP request/response",
        "TCP connection rate (4 clients)",
        "TCP stream (IPv6)",
    ];

    #[test]
    fn each_program_is_divided_by_the_floor_at_its_place() {
        let rows = rows(ORDER, &costs());
        assert_eq!(rows.len(), 8, "{rows:?}");
        let up = &rows[0];
        assert_eq!(
            (up.test.as_str(), up.program),
            ("TCP stream", "from_uplink")
        );
        assert!((up.ratio() - 1.5).abs() < 1e-9);
        let ctr = &rows[1];
        assert_eq!(ctr.program, "from_container");
        assert!((ctr.ratio() - 1.4).abs() < 1e-9);
    }

    #[test]
    fn a_few_stray_runs_give_no_ratio() {
        let mut c = costs();
        let stream = c.get_mut("TCP stream").expect("in the fixture");
        stream.insert(
            "from_uplink".into(),
            Cost {
                runs: 3,
                ns_per_run: 8000.0,
            },
        );
        let rows = rows(ORDER, &c);
        assert!(
            !rows
                .iter()
                .any(|r| r.test == "TCP stream" && r.program == "from_uplink"),
            "{rows:?}"
        );
        assert_eq!(rows.len(), 7);
    }

    #[test]
    fn the_worst_is_over_known_flows_only_and_per_family() {
        let rows = rows(ORDER, &costs());
        let worst = worst(&rows);
        let find = |p: &str, f: &str| {
            worst
                .iter()
                .find(|(wp, wf, _)| *wp == p && *wf == f)
                .and_then(|(_, _, r)| *r)
                .map(|r| (r.test.clone(), r.ratio()))
        };
        // The connection rate (10×) is new flows: the stream (1.5×) is the worst.
        assert_eq!(
            find("from_uplink", "IPv4"),
            Some(("TCP stream".into(), 1.5))
        );
        assert_eq!(
            find("from_container", "IPv4"),
            Some(("TCP request/response".into(), 2.0))
        );
        assert_eq!(
            find("from_uplink", "IPv6"),
            Some(("TCP stream (IPv6)".into(), 2.0))
        );
        assert_eq!(find("xdp_uplink", "IPv4"), None);
    }

    #[test]
    fn a_test_without_its_floor_has_no_ratio() {
        let mut c = costs();
        for t in c.values_mut() {
            t.remove(floor::CONTAINER_PROGRAM);
        }
        assert!(rows(ORDER, &c).iter().all(|r| r.program == "from_uplink"));
    }

    #[test]
    fn the_table_marks_the_goal_and_what_did_not_run() {
        let md = markdown(ORDER, &costs()).unwrap();
        assert!(
            md.contains("| `from_uplink` | IPv4 | TCP stream | 60 | 40 | 1.50 | yes |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| `from_container` | IPv4 | TCP request/response | 100 | 50 | 2.00 | **no** |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| `xdp_uplink` | IPv6 | not run by the bench's tests |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| TCP connection rate (4 clients) (new flows) | `from_uplink` | 400 | 40 | 10.00 |"
            ),
            "{md}"
        );
    }
}

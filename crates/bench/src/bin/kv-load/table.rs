//! The markdown table of a side-by-side run: one result line per run in,
//! medians per system, operation and client count out.
//!
//! A result line is `key=value` fields separated by spaces: `system`
//! (`raft-kv`, `etcd` or `redis`), `op` (`write` or `read`), `clients`,
//! and the fields a run prints (`ops`, `ops_per_sec`, `p50_ms`, `p99_ms`,
//! `errors`, `cpu_s`).

use std::collections::BTreeMap;

/// The systems, in column order, with their column titles.
const SYSTEMS: [(&str, &str); 3] = [
    ("raft-kv", "raft-kv (3 nodes)"),
    ("etcd", "etcd (3 nodes)"),
    ("redis", "redis, fsync always"),
];

/// The operations, in row order.
const OPS: [&str; 2] = ["write", "read"];

/// One run of one system.
#[derive(Debug, Clone)]
struct Run {
    ops: u64,
    rate: f64,
    p50: f64,
    p99: f64,
    errors: u64,
    cpu: Option<f64>,
}

impl Run {
    /// Server CPU seconds per 10,000 operations.
    fn cpu_per_10k(&self) -> Option<f64> {
        self.cpu
            .filter(|_| self.ops > 0)
            .map(|c| c / self.ops as f64 * 10_000.0)
    }
}

type Key = (usize, u64, usize);

fn parse_line(line: &str) -> Result<(Key, Run), String> {
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect();
    let get = |name: &str| {
        fields
            .get(name)
            .copied()
            .ok_or_else(|| format!("no {name} in {line:?}"))
    };
    let number = |name: &str| {
        get(name)?
            .parse::<f64>()
            .map_err(|_| format!("bad {name} in {line:?}"))
    };
    let count = |name: &str| {
        get(name)?
            .parse::<u64>()
            .map_err(|_| format!("bad {name} in {line:?}"))
    };
    let system = get("system")?;
    let system = SYSTEMS
        .iter()
        .position(|(s, _)| *s == system)
        .ok_or_else(|| format!("unknown system {system:?}"))?;
    let op = get("op")?;
    let op = OPS
        .iter()
        .position(|o| *o == op)
        .ok_or_else(|| format!("unknown op {op:?}"))?;
    let run = Run {
        ops: count("ops")?,
        rate: number("ops_per_sec")?,
        p50: number("p50_ms")?,
        p99: number("p99_ms")?,
        errors: count("errors")?,
        cpu: match get("cpu_s")? {
            "-" => None,
            _ => Some(number("cpu_s")?),
        },
    };
    Ok(((op, count("clients")?, system), run))
}

/// The table for `results` (one result line per run; blank lines and
/// lines starting with `#` are skipped).
pub fn render(results: &str) -> Result<String, String> {
    let mut runs: BTreeMap<Key, Vec<Run>> = BTreeMap::new();
    for line in results.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, run) = parse_line(line)?;
        runs.entry(key).or_default().push(run);
    }
    if runs.is_empty() {
        return Err("no results".into());
    }
    let rows: Vec<(usize, u64)> = {
        let mut rows: Vec<_> = runs.keys().map(|&(op, clients, _)| (op, clients)).collect();
        rows.dedup();
        rows
    };
    let median = |op: usize, clients: u64, system: usize| -> Option<Run> {
        let mut r = runs.get(&(op, clients, system))?.clone();
        r.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        Some(r.swap_remove(r.len() / 2))
    };
    let median_cpu = |op: usize, clients: u64, system: usize| -> Option<f64> {
        let mut c: Vec<f64> = runs
            .get(&(op, clients, system))?
            .iter()
            .filter_map(Run::cpu_per_10k)
            .collect();
        c.sort_by(f64::total_cmp);
        c.get(c.len() / 2).copied()
    };

    let mut out = String::new();
    out.push_str("| | clients |");
    for (_, title) in SYSTEMS {
        out.push_str(&format!(" {title} |"));
    }
    out.push_str(" raft-kv / redis | raft-kv / etcd |\n|---|---|---|---|---|---|---|\n");
    for &(op, clients) in &rows {
        let m: Vec<Option<Run>> = (0..SYSTEMS.len()).map(|s| median(op, clients, s)).collect();
        let cells: Vec<String> = m
            .iter()
            .map(|r| {
                r.as_ref().map_or("-".into(), |r| {
                    format!("{}/s ({:.2} / {:.2} ms)", thousands(r.rate), r.p50, r.p99)
                })
            })
            .collect();
        let rate = |s: usize| m[s].as_ref().map(|r| r.rate);
        row(
            &mut out,
            OPS[op],
            clients,
            &cells,
            ratio(rate(0), rate(2)),
            ratio(rate(0), rate(1)),
        );
    }
    out.push_str("| **server CPU per 10k ops** | | | | | | |\n");
    for &(op, clients) in &rows {
        let c: Vec<Option<f64>> = (0..SYSTEMS.len())
            .map(|s| median_cpu(op, clients, s))
            .collect();
        let cells: Vec<String> = c
            .iter()
            .map(|c| c.map_or("-".into(), |c| format!("{c:.2} s")))
            .collect();
        row(
            &mut out,
            OPS[op],
            clients,
            &cells,
            ratio(c[0], c[2]),
            ratio(c[0], c[1]),
        );
    }
    let errors: Vec<String> = SYSTEMS
        .iter()
        .enumerate()
        .map(|(s, (name, _))| {
            let n: u64 = runs
                .iter()
                .filter(|((_, _, system), _)| *system == s)
                .flat_map(|(_, r)| r.iter().map(|r| r.errors))
                .sum();
            format!("{name} {n}")
        })
        .collect();
    out.push_str(&format!(
        "\nFailed requests over all runs (warm-ups included): {}.\n",
        errors.join(", ")
    ));
    Ok(out)
}

fn row(
    out: &mut String,
    op: &str,
    clients: u64,
    cells: &[String],
    vs_redis: String,
    vs_etcd: String,
) {
    out.push_str(&format!("| {op} | {clients} |"));
    for c in cells {
        out.push_str(&format!(" {c} |"));
    }
    out.push_str(&format!(" {vs_redis} | {vs_etcd} |\n"));
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// `12345.6` as `12,346`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(system: &str, op: &str, clients: u64, rate: f64, errors: u64, cpu: &str) -> String {
        format!(
            "system={system} op={op} clients={clients} pass=1 ops={} seconds=1.000 ops_per_sec={rate} p50_ms={:.3} p99_ms={:.3} errors={errors} cpu_s={cpu}\n",
            rate as u64,
            1000.0 / rate,
            2000.0 / rate
        )
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn each_cell_shows_the_median_run_and_ratios_compare_medians() {
        let mut results = String::from("# a comment\n\n");
        for rate in [1000.0, 3000.0, 2000.0] {
            results += &line("raft-kv", "write", 1, rate, 1, "0.5");
        }
        for rate in [4000.0, 5000.0, 8000.0] {
            results += &line("redis", "write", 1, rate, 0, "0.1");
        }
        results += &line("etcd", "write", 1, 500.0, 0, "-");
        results += &line("raft-kv", "read", 64, 9000.0, 0, "0.9");
        let table = render(&results).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[2],
            "| write | 1 | 2,000/s (0.50 / 1.00 ms) | 500/s (2.00 / 4.00 ms) | 5,000/s (0.20 / 0.40 ms) | 0.40x | 4.00x |"
        );
        assert_eq!(
            lines[3],
            "| read | 64 | 9,000/s (0.11 / 0.22 ms) | - | - | - | - |"
        );
        // CPU per 10k: raft-kv 0.5 s over 1000, 3000 and 2000 ops, median 2.5 s;
        // redis 0.1 s over 5000 ops (the median of 0.25, 0.2 and 0.125 s).
        assert_eq!(lines[5], "| write | 1 | 2.50 s | - | 0.20 s | 12.50x | - |");
        assert!(table.contains("raft-kv 3, etcd 0, redis 0."), "{table}");
    }

    #[test]
    fn a_malformed_result_line_is_an_error() {
        assert!(render("").is_err());
        assert!(render("system=mongo op=write clients=1").is_err());
        assert!(render(&line("etcd", "write", 1, 100.0, 0, "x")).is_err());
        assert!(render("system=etcd op=write clients=1 ops=1").is_err());
    }
}

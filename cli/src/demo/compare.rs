//! `bazaar demo monolith-vs-microservices`: the same checkout load against the same services,
//! once built into one process (`bazaar monolith`: in-process calls, a database file per
//! service kept) and once as the distributed system (`bazaar up`: a process per service,
//! HTTP between them), measured side by side: throughput, latency, memory and CPU.
//!
//! Both sides run on this machine with plain HTTP between services and no tracing, so what
//! differs is the architecture, not the security or the observability around it. Each side
//! is started in a fresh directory, loaded by `bazaar load` (closed loop, the same customers
//! and duration), read from `/proc` at the end of its load, and stopped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use super::Verdict;
use super::narrator::Narrator;
use crate::procfs::Memory;
use crate::system::Up;

/// Customers shopping at once on each side.
const CUSTOMERS: u16 = 8;

/// One side's numbers.
#[derive(Debug, Default)]
struct Side {
    checkouts_per_second: f64,
    confirmed: u64,
    failed: u64,
    confirmed_p50_ms: Option<f64>,
    confirmed_p99_ms: Option<f64>,
    processes: usize,
    memory: Memory,
    cpu_seconds: f64,
}

/// CPU time (s) the processes `pids` have used so far.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| crate::procfs::cpu_time(*pid))
        .map(|used| used.as_secs_f64())
        .sum()
}

/// The pids of the system in `data_dir` that run a service the monolith runs too (the
/// distributed side also runs a trace store and the storefront, left out of its sums).
fn pids(data_dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = crate::state::running(data_dir)
        .map(|s| s.instances)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| crate::monolith::services().any(|s| s.name() == i.service))
        .map(|i| i.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Loads the system in `data_dir` with checkouts for `duration`; its numbers.
async fn measure(data_dir: &Path, duration: Duration, say: &Narrator) -> Result<Side, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let scenario = data_dir.join("checkouts.toml");
    std::fs::write(&scenario, "[weights]\ncheckout = 1\n").map_err(|e| e.to_string())?;
    let report = data_dir.join("load.json");
    let pids = pids(data_dir);
    let before = cpu_seconds(&pids);
    let output = Command::new(exe)
        .args([
            "load",
            "--users",
            &CUSTOMERS.to_string(),
            "--accounts",
            "20",
        ])
        .arg("--duration")
        .arg(humantime::format_duration(duration).to_string())
        .arg("--every")
        .arg("1h")
        .arg("--scenario")
        .arg(&scenario)
        .arg("--json")
        .arg(&report)
        .arg("--data-dir")
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("bazaar load: {e}"))?;
    let (after, (memory, _)) = (cpu_seconds(&pids), Memory::of_all(pids.iter().copied()));
    if !output.status.success() {
        return Err(format!(
            "bazaar load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let json: Value = serde_json::from_slice(
        &std::fs::read(&report).map_err(|e| format!("{}: {e}", report.display()))?,
    )
    .map_err(|e| format!("{}: {e}", report.display()))?;
    let checkout = &json["journeys"]["checkout"];
    let side = Side {
        checkouts_per_second: checkout["per_second"].as_f64().unwrap_or(0.0),
        confirmed: json["confirmed"].as_u64().unwrap_or(0),
        failed: checkout["errors"].as_u64().unwrap_or(0),
        confirmed_p50_ms: json["order_to_confirmed_ms"]["p50"].as_f64(),
        confirmed_p99_ms: json["order_to_confirmed_ms"]["p99"].as_f64(),
        processes: pids.len(),
        memory,
        cpu_seconds: after - before,
    };
    say.detail(&format!(
        "{} checkouts confirmed ({:.1}/s), {} failed; {} {} holding {:.0} MB",
        side.confirmed,
        side.checkouts_per_second,
        side.failed,
        side.processes,
        if side.processes == 1 {
            "process"
        } else {
            "processes"
        },
        side.memory.held_mb()
    ));
    Ok(side)
}

/// A fresh directory for one side.
fn scratch(side: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bazaar-compare-{}-{side}", std::process::id()))
}

pub(crate) async fn run(say: &Narrator, duration: Duration) -> Result<Verdict, String> {
    let one = scratch("monolith");
    let many = scratch("microservices");
    say.step(&format!(
        "Starting the monolith: every service in one process, calls in place (bazaar monolith, {})",
        one.display()
    ));
    let monolith = Up::monolith(&one, &[("OTEL_SDK_DISABLED", "true".to_owned())]).await?;
    say.step(&format!(
        "{CUSTOMERS} customers place orders and wait for each to be confirmed, for {}",
        humantime::format_duration(duration)
    ));
    let measured = measure(&one, duration, say).await;
    monolith.stop_and_remove().await;
    let monolith = measured?;

    say.step(&format!(
        "Starting the microservices: a process per service, HTTP between them (bazaar up --no-mtls, {})",
        many.display()
    ));
    let up = Up::start(
        &many,
        &["--no-mtls".to_owned()],
        &[("OTEL_SDK_DISABLED", "true".to_owned())],
    )
    .await?;
    say.step("The same load");
    let measured = measure(&many, duration, say).await;
    up.stop_and_remove().await;
    let microservices = measured?;

    println!();
    println!("{}", table(&monolith, &microservices));
    let mut verdict = Verdict::new();
    verdict.check(
        monolith.confirmed > 0 && monolith.failed == 0,
        format!(
            "the monolith confirmed {} checkouts, {} failed",
            monolith.confirmed, monolith.failed
        ),
    );
    verdict.check(
        microservices.confirmed > 0 && microservices.failed == 0,
        format!(
            "the microservices confirmed {} checkouts, {} failed",
            microservices.confirmed, microservices.failed
        ),
    );
    Ok(verdict)
}

/// The side-by-side table.
fn table(one: &Side, many: &Side) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} ms"));
    let per = |side: &Side| {
        if side.confirmed > 0 {
            format!(
                "{:.1} ms",
                side.cpu_seconds * 1000.0 / side.confirmed as f64
            )
        } else {
            "–".to_owned()
        }
    };
    let rows = [
        (
            "checkouts confirmed per second",
            format!("{:.1}", one.checkouts_per_second),
            format!("{:.1}", many.checkouts_per_second),
        ),
        (
            "time to CONFIRMED, p50",
            ms(one.confirmed_p50_ms),
            ms(many.confirmed_p50_ms),
        ),
        (
            "time to CONFIRMED, p99",
            ms(one.confirmed_p99_ms),
            ms(many.confirmed_p99_ms),
        ),
        (
            "failed checkouts",
            one.failed.to_string(),
            many.failed.to_string(),
        ),
        (
            "processes",
            one.processes.to_string(),
            many.processes.to_string(),
        ),
        (
            "memory held (shared pages once)",
            format!("{:.0} MB", one.memory.held_mb()),
            format!("{:.0} MB", many.memory.held_mb()),
        ),
        (
            "resident sets added up",
            format!("{:.0} MB", one.memory.resident_mb()),
            format!("{:.0} MB", many.memory.resident_mb()),
        ),
        ("CPU per confirmed checkout", per(one), per(many)),
    ];
    let mut out = format!("  {:<32} {:>14} {:>16}\n", "", "monolith", "microservices");
    for (label, a, b) in rows {
        out.push_str(&format!("  {label:<32} {a:>14} {b:>16}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_sets_the_two_side_by_side() {
        let one = Side {
            checkouts_per_second: 120.0,
            confirmed: 1200,
            confirmed_p50_ms: Some(8.0),
            confirmed_p99_ms: Some(30.0),
            processes: 1,
            memory: Memory {
                resident_kib: 80_000,
                proportional_kib: 78_125,
            },
            cpu_seconds: 12.0,
            ..Side::default()
        };
        let many = Side {
            processes: 10,
            memory: Memory {
                resident_kib: 300_000,
                proportional_kib: 100_000,
            },
            ..Side::default()
        };
        let table = table(&one, &many);
        assert!(table.contains("monolith"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.contains("checkouts confirmed per second") && l.contains("120.0")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.contains("CPU per confirmed checkout") && l.contains("10.0 ms")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.contains("processes") && l.ends_with("10")),
            "{table}"
        );
        assert!(
            table.lines().any(|l| l.contains("memory held")
                && l.contains(" 80 MB")
                && l.ends_with("102 MB")),
            "{table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.contains("resident sets added up") && l.ends_with("307 MB")),
            "{table}"
        );
    }
}

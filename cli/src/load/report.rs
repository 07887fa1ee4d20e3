//! The report of a load run: per journey and per endpoint, the count, the error share and the
//! latency percentiles (HDR histograms), the time from placing an order to its confirmation,
//! and errors by kind; printed as tables, and as JSON to compare runs.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::breakdown::Part;
use super::cpu::Usage;
use super::stats::{Percentiles, Series, Stats};
use crate::procfs::Memory;
use crate::table;

/// One row: an endpoint or a journey.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) count: u64,
    pub(crate) errors: u64,
    pub(crate) per_second: f64,
    pub(crate) latency_ms: Option<Percentiles>,
}

impl Row {
    fn of(series: &Series, seconds: f64) -> Self {
        let count = series.latencies.count();
        Self {
            count,
            errors: series.errors,
            per_second: if seconds > 0.0 {
                count as f64 / seconds
            } else {
                0.0
            },
            latency_ms: series.latencies.summary(),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `open loop at 100 journeys/s` or `closed loop, 16 users`.
    pub(crate) mode: String,
    pub(crate) gateway: String,
    pub(crate) seconds: f64,
    pub(crate) journeys: BTreeMap<String, Row>,
    pub(crate) endpoints: BTreeMap<String, Row>,
    pub(crate) requests: Row,
    /// From placing an order to reading it confirmed.
    pub(crate) order_to_confirmed_ms: Option<Percentiles>,
    pub(crate) confirmed: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Where a checkout's time goes, from a sample of the confirmed orders' sagas.
    pub(crate) checkout_breakdown: Vec<Part>,
    /// CPU by service over the run, when the system runs on this machine.
    pub(crate) cpu: Vec<Usage>,
    /// The memory the system's processes hold at the end of the run, when it runs here.
    pub(crate) memory: Option<Memory>,
    /// What the warm-up measured, when there was one (`--warmup`); left out of the rest.
    pub(crate) warmup: Option<WarmUp>,
}

/// The journeys of the warm-up, which run before the measuring starts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WarmUp {
    pub(crate) seconds: f64,
    pub(crate) journeys: u64,
    pub(crate) failed: u64,
    pub(crate) journey_ms: Option<Percentiles>,
    pub(crate) order_to_confirmed_ms: Option<Percentiles>,
}

impl WarmUp {
    pub(crate) fn of(took: std::time::Duration, stats: &Stats) -> Self {
        Self {
            seconds: took.as_secs_f64(),
            journeys: stats.journeys_finished(),
            failed: stats.failed_journeys(),
            journey_ms: stats.all_journeys().summary(),
            order_to_confirmed_ms: stats.to_confirmed.summary(),
        }
    }
}

impl fmt::Display for WarmUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Warm-up, left out below: {:.0} s, {} journeys, {} failed",
            self.seconds, self.journeys, self.failed
        )?;
        if let Some(p) = &self.journey_ms {
            write!(f, "; journeys p50 {:.1} ms, p99 {:.1}", p.p50, p.p99)?;
        }
        if let Some(p) = &self.order_to_confirmed_ms {
            write!(
                f,
                "; placed → CONFIRMED p50 {:.1} ms, p99 {:.1}",
                p.p50, p.p99
            )?;
        }
        Ok(())
    }
}

impl Report {
    pub(crate) fn new(mode: String, gateway: String, seconds: f64, stats: &Stats) -> Self {
        let all = Series {
            latencies: stats.all_requests(),
            errors: stats.failed_requests(),
        };
        Self {
            mode,
            gateway,
            seconds,
            journeys: stats
                .journeys
                .iter()
                .map(|(name, s)| ((*name).to_owned(), Row::of(s, seconds)))
                .collect(),
            endpoints: stats
                .endpoints
                .iter()
                .map(|(name, s)| ((*name).to_owned(), Row::of(s, seconds)))
                .collect(),
            requests: Row::of(&all, seconds),
            order_to_confirmed_ms: stats.to_confirmed.summary(),
            confirmed: stats.to_confirmed.count(),
            errors: stats.errors.clone(),
            checkout_breakdown: Vec::new(),
            cpu: Vec::new(),
            memory: None,
            warmup: None,
        }
    }
}

fn rows(map: &BTreeMap<String, Row>) -> Vec<Vec<String>> {
    map.iter().map(|(name, row)| line(name, row)).collect()
}

fn line(name: &str, row: &Row) -> Vec<String> {
    let ms = |f: fn(&Percentiles) -> f64| {
        row.latency_ms
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| format!("{:.1}", f(p)))
    };
    vec![
        name.to_owned(),
        row.count.to_string(),
        format!("{:.1}", row.per_second),
        if row.count == 0 {
            "-".to_owned()
        } else {
            format!("{:.2} %", row.errors as f64 * 100.0 / row.count as f64)
        },
        ms(|p| p.p50),
        ms(|p| p.p90),
        ms(|p| p.p99),
        ms(|p| p.p999),
        ms(|p| p.max),
    ]
}

const HEADER: [&str; 9] = [
    "", "COUNT", "PER S", "ERRORS", "P50 MS", "P90", "P99", "P99.9", "MAX",
];

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Load report: {:.0} s, {}, against {}",
            self.seconds, self.mode, self.gateway
        )?;
        if let Some(warmup) = &self.warmup {
            writeln!(f, "{warmup}")?;
        }
        writeln!(f)?;
        write!(
            f,
            "{}",
            table::render("", &with_title("JOURNEY"), &rows(&self.journeys))
        )?;
        writeln!(f)?;
        let mut endpoints = rows(&self.endpoints);
        endpoints.push(line("all requests", &self.requests));
        write!(
            f,
            "{}",
            table::render("", &with_title("ENDPOINT"), &endpoints)
        )?;
        if let Some(p) = &self.order_to_confirmed_ms {
            writeln!(f)?;
            writeln!(
                f,
                "Order placed → CONFIRMED ({} orders): p50 {:.1} ms, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, max {:.1}",
                self.confirmed, p.p50, p.p90, p.p99, p.p999, p.max
            )?;
        }
        if !self.checkout_breakdown.is_empty() {
            writeln!(f)?;
            let rows: Vec<Vec<String>> = self
                .checkout_breakdown
                .iter()
                .map(|part| {
                    vec![
                        part.part.clone(),
                        format!("{:.1}", part.ms.p50),
                        format!("{:.1}", part.ms.p90),
                        format!("{:.1}", part.ms.p99),
                        format!("{:.1}", part.ms.max),
                    ]
                })
                .collect();
            let title = format!(
                "WHERE A CHECKOUT'S TIME GOES (up to {} sagas)",
                super::breakdown::SAMPLE
            );
            write!(
                f,
                "{}",
                table::render("", &[title.as_str(), "P50 MS", "P90", "P99", "MAX"], &rows)
            )?;
        }
        if !self.cpu.is_empty() {
            writeln!(f)?;
            let rows: Vec<Vec<String>> = self
                .cpu
                .iter()
                .map(|usage| {
                    vec![
                        usage.service.clone(),
                        usage.processes.to_string(),
                        format!("{:.2}", usage.cores),
                        format!("{:.2}", usage.ms_per_journey),
                        format!("{:.1}", usage.memory_mb),
                    ]
                })
                .collect();
            write!(
                f,
                "{}",
                table::render(
                    "",
                    &[
                        "WHERE THE CPU GOES",
                        "PROCESSES",
                        "CORES",
                        "CPU MS PER JOURNEY",
                        "MEMORY MB"
                    ],
                    &rows
                )
            )?;
        }
        if let Some(memory) = &self.memory {
            writeln!(
                f,
                "Memory at the end: {:.0} MB held (each shared page once); {:.0} MB adding up the resident sets",
                memory.held_mb(),
                memory.resident_mb()
            )?;
        }
        writeln!(f)?;
        if self.errors.is_empty() {
            writeln!(f, "No errors.")
        } else {
            writeln!(f, "Errors by kind:")?;
            for (kind, n) in &self.errors {
                writeln!(f, "  {n:>8}  {kind}")?;
            }
            Ok(())
        }
    }
}

fn with_title(title: &str) -> Vec<&str> {
    let mut header = HEADER.to_vec();
    header[0] = title;
    header
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_report_has_a_row_per_journey_and_endpoint_and_the_errors() {
        let mut stats = Stats::default();
        for ms in [10, 20, 30] {
            stats.request("GET /api/products", Duration::from_millis(ms), None);
        }
        stats.request(
            "POST /api/orders",
            Duration::from_millis(5),
            Some("HTTP 503 on POST /api/orders".into()),
        );
        stats.journey("browse", Duration::from_millis(40), false);
        stats.to_confirmed.record(Duration::from_millis(12));
        let mut report = Report::new(
            "closed loop, 1 user".into(),
            "http://gw".into(),
            2.0,
            &stats,
        );
        report.cpu = vec![Usage {
            service: "orders".into(),
            processes: 1,
            cores: 0.25,
            ms_per_journey: 12.5,
            memory_mb: 9.5,
        }];
        report.memory = Some(Memory {
            resident_kib: 300_000,
            proportional_kib: 90_000,
        });
        let mut warm = Stats::default();
        warm.journey("checkout", Duration::from_millis(80), false);
        warm.journey("checkout", Duration::from_millis(90), true);
        warm.to_confirmed.record(Duration::from_millis(70));
        report.warmup = Some(WarmUp::of(Duration::from_secs(5), &warm));
        let text = report.to_string();
        for expected in [
            "Warm-up, left out below: 5 s, 2 journeys, 1 failed; journeys p50 80.1 ms, p99 90.0; placed → CONFIRMED p50 70.0 ms, p99 70.0",
            "WHERE THE CPU GOES",
            "12.50",
            "browse",
            "GET /api/products",
            "all requests",
            "Order placed → CONFIRMED (1 orders)",
            "1  HTTP 503 on POST /api/orders",
            "MEMORY MB",
            "Memory at the end: 92 MB held (each shared page once); 307 MB adding up the resident sets",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        assert_eq!(report.requests.count, 4);
        assert!((report.endpoints["GET /api/products"].per_second - 1.5).abs() < 1e-9);
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["endpoints"]["POST /api/orders"]["errors"], 1);
        assert_eq!(json["warmup"]["journeys"], 2);
    }
}

//! The report of a chaos run: what was done to the system, what customers saw while it
//! happened, and what the invariants found once it settled.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::invariants::OrderFacts;
use super::monkey::Doings;
use super::workload::Tally;

/// Throughput and failures over one stretch of the run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Window {
    /// Seconds into the run at its end.
    pub(crate) at_s: u64,
    /// Checkouts accepted per second.
    pub(crate) placed_per_s: f64,
    /// Share of requests answered 5xx or 429, or not at all.
    pub(crate) failed_share: f64,
    /// Kills so far.
    pub(crate) kills: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) backend: String,
    pub(crate) seed: u64,
    pub(crate) duration_s: f64,
    pub(crate) customers: u16,
    pub(crate) faults: Doings,
    pub(crate) customers_saw: Tally,
    pub(crate) placed_per_s: f64,
    pub(crate) failed_request_share: f64,
    pub(crate) place_p50_ms: Option<f64>,
    pub(crate) place_p99_ms: Option<f64>,
    pub(crate) windows: Vec<Window>,
    /// Orders in the orders service, by status.
    pub(crate) orders: BTreeMap<String, u64>,
    /// Cancelled orders, by the reason's first words.
    pub(crate) cancellations: BTreeMap<String, u64>,
    pub(crate) settled_in_s: f64,
    pub(crate) violations: Vec<String>,
}

impl Report {
    /// Fills in what is derived from the tally and the orders.
    pub(crate) fn outcomes(&mut self, orders: &[OrderFacts]) {
        self.orders.clear();
        self.cancellations.clear();
        for order in orders {
            *self.orders.entry(order.status.clone()).or_default() += 1;
            if let Some(reason) = order.cancel_reason.as_deref() {
                *self.cancellations.entry(reason_kind(reason)).or_default() += 1;
            }
        }
    }

    /// Figures computed from the tally.
    pub(crate) fn derive(&mut self) {
        let tally = &self.customers_saw;
        self.placed_per_s = ratio(tally.placed, self.duration_s);
        self.failed_request_share = share(tally.failed_requests, tally.requests);
        let mut ms = tally.place_ms.clone();
        ms.sort_by(f64::total_cmp);
        self.place_p50_ms = percentile(&ms, 0.50);
        self.place_p99_ms = percentile(&ms, 0.99);
    }
}

/// The kind of a cancel reason: its words before the first colon, without ids
/// (`out of stock: MUG-STONE` → `out of stock`).
fn reason_kind(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_owned()
}

/// `n / seconds`, 0 for no time.
pub(crate) fn ratio(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// `part / whole`, 0 for nothing.
pub(crate) fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The `p` quantile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".to_owned();
    }
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.0} ms"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults = &self.faults;
        let tally = &self.customers_saw;
        writeln!(f, "Chaos report")?;
        writeln!(
            f,
            "  run        {:.0} s on {}, {} customers, seed {}",
            self.duration_s, self.backend, self.customers, self.seed
        )?;
        writeln!(
            f,
            "  kills      {} ({})",
            faults.total_kills(),
            counts(&faults.kills)
        )?;
        writeln!(
            f,
            "  cut off    {} ({})",
            faults.freezes.values().sum::<u64>(),
            counts(&faults.freezes)
        )?;
        writeln!(
            f,
            "  rules      {} switched on, {} off; {} moves skipped (target down)",
            faults.rules_on, faults.rules_off, faults.skipped
        )?;
        writeln!(
            f,
            "  checkouts  {} started, {} placed ({:.1}/s), {} refused ({}), {} abandoned",
            tally.checkouts,
            tally.placed,
            self.placed_per_s,
            tally.refused.values().sum::<u64>(),
            counts(&tally.refused),
            tally.abandoned
        )?;
        writeln!(
            f,
            "  placing    p50 {}, p99 {} (first try to acceptance, retries included)",
            ms(self.place_p50_ms),
            ms(self.place_p99_ms)
        )?;
        writeln!(
            f,
            "  requests   {} sent, {} failed ({:.1} %: 5xx, 429 or no answer, then retried)",
            tally.requests,
            tally.failed_requests,
            self.failed_request_share * 100.0
        )?;
        writeln!(
            f,
            "  customers  saw {} confirmed, {} cancelled, {} not settled in time; cancelled {} themselves",
            tally.seen_confirmed,
            tally.seen_cancelled,
            tally.seen_unsettled,
            tally.customer_cancels
        )?;
        if !self.windows.is_empty() {
            let line: Vec<String> = self
                .windows
                .iter()
                .map(|w| format!("{:.1}/s", w.placed_per_s))
                .collect();
            writeln!(f, "  over time  {}", line.join(" "))?;
        }
        writeln!(f, "  orders     {}", counts(&self.orders))?;
        writeln!(f, "  cancelled  {}", counts(&self.cancellations))?;
        writeln!(f, "  settled    in {:.1} s", self.settled_in_s)?;
        if self.violations.is_empty() {
            writeln!(
                f,
                "  verdict    every invariant holds for all {} orders",
                self.orders.values().sum::<u64>()
            )
        } else {
            writeln!(f, "  verdict    {} VIOLATIONS:", self.violations.len())?;
            for violation in &self.violations {
                writeln!(f, "    - {violation}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&values, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn reasons_are_grouped_without_their_ids() {
        assert_eq!(reason_kind("out of stock: MUG-STONE"), "out of stock");
        assert_eq!(
            reason_kind("the card was declined: card_declined"),
            "the card was declined"
        );
        assert_eq!(
            reason_kind("cancelled by the customer"),
            "cancelled by the customer"
        );
    }
}

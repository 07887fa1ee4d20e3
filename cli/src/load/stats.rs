//! What a load run measures: an HDR histogram of latencies per endpoint and per journey, the
//! time from placing an order to its confirmation, and errors by kind, for the whole run and
//! for the window since the last progress line.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, from 1 µs to 5 minutes, at 3 significant digits.
#[derive(Debug, Clone)]
pub(crate) struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, 300_000_000, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
        )
    }
}

impl Latencies {
    pub(crate) fn record(&mut self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    pub(crate) fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at quantile `q`, in ms.
    pub(crate) fn ms_at(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q) as f64 / 1000.0
    }

    /// Percentiles in ms, or `None` for no samples.
    pub(crate) fn summary(&self) -> Option<Percentiles> {
        (self.count() > 0).then(|| Percentiles {
            p50: self.ms_at(0.50),
            p90: self.ms_at(0.90),
            p99: self.ms_at(0.99),
            p999: self.ms_at(0.999),
            max: self.0.max() as f64 / 1000.0,
        })
    }

    fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }
}

/// Latency percentiles, ms.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// Counts and latencies of one endpoint or journey.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    pub(crate) latencies: Latencies,
    pub(crate) errors: u64,
}

/// Everything measured over some stretch of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    /// By endpoint (`GET /api/products/{sku}`): every request, answered or not.
    pub(crate) endpoints: BTreeMap<&'static str, Series>,
    /// By journey: from its intended start (open loop) or its start (closed loop) to its end.
    pub(crate) journeys: BTreeMap<&'static str, Series>,
    /// From placing an order to reading it confirmed.
    pub(crate) to_confirmed: Latencies,
    /// Errors by kind (`HTTP 503 on POST /api/orders`, `timeout on …`, `cancelled: out of
    /// stock`).
    pub(crate) errors: BTreeMap<String, u64>,
}

impl Stats {
    /// A request to `endpoint` that took `took`; `error` names what went wrong, if anything.
    pub(crate) fn request(
        &mut self,
        endpoint: &'static str,
        took: Duration,
        error: Option<String>,
    ) {
        let series = self.endpoints.entry(endpoint).or_default();
        series.latencies.record(took);
        if let Some(kind) = error {
            series.errors += 1;
            *self.errors.entry(kind).or_default() += 1;
        }
    }

    /// A journey that took `took`, and whether it failed.
    pub(crate) fn journey(&mut self, name: &'static str, took: Duration, failed: bool) {
        let series = self.journeys.entry(name).or_default();
        series.latencies.record(took);
        if failed {
            series.errors += 1;
        }
    }

    /// Journeys that ended, failed or not.
    pub(crate) fn journeys_finished(&self) -> u64 {
        self.journeys.values().map(|s| s.latencies.count()).sum()
    }

    /// A failure that is not one request's (a checkout cancelled, the generator falling behind).
    pub(crate) fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Requests sent.
    pub(crate) fn requests(&self) -> u64 {
        self.endpoints.values().map(|s| s.latencies.count()).sum()
    }

    /// Requests that failed.
    pub(crate) fn failed_requests(&self) -> u64 {
        self.endpoints.values().map(|s| s.errors).sum()
    }

    /// Journeys finished.
    pub(crate) fn journeys_done(&self) -> u64 {
        self.journeys.values().map(|s| s.latencies.count()).sum()
    }

    /// Every request's latency together.
    pub(crate) fn all_requests(&self) -> Latencies {
        together(self.endpoints.values())
    }

    /// Every journey's time together.
    pub(crate) fn all_journeys(&self) -> Latencies {
        together(self.journeys.values())
    }

    /// Journeys that failed.
    pub(crate) fn failed_journeys(&self) -> u64 {
        self.journeys.values().map(|s| s.errors).sum()
    }

    /// Adds `other` in.
    pub(crate) fn merge(&mut self, other: &Stats) {
        for (name, series) in &other.endpoints {
            let mine = self.endpoints.entry(name).or_default();
            mine.latencies.add(&series.latencies);
            mine.errors += series.errors;
        }
        for (name, series) in &other.journeys {
            let mine = self.journeys.entry(name).or_default();
            mine.latencies.add(&series.latencies);
            mine.errors += series.errors;
        }
        self.to_confirmed.add(&other.to_confirmed);
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }
}

/// The latencies of every series in one histogram.
fn together<'a>(series: impl Iterator<Item = &'a Series>) -> Latencies {
    let mut all = Latencies::default();
    for series in series {
        all.add(&series.latencies);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_every_sample_to_three_digits() {
        let mut latencies = Latencies::default();
        for ms in 1..=1000 {
            latencies.record(Duration::from_millis(ms));
        }
        let p = latencies.summary().expect("samples");
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert!(Latencies::default().summary().is_none());
    }

    #[test]
    fn windows_merge_into_the_run() {
        let mut run = Stats::default();
        let mut window = Stats::default();
        window.request("GET /api/products", Duration::from_millis(2), None);
        window.request(
            "GET /api/products",
            Duration::from_millis(4),
            Some("HTTP 503 on GET /api/products".into()),
        );
        window.journey("browse", Duration::from_millis(6), true);
        run.merge(&window);
        run.merge(&window);
        assert_eq!((run.requests(), run.failed_requests()), (4, 2));
        assert_eq!(run.journeys_done(), 2);
        assert_eq!(run.errors["HTTP 503 on GET /api/products"], 2);
    }
}

//! RED statistics (rate, errors, duration) from Prometheus samples: a request counter with a
//! `status` label and a latency histogram, summed over the series a caller picks, and
//! compared between two scrapes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::remote::Sample;

/// Requests, server errors and a latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RedStats {
    pub(crate) requests: f64,
    /// Answers of 500 and above.
    pub(crate) errors: f64,
    /// Cumulative histogram: upper bound in seconds to count.
    buckets: BTreeMap<Bound, f64>,
}

/// A bucket's upper bound, ordered numerically (`+Inf` last).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound(f64);

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl RedStats {
    /// The counter `requests` and the histogram `buckets` (its `_bucket` series), summed over
    /// the samples `keep` picks.
    pub(crate) fn collect(
        samples: &[Sample],
        requests: &str,
        buckets: &str,
        keep: impl Fn(&Sample) -> bool,
    ) -> Self {
        let mut stats = Self::default();
        for sample in samples.iter().filter(|s| keep(s)) {
            if sample.name == requests {
                stats.requests += sample.value;
                let status: u16 = sample
                    .labels
                    .get("status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if status >= 500 {
                    stats.errors += sample.value;
                }
            } else if sample.name == buckets {
                let bound = match sample.labels.get("le").map(String::as_str) {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                *stats.buckets.entry(Bound(bound)).or_default() += sample.value;
            }
        }
        stats
    }

    /// What happened between `earlier` and `self`.
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self {
            requests: (self.requests - earlier.requests).max(0.0),
            errors: (self.errors - earlier.errors).max(0.0),
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| {
                    let before = earlier.buckets.get(bound).copied().unwrap_or(0.0);
                    (*bound, (count - before).max(0.0))
                })
                .collect(),
        }
    }

    /// Share of requests that failed, 0 to 1 (0 without requests).
    pub(crate) fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }

    /// The `q` quantile (0 to 1) of latency, as the upper bound of the bucket it falls in;
    /// `None` without requests, or beyond the largest finite bucket.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.buckets.get(&Bound(f64::INFINITY)).copied()?;
        if total <= 0.0 {
            return None;
        }
        let wanted = total * q;
        self.buckets
            .iter()
            .find(|(_, count)| **count >= wanted)
            .and_then(|(bound, _)| {
                bound
                    .0
                    .is_finite()
                    .then(|| Duration::from_secs_f64(bound.0))
            })
    }

    /// The 99th percentile; see [`RedStats::quantile`].
    pub(crate) fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

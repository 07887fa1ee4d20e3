//! Reading metrics back: samples of the Prometheus text the chassis writes, and RED
//! statistics (rate, errors, duration) summed from them and compared between two scrapes.
//! `bazaar top`, the canary analysis and the operations console read the same numbers.

use std::collections::BTreeMap;
use std::time::Duration;

/// Requests every service counts, by route, method and status.
pub const SERVER_REQUESTS: &str = "bazaar_http_server_requests_total";
/// Their latency histogram's buckets.
pub const SERVER_BUCKETS: &str = "bazaar_http_server_request_duration_seconds_bucket";
/// Requests a gateway sent upstream, by service and version.
pub const UPSTREAM_REQUESTS: &str = "bazaar_gateway_upstream_requests_total";
/// Their latency histogram's buckets.
pub const UPSTREAM_BUCKETS: &str = "bazaar_gateway_upstream_request_duration_seconds_bucket";

/// One sample of Prometheus text: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name (a histogram's series end in `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// The samples of Prometheus text exposition (the subset the chassis writes: no escaped quotes
/// in label values, no timestamps). Comments and lines that do not parse are skipped.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.trim().to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// Requests, server errors and a latency histogram.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedStats {
    pub requests: f64,
    /// Answers of 500 and above.
    pub errors: f64,
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
    pub fn collect(
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

    /// Adds `other`'s counts to these (another instance's, say).
    pub fn add(&mut self, other: &Self) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (bound, count) in &other.buckets {
            *self.buckets.entry(*bound).or_default() += count;
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Self) -> Self {
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
    pub fn error_rate(&self) -> f64 {
        if self.requests > 0.0 {
            self.errors / self.requests
        } else {
            0.0
        }
    }

    /// The `q` quantile (0 to 1) of latency, as the upper bound of the bucket it falls in;
    /// `None` without requests, or beyond the largest finite bucket.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
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
    pub fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_text() {
        let text = "# HELP x y\n# TYPE x counter\nbazaar_up 1\nbazaar_requests_total{service=\"catalog\",version=\"2.0\",status=\"200\"} 12\nbazaar_h_bucket{le=\"0.005\",service=\"catalog\"} 3\n# EOF\n";
        let parsed = samples(text);
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].name, "bazaar_up");
        assert_eq!(parsed[1].labels["version"], "2.0");
        assert_eq!(parsed[1].labels["status"], "200");
        assert!((parsed[1].value - 12.0).abs() < f64::EPSILON);
        assert_eq!(parsed[2].labels["le"], "0.005");
    }

    #[test]
    fn counts_add_up_across_instances_and_differ_between_scrapes() {
        let text = |requests: u32, failed: u32, fast: u32| {
            format!(
                "{SERVER_REQUESTS}{{route=\"/a\",status=\"200\"}} {requests}\n\
                 {SERVER_REQUESTS}{{route=\"/a\",status=\"500\"}} {failed}\n\
                 {SERVER_BUCKETS}{{route=\"/a\",le=\"0.005\"}} {fast}\n\
                 {SERVER_BUCKETS}{{route=\"/a\",le=\"0.1\"}} {}\n\
                 {SERVER_BUCKETS}{{route=\"/a\",le=\"+Inf\"}} {}\n",
                requests + failed,
                requests + failed
            )
        };
        let stats =
            |t: String| RedStats::collect(&samples(&t), SERVER_REQUESTS, SERVER_BUCKETS, |_| true);
        let mut both = stats(text(90, 10, 50));
        both.add(&stats(text(100, 0, 100)));
        assert!((both.requests - 200.0).abs() < f64::EPSILON);
        assert!((both.error_rate() - 0.05).abs() < 1e-9);
        assert_eq!(both.quantile(0.5), Some(Duration::from_millis(5)));
        assert_eq!(both.p99(), Some(Duration::from_millis(100)));

        let later = stats(text(190, 10, 150)).since(&stats(text(90, 10, 50)));
        assert!((later.requests - 100.0).abs() < f64::EPSILON);
        assert!(later.errors.abs() < f64::EPSILON);
        assert_eq!(later.p99(), Some(Duration::from_millis(5)));
    }
}

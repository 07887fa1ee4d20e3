//! Canary analysis: each version's requests, server errors and p99 latency as the gateways
//! saw them (`gateway_upstream_requests` and `gateway_upstream_request_duration_seconds`, by
//! service and version), between two scrapes.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::remote::Sample;

const REQUESTS: &str = "bazaar_gateway_upstream_requests_total";
const BUCKETS: &str = "bazaar_gateway_upstream_request_duration_seconds_bucket";

/// What the gateways counted for one version of a service.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct VersionStats {
    pub(crate) requests: f64,
    /// Answers of 500 and above (including the gateway's own 502 and 504 for the instance).
    pub(crate) errors: f64,
    /// Cumulative histogram: upper bound in seconds (as text, as exposed) to count.
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

impl VersionStats {
    /// The gateways' counts for `service` at `version`, summed over gateways and instances.
    pub(crate) fn of(samples: &[Sample], service: &str, version: &str) -> Self {
        let mut stats = Self::default();
        let ours = samples.iter().filter(|s| {
            s.labels.get("service").map(String::as_str) == Some(service)
                && s.labels.get("version").map(String::as_str) == Some(version)
        });
        for sample in ours {
            if sample.name == REQUESTS {
                stats.requests += sample.value;
                let status: u16 = sample
                    .labels
                    .get("status")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if status >= 500 {
                    stats.errors += sample.value;
                }
            } else if sample.name == BUCKETS {
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

    /// The 99th percentile latency, as the upper bound of the bucket it falls in; `None`
    /// without requests, or beyond the largest finite bucket.
    pub(crate) fn p99(&self) -> Option<Duration> {
        let total = self.buckets.get(&Bound(f64::INFINITY)).copied()?;
        if total <= 0.0 {
            return None;
        }
        let wanted = total * 0.99;
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
}

/// Limits a candidate is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// How far the candidate's error rate may exceed the stable's (0 to 1).
    pub(crate) max_error_rate: f64,
    /// How many times the stable's p99 the candidate's may be.
    pub(crate) max_p99_ratio: f64,
    /// A p99 the candidate may always reach, however fast the stable is (bucket bounds are
    /// coarse near zero).
    pub(crate) p99_floor: Duration,
    /// Requests the candidate needs before it is judged.
    pub(crate) min_requests: f64,
}

/// Why a candidate fails, or `None` when it passes (or has too few requests to tell).
pub(crate) fn breach(
    candidate: &VersionStats,
    stable: &VersionStats,
    limits: &Limits,
) -> Option<String> {
    if candidate.requests < limits.min_requests {
        return None;
    }
    let (ours, theirs) = (candidate.error_rate(), stable.error_rate());
    if ours > theirs + limits.max_error_rate {
        return Some(format!(
            "error rate {:.1} % ({} of {} requests) against {:.1} % for the stable version (limit: {:.1} points more)",
            ours * 100.0,
            candidate.errors,
            candidate.requests,
            theirs * 100.0,
            limits.max_error_rate * 100.0
        ));
    }
    let Some(ours) = candidate.p99() else {
        return (candidate.requests > 0.0)
            .then(|| "p99 latency beyond the largest histogram bucket (10 s)".to_owned());
    };
    let allowed = stable
        .p99()
        .filter(|_| stable.requests >= limits.min_requests)
        .map_or(limits.p99_floor, |p99| p99.mul_f64(limits.max_p99_ratio))
        .max(limits.p99_floor);
    (ours > allowed).then(|| {
        format!(
            "p99 latency {} against an allowed {} ({}× the stable version's, at least {})",
            humantime::format_duration(ours),
            humantime::format_duration(allowed),
            limits.max_p99_ratio,
            humantime::format_duration(limits.p99_floor)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::samples;

    fn text(version: &str, ok: u32, failed: u32, fast: u32, slow: u32) -> String {
        format!(
            "{REQUESTS}{{service=\"catalog\",version=\"{version}\",instance=\"a\",status=\"200\"}} {ok}\n\
             {REQUESTS}{{service=\"catalog\",version=\"{version}\",instance=\"a\",status=\"500\"}} {failed}\n\
             {REQUESTS}{{service=\"orders\",version=\"{version}\",instance=\"o\",status=\"500\"}} 99\n\
             {BUCKETS}{{le=\"0.005\",service=\"catalog\",version=\"{version}\",instance=\"a\",status=\"200\"}} {fast}\n\
             {BUCKETS}{{le=\"0.5\",service=\"catalog\",version=\"{version}\",instance=\"a\",status=\"200\"}} {}\n\
             {BUCKETS}{{le=\"+Inf\",service=\"catalog\",version=\"{version}\",instance=\"a\",status=\"200\"}} {}\n",
            fast + slow,
            fast + slow
        )
    }

    const LIMITS: Limits = Limits {
        max_error_rate: 0.05,
        max_p99_ratio: 2.0,
        p99_floor: Duration::from_millis(100),
        min_requests: 20.0,
    };

    #[test]
    fn stats_sum_by_version_and_subtract() {
        let before = VersionStats::of(&samples(&text("2.0", 10, 0, 10, 0)), "catalog", "2.0");
        let after = VersionStats::of(&samples(&text("2.0", 90, 10, 100, 0)), "catalog", "2.0");
        let step = after.since(&before);
        assert!((step.requests - 90.0).abs() < 1e-9);
        assert!((step.error_rate() - 10.0 / 90.0).abs() < 1e-9);
        assert_eq!(step.p99(), Some(Duration::from_millis(5)));
        assert_eq!(VersionStats::default().p99(), None);
    }

    #[test]
    fn a_candidate_fails_on_errors_or_latency_and_passes_otherwise() {
        let stable = VersionStats::of(&samples(&text("1.0", 100, 0, 100, 0)), "catalog", "1.0");
        let healthy = VersionStats::of(&samples(&text("2.0", 100, 1, 100, 0)), "catalog", "2.0");
        assert_eq!(breach(&healthy, &stable, &LIMITS), None);
        let failing = VersionStats::of(&samples(&text("2.0", 80, 20, 100, 0)), "catalog", "2.0");
        let why = breach(&failing, &stable, &LIMITS).expect("breach");
        assert!(why.contains("error rate 20.0 %"), "{why}");
        let slow = VersionStats::of(&samples(&text("2.0", 100, 0, 50, 50)), "catalog", "2.0");
        let why = breach(&slow, &stable, &LIMITS).expect("breach");
        assert!(why.contains("p99 latency 500ms"), "{why}");
        let few = VersionStats::of(&samples(&text("2.0", 5, 5, 10, 0)), "catalog", "2.0");
        assert_eq!(
            breach(&few, &stable, &LIMITS),
            None,
            "too few requests to judge"
        );
    }
}

//! Canary analysis: each version's requests, server errors and p99 latency as the gateways
//! saw them (`gateway_upstream_requests` and `gateway_upstream_request_duration_seconds`, by
//! service and version), between two scrapes.

use std::time::Duration;

use chassis::metrics::red::{
    RedStats, Sample, UPSTREAM_BUCKETS as BUCKETS, UPSTREAM_REQUESTS as REQUESTS,
};

/// What the gateways counted for `service` at `version`, summed over gateways and instances.
pub(crate) fn version_stats(samples: &[Sample], service: &str, version: &str) -> RedStats {
    RedStats::collect(samples, REQUESTS, BUCKETS, |s| {
        s.labels.get("service").map(String::as_str) == Some(service)
            && s.labels.get("version").map(String::as_str) == Some(version)
    })
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

/// Requests a version needs in a window before its p99 means anything: below about a hundred,
/// the p99 is simply the slowest request, and one cold request to a new instance (its first
/// TLS handshake, its empty caches) would roll a healthy candidate back. Errors are judged from
/// [`Limits::min_requests`].
const LATENCY_MIN_REQUESTS: f64 = 100.0;

/// Why a candidate fails, or `None` when it passes (or has too few requests to tell).
pub(crate) fn breach(candidate: &RedStats, stable: &RedStats, limits: &Limits) -> Option<String> {
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
    if candidate.requests < LATENCY_MIN_REQUESTS.max(limits.min_requests) {
        return None;
    }
    let Some(ours) = candidate.p99() else {
        return (candidate.requests > 0.0)
            .then(|| "p99 latency beyond the largest histogram bucket (10 s)".to_owned());
    };
    let allowed = stable
        .p99()
        .filter(|_| stable.requests >= LATENCY_MIN_REQUESTS.max(limits.min_requests))
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
    use chassis::metrics::red::samples;

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
        let before = version_stats(&samples(&text("2.0", 10, 0, 10, 0)), "catalog", "2.0");
        let after = version_stats(&samples(&text("2.0", 90, 10, 100, 0)), "catalog", "2.0");
        let step = after.since(&before);
        assert!((step.requests - 90.0).abs() < 1e-9);
        assert!((step.error_rate() - 10.0 / 90.0).abs() < 1e-9);
        assert_eq!(step.p99(), Some(Duration::from_millis(5)));
        assert_eq!(RedStats::default().p99(), None);
    }

    #[test]
    fn a_candidate_fails_on_errors_or_latency_and_passes_otherwise() {
        let stable = version_stats(&samples(&text("1.0", 100, 0, 100, 0)), "catalog", "1.0");
        let healthy = version_stats(&samples(&text("2.0", 100, 1, 100, 0)), "catalog", "2.0");
        assert_eq!(breach(&healthy, &stable, &LIMITS), None);
        let failing = version_stats(&samples(&text("2.0", 80, 20, 100, 0)), "catalog", "2.0");
        let why = breach(&failing, &stable, &LIMITS).expect("breach");
        assert!(why.contains("error rate 20.0 %"), "{why}");
        let slow = version_stats(&samples(&text("2.0", 100, 0, 50, 50)), "catalog", "2.0");
        let why = breach(&slow, &stable, &LIMITS).expect("breach");
        assert!(why.contains("p99 latency 500ms"), "{why}");
        // Thirty requests, one of them slow: its p99 is that one request, so latency waits for
        // more; the errors are judged already.
        let cold = version_stats(&samples(&text("2.0", 30, 0, 29, 1)), "catalog", "2.0");
        assert_eq!(breach(&cold, &stable, &LIMITS), None, "one cold request");
        let cold_failing = version_stats(&samples(&text("2.0", 20, 10, 29, 1)), "catalog", "2.0");
        let why = breach(&cold_failing, &stable, &LIMITS).expect("breach");
        assert!(why.contains("error rate"), "{why}");
        let few = version_stats(&samples(&text("2.0", 5, 5, 10, 0)), "catalog", "2.0");
        assert_eq!(
            breach(&few, &stable, &LIMITS),
            None,
            "too few requests to judge"
        );
    }
}

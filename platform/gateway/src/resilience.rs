//! Protection of upstream services from the gateway's own retries and from piling onto a
//! service that is failing: a retry budget and a circuit breaker per upstream service.
//! (Passive outlier ejection of single instances lives with the balancer, in
//! [`chassis::discovery::OutlierPolicy`].)
//!
//! - **Retry budget**: retries may add at most `retry_ratio` of the requests of the last
//!   `window`, plus `retry_min_per_second`, so a struggling service sees a bounded increase in
//!   load instead of a retry storm (the Finagle and Linkerd model).
//! - **Circuit breaker**: once at least `breaker_min_requests` requests were made in the last
//!   `window` and `breaker_failure_ratio` of them failed, the breaker opens and requests fail
//!   fast with `503 circuit-open` for `breaker_open_for`. Then one probe request is let through
//!   (half-open): its success closes the breaker, its failure opens it again.
//!
//! Both count in a sliding window of ten buckets, so old outcomes age out smoothly. Everything
//! here is pure apart from the clock, which callers pass in, so it is tested without sleeping.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The `[gateway.resilience]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResilienceSettings {
    /// Span of the sliding window the budget and the breaker count in.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Retries allowed as a share of requests (0.2: one retry per five requests).
    pub retry_ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet service can still retry.
    pub retry_min_per_second: u32,
    /// Requests in the window before the breaker may judge.
    pub breaker_min_requests: u32,
    /// Share of failed requests in the window that opens the breaker.
    pub breaker_failure_ratio: f64,
    /// How long an open breaker refuses before it lets a probe through.
    #[serde(with = "humantime_serde")]
    pub breaker_open_for: Duration,
    /// Passive outlier ejection of single instances.
    pub outliers: chassis::discovery::OutlierPolicy,
}

impl Default for ResilienceSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            retry_ratio: 0.2,
            retry_min_per_second: 10,
            breaker_min_requests: 20,
            breaker_failure_ratio: 0.5,
            breaker_open_for: Duration::from_secs(5),
            outliers: chassis::discovery::OutlierPolicy::default(),
        }
    }
}

impl ResilienceSettings {
    /// The first key whose value makes no sense, with why.
    pub fn invalid(&self) -> Option<(&'static str, String, &'static str)> {
        if self.window < Duration::from_millis(BUCKETS as u64) {
            return Some((
                "gateway.resilience.window",
                humantime::format_duration(self.window).to_string(),
                "must be at least 10ms",
            ));
        }
        if !(0.0..=10.0).contains(&self.retry_ratio) {
            return Some((
                "gateway.resilience.retry_ratio",
                self.retry_ratio.to_string(),
                "must be between 0 and 10",
            ));
        }
        if !(self.breaker_failure_ratio > 0.0 && self.breaker_failure_ratio <= 1.0) {
            return Some((
                "gateway.resilience.breaker_failure_ratio",
                self.breaker_failure_ratio.to_string(),
                "must be above 0 and at most 1",
            ));
        }
        if self.outliers.max_ejected_percent > 100 {
            return Some((
                "gateway.resilience.outliers.max_ejected_percent",
                self.outliers.max_ejected_percent.to_string(),
                "must be at most 100",
            ));
        }
        None
    }
}

const BUCKETS: usize = 10;

/// Two counters per bucket over a sliding window of [`BUCKETS`] buckets.
#[derive(Debug)]
struct Window {
    bucket: Duration,
    epoch: Instant,
    /// Per bucket: which bucket number it holds, and its two counts.
    slots: [(u64, u64, u64); BUCKETS],
}

impl Window {
    fn new(span: Duration, epoch: Instant) -> Self {
        Self {
            bucket: (span / BUCKETS as u32).max(Duration::from_millis(1)),
            epoch,
            slots: [(0, 0, 0); BUCKETS],
        }
    }

    fn number(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(elapsed / self.bucket.as_nanos()).unwrap_or(u64::MAX) + 1
    }

    fn add(&mut self, now: Instant, a: u64, b: u64) {
        let number = self.number(now);
        let slot = &mut self.slots[(number % BUCKETS as u64) as usize];
        if slot.0 != number {
            *slot = (number, 0, 0);
        }
        slot.1 += a;
        slot.2 += b;
    }

    /// Both counts over the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let number = self.number(now);
        self.slots
            .iter()
            .filter(|(n, _, _)| *n + (BUCKETS as u64) > number && *n <= number)
            .fold((0, 0), |(a, b), (_, x, y)| (a + x, b + y))
    }

    fn clear(&mut self) {
        self.slots = [(0, 0, 0); BUCKETS];
    }
}

/// How many retries one upstream service may still get.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor: f64,
    /// Requests and retries.
    window: Mutex<Window>,
}

impl RetryBudget {
    /// A budget per `settings`, its window starting at `now`.
    pub fn new(settings: &ResilienceSettings, now: Instant) -> Self {
        Self {
            ratio: settings.retry_ratio,
            floor: f64::from(settings.retry_min_per_second) * settings.window.as_secs_f64(),
            window: Mutex::new(Window::new(settings.window, now)),
        }
    }

    /// Counts a request (not a retry) toward the budget.
    pub fn deposit(&self, now: Instant) {
        lock(&self.window).add(now, 1, 0);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut window = lock(&self.window);
        let (requests, retries) = window.totals(now);
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let allowed = self.ratio * requests as f64 + self.floor;
        #[allow(clippy::cast_precision_loss)]
        let spent = retries as f64;
        if spent + 1.0 > allowed {
            return false;
        }
        window.add(now, 0, 1);
        true
    }
}

/// A circuit breaker's state; the numbers are the values of the state gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed = 0,
    /// Requests fail fast.
    Open = 1,
    /// One probe is allowed through.
    HalfOpen = 2,
}

impl BreakerState {
    /// The state's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// What the breaker says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send it.
    Allowed,
    /// Send it as the half-open probe: its outcome decides the breaker.
    Probe,
    /// Fail fast; the breaker may let a probe through after this long.
    Rejected(Duration),
}

#[derive(Debug)]
struct BreakerInner {
    state: BreakerState,
    /// When an open breaker may let a probe through.
    reopens_at: Instant,
    probing: bool,
    /// Successes and failures.
    window: Window,
}

/// The circuit breaker of one upstream service.
#[derive(Debug)]
pub struct Breaker {
    min_requests: u64,
    failure_ratio: f64,
    open_for: Duration,
    inner: Mutex<BreakerInner>,
}

impl Breaker {
    /// A closed breaker per `settings`, its window starting at `now`.
    pub fn new(settings: &ResilienceSettings, now: Instant) -> Self {
        Self {
            min_requests: u64::from(settings.breaker_min_requests.max(1)),
            failure_ratio: settings.breaker_failure_ratio,
            open_for: settings.breaker_open_for,
            inner: Mutex::new(BreakerInner {
                state: BreakerState::Closed,
                reopens_at: now,
                probing: false,
                window: Window::new(settings.window, now),
            }),
        }
    }

    /// The current state (an open breaker whose time is up reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        let inner = lock(&self.inner);
        match inner.state {
            BreakerState::Open if now >= inner.reopens_at => BreakerState::HalfOpen,
            state => state,
        }
    }

    /// Whether a request may go, and whether it is the probe. A probe must be settled with
    /// [`Self::record`] or [`Self::abandon_probe`].
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = lock(&self.inner);
        match inner.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open if now < inner.reopens_at => {
                Admission::Rejected(inner.reopens_at - now)
            }
            BreakerState::Open | BreakerState::HalfOpen if !inner.probing => {
                inner.state = BreakerState::HalfOpen;
                inner.probing = true;
                Admission::Probe
            }
            BreakerState::Open | BreakerState::HalfOpen => Admission::Rejected(self.open_for),
        }
    }

    /// Records how an admitted request went; returns the new state when it changed.
    pub fn record(
        &self,
        admission: Admission,
        success: bool,
        now: Instant,
    ) -> Option<BreakerState> {
        let mut inner = lock(&self.inner);
        if admission == Admission::Probe {
            inner.probing = false;
            inner.window.clear();
            return Some(if success {
                inner.state = BreakerState::Closed;
                BreakerState::Closed
            } else {
                inner.state = BreakerState::Open;
                inner.reopens_at = now + self.open_for;
                BreakerState::Open
            });
        }
        inner
            .window
            .add(now, u64::from(success), u64::from(!success));
        if inner.state != BreakerState::Closed || success {
            return None;
        }
        let (successes, failures) = inner.window.totals(now);
        let total = successes + failures;
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        let tripped =
            total >= self.min_requests && failures as f64 >= self.failure_ratio * total as f64;
        if !tripped {
            return None;
        }
        inner.state = BreakerState::Open;
        inner.reopens_at = now + self.open_for;
        Some(BreakerState::Open)
    }

    /// Gives the probe back unjudged (its request was cancelled before an answer).
    pub fn abandon_probe(&self) {
        lock(&self.inner).probing = false;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ResilienceSettings {
        ResilienceSettings::default()
    }

    #[test]
    fn the_retry_budget_is_a_share_of_requests_plus_a_floor() {
        let start = Instant::now();
        let settings = ResilienceSettings {
            retry_min_per_second: 1,
            ..settings()
        };
        let budget = RetryBudget::new(&settings, start);
        // No traffic: the floor (1/s over 10 s) allows ten.
        assert_eq!((0..20).filter(|_| budget.withdraw(start)).count(), 10);
        // A hundred requests add twenty.
        for _ in 0..100 {
            budget.deposit(start);
        }
        assert_eq!((0..50).filter(|_| budget.withdraw(start)).count(), 20);
        // Once the window has passed, everything has aged out and the floor is back.
        let later = start + Duration::from_secs(11);
        assert_eq!((0..50).filter(|_| budget.withdraw(later)).count(), 10);
    }

    #[test]
    fn the_breaker_opens_on_a_failure_ratio_only_with_enough_requests() {
        let start = Instant::now();
        let breaker = Breaker::new(&settings(), start);
        // Ten failures are too few to judge.
        for _ in 0..10 {
            assert_eq!(breaker.admit(start), Admission::Allowed);
            assert_eq!(breaker.record(Admission::Allowed, false, start), None);
        }
        for _ in 0..9 {
            assert_eq!(breaker.record(Admission::Allowed, true, start), None);
        }
        // The twentieth request fails: 11 of 20 failed, over half.
        assert_eq!(
            breaker.record(Admission::Allowed, false, start),
            Some(BreakerState::Open)
        );
        assert_eq!(
            breaker.admit(start + Duration::from_secs(1)),
            Admission::Rejected(Duration::from_secs(4))
        );
    }

    #[test]
    fn old_failures_age_out_of_the_window() {
        let start = Instant::now();
        let breaker = Breaker::new(&settings(), start);
        for _ in 0..15 {
            breaker.record(Admission::Allowed, false, start);
        }
        let later = start + Duration::from_secs(11);
        for _ in 0..10 {
            assert_eq!(breaker.record(Admission::Allowed, false, later), None);
        }
        assert_eq!(breaker.state(later), BreakerState::Closed);
    }

    #[test]
    fn half_open_lets_one_probe_through_which_decides() {
        let start = Instant::now();
        let breaker = Breaker::new(&settings(), start);
        for _ in 0..20 {
            breaker.record(Admission::Allowed, false, start);
        }
        assert_eq!(breaker.state(start), BreakerState::Open);
        let after = start + Duration::from_secs(5);
        assert_eq!(breaker.state(after), BreakerState::HalfOpen);
        assert_eq!(breaker.admit(after), Admission::Probe);
        assert!(matches!(breaker.admit(after), Admission::Rejected(_)));
        // The probe fails: open again, for another full period.
        assert_eq!(
            breaker.record(Admission::Probe, false, after),
            Some(BreakerState::Open)
        );
        assert!(matches!(
            breaker.admit(after + Duration::from_secs(4)),
            Admission::Rejected(_)
        ));
        // The next probe is abandoned, then another succeeds: closed.
        let later = after + Duration::from_secs(5);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.abandon_probe();
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert_eq!(
            breaker.record(Admission::Probe, true, later),
            Some(BreakerState::Closed)
        );
        assert_eq!(breaker.admit(later), Admission::Allowed);
        // Closing starts from a clean window: one failure does not reopen it.
        assert_eq!(breaker.record(Admission::Allowed, false, later), None);
    }

    #[test]
    fn nonsense_settings_are_named() {
        let bad = ResilienceSettings {
            breaker_failure_ratio: 0.0,
            ..settings()
        };
        assert_eq!(
            bad.invalid().map(|(key, _, _)| key),
            Some("gateway.resilience.breaker_failure_ratio")
        );
        assert_eq!(settings().invalid(), None);
    }
}

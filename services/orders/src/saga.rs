//! The checkout saga as a state machine, with no I/O.
//!
//! ```text
//!   forward:      reserve ──▶ charge ──▶ ship ──▶ confirm ──▶ CONFIRMED
//!                    │           │         │         │
//!   refused, or      ▼           ▼         ▼         ▼
//!   out of time:  compensate the steps that completed, in reverse:
//!                 cancel shipment ──▶ refund ──▶ release stock ──▶ CANCELLED
//! ```
//!
//! A customer can cancel a CONFIRMED order that has not shipped: cancel shipment ──▶ refund ──▶
//! return stock ──▶ CANCELLED. If the shipment has already left, the cancellation is refused and
//! the order stays CONFIRMED.
//!
//! The runner ([`crate::runner`]) stores a [`Saga`] before and after every step; this module
//! decides what comes next from the step's [`Outcome`]. Transient failures are retried with
//! exponential backoff and jitter until the saga's deadline; a refusal (out of stock, card
//! declined) or the deadline starts compensation. Compensations have no deadline: they are
//! retried until they succeed, and a saga that keeps failing to compensate is *stuck*, which
//! the status endpoint and a metric show.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A step of the saga, forward or compensating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// Hold the order's stock in the catalog.
    Reserve,
    /// Charge the customer's payment method.
    Charge,
    /// Create the shipment.
    Ship,
    /// Commit the reservation; the order is CONFIRMED.
    Confirm,
    /// Cancel the shipment (compensates [`Step::Ship`]).
    CancelShipment,
    /// Refund the charge (compensates [`Step::Charge`]).
    Refund,
    /// Release held stock (compensates [`Step::Reserve`]).
    ReleaseStock,
    /// Put sold units back on hand (compensates [`Step::Confirm`], for a customer's cancel).
    ReturnStock,
}

impl Step {
    /// Every step, forward ones first.
    pub const ALL: [Step; 8] = [
        Step::Reserve,
        Step::Charge,
        Step::Ship,
        Step::Confirm,
        Step::CancelShipment,
        Step::Refund,
        Step::ReleaseStock,
        Step::ReturnStock,
    ];

    /// The stored name, also the suffix of the step's idempotency key.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Reserve => "reserve",
            Step::Charge => "charge",
            Step::Ship => "ship",
            Step::Confirm => "confirm",
            Step::CancelShipment => "cancel_shipment",
            Step::Refund => "refund",
            Step::ReleaseStock => "release_stock",
            Step::ReturnStock => "return_stock",
        }
    }

    /// Whether the step undoes another.
    pub fn is_compensation(self) -> bool {
        matches!(
            self,
            Step::CancelShipment | Step::Refund | Step::ReleaseStock | Step::ReturnStock
        )
    }

    /// What the customer is told when this forward step runs out of time.
    fn timed_out(self) -> &'static str {
        match self {
            Step::Reserve => "the stock could not be reserved in time",
            Step::Charge => "the payment could not be taken in time",
            Step::Ship => "the shipment could not be arranged in time",
            _ => "the order could not be confirmed in time",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Step {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown saga step {s:?}"))
    }
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Moving forward.
    Running,
    /// Undoing completed steps.
    Compensating,
    /// Finished forward: the order is CONFIRMED.
    Confirmed,
    /// Finished compensating: the order is CANCELLED.
    Cancelled,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Compensating => "compensating",
            Status::Confirmed => "confirmed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Whether there is work left.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Compensating)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Status::Running,
            Status::Compensating,
            Status::Confirmed,
            Status::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| format!("unknown saga status {s:?}"))
    }
}

/// What one attempt at a step led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It happened; with the id it produced (reservation, charge, shipment), if any.
    Done(Option<String>),
    /// The neighbour said no, for good: a reason the customer can read.
    Refused(String),
    /// It may work later (a timeout, a 503, a neighbour that is down): what went wrong.
    Failed(String),
}

/// How long to wait before retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait between forward attempts.
    pub max_forward: Duration,
    /// Longest wait between compensation attempts.
    pub max_compensation: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(200),
            max_forward: Duration::from_secs(5),
            max_compensation: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempts` (1 for the first): doubling from
    /// `first`, capped, and scaled by `jitter` (0.0 to 1.0) into its upper half, so that many
    /// sagas failing together do not retry together.
    pub fn backoff(&self, step: Step, attempts: u32, jitter: f64) -> Duration {
        let cap = if step.is_compensation() {
            self.max_compensation
        } else {
            self.max_forward
        };
        let doubled = self
            .first
            .saturating_mul(1 << attempts.saturating_sub(1).min(16));
        doubled.min(cap).mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// Failed attempts at one compensation after which a saga counts as stuck.
pub const STUCK_AFTER: u32 = 5;

/// Why a customer cancelled.
pub const CUSTOMER_CANCEL: &str = "cancelled at the customer's request";

/// A checkout saga's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saga {
    /// Id; the prefix of every step's idempotency key.
    pub id: String,
    /// The order it checks out.
    pub order_id: String,
    /// Where it is.
    pub status: Status,
    /// The step to run next; `None` once finished.
    pub step: Option<Step>,
    /// The catalog reservation, once held.
    pub reservation_id: Option<String>,
    /// Whether the reservation was committed (the order was confirmed).
    pub committed: bool,
    /// The charge, once taken.
    pub charge_id: Option<String>,
    /// The shipment, once created.
    pub shipment_id: Option<String>,
    /// Why it is compensating or was cancelled, for the customer.
    pub reason: Option<String>,
    /// Whether the customer asked for the compensation (cancelling a confirmed order).
    pub by_customer: bool,
    /// Failed attempts at the current step.
    pub attempts: u32,
    /// Not before this time (ms) is the current step tried again.
    pub next_attempt_at: i64,
    /// Forward steps give up at this time (ms).
    pub deadline_at: i64,
    /// The last failure or refusal, for operators.
    pub last_error: Option<String>,
}

impl Saga {
    /// A new saga for `order_id`, starting at the reservation, giving up at `deadline_at`.
    pub fn new(id: String, order_id: String, now: i64, deadline_at: i64) -> Self {
        Self {
            id,
            order_id,
            status: Status::Running,
            step: Some(Step::Reserve),
            reservation_id: None,
            committed: false,
            charge_id: None,
            shipment_id: None,
            reason: None,
            by_customer: false,
            attempts: 0,
            next_attempt_at: now,
            deadline_at,
            last_error: None,
        }
    }

    /// The idempotency key of a step's command: `<saga-id>:<step>`.
    pub fn key(&self, step: Step) -> String {
        format!("{}:{}", self.id, step.as_str())
    }

    /// Whether the saga keeps failing to compensate and needs an operator's eye.
    pub fn is_stuck(&self) -> bool {
        self.status == Status::Compensating && self.attempts >= STUCK_AFTER
    }

    /// The saga after the current step ended with `outcome` at `now`. `jitter` (0.0 to 1.0)
    /// spreads retries. A finished saga is returned unchanged.
    #[must_use]
    pub fn after(&self, outcome: Outcome, now: i64, policy: &RetryPolicy, jitter: f64) -> Saga {
        let Some(step) = self.step.filter(|_| self.status.is_active()) else {
            return self.clone();
        };
        let mut next = self.clone();
        match outcome {
            Outcome::Done(id) => {
                next.attempts = 0;
                next.next_attempt_at = now;
                next.last_error = None;
                match step {
                    Step::Reserve => next.reservation_id = id,
                    Step::Charge => next.charge_id = id,
                    Step::Ship => next.shipment_id = id,
                    Step::Confirm => next.committed = true,
                    Step::CancelShipment => next.shipment_id = None,
                    Step::Refund => next.charge_id = None,
                    Step::ReleaseStock | Step::ReturnStock => {
                        next.reservation_id = None;
                        next.committed = false;
                    }
                }
                if step.is_compensation() {
                    next.step = next.next_compensation();
                    if next.step.is_none() {
                        next.status = Status::Cancelled;
                    }
                } else {
                    next.step = match step {
                        Step::Reserve => Some(Step::Charge),
                        Step::Charge => Some(Step::Ship),
                        Step::Ship => Some(Step::Confirm),
                        _ => None,
                    };
                    if next.step.is_none() {
                        next.status = Status::Confirmed;
                    }
                }
            }
            Outcome::Refused(reason) if !step.is_compensation() => {
                next.last_error = Some(reason.clone());
                next.compensate(reason, now);
            }
            Outcome::Refused(reason) if step == Step::CancelShipment && self.by_customer => {
                // The parcel has left: the customer's cancellation cannot happen, and nothing
                // else has been undone yet. The order stays confirmed.
                next.status = Status::Confirmed;
                next.step = None;
                next.by_customer = false;
                next.reason = None;
                next.attempts = 0;
                next.last_error = Some(reason);
            }
            Outcome::Refused(error) | Outcome::Failed(error) => {
                next.attempts = self.attempts.saturating_add(1);
                next.last_error = Some(error);
                let wait = policy.backoff(step, next.attempts, jitter);
                let at = now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                if !step.is_compensation() && at > self.deadline_at {
                    next.compensate(step.timed_out().to_owned(), now);
                } else {
                    next.next_attempt_at = at;
                }
            }
        }
        next
    }

    /// The saga once the customer asks to cancel, or why it cannot be cancelled.
    pub fn cancelled_by_customer(&self, now: i64) -> Result<Saga, &'static str> {
        match self.status {
            Status::Running => Err("the order is still being placed; try again in a moment"),
            Status::Compensating | Status::Cancelled => Err("the order is already cancelled"),
            Status::Confirmed if self.shipment_id.is_none() => {
                Err("the order has no shipment to cancel")
            }
            Status::Confirmed => {
                let mut next = self.clone();
                next.status = Status::Compensating;
                next.by_customer = true;
                next.reason = Some(CUSTOMER_CANCEL.to_owned());
                next.step = Some(Step::CancelShipment);
                next.attempts = 0;
                next.next_attempt_at = now;
                next.last_error = None;
                Ok(next)
            }
        }
    }

    fn compensate(&mut self, reason: String, now: i64) {
        self.status = Status::Compensating;
        self.reason = Some(reason);
        self.attempts = 0;
        self.next_attempt_at = now;
        self.step = self.next_compensation();
        if self.step.is_none() {
            self.status = Status::Cancelled;
        }
    }

    /// The first compensation still owed, in reverse order of the forward steps.
    fn next_compensation(&self) -> Option<Step> {
        if self.shipment_id.is_some() {
            Some(Step::CancelShipment)
        } else if self.charge_id.is_some() {
            Some(Step::Refund)
        } else if self.reservation_id.is_some() {
            Some(if self.committed {
                Step::ReturnStock
            } else {
                Step::ReleaseStock
            })
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        first: Duration::from_millis(100),
        max_forward: Duration::from_secs(1),
        max_compensation: Duration::from_secs(10),
    };

    fn saga() -> Saga {
        Saga::new("s-1".into(), "o-1".into(), 0, 10_000)
    }

    fn done(id: &str) -> Outcome {
        Outcome::Done(Some(id.to_owned()))
    }

    /// Runs `outcomes` in order, at time 0, with the largest jitter.
    fn run(mut saga: Saga, outcomes: Vec<Outcome>) -> Saga {
        for outcome in outcomes {
            saga = saga.after(outcome, 0, &POLICY, 1.0);
        }
        saga
    }

    fn confirmed() -> Saga {
        run(
            saga(),
            vec![done("res"), done("chg"), done("shp"), Outcome::Done(None)],
        )
    }

    #[test]
    fn the_happy_path_runs_every_step_in_order() {
        let mut s = saga();
        let mut seen = Vec::new();
        for outcome in [done("res"), done("chg"), done("shp"), Outcome::Done(None)] {
            seen.push(s.step.expect("a step to run"));
            s = s.after(outcome, 0, &POLICY, 0.5);
        }
        assert_eq!(
            seen,
            [Step::Reserve, Step::Charge, Step::Ship, Step::Confirm]
        );
        assert_eq!((s.status, s.step), (Status::Confirmed, None));
        assert_eq!(
            (
                s.reservation_id.as_deref(),
                s.charge_id.as_deref(),
                s.shipment_id.as_deref(),
                s.committed
            ),
            (Some("res"), Some("chg"), Some("shp"), true)
        );
        assert_eq!(s.key(Step::Charge), "s-1:charge");
    }

    #[test]
    fn out_of_stock_cancels_with_nothing_to_undo() {
        let s = run(saga(), vec![Outcome::Refused("out of stock".into())]);
        assert_eq!((s.status, s.step), (Status::Cancelled, None));
        assert_eq!(s.reason.as_deref(), Some("out of stock"));
    }

    #[test]
    fn a_declined_card_releases_the_stock() {
        let s = run(
            saga(),
            vec![done("res"), Outcome::Refused("card declined".into())],
        );
        assert_eq!(
            (s.status, s.step),
            (Status::Compensating, Some(Step::ReleaseStock))
        );
        assert_eq!(s.reason.as_deref(), Some("card declined"));
        let s = run(s, vec![Outcome::Done(None)]);
        assert_eq!((s.status, s.reservation_id), (Status::Cancelled, None));
    }

    #[test]
    fn a_failed_confirmation_undoes_everything_in_reverse() {
        let mut s = run(
            saga(),
            vec![
                done("res"),
                done("chg"),
                done("shp"),
                Outcome::Refused("the reservation expired".into()),
            ],
        );
        let mut undone = Vec::new();
        while let Some(step) = s.step {
            undone.push(step);
            s = s.after(Outcome::Done(None), 0, &POLICY, 0.5);
        }
        assert_eq!(
            undone,
            [Step::CancelShipment, Step::Refund, Step::ReleaseStock]
        );
        assert_eq!(s.status, Status::Cancelled);
        assert_eq!(
            (&s.reservation_id, &s.charge_id, &s.shipment_id),
            (&None, &None, &None)
        );
    }

    #[test]
    fn transient_failures_back_off_until_the_deadline_then_compensate() {
        let mut s = run(saga(), vec![done("res")]);
        let mut now = 0;
        let mut waits = Vec::new();
        while s.status == Status::Running {
            s = s.after(Outcome::Failed("503".into()), now, &POLICY, 1.0);
            if s.status == Status::Running {
                assert_eq!(s.step, Some(Step::Charge), "the same step is retried");
                waits.push(s.next_attempt_at - now);
                now = s.next_attempt_at;
            }
        }
        assert_eq!(
            &waits[..5],
            [100, 200, 400, 800, 1000],
            "doubling, capped at max_forward"
        );
        assert!(now <= 10_000, "never past the deadline");
        assert_eq!(
            (s.status, s.step),
            (Status::Compensating, Some(Step::ReleaseStock))
        );
        assert_eq!(
            s.reason.as_deref(),
            Some("the payment could not be taken in time")
        );
        assert_eq!(s.last_error.as_deref(), Some("503"));
    }

    #[test]
    fn a_transient_failure_then_success_carries_on() {
        let s = run(
            saga(),
            vec![done("res"), Outcome::Failed("timeout".into()), done("chg")],
        );
        assert_eq!(
            (s.status, s.step, s.attempts),
            (Status::Running, Some(Step::Ship), 0)
        );
    }

    #[test]
    fn jitter_spreads_waits_within_the_upper_half() {
        assert_eq!(
            POLICY.backoff(Step::Charge, 3, 0.0),
            Duration::from_millis(200)
        );
        assert_eq!(
            POLICY.backoff(Step::Charge, 3, 1.0),
            Duration::from_millis(400)
        );
        assert_eq!(
            POLICY.backoff(Step::Refund, 40, 1.0),
            Duration::from_secs(10),
            "compensations wait longer and never overflow"
        );
    }

    #[test]
    fn compensations_are_retried_forever_and_become_stuck() {
        let mut s = run(
            saga(),
            vec![done("res"), done("chg"), Outcome::Refused("address".into())],
        );
        assert_eq!(s.step, Some(Step::Refund));
        let mut now = 0;
        for _ in 0..50 {
            s = s.after(Outcome::Failed("payments down".into()), now, &POLICY, 0.0);
            now = s.next_attempt_at;
        }
        assert_eq!(
            (s.status, s.step),
            (Status::Compensating, Some(Step::Refund))
        );
        assert!(s.is_stuck());
        assert!(now > s.deadline_at, "no deadline on compensation");
        let s = s.after(Outcome::Done(None), now, &POLICY, 0.0);
        assert!(!s.is_stuck());
        assert_eq!(s.step, Some(Step::ReleaseStock));
    }

    #[test]
    fn a_refused_compensation_is_retried_not_dropped() {
        let s = run(
            saga(),
            vec![
                done("res"),
                done("chg"),
                done("shp"),
                Outcome::Refused("expired".into()),
                Outcome::Refused("already shipped".into()),
            ],
        );
        assert_eq!(
            (s.status, s.step, s.attempts),
            (Status::Compensating, Some(Step::CancelShipment), 1)
        );
    }

    #[test]
    fn a_customer_cancels_a_confirmed_order_and_stock_is_returned() {
        let s = confirmed().cancelled_by_customer(5).expect("cancellable");
        assert_eq!(
            (s.status, s.step, s.reason.as_deref()),
            (
                Status::Compensating,
                Some(Step::CancelShipment),
                Some(CUSTOMER_CANCEL)
            )
        );
        let mut s = s;
        let mut undone = Vec::new();
        while let Some(step) = s.step {
            undone.push(step);
            s = s.after(Outcome::Done(None), 0, &POLICY, 0.5);
        }
        assert_eq!(
            undone,
            [Step::CancelShipment, Step::Refund, Step::ReturnStock]
        );
        assert_eq!(s.status, Status::Cancelled);
    }

    #[test]
    fn a_shipped_order_stays_confirmed() {
        let s = confirmed().cancelled_by_customer(5).expect("cancellable");
        let s = s.after(Outcome::Refused("already shipped".into()), 6, &POLICY, 0.5);
        assert_eq!((s.status, s.step), (Status::Confirmed, None));
        assert_eq!(s.last_error.as_deref(), Some("already shipped"));
        assert!(s.shipment_id.is_some() && s.charge_id.is_some() && s.committed);
    }

    #[test]
    fn only_confirmed_orders_can_be_cancelled_by_the_customer() {
        assert!(saga().cancelled_by_customer(0).is_err());
        let cancelled = run(saga(), vec![Outcome::Refused("out of stock".into())]);
        assert!(cancelled.cancelled_by_customer(0).is_err());
        let compensating = confirmed().cancelled_by_customer(0).expect("cancellable");
        assert!(compensating.cancelled_by_customer(0).is_err());
    }

    #[test]
    fn a_finished_saga_ignores_late_outcomes() {
        let s = confirmed();
        assert_eq!(s.after(Outcome::Failed("late".into()), 0, &POLICY, 0.5), s);
    }

    #[test]
    fn names_round_trip() {
        for step in Step::ALL {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        assert!("nope".parse::<Step>().is_err());
        assert_eq!("compensating".parse::<Status>(), Ok(Status::Compensating));
    }
}

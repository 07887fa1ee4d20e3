//! Runs checkout sagas: sends each step's command to the neighbour that owns it, stores the
//! answer, and moves on as [`crate::saga`] decides.
//!
//! A saga is run by one instance at a time, the one holding its lease. A new order's saga starts
//! at once on the instance that took the order; a sweep every half second picks up sagas whose
//! retry is due, whose lease ran out (an instance died), or that were left unfinished by a
//! previous run of this instance (a restart resumes them). Every write is conditional on the
//! saga's version, so an instance that lost its lease stops instead of overwriting.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis::auth::Caller;
use chassis::client::{CallError, CallResponse, ServiceClient};
use chassis::db::now_millis;
use chassis::error::ErrorChain;
use http::{Method, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clients::{Carts, Catalog, Reservation};
use crate::domain::Requested;
use crate::saga::{Outcome, RetryPolicy, Saga, Status, Step};
use crate::store::sagas::{Finished, SagaRecord};
use crate::store::{OrderRecord, Store, StoreError};
use crate::waiters::{Move, Moves, Waiters};

/// How long a lease lasts past the current attempt; another instance may take the saga over
/// after that.
const LEASE: Duration = Duration::from_secs(15);
/// Retries due within this long are waited for in place rather than handed to the sweep.
const WAIT_IN_PLACE: Duration = Duration::from_secs(5);
/// How often the sweep looks for due sagas.
const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// Sagas one instance runs at once.
const CONCURRENCY: usize = 256;

/// Names of the neighbours in discovery.
#[derive(Debug, Clone)]
pub struct Neighbours {
    /// Stock.
    pub catalog: String,
    /// Money.
    pub payments: String,
    /// Parcels.
    pub shipping: String,
}

/// Runs sagas; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    client: ServiceClient,
    catalog: Catalog,
    carts: Carts,
    neighbours: Neighbours,
    policy: RetryPolicy,
    owner: String,
    /// Requests waiting on an order, woken by its saga's moves.
    waiters: Waiters,
    slots: Arc<Semaphore>,
    /// Sagas this instance is running now.
    running: Mutex<HashSet<String>>,
    metrics: SagaMetrics,
    stop: CancellationToken,
}

impl Runner {
    /// A runner for the instance `owner`, stopping with `stop`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        client: ServiceClient,
        catalog: Catalog,
        carts: Carts,
        neighbours: Neighbours,
        policy: RetryPolicy,
        owner: String,
        metrics: SagaMetrics,
        stop: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                client,
                catalog,
                carts,
                neighbours,
                policy,
                owner,
                waiters: Waiters::default(),
                slots: Arc::new(Semaphore::new(CONCURRENCY)),
                running: Mutex::default(),
                metrics,
                stop,
            }),
        }
    }

    /// Starts the sweep that resumes unfinished sagas and retries due ones.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        chassis::worker::every(SWEEP_EVERY, self.inner.stop.clone(), move || {
            let runner = runner.clone();
            async move { runner.sweep().await }
        })
    }

    /// The lease a new saga is stored with, so that this instance runs it at once: its owner,
    /// and until when.
    pub fn new_lease(&self, now: i64) -> (&str, i64) {
        (&self.inner.owner, now.saturating_add(millis(LEASE)))
    }

    /// Runs a saga just stored with [`Runner::new_lease`] and its first attempt recorded as
    /// started at log position 0, in the background.
    pub fn run_placed(&self, record: SagaRecord, order: OrderRecord) {
        let id = record.saga.id.clone();
        self.spawn(id, Some(Placed { record, order }));
    }

    /// Runs the saga `id` now, in the background, unless this instance is running it already.
    pub fn run(&self, id: String) {
        self.spawn(id, None);
    }

    fn spawn(&self, id: String, placed: Option<Placed>) {
        if self.inner.stop.is_cancelled() {
            return;
        }
        let Ok(permit) = Arc::clone(&self.inner.slots).try_acquire_owned() else {
            // Every slot is busy: the sweep picks it up when one frees.
            return;
        };
        {
            let mut running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(id.clone()) {
                return;
            }
        }
        let runner = self.clone();
        tokio::spawn(async move {
            if let Err(error) = runner.drive(&id, placed).await {
                tracing::warn!(saga = %id, error = %ErrorChain(&error), "saga paused; it will be resumed");
                let _ = runner
                    .inner
                    .store
                    .release_lease(&id, &runner.inner.owner)
                    .await;
            }
            runner
                .inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            drop(permit);
        });
    }

    /// Once stopped, waits (a few seconds at most) for the steps in flight to be stored.
    pub async fn stopped(&self) {
        let all = u32::try_from(CONCURRENCY).unwrap_or(u32::MAX);
        let _ =
            tokio::time::timeout(Duration::from_secs(5), self.inner.slots.acquire_many(all)).await;
    }

    /// A watch on the moves this instance makes of `order_id`'s saga. Take it before reading
    /// the order, then [`Moves::next`] cannot miss a move made after the read.
    pub fn watch(&self, order_id: &str) -> Moves {
        self.inner.waiters.watch(order_id)
    }

    /// Tells whoever waits on its order that `saga` moved.
    pub fn notify(&self, saga: &Saga) {
        self.inner.waiters.announce(Move {
            order_id: saga.order_id.clone(),
            status: saga.status,
            step: saga.step,
        });
    }

    async fn sweep(&self) {
        let store = &self.inner.store;
        match store.saga_counts().await {
            Ok(counts) => {
                let m = &self.inner.metrics;
                m.active
                    .get_or_create(&StatusLabel::new("running"))
                    .set(counts.running);
                m.active
                    .get_or_create(&StatusLabel::new("compensating"))
                    .set(counts.compensating);
                m.stuck.set(counts.stuck);
            }
            Err(error) => tracing::warn!(error = %ErrorChain(&error), "could not count sagas"),
        }
        let now = now_millis();
        let free = i64::try_from(self.inner.slots.available_permits()).unwrap_or(0);
        if free == 0 {
            return;
        }
        match store.due_sagas(&self.inner.owner, now, now, free).await {
            Ok(due) => due.into_iter().for_each(|id| self.run(id)),
            Err(error) => {
                tracing::warn!(error = %ErrorChain(&error), "could not look for due sagas")
            }
        }
    }

    /// Runs a saga until it finishes, waits longer than [`WAIT_IN_PLACE`], the instance stops,
    /// or another instance owns it.
    async fn drive(&self, id: &str, placed: Option<Placed>) -> Result<(), StoreError> {
        let inner = &self.inner;
        let store = &inner.store;
        let lease_until = |at: i64| at.saturating_add(millis(LEASE));
        // The log position of the current attempt, when it was recorded as started already.
        let mut started: Option<i64> = None;
        let (record, order) = match placed {
            Some(Placed { record, order }) => {
                started = Some(0);
                (record, order)
            }
            None => {
                if !store
                    .claim(id, &inner.owner, now_millis(), lease_until(now_millis()))
                    .await?
                {
                    return Ok(());
                }
                let Some(record) = store.saga(id).await? else {
                    return Ok(());
                };
                let Some(order) = store.find(&record.saga.order_id).await? else {
                    return Err(StoreError::Corrupt(format!("saga {id} has no order")));
                };
                (record, order)
            }
        };
        // The saga's run is a span of the trace of the request that placed the order: its
        // steps, their calls and the events it publishes all show in that request's trace.
        let span = tracing::info_span!(
            "saga",
            saga = %id,
            order_id = %order.id,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            otel.name = "checkout saga",
        );
        let context = chassis::context::RequestContext {
            request_id: chassis::context::new_request_id(),
            path: format!("saga:{id}"),
            trace: chassis::trace::resume(&span, record.traceparent.as_deref()),
        };
        chassis::context::scope(
            context,
            self.steps(id, record, &order, started).instrument(span),
        )
        .await
    }

    /// The saga's steps, one after another, each stored before and after it runs.
    async fn steps(
        &self,
        id: &str,
        mut record: SagaRecord,
        order: &OrderRecord,
        mut started: Option<i64>,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let store = &inner.store;
        let lease_until = |at: i64| at.saturating_add(millis(LEASE));
        loop {
            let saga = &record.saga;
            let Some(step) = saga.step.filter(|_| saga.status.is_active()) else {
                store.release_lease(id, &inner.owner).await?;
                return Ok(());
            };
            let wait = saga.next_attempt_at.saturating_sub(now_millis());
            if wait > 0 {
                if wait > millis(WAIT_IN_PLACE) {
                    store.release_lease(id, &inner.owner).await?;
                    return Ok(());
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())) => {}
                    () = inner.stop.cancelled() => {}
                }
            }
            if inner.stop.is_cancelled() {
                // Between steps: nothing is in flight. Another instance, or the next start,
                // carries on from the stored state.
                store.release_lease(id, &inner.owner).await?;
                return Ok(());
            }
            let attempt = i64::from(saga.attempts) + 1;
            let position = match started.take() {
                Some(position) => position,
                None => store.step_started(id, step, attempt, now_millis()).await?,
            };
            let began = Instant::now();
            let outcome = self.execute_traced(step, attempt, &record, order).await;
            let (label, detail) = match &outcome {
                Outcome::Done(id) => ("done", id.clone()),
                Outcome::Refused(reason) => ("refused", Some(reason.clone())),
                Outcome::Failed(error) => ("failed", Some(error.clone())),
            };
            inner.metrics.step(step, label, began.elapsed());
            match &outcome {
                // Four a checkout: each is in the saga's log and its trace; the order's placing
                // and its outcome are the lines at info.
                Outcome::Done(_) => {
                    tracing::debug!(%step, attempt, "step done");
                }
                Outcome::Refused(reason) => {
                    tracing::info!(%step, attempt, reason, "step refused");
                }
                Outcome::Failed(error) => {
                    tracing::warn!(%step, attempt, error, "step failed; will retry");
                }
            }
            let now = now_millis();
            let next = saga.after(outcome, now, &inner.policy, rand::random::<f64>());
            let finished = Finished {
                position,
                outcome: label,
                detail: detail.as_deref(),
            };
            let lease = lease_until(next.next_attempt_at.max(now));
            let Some(next_started) = store
                .save_saga(
                    &record,
                    order,
                    &next,
                    Some(finished),
                    Some((&inner.owner, lease)),
                    now,
                )
                .await?
            else {
                tracing::info!("another instance took the saga over");
                return Ok(());
            };
            started = next_started;
            if !next.status.is_active() {
                // The write that finished the saga gave its lease up too.
                self.finished(&record, &next, now).await;
                self.notify(&next);
                return Ok(());
            } else if next.status == Status::Compensating && saga.status == Status::Running {
                tracing::info!(
                    reason = next.reason.as_deref().unwrap_or_default(),
                    "compensating"
                );
            }
            self.notify(&next);
            record = SagaRecord {
                saga: next,
                version: record.version + 1,
                updated_at: now,
                ..record
            };
        }
    }

    /// Logs and counts a finished saga; called in its span, whose fields name the saga and
    /// the order.
    async fn finished(&self, record: &SagaRecord, next: &Saga, now: i64) {
        let seconds = Duration::from_millis(now.saturating_sub(record.created_at).unsigned_abs());
        self.inner.metrics.finished(next.status, seconds);
        match next.status {
            Status::Confirmed if record.saga.status == Status::Running => {
                tracing::info!("order confirmed");
                if record.from_cart {
                    self.empty_cart(record).await;
                }
            }
            Status::Confirmed => {
                tracing::info!(
                    reason = next.last_error.as_deref().unwrap_or_default(),
                    "cancellation refused; the order stays confirmed"
                );
            }
            _ => {
                tracing::info!(
                    reason = next.reason.as_deref().unwrap_or_default(),
                    "order cancelled"
                );
            }
        }
    }

    /// Empties the customer's cart once the order is confirmed. The order stands either way; a
    /// cart that could not be emptied is only an inconvenience, so it is logged, not retried.
    async fn empty_cart(&self, record: &SagaRecord) {
        let Ok(user_id) = record.user_id.parse() else {
            return;
        };
        let customer = Caller {
            user_id,
            roles: vec!["customer".to_owned()],
        };
        if let Err(error) = self.inner.carts.clear(&customer).await {
            tracing::warn!(order_id = %record.saga.order_id, error = %ErrorChain(&error), "the cart could not be emptied");
        }
    }

    /// Sends one step's command and says what came of it.
    /// Runs one step as a span of the saga's.
    async fn execute_traced(
        &self,
        step: Step,
        attempt: i64,
        record: &SagaRecord,
        order: &OrderRecord,
    ) -> Outcome {
        let span = tracing::info_span!(
            "saga step",
            saga = %record.saga.id,
            order_id = %order.id,
            %step,
            attempt,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            otel.name = %format_args!("checkout {step}"),
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        let outcome = self
            .execute(step, record, order)
            .instrument(span.clone())
            .await;
        // A refusal (a declined card, no stock) is what cancels a checkout: the trace shows it
        // as the step that failed, and why.
        match &outcome {
            Outcome::Failed(why) | Outcome::Refused(why) => {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", why.as_str());
            }
            Outcome::Done(_) => {}
        }
        outcome
    }

    async fn execute(&self, step: Step, record: &SagaRecord, order: &OrderRecord) -> Outcome {
        let saga = &record.saga;
        let n = &self.inner.neighbours;
        let client = &self.inner.client;
        let key = saga.key(step);
        let missing = |what: &str| Outcome::Failed(format!("the saga has no {what} to act on"));
        match step {
            Step::Reserve => {
                let items: Vec<Requested> = order
                    .lines
                    .iter()
                    .map(|l| Requested {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                    })
                    .collect();
                match self.inner.catalog.reserve(&key, &items).await {
                    Ok(Reservation::Held(id)) => Outcome::Done(Some(id)),
                    Ok(Reservation::Insufficient(detail)) => {
                        Outcome::Refused(format!("out of stock: {detail}"))
                    }
                    Ok(Reservation::Refused(detail)) => Outcome::Refused(detail),
                    Ok(Reservation::Spent(status)) => Outcome::Refused(format!(
                        "the stock held for the order was {status} before it went through"
                    )),
                    Err(error) => Outcome::Failed(ErrorChain(&error).to_string()),
                }
            }
            Step::Charge => {
                let body = json!({
                    "order_id": order.id,
                    "user_id": record.user_id,
                    "amount": {"amount_minor": order.total_minor, "currency": order.currency},
                    "payment_method": record.payment_method,
                });
                let call = client
                    .post(&n.payments, "/charges")
                    .idempotency_key(&key)
                    .json(&body);
                match answer(call.send().await) {
                    Answer::Yes(response) => created_id(response),
                    Answer::No { detail, .. } => Outcome::Refused(detail),
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
            Step::Ship => {
                let body = json!({
                    "order_id": order.id,
                    "user_id": record.user_id,
                    "address": order.address,
                    "items": order.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity})).collect::<Vec<_>>(),
                });
                let call = client
                    .post(&n.shipping, "/shipments")
                    .idempotency_key(&key)
                    .json(&body);
                match answer(call.send().await) {
                    Answer::Yes(response) => created_id(response),
                    Answer::No { detail, .. } => {
                        Outcome::Refused(format!("the shipment was refused: {detail}"))
                    }
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
            Step::Confirm => {
                let Some(reservation) = &saga.reservation_id else {
                    return missing("reservation");
                };
                let path = format!("/reservations/{reservation}/commit");
                match answer(client.post(&n.catalog, &path).send().await) {
                    Answer::Yes(_) => Outcome::Done(None),
                    Answer::No { .. } => Outcome::Refused(
                        "the stock held for the order was released before it could be confirmed"
                            .to_owned(),
                    ),
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
            Step::CancelShipment => {
                let Some(shipment) = &saga.shipment_id else {
                    return missing("shipment");
                };
                let path = format!("/shipments/{shipment}/cancel");
                match answer(client.post(&n.shipping, &path).send().await) {
                    Answer::Yes(_) => Outcome::Done(None),
                    Answer::No { slug, detail, .. } if slug == "already-shipped" => {
                        Outcome::Refused(format!("the order has already shipped: {detail}"))
                    }
                    Answer::No { detail, .. } => Outcome::Refused(detail),
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
            Step::Refund => {
                let Some(charge) = &saga.charge_id else {
                    return missing("charge");
                };
                let path = format!("/charges/{charge}/refunds");
                let call = client
                    .post(&n.payments, &path)
                    .idempotency_key(&key)
                    .json(&json!({}));
                match answer(call.send().await) {
                    Answer::Yes(_) => Outcome::Done(None),
                    // Nothing is left to refund: somebody refunded it already.
                    Answer::No { slug, .. } if slug == "refund-exceeds-charge" => {
                        Outcome::Done(None)
                    }
                    Answer::No { detail, .. } => Outcome::Refused(detail),
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
            Step::ReleaseStock | Step::ReturnStock => {
                let Some(reservation) = &saga.reservation_id else {
                    return missing("reservation");
                };
                let release = format!("/reservations/{reservation}");
                let give_back = format!("/reservations/{reservation}/return");
                let (first, second) = (
                    client.call(Method::DELETE, &n.catalog, &release),
                    client.post(&n.catalog, &give_back),
                );
                // Whether the reservation was committed is only certain from the catalog: a
                // commit whose answer was lost still committed. So when one way is refused
                // as the wrong state, the other is the right one.
                let (first, second) = if step == Step::ReleaseStock {
                    (first, second)
                } else {
                    (second, first)
                };
                match answer(first.send().await) {
                    Answer::Yes(_) => Outcome::Done(None),
                    Answer::No { status, .. } if status == StatusCode::CONFLICT => {
                        match answer(second.send().await) {
                            Answer::Yes(_) => Outcome::Done(None),
                            Answer::No { detail, .. } => Outcome::Refused(detail),
                            Answer::Later(error) => Outcome::Failed(error),
                        }
                    }
                    Answer::No { detail, .. } => Outcome::Refused(detail),
                    Answer::Later(error) => Outcome::Failed(error),
                }
            }
        }
    }
}

/// A saga stored a moment ago with its order, leased to this instance.
#[derive(Debug)]
struct Placed {
    record: SagaRecord,
    order: OrderRecord,
}

/// A neighbour's answer, sorted by what the saga does with it.
enum Answer {
    /// 2xx.
    Yes(CallResponse),
    /// A 4xx: the neighbour refuses, and asking again will not change that.
    No {
        status: StatusCode,
        slug: String,
        detail: String,
    },
    /// No answer, or a 5xx, 408 or 429: it may work later.
    Later(String),
}

fn answer(result: Result<CallResponse, CallError>) -> Answer {
    let response = match result {
        Ok(response) => response,
        Err(error) => return Answer::Later(ErrorChain(&error).to_string()),
    };
    let status = response.status;
    if status.is_success() {
        return Answer::Yes(response);
    }
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    match response.error_for_status() {
        Err(error) if transient => Answer::Later(ErrorChain(&error).to_string()),
        Err(CallError::Status {
            problem: Some(problem),
            ..
        }) => Answer::No {
            status,
            slug: problem.slug().unwrap_or_default().to_owned(),
            detail: problem.detail.clone().unwrap_or(problem.title.clone()),
        },
        _ => Answer::No {
            status,
            slug: String::new(),
            detail: format!("refused with {status}"),
        },
    }
}

/// `Done` with the `id` of a created resource.
fn created_id(response: CallResponse) -> Outcome {
    #[derive(Deserialize)]
    struct Created {
        id: String,
    }
    match response.json::<Created>() {
        Ok(created) => Outcome::Done(Some(created.id)),
        Err(error) => Outcome::Failed(ErrorChain(&error).to_string()),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Labels of saga step metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The step.
    pub step: String,
    /// `done`, `refused` or `failed`.
    pub outcome: String,
}

/// A saga status label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// `running`, `compensating`, `confirmed` or `cancelled`.
    pub status: String,
}

impl StatusLabel {
    fn new(status: &str) -> Self {
        Self {
            status: status.to_owned(),
        }
    }
}

/// The saga metrics.
#[derive(Debug, Clone)]
pub struct SagaMetrics {
    steps: Family<StepLabels, Counter>,
    step_duration: Family<StepLabels, Histogram, fn() -> Histogram>,
    finished: Family<StatusLabel, Counter>,
    duration: Family<StatusLabel, Histogram, fn() -> Histogram>,
    active: Family<StatusLabel, Gauge>,
    stuck: Gauge,
}

fn checkout_histogram() -> Histogram {
    Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
}

impl SagaMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            steps: Family::default(),
            step_duration: Family::new_with_constructor(chassis::metrics::latency_histogram),
            finished: Family::default(),
            duration: Family::new_with_constructor(checkout_histogram),
            active: Family::default(),
            stuck: Gauge::default(),
        };
        registry.register(
            "orders_saga_steps",
            "Saga step attempts, by step and outcome",
            metrics.steps.clone(),
        );
        registry.register(
            "orders_saga_step_duration_seconds",
            "Time of one saga step attempt, by step and outcome",
            metrics.step_duration.clone(),
        );
        registry.register(
            "orders_sagas_finished",
            "Sagas finished, by final status",
            metrics.finished.clone(),
        );
        registry.register(
            "orders_saga_duration_seconds",
            "Time from order placed to saga finished, by final status",
            metrics.duration.clone(),
        );
        registry.register(
            "orders_sagas_active",
            "Sagas with work left, by status",
            metrics.active.clone(),
        );
        registry.register(
            "orders_sagas_stuck",
            "Sagas failing again and again to compensate; each needs an operator",
            metrics.stuck.clone(),
        );
        metrics
    }

    fn step(&self, step: Step, outcome: &str, elapsed: Duration) {
        let labels = StepLabels {
            step: step.as_str().to_owned(),
            outcome: outcome.to_owned(),
        };
        self.steps.get_or_create(&labels).inc();
        self.step_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn finished(&self, status: Status, elapsed: Duration) {
        let label = StatusLabel::new(status.as_str());
        self.finished.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }
}

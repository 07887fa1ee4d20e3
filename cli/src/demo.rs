//! `bazaar demo <scenario>`: each pattern, run live against a running system and explained
//! as it happens.
//!
//! A scenario drives the shop through its gateway as customers and an administrator do,
//! reaches services as the operator does (over mTLS), and changes the system as an operator
//! would (fault rules, killed and stopped instances, releases). Each step is narrated with
//! what was sent, what each service did and the trace to look at; the run ends with a verdict,
//! checked against what the services hold (charges, reservations, shipments, emails), and the
//! exit code says whether it held. With no `up` running in the data directory (or with
//! `--fresh`), the scenario starts a system of its own and stops it after.
//!
//! # Layout
//! - [`narrator`]: what is printed.
//! - [`saga`]: the checkout, a declined card, a payments outage, a crash mid-saga.
//! - [`platform`]: a lost consumer, discovery, rate limits, mTLS refusals.
//! - [`releases`]: a canary rolled back, a blue-green switch.
//! - [`compare`]: the same load against a monolith and the microservices.

mod compare;
mod narrator;
mod platform;
mod releases;
mod saga;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};

use self::narrator::Narrator;
use crate::args::{DemoArgs, Scenario};
use crate::chaos::invariants::{OrderFacts, order_facts};
use crate::console::Console;
use crate::remote::Remote;
use crate::storefront::{Answer, Ask, DEMO_ADMIN};
use crate::system::{Shop, Up};

/// Password of the customers a scenario signs up.
const PASSWORD: &str = "demo-password-1234";
/// A card that pays, and one that is declined (the test cards of the README).
const CARD_OK: &str = "4242424242424242";
const CARD_DECLINED: &str = "4000000000000002";
/// Longest wait for an order to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);
/// Longest wait for a read that may need a restarted service.
const READ_WITHIN: Duration = Duration::from_secs(30);

/// How a scenario ended.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// Whether what the scenario shows held.
    pub(crate) holds: bool,
    /// What was checked, a line each.
    pub(crate) findings: Vec<String>,
    /// Traces worth a look.
    pub(crate) traces: Vec<String>,
}

impl Verdict {
    fn new() -> Self {
        Self {
            holds: true,
            findings: Vec::new(),
            traces: Vec::new(),
        }
    }

    /// Records `finding`, which must be `true` for the verdict to hold.
    fn check(&mut self, ok: bool, finding: impl Into<String>) {
        self.holds &= ok;
        let mark = if ok { "✓" } else { "✗" };
        self.findings.push(format!("{mark} {}", finding.into()));
    }
}

/// What a scenario works with.
pub(crate) struct Demo {
    pub(crate) shop: Shop,
    pub(crate) remote: Remote,
    pub(crate) data_dir: PathBuf,
    pub(crate) say: Narrator,
    /// The administrator's token.
    pub(crate) admin: String,
    /// A tag for what this run creates (emails, fault rule names).
    pub(crate) run: String,
    /// Whether the system was started for the scenario (and stops with it).
    pub(crate) ephemeral: bool,
}

/// A customer a scenario signed up, with a registered card.
#[derive(Debug, Clone)]
pub(crate) struct Customer {
    pub(crate) email: String,
    pub(crate) token: String,
    pub(crate) card: String,
}

pub(crate) async fn run(args: DemoArgs) -> ExitCode {
    let say = Narrator::new(Console::detect());
    if args.scenario == Scenario::MonolithVsMicroservices {
        // Two systems of its own, one after the other; nothing running is touched.
        say.title(args.scenario.title(), args.scenario.teaches());
        return match compare::run(&say, args.duration).await {
            Ok(verdict) => {
                say.verdict(&verdict);
                println!("\nThe code: {}", args.scenario.code().join(", "));
                if verdict.holds {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(error) => {
                eprintln!("error: the scenario could not run: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let running = !args.fresh && crate::state::running(&args.data_dir).is_some();
    let (up, data_dir) = if running {
        (None, args.data_dir.clone())
    } else {
        let dir = std::env::temp_dir().join(format!("bazaar-demo-{}", std::process::id()));
        say.note(&format!(
            "Starting a system for the scenario in {} (stopped at the end)…",
            dir.display()
        ));
        match Up::start(&dir, &[], &[]).await {
            Ok(up) => (Some(up), dir),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        }
    };
    let outcome = match Demo::connect(&data_dir, say, up.is_some()).await {
        Ok(demo) => demo.play(args.scenario).await,
        Err(error) => Err(error),
    };
    if let Some(up) = up {
        up.stop_and_remove().await;
    }
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: the scenario could not run: {error}");
            ExitCode::FAILURE
        }
    }
}

impl Demo {
    async fn connect(data_dir: &Path, say: Narrator, ephemeral: bool) -> Result<Self, String> {
        let shop = Shop::connect(data_dir)?;
        let admin = shop.storefront().log_in(DEMO_ADMIN).await?;
        let run = format!(
            "{}{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis() % 100_000
        );
        Ok(Self {
            shop,
            remote: Remote::connect(None, data_dir),
            data_dir: data_dir.to_owned(),
            say,
            admin,
            run,
            ephemeral,
        })
    }

    /// Runs `scenario`; whether its verdict held.
    async fn play(&self, scenario: Scenario) -> Result<bool, String> {
        self.say.title(scenario.title(), scenario.teaches());
        let verdict = match scenario {
            Scenario::Checkout => saga::checkout(self).await?,
            Scenario::DeclinedCard => saga::declined_card(self).await?,
            Scenario::PaymentsOutage => saga::payments_outage(self).await?,
            Scenario::CrashMidSaga => saga::crash_mid_saga(self).await?,
            Scenario::LostConsumer => platform::lost_consumer(self).await?,
            Scenario::Discovery => platform::discovery(self).await?,
            Scenario::RateLimit => platform::rate_limit(self).await?,
            Scenario::MtlsRefusal => platform::mtls_refusal(self).await?,
            Scenario::CanaryRollback => releases::canary_rollback(self).await?,
            Scenario::BlueGreen => releases::blue_green(self).await?,
            Scenario::MonolithVsMicroservices => {
                return Err("this scenario starts systems of its own".to_owned());
            }
        };
        let gateway = self.shop.storefront().gateway();
        self.say.verdict(&verdict);
        self.say.look_deeper(
            &verdict,
            (!self.ephemeral).then_some(gateway.as_str()),
            scenario.code(),
        );
        Ok(verdict.holds)
    }

    /// Sends `ask` until it gets an answer below 500 (other than 429), for up to a minute:
    /// the setup of a scenario is not what it shows.
    pub(crate) async fn insist(&self, ask: Ask<'_>) -> Result<Answer, String> {
        self.shop.insist(ask).await
    }

    /// Signs a new customer up and in, with a card (`declined`, or one that pays).
    pub(crate) async fn customer(&self, name: &str, declined: bool) -> Result<Customer, String> {
        let email = format!("{}.{}@demo.example", name.to_lowercase(), self.run);
        let signup = json!({"email": email, "password": PASSWORD, "name": name});
        let answer = self
            .insist(Ask::post("/api/auth/signup", None, &signup))
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(format!(
                "signing {email} up: {} {}",
                answer.status, answer.body
            ));
        }
        let token = self
            .shop
            .storefront()
            .log_in((email.as_str(), PASSWORD))
            .await?;
        let number = if declined { CARD_DECLINED } else { CARD_OK };
        let card = json!({"card_number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"});
        let answer = self
            .insist(Ask::post("/api/payment-methods", Some(&token), &card))
            .await?;
        let card = answer.body["id"]
            .as_str()
            .filter(|_| answer.status == StatusCode::CREATED)
            .ok_or_else(|| format!("registering a card: {} {}", answer.status, answer.body))?
            .to_owned();
        self.say.step(&format!(
            "Signed up {email} and registered a card ending {} (POST /api/auth/signup, /api/payment-methods)",
            &number[number.len() - 4..]
        ));
        Ok(Customer { email, token, card })
    }

    /// A product with at least `quantity` units to sell: its sku and price in minor units.
    pub(crate) async fn product(&self, quantity: i64) -> Result<(String, i64), String> {
        let page = self
            .shop
            .read("/api/products?page_size=100", &self.admin, READ_WITHIN)
            .await?;
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["inventory"]["on_hand"].as_i64().unwrap_or(0) >= quantity + 5)
            .and_then(|p| {
                Some((
                    p["sku"].as_str()?.to_owned(),
                    p["price"]["amount_minor"].as_i64()?,
                ))
            })
            .ok_or_else(|| "no product has stock left to sell".to_owned())
    }

    /// Places an order for `quantity` × `sku`; its id.
    pub(crate) async fn place(
        &self,
        customer: &Customer,
        sku: &str,
        quantity: i64,
    ) -> Result<String, String> {
        let key = uuid::Uuid::now_v7().to_string();
        let body = json!({
            "items": [{"sku": sku, "quantity": quantity}],
            "shipping_address": {"name": "Demo Shopper", "line1": "1 Pattern Row", "city": "Leeds", "postal_code": "LS1 4AP", "country": "GB"},
            "payment_method": customer.card,
        });
        let started = Instant::now();
        let answer = self
            .insist(Ask {
                idempotency_key: Some(&key),
                ..Ask::post("/api/orders", Some(&customer.token), &body)
            })
            .await?;
        let id = answer.body["id"]
            .as_str()
            .filter(|_| answer.status.is_success())
            .ok_or_else(|| format!("placing an order: {} {}", answer.status, answer.body))?
            .to_owned();
        self.say.step(&format!(
            "Placed order {} for {quantity} × {sku}: {} in {} (POST /api/orders, Idempotency-Key {})",
            short(&id),
            answer.status,
            millis(started.elapsed()),
            short(&key)
        ));
        Ok(id)
    }

    /// Waits for order `id` to settle, narrating each status it passes through; the order.
    pub(crate) async fn settle(&self, customer: &Customer, id: &str) -> Result<Value, String> {
        let deadline = Instant::now() + SETTLE_WITHIN;
        let path = format!("/api/orders/{id}?wait=10s");
        loop {
            let order = self.shop.read(&path, &customer.token, READ_WITHIN).await?;
            let status = order["status"].as_str().unwrap_or_default();
            if matches!(status, "CONFIRMED" | "CANCELLED") {
                let history = order["status_history"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let at = |h: Option<&Value>| {
                    h.and_then(|h| h["at"].as_str())
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                };
                let took = match (at(history.first()), at(history.last())) {
                    (Some(first), Some(last)) => (last - first).to_std().ok(),
                    _ => None,
                };
                let history: Vec<String> = history
                    .iter()
                    .map(|h| match h["reason"].as_str().filter(|r| !r.is_empty()) {
                        Some(reason) => {
                            format!("{} ({reason})", h["status"].as_str().unwrap_or("?"))
                        }
                        None => h["status"].as_str().unwrap_or("?").to_owned(),
                    })
                    .collect();
                self.say.step(&format!(
                    "The order settled {} after it was placed: {}",
                    took.map_or_else(|| "?".to_owned(), millis),
                    history.join(" → ")
                ));
                return Ok(order);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "order {id} did not settle within {SETTLE_WITHIN:?}"
                ));
            }
        }
    }

    /// What the services hold for order `order` (as read), once its emails have had time to
    /// arrive: `emails` confirmations are waited for, up to 30 s.
    pub(crate) async fn facts(&self, order: &Value, emails: usize) -> Result<OrderFacts, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let facts = order_facts(&self.shop, &self.admin, order.clone()).await?;
            if facts.confirmations >= emails || Instant::now() > deadline {
                return Ok(facts);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Narrates what each service did in trace `id`: the saga's steps and the events, from the
    /// spans the telemetry service has (waiting up to 10 s for the saga's and `until_span`).
    pub(crate) async fn explain_trace(&self, id: &str, until_span: &str) {
        let path = format!("/v1/traces/{id}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let trace = loop {
            let trace = self
                .shop
                .read_service("telemetry", &path, Duration::from_secs(5))
                .await
                .ok()
                .and_then(|t| serde_json::from_value::<contracts::traces::Trace>(t).ok());
            match trace {
                // Each process exports its spans in batches of its own: wait for the saga's
                // (orders') and for the last one the story needs.
                Some(trace)
                    if (trace.spans.iter().any(|s| s.name == "checkout saga")
                        && trace.spans.iter().any(|s| s.name.contains(until_span)))
                        || Instant::now() > deadline =>
                {
                    break Some(trace);
                }
                None if Instant::now() > deadline => break None,
                _ => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        };
        let Some(trace) = trace else {
            self.say
                .detail("(the trace store has not got this trace; is tracing sampled out?)");
            return;
        };
        let Some((start, _)) = trace.bounds() else {
            return;
        };
        let services: std::collections::BTreeSet<&str> =
            trace.spans.iter().map(|s| s.service.as_str()).collect();
        self.say.step(&format!(
            "Trace {id}: {} spans across {}",
            trace.spans.len(),
            services.into_iter().collect::<Vec<_>>().join(", ")
        ));
        for (_, span) in trace.tree_order() {
            let telling = span.name.starts_with("checkout ")
                || span.name.ends_with(" publish")
                || span.name.ends_with(" process");
            if !telling {
                continue;
            }
            let failed = span.status == contracts::traces::SpanStatus::Error;
            let outcome = match (&span.status_message, failed) {
                (Some(message), true) => format!("failed: {message}"),
                (None, true) => "failed".to_owned(),
                _ => "ok".to_owned(),
            };
            self.say.detail(&format!(
                "+{:>7}  {:<14} {:<34} {:>8}  {outcome}",
                millis(Duration::from_nanos(
                    u64::try_from(span.start_unix_nanos - start).unwrap_or(0)
                )),
                span.service,
                span.name,
                millis(Duration::from_nanos(
                    u64::try_from(span.duration_nanos()).unwrap_or(0)
                )),
            ));
        }
    }

    /// The stock of `sku`: on hand, reserved, sold.
    pub(crate) async fn stock(&self, sku: &str) -> Result<(i64, i64, i64), String> {
        let stock = crate::chaos::invariants::stock(&self.shop, &self.admin).await?;
        stock
            .get(sku)
            .map(|s| (s.on_hand, s.reserved, s.sold))
            .ok_or_else(|| format!("no product {sku}"))
    }

    /// Sets fault rule `name` in the registry.
    pub(crate) async fn set_fault(
        &self,
        name: &str,
        rule: &contracts::release::FaultRule,
    ) -> Result<(), String> {
        let value = serde_json::to_string(rule).map_err(|e| e.to_string())?;
        self.remote
            .registry
            .kv_put(&contracts::release::fault_key(name), &value, None)
            .await
            .map(drop)
            .map_err(|e| {
                format!(
                    "writing fault rule {name}: {}",
                    chassis::error::ErrorChain(&e)
                )
            })
    }

    /// Clears fault rule `name`.
    pub(crate) async fn clear_fault(&self, name: &str) -> Result<(), String> {
        self.remote
            .registry
            .kv_delete(&contracts::release::fault_key(name))
            .await
            .map(drop)
            .map_err(|e| {
                format!(
                    "clearing fault rule {name}: {}",
                    chassis::error::ErrorChain(&e)
                )
            })
    }
}

/// The first 8 characters of an id, as the narration shows it.
pub(crate) fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A duration in milliseconds, to a tenth.
pub(crate) fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Money in minor units, as `$12.34`.
pub(crate) fn dollars(minor: i64) -> String {
    format!("${}.{:02}", minor / 100, (minor % 100).abs())
}

impl Scenario {
    fn title(self) -> &'static str {
        match self {
            Self::Checkout => "checkout: the happy path",
            Self::DeclinedCard => "declined-card: compensation in reverse order",
            Self::PaymentsOutage => "payments-outage: retries with backoff, then success",
            Self::CrashMidSaga => "crash-mid-saga: orders killed mid-checkout, the saga resumes",
            Self::LostConsumer => "lost-consumer: events wait for a consumer that is down",
            Self::Discovery => "discovery: a replica dies, nothing fails",
            Self::RateLimit => "rate-limit: a burst meets 429s",
            Self::MtlsRefusal => "mtls-refusal: no certificate, no entry; a wrong caller, 403",
            Self::CanaryRollback => "canary-rollback: a bad version is rolled back on its own",
            Self::BlueGreen => "blue-green: a whole new set, switched at once",
            Self::MonolithVsMicroservices => {
                "monolith-vs-microservices: the same services, one process or many"
            }
        }
    }

    fn teaches(self) -> &'static str {
        match self {
            Self::Checkout => {
                "An order goes through the gateway to orders, whose saga reserves stock (catalog), charges the card (payments) and ships (shipping), each step stored before and after; the confirmation is an event, and notifications sends the email."
            }
            Self::DeclinedCard => {
                "When a step fails for good, the saga undoes what was done, newest first: the reservation is released, nothing stays charged, the customer is told why."
            }
            Self::PaymentsOutage => {
                "A neighbour that fails for a while is asked again with growing pauses; the saga keeps its place, and the gateway's circuit breaker spares the failing service its customers' reads."
            }
            Self::CrashMidSaga => {
                "The saga's state is stored before and after every step, so a killed orders process resumes it where it was; payments' idempotency keys make sure the card is charged once."
            }
            Self::LostConsumer => {
                "Events are written in the producer's own transaction (the outbox) and kept until consumed: a consumer that is down misses nothing, and handles each event once when it is back."
            }
            Self::Discovery => {
                "Instances register and heartbeat; the registry checks them. A dead instance is marked critical and callers, the gateway among them, stop sending it requests, retrying elsewhere meanwhile."
            }
            Self::RateLimit => {
                "The gateway keeps a token bucket per caller and route; beyond it, 429 with Retry-After and RateLimit headers, before any service is bothered."
            }
            Self::MtlsRefusal => {
                "Services talk mutual TLS: a client without a certificate from the CA is refused during the handshake, and a service with one is still limited to the routes that name it."
            }
            Self::CanaryRollback => {
                "A new version takes a small share of the traffic; its errors are compared with the stable version's, and a breach sends everything back at once."
            }
            Self::BlueGreen => {
                "The new version is started whole beside the old, smoke-tested through the gateway, then takes all the traffic at once; the old set is kept for a rollback."
            }
            Self::MonolithVsMicroservices => {
                "The same checkout load against the same services, built into one process that calls itself in place, and run as a process per service calling over HTTP: what the distribution costs in throughput, latency, memory and CPU."
            }
        }
    }

    /// Where the code that does it lives.
    fn code(self) -> &'static [&'static str] {
        match self {
            Self::Checkout | Self::DeclinedCard | Self::CrashMidSaga => &[
                "services/orders/src/saga.rs",
                "services/orders/src/runner.rs",
                "crates/chassis/src/events/outbox.rs",
            ],
            Self::PaymentsOutage => &[
                "services/orders/src/runner.rs",
                "platform/gateway/src/resilience.rs",
                "crates/chassis/src/faults.rs",
            ],
            Self::LostConsumer => &[
                "crates/chassis/src/events/outbox.rs",
                "crates/chassis/src/events/consumer.rs",
            ],
            Self::Discovery => &[
                "platform/registry/src/checks.rs",
                "crates/chassis/src/discovery.rs",
            ],
            Self::RateLimit => &["platform/gateway/src/ratelimit.rs"],
            Self::MtlsRefusal => &["crates/chassis/src/mtls.rs", "crates/chassis/src/authz.rs"],
            Self::CanaryRollback | Self::BlueGreen => {
                &["cli/src/release.rs", "platform/gateway/src/traffic.rs"]
            }
            Self::MonolithVsMicroservices => &[
                "crates/chassis/src/inproc.rs",
                "cli/src/monolith.rs",
                "cli/src/demo/compare.rs",
            ],
        }
    }
}

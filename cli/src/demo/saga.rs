//! The checkout saga's scenarios: the happy path, a declined card (compensation), a payments
//! outage (retries with backoff) and orders killed mid-saga (resumption, one charge).

use std::time::{Duration, Instant};

use contracts::release::FaultRule;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{Customer, Demo, Verdict, dollars, short};
use crate::storefront::Ask;

/// The saga of order `id` as an administrator reads it.
async fn saga_of(demo: &Demo, id: &str) -> Result<Value, String> {
    demo.shop
        .read(
            &format!("/api/orders/{id}/saga"),
            &demo.admin,
            super::READ_WITHIN,
        )
        .await
}

/// Narrates every attempt at every step of order `id`'s saga, in order.
async fn explain_saga(demo: &Demo, id: &str) -> Result<Value, String> {
    let saga = saga_of(demo, id).await?;
    let steps = saga["steps"].as_array().cloned().unwrap_or_default();
    demo.say.step(&format!(
        "The saga's record (GET /api/orders/{}/saga): {} attempts at its steps, newest state {}",
        short(id),
        steps.len(),
        saga["status"].as_str().unwrap_or("?")
    ));
    for step in &steps {
        demo.say.detail(&format!(
            "{:<10} #{:<2} {:<10} {:>6}  {}",
            step["step"].as_str().unwrap_or("?"),
            step["attempt"],
            step["outcome"].as_str().unwrap_or("?"),
            step["duration_ms"]
                .as_i64()
                .map_or_else(|| "–".to_owned(), |ms| format!("{ms} ms")),
            step["detail"].as_str().unwrap_or("")
        ));
    }
    Ok(saga)
}

/// Narrates the trace of a settled order, if it was recorded.
async fn explain(demo: &Demo, order: &Value, until: &str) -> Option<String> {
    let trace = order["checkout"]["trace_id"].as_str()?.to_owned();
    demo.explain_trace(&trace, until).await;
    Some(trace)
}

pub(crate) async fn checkout(demo: &Demo) -> Result<Verdict, String> {
    let customer = demo.customer("Ada", false).await?;
    let (sku, _) = demo.product(2).await?;
    let before = demo.stock(&sku).await?;
    let id = demo.place(&customer, &sku, 2).await?;
    let order = demo.settle(&customer, &id).await?;
    explain_saga(demo, &id).await?;
    let trace = explain(demo, &order, "order.confirmed process").await;
    let facts = demo.facts(&order, 1).await?;
    let after = demo.stock(&sku).await?;
    let mut verdict = Verdict::new();
    verdict.check(
        facts.status == "CONFIRMED",
        format!("order {} is {}", short(&id), facts.status),
    );
    verdict.check(
        facts.net_charged_minor == facts.total_minor,
        format!(
            "payments holds {} for a total of {}",
            dollars(facts.net_charged_minor),
            dollars(facts.total_minor)
        ),
    );
    verdict.check(
        facts.reservation.as_deref() == Some("committed") && after.2 - before.2 >= 2,
        format!(
            "catalog committed the reservation: {sku} sold {} → {}",
            before.2, after.2
        ),
    );
    verdict.check(
        facts.live_shipments == 1,
        format!("shipping holds {} shipment", facts.live_shipments),
    );
    verdict.check(
        facts.confirmations == 1,
        format!(
            "notifications sent {} confirmation email to {}",
            facts.confirmations, customer.email
        ),
    );
    verdict.traces.extend(trace);
    Ok(verdict)
}

pub(crate) async fn declined_card(demo: &Demo) -> Result<Verdict, String> {
    let customer = demo.customer("Bob", true).await?;
    let (sku, _) = demo.product(1).await?;
    let before = demo.stock(&sku).await?;
    let id = demo.place(&customer, &sku, 1).await?;
    let order = demo.settle(&customer, &id).await?;
    let saga = explain_saga(demo, &id).await?;
    let trace = explain(demo, &order, "checkout").await;
    let facts = demo.facts(&order, 0).await?;
    let after = demo.stock(&sku).await?;
    // Forward steps done, then their compensations newest first.
    let outcomes: Vec<String> = saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} {}",
                s["step"].as_str().unwrap_or("?"),
                s["outcome"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut verdict = Verdict::new();
    let reason = facts.cancel_reason.clone().unwrap_or_default();
    verdict.check(
        facts.status == "CANCELLED" && reason.contains("declined"),
        format!("order {} is {}: {reason}", short(&id), facts.status),
    );
    verdict.check(
        outcomes.first().is_some_and(|o| o.starts_with("reserve"))
            && outcomes.iter().any(|o| o.starts_with("release")),
        format!("the saga ran {}", outcomes.join(" → ")),
    );
    verdict.check(
        !matches!(facts.reservation.as_deref(), Some("held" | "committed"))
            && after.1 == before.1
            && after.0 == before.0,
        format!(
            "catalog holds nothing for it (reservation {}): {sku} reserved {} → {}, on hand {} → {}",
            facts.reservation.as_deref().unwrap_or("released"),
            before.1,
            after.1,
            before.0,
            after.0
        ),
    );
    verdict.check(
        facts.net_charged_minor == 0,
        format!("payments holds {}", dollars(facts.net_charged_minor)),
    );
    verdict.check(
        facts.live_shipments == 0 && facts.confirmations == 0,
        "nothing was shipped, no confirmation was sent",
    );
    verdict.traces.extend(trace);
    Ok(verdict)
}

/// The gateways' circuit breaker for `service`: `open` if one has it open (or half-open),
/// `closed` if every gateway has it closed.
async fn breaker(demo: &Demo, service: &str) -> Option<&'static str> {
    let texts = demo.remote.gateway_metrics().await.ok()?;
    let states: Vec<i64> = texts
        .iter()
        .flat_map(|text| chassis::metrics::red::samples(text))
        .filter(|s| {
            s.name == "bazaar_gateway_circuit_state"
                && s.labels.get("service").map(String::as_str) == Some(service)
        })
        .map(|s| s.value as i64)
        .collect();
    if states.contains(&1) {
        Some("open")
    } else if states.contains(&2) {
        Some("half-open")
    } else if states.is_empty() {
        None
    } else {
        Some("closed")
    }
}

/// Asks the gateway for the customer's payments `n` times; how many answers were 503.
async fn read_payments(demo: &Demo, customer: &Customer, n: usize) -> usize {
    let mut unavailable = 0;
    for _ in 0..n {
        if let Ok(answer) = demo
            .shop
            .send(Ask::get("/api/payments", Some(&customer.token)))
            .await
            && answer.status == http::StatusCode::SERVICE_UNAVAILABLE
        {
            unavailable += 1;
        }
    }
    unavailable
}

pub(crate) async fn payments_outage(demo: &Demo) -> Result<Verdict, String> {
    let customer = demo.customer("Cleo", false).await?;
    let (sku, _) = demo.product(1).await?;
    let rule_name = format!("demo-outage-{}", demo.run);
    let rule = FaultRule {
        route: Some("/charges".to_owned()),
        error_rate: 1.0,
        status: 503,
        ..FaultRule::for_service("payments")
    };
    demo.set_fault(&rule_name, &rule).await?;
    demo.say.step(&format!(
        "Fault rule {rule_name}: every payments instance answers 503 to /charges (bazaar faults set)"
    ));
    // Every instance applies a rule within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outage = Instant::now();
    let id = demo.place(&customer, &sku, 1).await?;
    let mut attempts_seen = 0;
    while outage.elapsed() < Duration::from_secs(6) {
        let saga = saga_of(demo, &id).await?;
        let attempts = saga["attempts"].as_u64().unwrap_or(0);
        if attempts > attempts_seen {
            attempts_seen = attempts;
            demo.say.detail(&format!(
                "saga at {}: attempt {attempts} failed ({}); next try at {}",
                saga["step"].as_str().unwrap_or("?"),
                saga["last_error"].as_str().unwrap_or("?"),
                saga["next_attempt_at"]
                    .as_str()
                    .and_then(|t| t.get(11..23))
                    .unwrap_or("?")
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed_reads = read_payments(demo, &customer, 30).await;
    let open = breaker(demo, "payments").await;
    demo.say.step(&format!(
        "Meanwhile the customer's reads of /api/payments: {failed_reads} of 30 answered 503; the gateway's breaker for payments is {}",
        open.unwrap_or("unknown")
    ));
    demo.clear_fault(&rule_name).await?;
    demo.say.step(&format!(
        "Cleared {rule_name} after {:.1} s: payments answers again",
        outage.elapsed().as_secs_f64()
    ));
    let order = demo.settle(&customer, &id).await?;
    let saga = explain_saga(demo, &id).await?;
    let trace = explain(demo, &order, "order.confirmed process").await;
    // The breaker lets a probe through once its time is up, and closes on its success.
    tokio::time::sleep(Duration::from_secs(5)).await;
    read_payments(demo, &customer, 3).await;
    let after = breaker(demo, "payments").await;
    demo.say.step(&format!(
        "Five seconds on, a probe went through: the breaker is {}",
        after.unwrap_or("unknown")
    ));
    let facts = demo.facts(&order, 1).await?;
    let failed_charges = saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["step"] == "charge" && s["outcome"] == "failed")
        .count();
    let mut verdict = Verdict::new();
    verdict.check(
        facts.status == "CONFIRMED",
        format!(
            "order {} is {} once payments came back",
            short(&id),
            facts.status
        ),
    );
    verdict.check(
        failed_charges >= 2,
        format!("the charge was tried {failed_charges} times during the outage, each pause longer"),
    );
    verdict.check(
        facts.net_charged_minor == facts.total_minor,
        format!(
            "charged exactly once: payments holds {} for {}",
            dollars(facts.net_charged_minor),
            dollars(facts.total_minor)
        ),
    );
    verdict.check(
        open == Some("open") && after == Some("closed"),
        format!(
            "the gateway's breaker for payments opened ({}) and closed again ({})",
            open.unwrap_or("?"),
            after.unwrap_or("?")
        ),
    );
    verdict.traces.extend(trace);
    Ok(verdict)
}

pub(crate) async fn crash_mid_saga(demo: &Demo) -> Result<Verdict, String> {
    let customer = demo.customer("Dee", false).await?;
    let (sku, _) = demo.product(1).await?;
    // Payments answers slowly, so the saga is caught with its charge in flight.
    let rule_name = format!("demo-slow-{}", demo.run);
    let rule = FaultRule {
        route: Some("/charges".to_owned()),
        delay_ms: 3000,
        delay_rate: 1.0,
        ..FaultRule::for_service("payments")
    };
    demo.set_fault(&rule_name, &rule).await?;
    demo.say.step(&format!(
        "Fault rule {rule_name}: payments takes 3 s over each charge"
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let id = demo.place(&customer, &sku, 1).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let saga = saga_of(demo, &id).await?;
        if saga["step"] == "charge" {
            demo.say
                .step("The saga is at its charge step, the request to payments in flight");
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("order {id}'s saga never reached its charge step"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids: Vec<(String, u32)> = crate::state::running(&demo.data_dir)
        .map(|s| s.instances)
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i.service == "orders")
        .map(|i| (i.id, i.pid))
        .collect();
    for (instance, pid) in &pids {
        let pid = i32::try_from(*pid).map_err(|e| e.to_string())?;
        kill(Pid::from_raw(pid), Signal::SIGKILL)
            .map_err(|e| format!("killing {instance}: {e}"))?;
        demo.say.step(&format!(
            "SIGKILL to {instance} (pid {pid}): no shutdown, no goodbye; up restarts it"
        ));
    }
    demo.clear_fault(&rule_name).await?;
    let killed_at = Instant::now();
    let order = demo.settle(&customer, &id).await?;
    demo.say.detail(&format!(
        "the restarted orders took the saga up where its record left it; settled {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    ));
    let saga = explain_saga(demo, &id).await?;
    let trace = explain(demo, &order, "order.confirmed process").await;
    let charges = demo
        .shop
        .read_service(
            "payments",
            &format!("/charges?order_id={id}"),
            super::READ_WITHIN,
        )
        .await?;
    let succeeded = charges["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "succeeded")
        .count();
    let charge_attempts = saga["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["step"] == "charge")
        .count();
    let facts = demo.facts(&order, 1).await?;
    let mut verdict = Verdict::new();
    verdict.check(
        facts.status == "CONFIRMED",
        format!("order {} is {} after the crash", short(&id), facts.status),
    );
    verdict.check(
        charge_attempts >= 2,
        format!("the charge step was started {charge_attempts} times (one cut short by the kill)"),
    );
    verdict.check(
        succeeded == 1 && facts.net_charged_minor == facts.total_minor,
        format!(
            "exactly one charge succeeded ({succeeded}), for {} of {}: the retry carried the same idempotency key",
            dollars(facts.net_charged_minor),
            dollars(facts.total_minor)
        ),
    );
    verdict.check(
        facts.live_shipments == 1 && facts.confirmations == 1,
        format!(
            "one shipment ({}), one confirmation email ({})",
            facts.live_shipments, facts.confirmations
        ),
    );
    verdict.traces.extend(trace);
    Ok(verdict)
}

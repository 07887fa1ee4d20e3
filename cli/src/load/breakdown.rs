//! Where a checkout's time goes: after a run, a sample of its confirmed orders' sagas is read
//! (as the demo administrator: the saga log is for operators), and each checkout's time from
//! placing to CONFIRMED is split into the calls to each neighbour and the time between them
//! (the saga's own writes, and waiting for its turn). The same orders' confirmation emails give
//! the event lag under load: from the order's CONFIRMED (the `order.confirmed` event committed
//! to the outbox in the same write) to the notifications service storing the email it sends.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::stats::{Latencies, Percentiles};
use crate::storefront::{DEMO_ADMIN, Storefront};

/// Most sagas read.
pub(crate) const SAMPLE: usize = 200;

/// One part of a checkout, over the sample.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Part {
    pub(crate) part: String,
    pub(crate) ms: Percentiles,
}

/// The parts of one saga, in ms: `placed → first step`, each step's call, the gaps between
/// steps, and `last step → confirmed`.
pub(crate) fn parts(saga: &Value) -> Option<Vec<(String, f64)>> {
    let created = at(&saga["created_at"])?;
    let finished = at(&saga["finished_at"])?;
    let steps = saga["steps"].as_array()?;
    let mut parts = Vec::new();
    let mut last_end = created;
    for (i, step) in steps.iter().enumerate() {
        let (start, end) = (at(&step["started_at"])?, at(&step["finished_at"])?);
        let gap = if i == 0 {
            "placed → first step".to_owned()
        } else {
            "between steps (saga writes, scheduling)".to_owned()
        };
        parts.push((gap, ms(last_end, start)?));
        let name = step["step"].as_str()?;
        parts.push((format!("{name} (call)"), ms(start, end)?));
        last_end = end;
    }
    parts.push(("last step → CONFIRMED".to_owned(), ms(last_end, finished)?));
    parts.push((
        "placed → CONFIRMED, in the saga".to_owned(),
        ms(created, finished)?,
    ));
    Some(parts)
}

/// Reads the sagas of `orders` and sums up each part; empty when the administrator cannot
/// log in (the report then leaves the breakdown out).
pub(crate) async fn of(storefront: &Storefront, orders: &[String]) -> Result<Vec<Part>, String> {
    let admin = storefront
        .log_in(DEMO_ADMIN)
        .await
        .map_err(|e| format!("{e}, so the sagas were not read"))?;
    let mut parts: BTreeMap<String, (usize, Latencies)> = BTreeMap::new();
    let step = (orders.len() / SAMPLE).max(1);
    for id in orders.iter().step_by(step).take(SAMPLE) {
        let saga = storefront
            .read(
                &format!("/api/orders/{id}/saga"),
                &admin,
                Duration::from_secs(10),
            )
            .await?;
        let emails = storefront
            .read(
                &format!("/api/emails?order_id={id}"),
                &admin,
                Duration::from_secs(10),
            )
            .await?;
        let mut saga_parts = parts_or_none(&saga);
        if let Some(ms) = event_lag(&saga, &emails) {
            saga_parts.push((EVENT_LAG.to_owned(), ms));
        }
        // Several gaps of one saga add up into one sample of their part.
        let mut summed: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for (i, (part, ms)) in saga_parts.into_iter().enumerate() {
            let entry = summed.entry(part).or_insert((i, 0.0));
            entry.1 += ms;
        }
        for (part, (order, ms)) in summed {
            let entry = parts.entry(part).or_insert((order, Latencies::default()));
            entry.0 = entry.0.min(order);
            entry
                .1
                .record(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
        }
    }
    let mut list: Vec<(usize, Part)> = parts
        .into_iter()
        .filter_map(|(part, (order, latencies))| {
            latencies.summary().map(|ms| (order, Part { part, ms }))
        })
        .collect();
    list.sort_by_key(|(order, _)| *order);
    Ok(list.into_iter().map(|(_, part)| part).collect())
}

/// The kind of email the notifications service sends for `orders.order.confirmed`.
const CONFIRMATION_EMAIL: &str = "order_confirmed";

/// The part that is the event lag.
pub(crate) const EVENT_LAG: &str = "CONFIRMED → confirmation email stored (event lag)";

/// Milliseconds from the saga's end to the storing of the order's confirmation email, from the
/// saga and the page of the order's emails (`GET /api/emails?order_id=`).
fn event_lag(saga: &Value, emails: &Value) -> Option<f64> {
    let confirmed = at(&saga["finished_at"])?;
    let stored = emails["items"]
        .as_array()?
        .iter()
        .filter(|e| e["kind"] == CONFIRMATION_EMAIL)
        .find_map(|e| at(&e["created_at"]))?;
    ms(confirmed, stored)
}

/// A time the API wrote as RFC 3339.
fn at(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Milliseconds from `from` to `to`.
fn ms(from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
    (to - from).num_microseconds().map(|us| us as f64 / 1000.0)
}

fn parts_or_none(saga: &Value) -> Vec<(String, f64)> {
    parts(saga).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_saga_splits_into_its_calls_and_the_time_between() {
        let saga = json!({
            "created_at": "2026-11-26T10:00:00.000Z",
            "finished_at": "2026-11-26T10:00:00.100Z",
            "steps": [
                {"step": "reserve", "started_at": "2026-11-26T10:00:00.010Z", "finished_at": "2026-11-26T10:00:00.030Z"},
                {"step": "charge", "started_at": "2026-11-26T10:00:00.035Z", "finished_at": "2026-11-26T10:00:00.080Z"},
            ],
        });
        let parts = parts(&saga).expect("parts");
        let named: Vec<(&str, f64)> = parts
            .iter()
            .map(|(p, ms)| (p.as_str(), ms.round()))
            .collect();
        assert_eq!(
            named,
            [
                ("placed → first step", 10.0),
                ("reserve (call)", 20.0),
                ("between steps (saga writes, scheduling)", 5.0),
                ("charge (call)", 45.0),
                ("last step → CONFIRMED", 20.0),
                ("placed → CONFIRMED, in the saga", 100.0),
            ]
        );
        assert!(super::parts(&json!({"created_at": "yesterday"})).is_none());
    }

    #[test]
    fn the_event_lag_runs_from_confirmed_to_the_confirmation_email() {
        let saga = json!({"finished_at": "2026-11-26T10:00:00.100Z"});
        let emails = json!({"items": [
            {"kind": "welcome", "created_at": "2026-11-26T10:00:00.050Z"},
            {"kind": "order_confirmed", "created_at": "2026-11-26T10:00:00.112Z"},
        ]});
        let lag = event_lag(&saga, &emails).expect("a lag");
        assert!((lag - 12.0).abs() < 1e-9, "{lag}");
        assert_eq!(event_lag(&saga, &json!({"items": []})), None);
    }
}

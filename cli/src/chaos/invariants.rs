//! What must hold once the faults stop and the system settles, for every order and for the
//! stock as a whole, and how the facts are read from the services (as an administrator through
//! the gateway, and as the operator from the services themselves).
//!
//! - CONFIRMED ⇔ its reservation committed, net charge = its total, exactly one live
//!   shipment and exactly one confirmation email;
//! - CANCELLED ⇔ nothing of its reservation held or sold, net charge 0, no live shipment,
//!   and at most one confirmation email (one if it was confirmed before it was cancelled);
//! - no order still PENDING, no saga with work left;
//! - per product: nothing reserved, units on hand plus units sold as before the run, and the
//!   units sold during the run equal to the units of the confirmed orders;
//! - no event in a dead-letter queue (nothing in a chaos run is poison: every event must be
//!   handled in the end).

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use serde_json::Value;

use crate::system::Shop;

/// Longest time one fact may take to read (a service just restarted may need a moment).
const READ_WITHIN: Duration = Duration::from_secs(30);
/// Orders whose facts are read at once.
const CONCURRENCY: usize = 8;
/// The consumers whose dead letters are looked at.
const CONSUMERS: [&str; 2] = ["notifications", "recommendations"];

/// Stock of one product.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Stock {
    pub(crate) on_hand: i64,
    pub(crate) reserved: i64,
    pub(crate) sold: i64,
}

/// What the services hold for one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderFacts {
    pub(crate) id: String,
    /// `PENDING`, `CONFIRMED` or `CANCELLED`.
    pub(crate) status: String,
    pub(crate) cancel_reason: Option<String>,
    pub(crate) total_minor: i64,
    /// `(sku, quantity)`.
    pub(crate) lines: Vec<(String, i64)>,
    /// The status of its reservation in the catalog, when one was made.
    pub(crate) reservation: Option<String>,
    /// Charged minus refunded, in minor units.
    pub(crate) net_charged_minor: i64,
    /// Shipments not cancelled.
    pub(crate) live_shipments: usize,
    /// `order_confirmed` emails.
    pub(crate) confirmations: usize,
}

/// Everything the invariants are checked against.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub(crate) orders: Vec<OrderFacts>,
    pub(crate) stock_before: BTreeMap<String, Stock>,
    pub(crate) stock_after: BTreeMap<String, Stock>,
    /// Sagas with work left.
    pub(crate) unfinished_sagas: usize,
    /// Dead letters, described.
    pub(crate) dead_letters: Vec<String>,
}

/// Every broken invariant, as a sentence naming the order or product.
pub(crate) fn check(facts: &Facts) -> Vec<String> {
    let mut violations = Vec::new();
    let mut sold_by_orders: BTreeMap<&str, i64> = BTreeMap::new();
    for order in &facts.orders {
        let id = &order.id;
        let reservation = order.reservation.as_deref();
        match order.status.as_str() {
            "CONFIRMED" => {
                for (sku, quantity) in &order.lines {
                    *sold_by_orders.entry(sku).or_default() += quantity;
                }
                if reservation != Some("committed") {
                    violations.push(format!(
                        "order {id} is CONFIRMED but its reservation is {}",
                        reservation.unwrap_or("missing")
                    ));
                }
                if order.net_charged_minor != order.total_minor {
                    violations.push(format!(
                        "order {id} is CONFIRMED for {} but {} is charged",
                        order.total_minor, order.net_charged_minor
                    ));
                }
                if order.live_shipments != 1 {
                    violations.push(format!(
                        "order {id} is CONFIRMED with {} live shipments",
                        order.live_shipments
                    ));
                }
                if order.confirmations != 1 {
                    violations.push(format!(
                        "order {id} is CONFIRMED with {} confirmation emails",
                        order.confirmations
                    ));
                }
            }
            "CANCELLED" => {
                if matches!(reservation, Some("held" | "committed")) {
                    violations.push(format!(
                        "order {id} is CANCELLED but its reservation is {}",
                        reservation.unwrap_or_default()
                    ));
                }
                if order.net_charged_minor != 0 {
                    violations.push(format!(
                        "order {id} is CANCELLED but {} is still charged",
                        order.net_charged_minor
                    ));
                }
                if order.live_shipments != 0 {
                    violations.push(format!(
                        "order {id} is CANCELLED with {} live shipments",
                        order.live_shipments
                    ));
                }
                if order.confirmations > 1 {
                    violations.push(format!(
                        "order {id} was cancelled after {} confirmation emails",
                        order.confirmations
                    ));
                }
            }
            other => violations.push(format!("order {id} did not settle: it is {other}")),
        }
    }
    if facts.unfinished_sagas > 0 {
        violations.push(format!(
            "{} sagas still have work left",
            facts.unfinished_sagas
        ));
    }
    for (sku, after) in &facts.stock_after {
        let before = facts.stock_before.get(sku).copied().unwrap_or_default();
        if after.reserved != 0 {
            violations.push(format!(
                "{sku}: {} units still reserved with no checkout under way",
                after.reserved
            ));
        }
        if after.on_hand + after.sold != before.on_hand + before.sold {
            violations.push(format!(
                "{sku}: {} on hand + {} sold, but {} + {} before the run",
                after.on_hand, after.sold, before.on_hand, before.sold
            ));
        }
        let by_orders = sold_by_orders.get(sku.as_str()).copied().unwrap_or(0);
        if after.sold - before.sold != by_orders {
            violations.push(format!(
                "{sku}: {} units sold during the run, but the confirmed orders hold {by_orders}",
                after.sold - before.sold
            ));
        }
    }
    for letter in &facts.dead_letters {
        violations.push(format!("dead letter: {letter}"));
    }
    violations
}

/// The stock of every product, as an administrator sees it.
pub(crate) async fn stock(shop: &Shop, admin: &str) -> Result<BTreeMap<String, Stock>, String> {
    let mut stock = BTreeMap::new();
    for product in pages(shop, admin, "/api/products?page_size=100").await? {
        let (Some(sku), inventory) = (product["sku"].as_str(), &product["inventory"]) else {
            return Err(format!("a product without a sku: {product}"));
        };
        let field = |name: &str| {
            inventory[name]
                .as_i64()
                .ok_or_else(|| format!("{sku} has no inventory.{name} (is the token an admin's?)"))
        };
        let counts = Stock {
            on_hand: field("on_hand")?,
            reserved: field("reserved")?,
            sold: field("sold")?,
        };
        stock.insert(sku.to_owned(), counts);
    }
    Ok(stock)
}

/// Every item of a paged list, following `next_cursor`.
async fn pages(shop: &Shop, token: &str, first: &str) -> Result<Vec<Value>, String> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page = shop.read(&path, token, READ_WITHIN).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return Ok(items),
        }
    }
}

/// How many sagas still have work left.
pub(crate) async fn unfinished_sagas(shop: &Shop, admin: &str) -> Result<usize, String> {
    let page = shop.read("/api/sagas", admin, READ_WITHIN).await?;
    Ok(page["items"].as_array().map_or(0, Vec::len))
}

/// Reads every fact, with the stock as it was before the run.
pub(crate) async fn gather(
    shop: &Shop,
    admin: &str,
    stock_before: &BTreeMap<String, Stock>,
) -> Result<Facts, String> {
    let listed = pages(shop, admin, "/api/orders?page_size=100").await?;
    let orders: Vec<OrderFacts> = futures_util::stream::iter(listed)
        .map(|order| order_facts(shop, admin, order))
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut dead_letters = Vec::new();
    for consumer in CONSUMERS {
        let page = shop
            .read_service(consumer, "/internal/dead-letters", READ_WITHIN)
            .await?;
        let letters = page["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for letter in letters.iter().filter(|l| l["replayed_at"].is_null()) {
            dead_letters.push(format!(
                "{consumer} gave up on {} {}: {}",
                letter["event"]["type"].as_str().unwrap_or("an event"),
                letter["event"]["id"].as_str().unwrap_or_default(),
                letter["error"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(Facts {
        orders,
        stock_before: stock_before.clone(),
        stock_after: stock(shop, admin).await?,
        unfinished_sagas: unfinished_sagas(shop, admin).await?,
        dead_letters,
    })
}

/// What the services hold for `order` (as listed).
pub(crate) async fn order_facts(
    shop: &Shop,
    admin: &str,
    order: Value,
) -> Result<OrderFacts, String> {
    let id = order["id"]
        .as_str()
        .ok_or_else(|| format!("an order without an id: {order}"))?
        .to_owned();
    let saga = shop
        .read(&format!("/api/orders/{id}/saga"), admin, READ_WITHIN)
        .await?;
    let reservation = match saga["reservation_id"].as_str() {
        Some(reservation) => {
            let held = shop
                .read_service(
                    "catalog",
                    &format!("/reservations/{reservation}"),
                    READ_WITHIN,
                )
                .await?;
            held["status"].as_str().map(str::to_owned)
        }
        None => None,
    };
    let balance = shop
        .read_service("payments", &format!("/balances/{id}"), READ_WITHIN)
        .await?;
    let shipments = shop
        .read(&format!("/api/shipments?order_id={id}"), admin, READ_WITHIN)
        .await?;
    let emails = shop
        .read(&format!("/api/emails?order_id={id}"), admin, READ_WITHIN)
        .await?;
    let items = |page: &Value| page["items"].as_array().cloned().unwrap_or_default();
    Ok(OrderFacts {
        status: order["status"].as_str().unwrap_or_default().to_owned(),
        cancel_reason: order["cancel_reason"].as_str().map(str::to_owned),
        total_minor: order["total"]["amount_minor"].as_i64().unwrap_or_default(),
        lines: order["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|l| Some((l["sku"].as_str()?.to_owned(), l["quantity"].as_i64()?)))
            .collect(),
        reservation,
        net_charged_minor: balance["net_minor"].as_i64().unwrap_or_default(),
        live_shipments: items(&shipments)
            .iter()
            .filter(|s| s["status"] != "cancelled")
            .count(),
        confirmations: items(&emails)
            .iter()
            .filter(|e| e["kind"] == "order_confirmed")
            .count(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed() -> OrderFacts {
        OrderFacts {
            id: "o-1".into(),
            status: "CONFIRMED".into(),
            cancel_reason: None,
            total_minor: 3600,
            lines: vec![("MUG".into(), 2)],
            reservation: Some("committed".into()),
            net_charged_minor: 3600,
            live_shipments: 1,
            confirmations: 1,
        }
    }

    fn cancelled() -> OrderFacts {
        OrderFacts {
            id: "o-2".into(),
            status: "CANCELLED".into(),
            cancel_reason: Some("the card was declined".into()),
            total_minor: 900,
            lines: vec![("TEE".into(), 1)],
            reservation: Some("released".into()),
            net_charged_minor: 0,
            live_shipments: 0,
            confirmations: 0,
        }
    }

    fn stock(on_hand: i64, reserved: i64, sold: i64) -> Stock {
        Stock {
            on_hand,
            reserved,
            sold,
        }
    }

    /// Two orders that keep every invariant: two mugs sold, the tee released.
    fn healthy() -> Facts {
        Facts {
            orders: vec![confirmed(), cancelled()],
            stock_before: [
                ("MUG".into(), stock(10, 0, 0)),
                ("TEE".into(), stock(5, 0, 0)),
            ]
            .into(),
            stock_after: [
                ("MUG".into(), stock(8, 0, 2)),
                ("TEE".into(), stock(5, 0, 0)),
            ]
            .into(),
            unfinished_sagas: 0,
            dead_letters: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_system_breaks_nothing() {
        assert_eq!(check(&healthy()), Vec::<String>::new());
        // A confirmed order cancelled by its customer: returned, refunded, one confirmation.
        let mut facts = healthy();
        facts.orders[0].status = "CANCELLED".into();
        facts.orders[0].reservation = Some("returned".into());
        facts.orders[0].net_charged_minor = 0;
        facts.orders[0].live_shipments = 0;
        facts.stock_after.insert("MUG".into(), stock(10, 0, 0));
        assert_eq!(check(&facts), Vec::<String>::new());
    }

    /// A change to healthy facts.
    type Breaks = Box<dyn Fn(&mut Facts)>;

    /// Each change breaks the invariant it names.
    #[test]
    fn every_broken_invariant_is_reported() {
        let cases: Vec<(&str, Breaks)> = vec![
            (
                "reservation is released",
                Box::new(|f| f.orders[0].reservation = Some("released".into())),
            ),
            (
                "reservation is missing",
                Box::new(|f| f.orders[0].reservation = None),
            ),
            (
                "but 7200 is charged",
                Box::new(|f| f.orders[0].net_charged_minor = 7200),
            ),
            (
                "with 2 live shipments",
                Box::new(|f| f.orders[0].live_shipments = 2),
            ),
            (
                "with 0 live shipments",
                Box::new(|f| f.orders[0].live_shipments = 0),
            ),
            (
                "with 2 confirmation emails",
                Box::new(|f| f.orders[0].confirmations = 2),
            ),
            (
                "with 0 confirmation emails",
                Box::new(|f| f.orders[0].confirmations = 0),
            ),
            (
                "CANCELLED but its reservation is held",
                Box::new(|f| f.orders[1].reservation = Some("held".into())),
            ),
            (
                "CANCELLED but 900 is still charged",
                Box::new(|f| f.orders[1].net_charged_minor = 900),
            ),
            (
                "CANCELLED with 1 live shipments",
                Box::new(|f| f.orders[1].live_shipments = 1),
            ),
            (
                "cancelled after 2 confirmation emails",
                Box::new(|f| f.orders[1].confirmations = 2),
            ),
            (
                "did not settle: it is PENDING",
                Box::new(|f| f.orders[1].status = "PENDING".into()),
            ),
            (
                "3 sagas still have work left",
                Box::new(|f| f.unfinished_sagas = 3),
            ),
            (
                "TEE: 1 units still reserved",
                Box::new(|f| {
                    f.stock_after.insert("TEE".into(), stock(5, 1, 0));
                }),
            ),
            (
                "MUG: 9 on hand + 2 sold, but 10 + 0 before",
                Box::new(|f| {
                    f.stock_after.insert("MUG".into(), stock(9, 0, 2));
                }),
            ),
            (
                "MUG: 3 units sold during the run, but the confirmed orders hold 2",
                Box::new(|f| {
                    f.stock_after.insert("MUG".into(), stock(7, 0, 3));
                }),
            ),
            (
                "dead letter: notifications gave up",
                Box::new(|f| {
                    f.dead_letters
                        .push("notifications gave up on orders.order.confirmed e-1: boom".into());
                }),
            ),
        ];
        for (expected, breaks) in cases {
            let mut facts = healthy();
            breaks(&mut facts);
            let violations = check(&facts);
            assert!(
                violations.iter().any(|v| v.contains(expected)),
                "{expected:?} not in {violations:?}"
            );
        }
    }
}

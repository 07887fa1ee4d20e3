//! The checkout workload: customers who each place an order, wait for it to settle, sometimes
//! cancel it, and start again, the way a demanding client would: a request that fails or goes
//! unanswered is sent again with the same idempotency key, so a retry never buys twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::storefront::{Ask, retryable};
use crate::system::Shop;

/// A card the demo payment provider always accepts.
pub(crate) const CARD_OK: &str = "4242424242424242";
/// A card it always declines.
pub(crate) const CARD_DECLINED: &str = "4000000000000002";
const PASSWORD: &str = "chaos-monkey-shopper";
/// How long a customer keeps trying to place one order before giving up on it.
const PLACE_WITHIN: Duration = Duration::from_secs(30);
/// How long a customer waits for an order to settle before shopping again.
const FOLLOW_WITHIN: Duration = Duration::from_secs(60);
/// Share of confirmed orders their customer then cancels.
const CANCEL_SHARE: f64 = 0.1;

/// A signed-in customer with a card.
#[derive(Debug)]
pub(crate) struct Customer {
    email: String,
    token: String,
    card: String,
}

/// What customers saw, summed.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Tally {
    /// Checkouts started.
    pub(crate) checkouts: u64,
    /// Checkouts the shop accepted (202, or 200 for a repeated key).
    pub(crate) placed: u64,
    /// Checkouts the shop refused, by status and problem title.
    pub(crate) refused: BTreeMap<String, u64>,
    /// Checkouts given up on: no acceptance within the time a customer waits.
    pub(crate) abandoned: u64,
    /// Requests sent to place, follow and cancel orders.
    pub(crate) requests: u64,
    /// Of those, answered 5xx or 429, or not at all.
    pub(crate) failed_requests: u64,
    /// Orders their customer saw confirmed, cancelled, or not settle in time.
    pub(crate) seen_confirmed: u64,
    pub(crate) seen_cancelled: u64,
    pub(crate) seen_unsettled: u64,
    /// Confirmed orders the customer then cancelled.
    pub(crate) customer_cancels: u64,
    /// Time from the first attempt to the acceptance of each placed order, ms.
    #[serde(skip)]
    pub(crate) place_ms: Vec<f64>,
}

/// A shared tally.
pub(crate) type Shared = Arc<Mutex<Tally>>;

fn add(tally: &Shared, change: impl FnOnce(&mut Tally)) {
    if let Ok(mut tally) = tally.lock() {
        change(&mut tally);
    }
}

/// Signs customer `index` of run `run` up and in, and registers a card for them (one that is
/// declined when `declined`). Retries for up to a minute: no fault is injected yet, but the
/// system may still be warming up.
pub(crate) async fn sign_up(
    shop: &Shop,
    run: &str,
    index: usize,
    declined: bool,
) -> Result<Customer, String> {
    let email = format!("shopper{index}.{run}@chaos.example");
    let signup = json!({"email": email, "password": PASSWORD, "name": format!("Shopper {index}")});
    let answer = shop
        .insist(Ask::post("/api/auth/signup", None, &signup))
        .await?;
    if answer.status != StatusCode::CREATED && answer.status != StatusCode::CONFLICT {
        return Err(format!(
            "signing {email} up: {} {}",
            answer.status, answer.body
        ));
    }
    let token = login(shop, &email).await?;
    let number = if declined { CARD_DECLINED } else { CARD_OK };
    let card = json!({"card_number": number, "exp_month": 12, "exp_year": 2035, "cvc": "123"});
    let answer = shop
        .insist(Ask::post("/api/payment-methods", Some(&token), &card))
        .await?;
    let card = answer.body["id"]
        .as_str()
        .filter(|_| answer.status == StatusCode::CREATED)
        .ok_or_else(|| {
            format!(
                "registering a card for {email}: {} {}",
                answer.status, answer.body
            )
        })?
        .to_owned();
    Ok(Customer { email, token, card })
}

async fn login(shop: &Shop, email: &str) -> Result<String, String> {
    let credentials = json!({"email": email, "password": PASSWORD});
    let answer = shop
        .insist(Ask::post("/api/auth/login", None, &credentials))
        .await?;
    answer.body["access_token"]
        .as_str()
        .filter(|_| answer.status == StatusCode::OK)
        .map(str::to_owned)
        .ok_or_else(|| format!("logging {email} in: {} {}", answer.status, answer.body))
}

/// What a customer buys: a few of the plentiful products, now and then a scarce one.
#[derive(Debug, Clone)]
pub(crate) struct Assortment {
    pub(crate) plentiful: Vec<String>,
    pub(crate) scarce: Vec<String>,
}

impl Assortment {
    fn basket(&self, rng: &mut StdRng) -> Vec<(String, i64)> {
        let mut basket: Vec<(String, i64)> = Vec::new();
        let lines = rng.random_range(1..=3);
        while basket.len() < lines {
            let from = if !self.scarce.is_empty() && rng.random_bool(0.15) {
                &self.scarce
            } else {
                &self.plentiful
            };
            let sku = &from[rng.random_range(0..from.len())];
            if basket.iter().all(|(s, _)| s != sku) {
                basket.push((sku.clone(), rng.random_range(1..=3)));
            }
        }
        basket
    }
}

/// How placing one order ended.
enum Placed {
    Accepted(String),
    Refused(String),
    Abandoned,
}

/// Shops until `stop`: one order at a time, each followed until it settles.
pub(crate) async fn shop_until(
    shop: Arc<Shop>,
    mut customer: Customer,
    assortment: Arc<Assortment>,
    seed: u64,
    tally: Shared,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !stop.is_cancelled() {
        let basket = assortment.basket(&mut rng);
        add(&tally, |t| t.checkouts += 1);
        let started = Instant::now();
        match place(&shop, &mut customer, &basket, &tally).await {
            Placed::Accepted(id) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                add(&tally, |t| {
                    t.placed += 1;
                    t.place_ms.push(ms);
                });
                let cancel = rng.random_bool(CANCEL_SHARE);
                follow(&shop, &mut customer, &id, cancel, &tally).await;
            }
            Placed::Refused(why) => add(&tally, |t| *t.refused.entry(why).or_default() += 1),
            Placed::Abandoned => add(&tally, |t| t.abandoned += 1),
        }
    }
}

/// Places an order for `basket`, sending the same request (and key) again on failures.
async fn place(
    shop: &Shop,
    customer: &mut Customer,
    basket: &[(String, i64)],
    tally: &Shared,
) -> Placed {
    let key = uuid::Uuid::now_v7().to_string();
    let items: Vec<Value> = basket
        .iter()
        .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
        .collect();
    let body = json!({
        "items": items,
        "shipping_address": {"name": "Chaos Shopper", "line1": "1 Monkey Lane", "city": "Leeds", "postal_code": "LS1 4AP", "country": "GB"},
        "payment_method": customer.card,
    });
    let deadline = Instant::now() + PLACE_WITHIN;
    while Instant::now() < deadline {
        let ask = Ask {
            idempotency_key: Some(&key),
            ..Ask::post("/api/orders", Some(&customer.token), &body)
        };
        let answer = shop.send(ask).await;
        add(tally, |t| t.requests += 1);
        match answer {
            Ok(a) if a.status == StatusCode::ACCEPTED || a.status == StatusCode::OK => {
                if let Some(id) = a.body["id"].as_str() {
                    return Placed::Accepted(id.to_owned());
                }
                return Placed::Refused(format!("{} without an order id", a.status));
            }
            Ok(a) if a.status == StatusCode::UNAUTHORIZED => {
                if let Ok(token) = login(shop, &customer.email).await {
                    customer.token = token;
                }
            }
            Ok(a) if !retryable(a.status) => {
                let title = a.body["title"].as_str().unwrap_or("no problem body");
                return Placed::Refused(format!("{} {title}", a.status.as_u16()));
            }
            _ => {
                add(tally, |t| t.failed_requests += 1);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    Placed::Abandoned
}

/// Waits for order `id` to settle (long-polling with `?wait=`); cancels it once confirmed if
/// `cancel`.
async fn follow(shop: &Shop, customer: &mut Customer, id: &str, cancel: bool, tally: &Shared) {
    let deadline = Instant::now() + FOLLOW_WITHIN;
    let path = format!("/api/orders/{id}?wait=10s");
    while Instant::now() < deadline {
        let ask = Ask {
            timeout: Duration::from_secs(15),
            ..Ask::get(&path, Some(&customer.token))
        };
        let answer = shop.send(ask).await;
        add(tally, |t| t.requests += 1);
        match answer {
            Ok(a) if a.status == StatusCode::OK => match a.body["checkout"]["status"].as_str() {
                Some("confirmed") => {
                    add(tally, |t| t.seen_confirmed += 1);
                    if cancel {
                        self::cancel(shop, customer, id, tally).await;
                    }
                    return;
                }
                Some("cancelled") => {
                    add(tally, |t| t.seen_cancelled += 1);
                    return;
                }
                _ => {}
            },
            Ok(a) if a.status == StatusCode::UNAUTHORIZED => {
                if let Ok(token) = login(shop, &customer.email).await {
                    customer.token = token;
                }
            }
            Ok(a) if !retryable(a.status) => {
                add(tally, |t| t.seen_unsettled += 1);
                return;
            }
            _ => {
                add(tally, |t| t.failed_requests += 1);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    add(tally, |t| t.seen_unsettled += 1);
}

/// Cancels a confirmed order (refund, stock back, shipment cancelled), asking again on failures.
async fn cancel(shop: &Shop, customer: &Customer, id: &str, tally: &Shared) {
    let path = format!("/api/orders/{id}/cancel");
    let body = json!({});
    for _ in 0..20 {
        let answer = shop
            .send(Ask::post(&path, Some(&customer.token), &body))
            .await;
        add(tally, |t| t.requests += 1);
        match answer {
            Ok(a) if !retryable(a.status) => {
                if a.status.is_success() {
                    add(tally, |t| t.customer_cancels += 1);
                }
                return;
            }
            _ => {
                add(tally, |t| t.failed_requests += 1);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basket_has_one_to_three_different_lines_from_the_assortment() {
        let assortment = Assortment {
            plentiful: vec!["A".into(), "B".into(), "C".into(), "D".into()],
            scarce: vec!["S".into()],
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut saw_scarce = false;
        for _ in 0..500 {
            let basket = assortment.basket(&mut rng);
            assert!((1..=3).contains(&basket.len()), "{basket:?}");
            let mut skus: Vec<&str> = basket.iter().map(|(s, _)| s.as_str()).collect();
            skus.sort_unstable();
            skus.dedup();
            assert_eq!(skus.len(), basket.len(), "no sku twice: {basket:?}");
            assert!(basket.iter().all(|(_, q)| (1..=3).contains(q)));
            saw_scarce |= skus.contains(&"S");
        }
        assert!(saw_scarce, "the scarce product is bought now and then");
    }

    #[test]
    fn failures_and_throttling_are_asked_again_refusals_are_not() {
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!retryable(StatusCode::CONFLICT));
        assert!(!retryable(StatusCode::UNPROCESSABLE_ENTITY));
    }
}

//! The journeys, as a customer takes them through the gateway, and what they need set up first:
//! customer accounts with cards, the catalog's products and categories, and (when customers
//! buy) stock enough for the whole run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::StatusCode;
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::scenario::Journey;
use super::stats::Stats;
use crate::storefront::{Answer, Ask, DEMO_ADMIN, Storefront};

const PASSWORD: &str = "load-generator-shopper";
const CARD: &str = "4242424242424242";
/// Products customers buy; each is restocked to [`STOCK`] first.
const BUYABLE: usize = 10;
const STOCK: i64 = 1_000_000;
/// Longest wait for an order to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(60);

tokio::task_local! {
    /// Set on a journey that started during the warm-up (`--warmup`): what it measures goes to
    /// the warm-up's own stats, not the run's. A task-local, so that every request the journey
    /// makes, however deep, is filed with it.
    static WARMING_UP: ();
}

/// Runs `journey` as one of the warm-up's.
pub(crate) async fn warming_up<F: Future>(journey: F) -> F::Output {
    WARMING_UP.scope((), journey).await
}

/// Whether the running journey is one of the warm-up's.
fn warming() -> bool {
    WARMING_UP.try_with(|()| ()).is_ok()
}

/// What `window` holds, handed over.
fn take(window: &Mutex<Stats>) -> Stats {
    window
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default()
}

/// A customer account of the run.
#[derive(Debug)]
struct Account {
    email: String,
    card: String,
    token: Mutex<Option<String>>,
}

/// The shop under load, and what the run measured since the last look.
#[derive(Debug)]
pub(crate) struct Shop {
    storefront: Storefront,
    run: String,
    accounts: Vec<Account>,
    skus: Vec<String>,
    buyable: Vec<String>,
    categories: Vec<String>,
    /// Measurements since the last progress line.
    window: Mutex<Stats>,
    /// The warm-up's measurements since the last progress line.
    warm_window: Mutex<Stats>,
    /// Orders seen confirmed (the first [`KEEP_CONFIRMED`]), to sample their sagas.
    confirmed: Mutex<Vec<String>>,
}

/// Confirmed orders remembered for the breakdown.
const KEEP_CONFIRMED: usize = 100_000;

/// Why a step of a journey failed (already counted as an error).
#[derive(Debug)]
pub(crate) struct Failed;

impl Shop {
    /// Looks the catalog over, restocks what customers will buy (if they buy), and signs up
    /// `accounts` customers with a card each.
    pub(crate) async fn prepare(
        storefront: Storefront,
        run: &str,
        accounts: usize,
        buys: bool,
    ) -> Result<Self, String> {
        let products = public(&storefront, "/api/products?page_size=100").await?;
        let skus: Vec<String> = products["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|p| p["available"].as_i64().unwrap_or(0) > 0)
            .filter_map(|p| p["sku"].as_str().map(str::to_owned))
            .collect();
        if skus.is_empty() {
            return Err("the catalog has no product in stock".into());
        }
        let categories: Vec<String> = public(&storefront, "/api/categories").await?["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["slug"].as_str().map(str::to_owned))
            .collect();
        let buyable: Vec<String> = skus.iter().take(BUYABLE).cloned().collect();
        if buys {
            restock(&storefront, &buyable).await?;
        }
        let signed_up: Vec<Result<Account, String>> = futures_util::stream::iter(0..accounts)
            .map(|i| sign_up(&storefront, run, i))
            .buffered(4)
            .collect()
            .await;
        Ok(Self {
            storefront,
            run: run.to_owned(),
            accounts: signed_up.into_iter().collect::<Result<_, _>>()?,
            skus,
            buyable,
            categories,
            window: Mutex::new(Stats::default()),
            warm_window: Mutex::new(Stats::default()),
            confirmed: Mutex::new(Vec::new()),
        })
    }

    /// The orders seen confirmed.
    pub(crate) fn confirmed(&self) -> Vec<String> {
        self.confirmed.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The gateway.
    pub(crate) fn storefront(&self) -> &Storefront {
        &self.storefront
    }

    /// What was measured since the last call, handed over.
    pub(crate) fn take_window(&self) -> Stats {
        take(&self.window)
    }

    /// What the warm-up measured since the last call, handed over.
    pub(crate) fn take_warm_window(&self) -> Stats {
        take(&self.warm_window)
    }

    /// Files a measurement with the run's, or the warm-up's when the journey is one of those.
    fn record(&self, change: impl FnOnce(&mut Stats)) {
        let window = if warming() {
            &self.warm_window
        } else {
            &self.window
        };
        if let Ok(mut window) = window.lock() {
            change(&mut window);
        }
    }

    /// Takes `journey`, counting it from `started` (its intended start, in an open loop).
    pub(crate) async fn take(&self, journey: Journey, rng: &mut StdRng, started: Instant) {
        let outcome = match journey {
            Journey::Browse => self.browse(rng).await,
            Journey::ViewProduct => self.view_product(rng).await,
            Journey::Dashboard => self.dashboard(rng).await,
            Journey::Checkout => self.checkout(rng).await,
            Journey::LogIn => self.log_in(self.account(rng)).await.map(drop),
            Journey::SignUp => self.sign_up_one(rng).await,
        };
        let took = started.elapsed();
        self.record(|s| s.journey(journey.name(), took, outcome.is_err()));
    }

    /// Sends `ask`, counted under `endpoint`; an answer whose status is not `expected` counts
    /// as an error of its kind.
    async fn call(
        &self,
        endpoint: &'static str,
        ask: Ask<'_>,
        expected: &[StatusCode],
    ) -> Result<Answer, Failed> {
        let started = Instant::now();
        let answer = self.storefront.send(ask).await;
        let took = started.elapsed();
        let error = match &answer {
            Ok(a) if expected.contains(&a.status) => None,
            Ok(a) => Some(format!("HTTP {} on {endpoint}", a.status.as_u16())),
            Err(e) if e.contains("did not answer within") => Some(format!("timeout on {endpoint}")),
            Err(_) => Some(format!("no answer on {endpoint}")),
        };
        let failed = error.is_some();
        self.record(|s| s.request(endpoint, took, error));
        match answer {
            Ok(a) if !failed => Ok(a),
            _ => Err(Failed),
        }
    }

    fn account(&self, rng: &mut StdRng) -> &Account {
        &self.accounts[rng.random_range(0..self.accounts.len())]
    }

    fn pick<'a>(list: &'a [String], rng: &mut StdRng) -> Option<&'a String> {
        (!list.is_empty()).then(|| &list[rng.random_range(0..list.len())])
    }

    /// The account's token, logging in when it has none.
    async fn token(&self, account: &Account) -> Result<String, Failed> {
        let held = account.token.lock().ok().and_then(|t| t.clone());
        match held {
            Some(token) => Ok(token),
            None => self.log_in(account).await,
        }
    }

    /// Forgets a token the gateway refused (expired), so the next journey logs in again.
    fn refused(&self, account: &Account, answer: &Result<Answer, Failed>) {
        if matches!(answer, Ok(a) if a.status == StatusCode::UNAUTHORIZED)
            && let Ok(mut token) = account.token.lock()
        {
            *token = None;
        }
    }

    async fn log_in(&self, account: &Account) -> Result<String, Failed> {
        let credentials = json!({"email": account.email, "password": PASSWORD});
        let answer = self
            .call(
                "POST /api/auth/login",
                Ask::post("/api/auth/login", None, &credentials),
                &[StatusCode::OK],
            )
            .await?;
        let token = answer.body["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or(Failed)?;
        if let Ok(mut held) = account.token.lock() {
            *held = Some(token.clone());
        }
        Ok(token)
    }

    async fn browse(&self, rng: &mut StdRng) -> Result<(), Failed> {
        self.call(
            "GET /api/categories",
            Ask::get("/api/categories", None),
            &[StatusCode::OK],
        )
        .await?;
        let path = match Self::pick(&self.categories, rng) {
            Some(category) => format!("/api/products?category={category}&page_size=20"),
            None => "/api/products?page_size=20".to_owned(),
        };
        self.call(
            "GET /api/products",
            Ask::get(&path, None),
            &[StatusCode::OK],
        )
        .await
        .map(drop)
    }

    async fn view_product(&self, rng: &mut StdRng) -> Result<(), Failed> {
        let sku = Self::pick(&self.skus, rng).ok_or(Failed)?;
        let product = format!("/api/products/{sku}");
        self.call(
            "GET /api/products/{sku}",
            Ask::get(&product, None),
            &[StatusCode::OK],
        )
        .await?;
        let bought_with = format!("/api/recommendations?product={sku}&limit=5");
        self.call(
            "GET /api/recommendations",
            Ask::get(&bought_with, None),
            &[StatusCode::OK],
        )
        .await
        .map(drop)
    }

    async fn dashboard(&self, rng: &mut StdRng) -> Result<(), Failed> {
        let account = self.account(rng);
        let token = self.token(account).await?;
        let answer = self
            .call(
                "GET /api/dashboard",
                Ask::get("/api/dashboard", Some(&token)),
                &[StatusCode::OK],
            )
            .await;
        self.refused(account, &answer);
        answer.map(drop)
    }

    async fn sign_up_one(&self, rng: &mut StdRng) -> Result<(), Failed> {
        let email = format!("new-{:016x}.{}@load.example", rng.random::<u64>(), self.run);
        let body = json!({"email": email, "password": PASSWORD, "name": "New Shopper"});
        self.call(
            "POST /api/auth/signup",
            Ask::post("/api/auth/signup", None, &body),
            &[StatusCode::CREATED],
        )
        .await
        .map(drop)
    }

    /// Places an order of one or two products and waits until it is confirmed.
    async fn checkout(&self, rng: &mut StdRng) -> Result<(), Failed> {
        let account = self.account(rng);
        let token = self.token(account).await?;
        let mut items = Vec::new();
        for _ in 0..rng.random_range(1..=2_usize) {
            if let Some(sku) = Self::pick(&self.buyable, rng)
                && !items.iter().any(|i: &Value| i["sku"] == sku.as_str())
            {
                items.push(json!({"sku": sku, "quantity": rng.random_range(1..=3)}));
            }
        }
        let body = json!({
            "items": items,
            "shipping_address": {"name": "Load Shopper", "line1": "1 Benchmark Road", "city": "Cambridge", "postal_code": "CB1 1AA", "country": "GB"},
            "payment_method": account.card,
        });
        let key = uuid::Uuid::now_v7().to_string();
        let placing = Instant::now();
        let answer = self
            .call(
                "POST /api/orders",
                Ask {
                    idempotency_key: Some(&key),
                    ..Ask::post("/api/orders", Some(&token), &body)
                },
                &[StatusCode::ACCEPTED],
            )
            .await;
        self.refused(account, &answer);
        let order = answer?;
        let id = order.body["id"].as_str().ok_or(Failed)?;
        let path = format!("/api/orders/{id}?wait=10s");
        while placing.elapsed() < SETTLE_WITHIN {
            let order = self
                .call(
                    "GET /api/orders/{id}",
                    Ask {
                        timeout: Duration::from_secs(15),
                        ..Ask::get(&path, Some(&token))
                    },
                    &[StatusCode::OK],
                )
                .await?;
            match order.body["checkout"]["status"].as_str() {
                Some("confirmed") => {
                    let took = placing.elapsed();
                    self.record(|s| s.to_confirmed.record(took));
                    if !warming()
                        && let Ok(mut confirmed) = self.confirmed.lock()
                        && confirmed.len() < KEEP_CONFIRMED
                    {
                        confirmed.push(id.to_owned());
                    }
                    return Ok(());
                }
                Some("cancelled") => {
                    let reason = order.body["cancel_reason"].as_str().unwrap_or("no reason");
                    let kind = reason.split(':').next().unwrap_or(reason).trim();
                    self.record(|s| s.error(format!("checkout cancelled: {kind}")));
                    return Err(Failed);
                }
                _ => {}
            }
        }
        self.record(|s| s.error("checkout not settled within 60s".into()));
        Err(Failed)
    }
}

/// `GET path` as nobody, which must answer 200.
async fn public(storefront: &Storefront, path: &str) -> Result<Value, String> {
    let answer = storefront.send(Ask::get(path, None)).await?;
    if answer.status == StatusCode::OK {
        Ok(answer.body)
    } else {
        Err(format!("GET {path}: {} {}", answer.status, answer.body))
    }
}

/// Restocks `skus` to [`STOCK`] units as the demo administrator.
async fn restock(storefront: &Storefront, skus: &[String]) -> Result<(), String> {
    let admin = storefront.log_in(DEMO_ADMIN).await.map_err(|e| {
        format!(
            "cannot restock: {e} (customers would sell the demo stock out in seconds; give the scenario no checkout to run without it)"
        )
    })?;
    let admin = admin.as_str();
    for sku in skus {
        let product = storefront
            .read(
                &format!("/api/products/{sku}"),
                admin,
                Duration::from_secs(10),
            )
            .await?;
        let on_hand = product["inventory"]["on_hand"].as_i64().unwrap_or(0);
        if on_hand >= STOCK / 2 {
            continue;
        }
        let body = json!({"quantity": STOCK - on_hand});
        let path = format!("/api/products/{sku}/restock");
        let answer = storefront
            .send(Ask::post(&path, Some(admin), &body))
            .await?;
        if !answer.status.is_success() {
            return Err(format!(
                "restocking {sku}: {} {}",
                answer.status, answer.body
            ));
        }
    }
    Ok(())
}

/// Signs up customer `i` of run `run`, logs them in and registers a card.
async fn sign_up(storefront: &Storefront, run: &str, i: usize) -> Result<Account, String> {
    let email = format!("shopper{i}.{run}@load.example");
    let body = json!({"email": email, "password": PASSWORD, "name": format!("Load Shopper {i}")});
    let signed = storefront
        .send(Ask::post("/api/auth/signup", None, &body))
        .await?;
    if signed.status != StatusCode::CREATED && signed.status != StatusCode::CONFLICT {
        return Err(format!(
            "signing {email} up: {} {}",
            signed.status, signed.body
        ));
    }
    let credentials = json!({"email": email, "password": PASSWORD});
    let login = storefront
        .send(Ask::post("/api/auth/login", None, &credentials))
        .await?;
    let token = login.body["access_token"]
        .as_str()
        .ok_or_else(|| format!("logging {email} in: {} {}", login.status, login.body))?
        .to_owned();
    let card = json!({"card_number": CARD, "exp_month": 12, "exp_year": 2035, "cvc": "123"});
    let method = storefront
        .send(Ask::post("/api/payment-methods", Some(&token), &card))
        .await?;
    let card = method.body["id"]
        .as_str()
        .ok_or_else(|| {
            format!(
                "registering a card for {email}: {} {}",
                method.status, method.body
            )
        })?
        .to_owned();
    Ok(Account {
        email,
        card,
        token: Mutex::new(Some(token)),
    })
}

//! `bazaar chaos`: proof that nothing is lost when things break.
//!
//! A run starts its own system (`bazaar up` on free ports, in a fresh data directory, with
//! fresh databases and streams when it runs on PostgreSQL and NATS), signs customers up, and
//! has them shop for `--duration` while the monkey SIGKILLs random instances (orders mid-saga,
//! the registry, the event consumers…), freezes others for a few seconds, and switches fault
//! rules on and off. Then the faults stop, the system settles, and every order is checked
//! against the invariants ([`invariants`]). The report says what was done, what customers saw
//! (throughput and failures while the faults happened) and every violation; the exit code is 1
//! if there was one.
//!
//! # Layout
//! - [`workload`]: the customers.
//! - [`monkey`]: the faults.
//! - [`invariants`]: the facts, and what must hold.
//! - [`report`]: what is printed.

pub(crate) mod invariants;
mod monkey;
mod report;
mod workload;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chassis::discovery::RegistryClient;
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use self::report::{Report, Window};
use self::workload::Assortment;
use crate::args::{ChaosArgs, EXIT_USAGE, at_least};
use crate::storefront::{Ask, DEMO_ADMIN};
use crate::system::{Shop, Up};

/// Products customers buy plenty of; each is restocked by [`RESTOCK`] first.
const PLENTIFUL: usize = 6;
const RESTOCK: i64 = 100_000;
/// Products customers buy now and then, with the stock the demo catalog gives them: they sell
/// out during a run, so some checkouts fail for want of stock.
const SCARCE: usize = 2;
/// One customer in this many pays with a card that is declined.
const DECLINED_EVERY: usize = 8;
/// How often progress is printed (and throughput sampled).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: ChaosArgs) -> ExitCode {
    if let Err(message) = check(&args) {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    match chaos(&args).await {
        Ok(report) => {
            if let Err(error) = crate::report::hand_over(&report, args.json.as_deref()) {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments before anything starts.
fn check(args: &ChaosArgs) -> Result<(), String> {
    at_least(
        "--duration",
        args.duration,
        Duration::from_secs(10),
        "a run lasts at least",
    )?;
    at_least(
        "--every",
        args.every,
        Duration::from_millis(100),
        "faults come at most every",
    )?;
    at_least(
        "--settle",
        args.settle,
        Duration::from_secs(10),
        "settling takes at least",
    )?;
    if let Some(db) = &args.db {
        let url = url::Url::parse(db).map_err(|e| format!("--db {db:?}: {e}"))?;
        if !matches!(url.scheme(), "postgres" | "postgresql")
            || url.host_str().is_none_or(str::is_empty)
            || !url.path().trim_matches('/').is_empty()
        {
            return Err(format!(
                "--db {db:?}: expected a PostgreSQL server URL without a database, such as postgres://postgres@127.0.0.1:5432 (the run names its own databases)"
            ));
        }
    }
    if let Some(bus) = &args.bus
        && !url::Url::parse(bus).is_ok_and(|u| u.scheme() == "nats" && u.host_str().is_some())
    {
        return Err(format!(
            "--bus {bus:?}: expected a NATS URL such as nats://127.0.0.1:4222"
        ));
    }
    if let Some(dir) = &args.data_dir
        && dir.exists()
    {
        return Err(format!(
            "--data-dir {}: already exists; a chaos run starts from fresh data",
            dir.display()
        ));
    }
    Ok(())
}

/// The run's name: databases, streams and the data directory are named after it.
fn run_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("chaos_{secs}_{}", std::process::id())
}

async fn chaos(args: &ChaosArgs) -> Result<Report, String> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let run = run_name();
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(&run));
    let mut extra = Vec::new();
    let db = match &args.db {
        Some(server) => {
            let mut url = url::Url::parse(server).map_err(|e| format!("--db {server:?}: {e}"))?;
            url.set_path(&format!("/{run}"));
            Some(url.to_string())
        }
        None => None,
    };
    if let Some(db) = &db {
        extra.extend(["--db".to_owned(), db.clone()]);
    }
    if let Some(bus) = &args.bus {
        extra.extend(["--bus".to_owned(), bus.clone()]);
    }
    for replicas in &args.replicas {
        extra.extend(["--replicas".to_owned(), replicas.clone()]);
    }
    let backend = match (&args.db, &args.bus) {
        (None, None) => "embedded defaults (SQLite, event feeds)".to_owned(),
        (Some(_), Some(_)) => "PostgreSQL + NATS".to_owned(),
        (Some(_), None) => "PostgreSQL, event feeds".to_owned(),
        (None, Some(_)) => "SQLite, NATS".to_owned(),
    };
    println!(
        "Starting Bazaar for chaos run {run} in {} ({backend}), seed {seed}…",
        data_dir.display()
    );
    let env = [("BAZAAR_EVENTS__NATS_PREFIX", run.clone())];
    let up = Arc::new(Up::start(&data_dir, &extra, &env).await?);
    let result = match Shop::connect(&data_dir) {
        Ok(shop) => exercise(args, &up, Arc::new(shop), seed, &run, backend).await,
        Err(error) => Err(error),
    };
    println!("Stopping Bazaar…");
    if let Ok(up) = Arc::try_unwrap(up) {
        up.stop().await;
    }
    let passed = result.as_ref().is_ok_and(|r| r.violations.is_empty());
    if passed && !args.keep {
        clean_up(&data_dir, db.as_deref(), args.bus.as_deref(), &run).await;
    } else {
        println!(
            "Kept for a look: {} (logs under logs/, `bazaar logs --data-dir …` merges them)",
            data_dir.display()
        );
    }
    result
}

/// Shops, makes trouble, lets the system settle, and checks it.
async fn exercise(
    args: &ChaosArgs,
    up: &Arc<Up>,
    shop: Arc<Shop>,
    seed: u64,
    run: &str,
    backend: String,
) -> Result<Report, String> {
    let admin = admin_token(&shop).await?;
    let assortment = Arc::new(prepare_stock(&shop, &admin).await?);
    let stock_before = invariants::stock(&shop, &admin).await?;
    println!(
        "Signing up {} customers (one in {DECLINED_EVERY} with a card that is declined)…",
        args.customers
    );
    let customers: Vec<workload::Customer> =
        futures_util::stream::iter(0..usize::from(args.customers))
            .map(|i| workload::sign_up(&shop, run, i, i % DECLINED_EVERY == DECLINED_EVERY - 1))
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;

    let registry = RegistryClient::connect(&up.registry()?, shop.transport());
    let stop = CancellationToken::new();
    let interrupted = chassis::server::shutdown_on_signal();
    let tally = workload::Shared::default();
    let doings = Arc::new(Mutex::new(monkey::Doings::default()));
    println!(
        "Shopping for {} while faults happen every {} or so…",
        humantime::format_duration(args.duration),
        humantime::format_duration(args.every)
    );
    let started = Instant::now();
    let mut shoppers = tokio::task::JoinSet::new();
    for (i, customer) in customers.into_iter().enumerate() {
        shoppers.spawn(workload::shop_until(
            Arc::clone(&shop),
            customer,
            Arc::clone(&assortment),
            seed.wrapping_add(1 + i as u64),
            Arc::clone(&tally),
            stop.clone(),
        ));
    }
    let monkey = tokio::spawn(monkey::run(
        Arc::clone(up),
        registry.clone(),
        args.every,
        seed,
        Arc::clone(&doings),
        stop.clone(),
    ));
    let windows = watch(args.duration, &tally, &doings, &interrupted).await;
    stop.cancel();
    let duration = started.elapsed();
    println!("Faults stop; waiting for the customers to finish their checkouts…");
    let _ = monkey.await;
    while shoppers.join_next().await.is_some() {}
    monkey::clear_rules(&registry, Duration::from_secs(60))
        .await
        .map_err(|e| format!("cannot clear the fault rules: {e}"))?;

    println!(
        "Letting the system settle (at most {})…",
        humantime::format_duration(args.settle)
    );
    let settling = Instant::now();
    let deadline = settling + args.settle;
    let (facts, violations) = loop {
        let facts = invariants::gather(&shop, &admin, &stock_before).await?;
        let violations = invariants::check(&facts);
        if violations.is_empty() || Instant::now() > deadline || interrupted.is_cancelled() {
            break (facts, violations);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let tally = tally.lock().map(|t| t.clone()).unwrap_or_default();
    let doings = doings.lock().map(|d| d.clone()).unwrap_or_default();
    let mut report = Report {
        backend,
        seed,
        duration_s: duration.as_secs_f64(),
        customers: args.customers,
        faults: doings,
        customers_saw: tally,
        placed_per_s: 0.0,
        failed_request_share: 0.0,
        place_p50_ms: None,
        place_p99_ms: None,
        windows,
        orders: BTreeMap::new(),
        cancellations: BTreeMap::new(),
        settled_in_s: settling.elapsed().as_secs_f64(),
        violations,
    };
    report.derive();
    report.outcomes(&facts.orders);
    Ok(report)
}

/// Prints progress every [`PROGRESS_EVERY`] until `duration` passes (or Ctrl-C); the
/// throughput of each stretch.
async fn watch(
    duration: Duration,
    tally: &workload::Shared,
    doings: &Mutex<monkey::Doings>,
    interrupted: &CancellationToken,
) -> Vec<Window> {
    let started = Instant::now();
    let mut windows = Vec::new();
    let (mut placed, mut requests, mut failed) = (0, 0, 0);
    let mut last = started;
    while started.elapsed() < duration && !interrupted.is_cancelled() {
        let wait = PROGRESS_EVERY.min(duration.saturating_sub(started.elapsed()));
        tokio::select! {
            () = interrupted.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
        let (now_placed, now_requests, now_failed) = tally
            .lock()
            .map(|t| (t.placed, t.requests, t.failed_requests))
            .unwrap_or_default();
        let kills = doings.lock().map(|d| d.total_kills()).unwrap_or_default();
        let window = Window {
            at_s: started.elapsed().as_secs(),
            placed_per_s: report::ratio(now_placed - placed, last.elapsed().as_secs_f64()),
            failed_share: report::share(now_failed - failed, now_requests - requests),
            kills,
        };
        println!(
            "  {:>4} s  {:>6} placed  {:>6.1}/s  {:>5.1} % requests failed  {:>3} kills",
            window.at_s,
            now_placed,
            window.placed_per_s,
            window.failed_share * 100.0,
            kills
        );
        windows.push(window);
        (placed, requests, failed, last) = (now_placed, now_requests, now_failed, Instant::now());
    }
    windows
}

/// Logs the demo administrator in, asking again for a minute while the system warms up.
async fn admin_token(shop: &Shop) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match shop.storefront().log_in(DEMO_ADMIN).await {
            Ok(token) => return Ok(token),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Restocks the plentiful products; picks the scarce ones.
async fn prepare_stock(shop: &Shop, admin: &str) -> Result<Assortment, String> {
    let stock = invariants::stock(shop, admin).await?;
    let mut skus = stock
        .iter()
        .filter(|(_, s)| s.on_hand > 0)
        .map(|(sku, _)| sku.clone());
    let plentiful: Vec<String> = skus.by_ref().take(PLENTIFUL).collect();
    let scarce: Vec<String> = skus.take(SCARCE).collect();
    if plentiful.len() < PLENTIFUL {
        return Err(format!(
            "the catalog has {} products in stock; a run needs at least {PLENTIFUL}",
            plentiful.len()
        ));
    }
    for sku in &plentiful {
        let body = json!({"quantity": RESTOCK});
        let path = format!("/api/products/{sku}/restock");
        let answer = shop.send(Ask::post(&path, Some(admin), &body)).await?;
        if !answer.status.is_success() {
            return Err(format!(
                "restocking {sku}: {} {}",
                answer.status, answer.body
            ));
        }
    }
    Ok(Assortment { plentiful, scarce })
}

/// Deletes what a passing run made: its data directory and `up`'s output, its databases, its
/// streams.
async fn clean_up(data_dir: &Path, db: Option<&str>, bus: Option<&str>, run: &str) {
    let _ = std::fs::remove_dir_all(data_dir);
    let _ = std::fs::remove_file(data_dir.with_extension("up.log"));
    if let Some(db) = db
        && let Err(error) = drop_databases(db, run).await
    {
        eprintln!("warning: the run's databases were not all dropped: {error}");
    }
    if let Some(bus) = bus
        && let Err(error) = delete_streams(bus, run).await
    {
        eprintln!("warning: the run's streams were not all deleted: {error}");
    }
}

/// Drops the databases `up` created for the run (`<run>_<service>`).
async fn drop_databases(db: &str, run: &str) -> Result<(), String> {
    let mut server = url::Url::parse(db).map_err(|e| e.to_string())?;
    server.set_path("/postgres");
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(server.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname::text FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{run}\\_%"))
            .fetch_all(&mut admin)
            .await
            .map_err(|e| e.to_string())?;
    for (name,) in names {
        // The name comes from the server's own catalogue and matched the run's prefix, which is
        // letters, digits and underscores only.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

/// Deletes the run's JetStream streams (`<RUN>_<PRODUCER>`).
async fn delete_streams(bus: &str, run: &str) -> Result<(), String> {
    let client = async_nats::connect(bus.trim_start_matches("nats://"))
        .await
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let prefix = format!("{}_", run.to_uppercase());
    let mut names = js.stream_names();
    let mut ours = Vec::new();
    while let Some(name) = names.next().await {
        match name {
            Ok(name) if name.starts_with(&prefix) => ours.push(name),
            Ok(_) => {}
            Err(error) => return Err(error.to_string()),
        }
    }
    for name in ours {
        js.delete_stream(&name)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

//! `bazaar load`: customers' journeys (browse, view a product, sign up or log in, buy and wait
//! for the confirmation, look at the dashboard) mixed by the weights of a scenario, against a
//! running system's gateway.
//!
//! Open loop (`--rate`): journeys start on a fixed schedule whatever the shop's speed, and each
//! is timed from when it should have started, so a slow answer is measured rather than hidden
//! by the generator waiting for it (no coordinated omission). Closed loop (`--users`): each
//! customer starts a journey when the last one ended. Progress every `--every`; at the end a
//! report per journey and per endpoint with HDR-histogram percentiles, errors by kind, and
//! `--json` for comparing runs.
//!
//! # Layout
//! - [`scenario`]: journeys and their weights (a TOML file).
//! - [`journeys`]: what each journey does, and the setup (accounts, stock).
//! - [`stats`]: histograms and counts.
//! - [`report`]: tables and JSON.
//! - [`breakdown`]: where a checkout's time goes, from a sample of sagas.
//! - [`cpu`]: where the CPU goes, by service, when the system runs on this machine.

mod breakdown;
mod cpu;
mod journeys;
mod report;
mod scenario;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio_util::sync::CancellationToken;

use self::journeys::{Shop, warming_up};
use self::report::{Report, WarmUp};
use self::scenario::{Scenario, Weights};
use self::stats::Stats;
use crate::args::{EXIT_USAGE, LoadArgs, at_least};
use crate::state;
use crate::storefront::Storefront;

/// Most journeys in flight at once in an open loop; an arrival beyond it is counted as an
/// error of the generator rather than queued (the generator would otherwise hide the overload).
const MAX_IN_FLIGHT: usize = 20_000;
/// How long journeys under way at the end may take to finish.
const DRAIN: Duration = Duration::from_secs(60);

/// How journeys arrive.
#[derive(Debug, Clone, Copy)]
enum Mode {
    Open { per_second: f64 },
    Closed { users: u16 },
}

impl Mode {
    fn describe(self) -> String {
        match self {
            Mode::Open { per_second } => format!("open loop at {per_second} journeys/s"),
            Mode::Closed { users } => format!("closed loop, {users} users"),
        }
    }
}

pub(crate) async fn run(args: LoadArgs) -> ExitCode {
    let checked = check(&args);
    let (mode, scenario) = match checked {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match load(&args, mode, scenario).await {
        Ok(report) => match crate::report::hand_over(&report, args.json.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Checks the arguments and reads the scenario, before anything is sent.
fn check(args: &LoadArgs) -> Result<(Mode, Scenario), String> {
    let mode = match (args.rate, args.users) {
        (Some(rate), _) if !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0) => {
            return Err(format!(
                "--rate {rate}: expected journeys per second above 0, at most 100000"
            ));
        }
        (Some(per_second), None) => Mode::Open { per_second },
        (None, users) => Mode::Closed {
            users: users.unwrap_or(16),
        },
        (Some(_), Some(_)) => return Err("give --rate or --users, not both".into()),
    };
    at_least(
        "--duration",
        args.duration,
        Duration::from_secs(1),
        "a run lasts at least",
    )?;
    if args.warmup > Duration::from_secs(3600) {
        return Err(format!(
            "--warmup {}: expected at most an hour",
            humantime::format_duration(args.warmup)
        ));
    }
    at_least(
        "--every",
        args.every,
        Duration::from_millis(100),
        "progress comes at most every",
    )?;
    if let Some(gateway) = &args.gateway
        && !url::Url::parse(gateway)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
    {
        return Err(format!(
            "--gateway {gateway:?}: expected the gateway's URL, such as http://127.0.0.1:7700"
        ));
    }
    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--scenario {}: {e}", path.display()))?;
            Scenario::parse(&text, &path.display().to_string())?
        }
        None => Scenario::new(Weights::default())?,
    };
    Ok((mode, scenario))
}

async fn load(args: &LoadArgs, mode: Mode, scenario: Scenario) -> Result<Report, String> {
    let transport = state::operator_transport(&args.data_dir);
    let storefront = match &args.gateway {
        Some(url) => Storefront::at(url, transport),
        None => Storefront::of_running(&args.data_dir, transport)?,
    };
    let gateway = storefront.gateway();
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    println!(
        "Preparing {} customer accounts{} at {gateway}…",
        args.accounts,
        if scenario.buys() {
            " and restocking what they buy"
        } else {
            ""
        }
    );
    let shop = Arc::new(
        Shop::prepare(
            storefront,
            &run,
            usize::from(args.accounts),
            scenario.buys(),
        )
        .await?,
    );
    println!(
        "{} for {}{}{}…",
        mode.describe(),
        humantime::format_duration(args.duration),
        args.journeys
            .map(|n| format!(" or {n} journeys"))
            .unwrap_or_default(),
        if args.warmup.is_zero() {
            String::new()
        } else {
            format!(
                ", after a warm-up of {}",
                humantime::format_duration(args.warmup)
            )
        }
    );
    // The processes of a system started here, whose CPU time can be read.
    let local = args
        .gateway
        .is_none()
        .then(|| state::running(&args.data_dir))
        .flatten();
    let interrupted = chassis::server::shutdown_on_signal();
    let seed = args.seed.unwrap_or_else(rand::random);
    let started = Instant::now();
    let measure_from = started + args.warmup;
    // The CPU is counted from the end of the warm-up.
    let cpu_before = tokio::spawn({
        let local = local.clone();
        async move {
            tokio::time::sleep_until(measure_from.into()).await;
            local.as_ref().map(cpu::Sample::take)
        }
    });
    let done = CancellationToken::new();
    let progress = tokio::spawn(progress(Arc::clone(&shop), args.every, done.clone()));
    let limits = Limits {
        measure_from,
        until: measure_from + args.duration,
        journeys: args.journeys.unwrap_or(u64::MAX),
        started: Arc::new(AtomicU64::new(0)),
        interrupted,
    };
    let generator_errors = match mode {
        Mode::Open { per_second } => {
            open_loop(&shop, &scenario, per_second, seed, &limits, started).await
        }
        Mode::Closed { users } => closed_loop(&shop, &scenario, users, seed, &limits).await,
    };
    let seconds = measure_from.elapsed().as_secs_f64();
    let cpu_after = local.as_ref().map(cpu::Sample::take);
    // Interrupted during the warm-up, nothing was measured.
    let cpu_before = if Instant::now() >= measure_from {
        cpu_before.await.ok().flatten()
    } else {
        cpu_before.abort();
        None
    };
    done.cancel();
    let (mut total, mut warm) = progress.await.unwrap_or_default();
    total.merge(&shop.take_window());
    total.merge(&generator_errors);
    warm.merge(&shop.take_warm_window());
    let mut report = Report::new(mode.describe(), gateway, seconds, &total);
    if !args.warmup.is_zero() {
        report.warmup = Some(WarmUp::of(args.warmup, &warm));
    }
    if let (Some(before), Some(after)) = (&cpu_before, &cpu_after) {
        report.cpu = cpu::usage(before, after, seconds, total.journeys_finished());
        report.memory = Some(after.memory());
    }
    let confirmed = shop.confirmed();
    if !confirmed.is_empty() {
        match breakdown::of(shop.storefront(), &confirmed).await {
            Ok(parts) => report.checkout_breakdown = parts,
            Err(reason) => eprintln!("warning: no breakdown of the checkouts: {reason}"),
        }
    }
    Ok(report)
}

/// When the measuring starts, and when to stop starting journeys.
#[derive(Debug)]
struct Limits {
    /// The end of the warm-up: journeys that start before it are not measured.
    measure_from: Instant,
    until: Instant,
    /// Measured journeys at most.
    journeys: u64,
    started: Arc<AtomicU64>,
    interrupted: CancellationToken,
}

impl Limits {
    /// Claims the start of one more journey at `at` (its intended start in an open loop);
    /// false once the run is over.
    fn claim(&self, at: Instant) -> bool {
        at < self.until
            && !self.interrupted.is_cancelled()
            && (self.warming_up(at) || self.started.fetch_add(1, Ordering::Relaxed) < self.journeys)
    }

    /// Whether a journey starting at `at` is one of the warm-up's.
    fn warming_up(&self, at: Instant) -> bool {
        at < self.measure_from
    }
}

/// Starts a journey every `1 / per_second`, on schedule; returns the generator's own errors.
async fn open_loop(
    shop: &Arc<Shop>,
    scenario: &Scenario,
    per_second: f64,
    seed: u64,
    limits: &Limits,
    started: Instant,
) -> Stats {
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut journeys = tokio::task::JoinSet::new();
    let mut skipped = 0_u64;
    for n in 0_u64.. {
        let intended = started + interval.mul_f64(n as f64);
        tokio::select! {
            () = limits.interrupted.cancelled() => break,
            () = tokio::time::sleep_until(intended.into()) => {}
        }
        if !limits.claim(intended) {
            break;
        }
        while journeys.try_join_next().is_some() {}
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            skipped += 1;
            continue;
        }
        let journey = scenario.draw(&mut rng);
        let mut journey_rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (shop, in_flight) = (Arc::clone(shop), Arc::clone(&in_flight));
        let warm = limits.warming_up(intended);
        in_flight.fetch_add(1, Ordering::Relaxed);
        journeys.spawn(async move {
            let taken = shop.take(journey, &mut journey_rng, intended);
            if warm {
                warming_up(taken).await;
            } else {
                taken.await;
            }
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let _ = tokio::time::timeout(DRAIN, async {
        while journeys.join_next().await.is_some() {}
    })
    .await;
    let mut errors = Stats::default();
    if skipped > 0 {
        errors.errors.insert(
            format!("generator: {MAX_IN_FLIGHT} journeys in flight, arrival skipped"),
            skipped,
        );
    }
    errors
}

/// `users` customers, each taking one journey after another.
async fn closed_loop(
    shop: &Arc<Shop>,
    scenario: &Scenario,
    users: u16,
    seed: u64,
    limits: &Limits,
) -> Stats {
    let mut customers = tokio::task::JoinSet::new();
    for user in 0..u64::from(users) {
        let (shop, scenario) = (Arc::clone(shop), scenario.clone());
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(user));
        let limits = Limits {
            measure_from: limits.measure_from,
            until: limits.until,
            journeys: limits.journeys,
            started: Arc::clone(&limits.started),
            interrupted: limits.interrupted.clone(),
        };
        customers.spawn(async move {
            loop {
                let now = Instant::now();
                if !limits.claim(now) {
                    break;
                }
                let journey = scenario.draw(&mut rng);
                let taken = shop.take(journey, &mut rng, now);
                if limits.warming_up(now) {
                    warming_up(taken).await;
                } else {
                    taken.await;
                }
            }
        });
    }
    while customers.join_next().await.is_some() {}
    Stats::default()
}

/// Prints a line every `every` from the window's measurements (the warm-up's, marked, while
/// the run's has none); returns the whole run's, and the warm-up's.
async fn progress(shop: Arc<Shop>, every: Duration, done: CancellationToken) -> (Stats, Stats) {
    let started = Instant::now();
    let (mut total, mut warm) = (Stats::default(), Stats::default());
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = done.cancelled() => return (total, warm),
            () = tokio::time::sleep(every) => {}
        }
        let measured = shop.take_window();
        let warming = shop.take_warm_window();
        warm.merge(&warming);
        let (window, mark) = if measured.requests() == 0 && warming.requests() > 0 {
            (warming, "  (warm-up)")
        } else {
            (measured, "")
        };
        let seconds = last.elapsed().as_secs_f64();
        last = Instant::now();
        let requests = window.requests();
        let all = window.all_requests();
        let rate = |n: u64| n as f64 / seconds.max(1e-9);
        println!(
            "  {:>5.0} s  {:>8.1} journeys/s  {:>8.1} req/s  {:>6.2} % errors  p50 {:>7.1} ms  p99 {:>7.1} ms  {:>6.1} confirmed/s{mark}",
            started.elapsed().as_secs_f64(),
            rate(window.journeys_done()),
            rate(requests),
            if requests == 0 {
                0.0
            } else {
                window.failed_requests() as f64 * 100.0 / requests as f64
            },
            all.ms_at(0.5),
            all.ms_at(0.99),
            rate(window.to_confirmed.count()),
        );
        if mark.is_empty() {
            total.merge(&window);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Journeys of the warm-up start whatever `--journeys` says and are not counted against it;
    /// the measured ones are, until the run's end.
    #[test]
    fn the_warmup_is_neither_measured_nor_counted_against_the_journeys() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let limits = Limits {
            measure_from: now + second,
            until: now + 2 * second,
            journeys: 2,
            started: Arc::new(AtomicU64::new(0)),
            interrupted: CancellationToken::new(),
        };
        for _ in 0..5 {
            assert!(limits.claim(now), "a warm-up journey starts");
        }
        assert!(limits.warming_up(now));
        let later = now + second + Duration::from_millis(500);
        assert!(!limits.warming_up(now + second));
        assert!(limits.claim(now + second) && limits.claim(later));
        assert!(!limits.claim(later), "two measured journeys at most");
        let limits = Limits {
            journeys: u64::MAX,
            ..limits
        };
        assert!(!limits.claim(now + 2 * second), "the run is over");
        limits.interrupted.cancel();
        assert!(!limits.claim(now), "interrupted, nothing starts");
    }
}

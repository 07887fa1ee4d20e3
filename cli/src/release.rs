//! `bazaar deploy`, `bazaar rollback` and `bazaar releases`: canary and blue-green releases of
//! a service, run for real against the system `bazaar up` runs.
//!
//! A release starts instances of the new version through `up`'s control API, then moves the
//! service's traffic policy (`traffic/<service>` in the registry's KV store, which every
//! gateway watches):
//!
//! - **canary**: the candidate's weight goes through `--steps`; during each step the candidate's
//!   error rate and p99 latency, read from the gateways' per-version metrics, are compared with
//!   the stable version's every second. A breach rolls back at once: all traffic to the stable
//!   version, candidate instances stopped, the reason printed. After the last step the candidate
//!   becomes the stable version and the old instances stop.
//! - **blue-green**: the green set starts beside blue and is smoke-tested through the gateway
//!   with `x-bazaar-canary: candidate`; then all traffic switches at once. Blue keeps running
//!   for `--rollback-window`, during which `bazaar rollback` switches back at once; then it
//!   stops.
//!
//! Whatever the strategy, `bazaar rollback <service>` while a release runs sends everything
//! back to the stable version and stops the candidate; the release notices and ends.

mod analysis;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use chassis::metrics::red::{RedStats, samples};
use contracts::discovery::HealthStatus;
use contracts::release::{FaultRule, Stickiness, TrafficPolicy, fault_key};
use http::Method;
use serde_json::Value;

use self::analysis::{Limits, breach, version_stats};
use crate::args::{DeployArgs, ReleasesArgs, RollbackArgs, Strategy};
use crate::console::Console;
use crate::remote::Remote;
use crate::table;
use crate::up::control::{check_version, releasable};

/// How often a running step is checked.
const TICK: Duration = Duration::from_secs(1);
/// Time gateways get to apply a policy before instances it no longer uses are stopped.
const SETTLE: Duration = Duration::from_secs(1);

/// How a release ended, when it did not succeed.
#[derive(Debug)]
enum Failure {
    /// Bad flags or state: nothing was changed.
    Usage(String),
    /// The release was rolled back (or could not proceed); the system is back on stable.
    RolledBack(String),
    /// Something failed midway; the message says what state remains.
    Broken(String),
}

pub(crate) async fn deploy(args: DeployArgs) -> ExitCode {
    let console = Console::detect();
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    match run_deploy(&args, &remote, console).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(crate::args::EXIT_USAGE)
        }
        Err(Failure::RolledBack(reason)) => {
            eprintln!("{} {reason}", console.red("rolled back:"));
            ExitCode::FAILURE
        }
        Err(Failure::Broken(message)) => {
            eprintln!("{} {message}", console.red("error:"));
            ExitCode::FAILURE
        }
    }
}

/// The release being carried out.
struct Release<'a> {
    remote: &'a Remote,
    service: &'a str,
    stable: String,
    candidate: String,
    sticky: Stickiness,
    console: Console,
    /// The fault rule this release wrote, removed when the candidate goes away.
    fault: Option<String>,
}

async fn run_deploy(args: &DeployArgs, remote: &Remote, console: Console) -> Result<(), Failure> {
    let service = releasable(&args.service).map_err(Failure::Usage)?.name();
    check_version(&args.version).map_err(Failure::Usage)?;
    let steps = parse_steps(&args.steps).map_err(Failure::Usage)?;
    let fault = fault_rule(service, &args.version, args).map_err(Failure::Usage)?;

    let instances = remote.instances(service).await.map_err(Failure::Broken)?;
    let policy = remote.policy(service).await.map_err(Failure::Broken)?;
    if let Some(candidate) = policy.as_ref().and_then(|p| p.candidate.as_ref()) {
        return Err(Failure::Usage(format!(
            "{service} is already releasing {candidate}; finish it or run `bazaar rollback {service}`"
        )));
    }
    let passing: Vec<_> = instances
        .iter()
        .filter(|i| i.status == HealthStatus::Passing)
        .collect();
    let stable = match &policy {
        Some(policy) => policy.stable.clone(),
        None => {
            let mut versions: Vec<&str> = passing.iter().map(|i| i.version.as_str()).collect();
            versions.sort_unstable();
            versions.dedup();
            match versions.as_slice() {
                [one] => (*one).to_owned(),
                [] => {
                    return Err(Failure::Usage(format!(
                        "{service} has no passing instance to release over"
                    )));
                }
                many => {
                    return Err(Failure::Usage(format!(
                        "{service} runs several versions ({}) and has no traffic policy saying which is stable; stop the extra instances first",
                        many.join(", ")
                    )));
                }
            }
        }
    };
    if stable == args.version {
        return Err(Failure::Usage(format!("{service} already runs {stable}")));
    }
    let count = match args.instances {
        Some(n) => n,
        None => u8::try_from(passing.iter().filter(|i| i.version == stable).count())
            .unwrap_or(u8::MAX)
            .clamp(1, crate::up::control::MAX_COUNT),
    };

    let mut release = Release {
        remote,
        service,
        stable,
        candidate: args.version.clone(),
        sticky: if args.sticky_users {
            Stickiness::User
        } else {
            Stickiness::None
        },
        console,
        fault: None,
    };
    println!(
        "{} {service}: {} → {} ({})",
        console.bold("Releasing"),
        release.stable,
        release.candidate,
        match args.strategy {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    );
    // The policy pins the stable version before any candidate instance exists, so none of
    // them takes traffic until a step says so.
    release.set(0).await.map_err(Failure::Broken)?;
    if let Some(rule) = fault {
        let name = format!("release-{service}-{}", release.candidate);
        let value = serde_json::to_string(&rule).map_err(|e| Failure::Broken(e.to_string()))?;
        remote
            .registry
            .kv_put(&fault_key(&name), &value, None)
            .await
            .map_err(|e| Failure::Broken(format!("writing the fault rule: {e}")))?;
        println!("  fault rule {name} set for {}", release.candidate);
        release.fault = Some(name);
    }
    // Ctrl-C (or SIGTERM) midway leaves nothing half-released: it rolls back.
    let interrupted = chassis::server::shutdown_on_signal();
    let outcome = tokio::select! {
        outcome = release.carry_out(&steps, count, args) => Some(outcome),
        () = interrupted.cancelled() => None,
    };
    match outcome {
        Some(outcome) => outcome,
        None => {
            println!();
            Err(release.roll_back("interrupted").await)
        }
    }
}

impl Release<'_> {
    /// Starts the candidate's instances, then moves traffic as the strategy says.
    async fn carry_out(&self, steps: &[u8], count: u8, args: &DeployArgs) -> Result<(), Failure> {
        println!(
            "  starting {count} instance(s) of {} {}…",
            self.service, self.candidate
        );
        let started = Instant::now();
        match self
            .remote
            .start(self.service, &self.candidate, count)
            .await
        {
            Ok(instances) => {
                let ids: Vec<&str> = instances.iter().map(|i| i.id.as_str()).collect();
                println!(
                    "  {} {} ready in {} ms",
                    self.console.green("✓"),
                    ids.join(", "),
                    started.elapsed().as_millis()
                );
            }
            Err(reason) => {
                return Err(self
                    .roll_back(&format!("the candidate did not start: {reason}"))
                    .await);
            }
        }
        match args.strategy {
            Strategy::Canary => self.canary(steps, args).await,
            Strategy::BlueGreen => self.blue_green(args).await,
        }
    }

    fn policy(&self, weight: u8) -> TrafficPolicy {
        TrafficPolicy {
            stable: self.stable.clone(),
            candidate: Some(self.candidate.clone()),
            weight,
            sticky: self.sticky,
        }
    }

    async fn set(&self, weight: u8) -> Result<(), String> {
        self.remote
            .set_policy(self.service, &self.policy(weight))
            .await
    }

    /// Whether someone else (`bazaar rollback`) changed the policy under us.
    async fn interrupted(&self, weight: u8) -> Result<bool, String> {
        let current = self.remote.policy(self.service).await?;
        Ok(current.as_ref() != Some(&self.policy(weight)))
    }

    /// Both versions' counts now.
    async fn scrape(&self) -> Result<(RedStats, RedStats), String> {
        let texts = self.remote.gateway_metrics().await?;
        let all: Vec<_> = texts.iter().flat_map(|t| samples(t)).collect();
        Ok((
            version_stats(&all, self.service, &self.stable),
            version_stats(&all, self.service, &self.candidate),
        ))
    }

    /// Everything back to the stable version, candidate instances stopped; the failure to
    /// report.
    async fn roll_back(&self, reason: &str) -> Failure {
        let started = Instant::now();
        if let Err(error) = self
            .remote
            .set_policy(self.service, &TrafficPolicy::stable(&self.stable))
            .await
        {
            return Failure::Broken(format!(
                "{reason}; and the rollback failed: {error}. Run `bazaar rollback {}`.",
                self.service
            ));
        }
        tokio::time::sleep(SETTLE).await;
        let stopped = self
            .remote
            .stop_version(self.service, &self.candidate)
            .await;
        self.clear_fault().await;
        match stopped {
            Ok(ids) => Failure::RolledBack(format!(
                "{reason}. All traffic is back on {} and {} stopped ({:.1}s).",
                self.stable,
                if ids.is_empty() {
                    "no candidate instance had to be".to_owned()
                } else {
                    ids.join(", ")
                },
                started.elapsed().as_secs_f64()
            )),
            Err(error) => Failure::Broken(format!(
                "{reason}; traffic is back on {} but the candidate instances could not be stopped: {error}",
                self.stable
            )),
        }
    }

    async fn clear_fault(&self) {
        if let Some(name) = &self.fault
            && let Err(error) = self.remote.registry.kv_delete(&fault_key(name)).await
        {
            eprintln!("warning: the fault rule {name} could not be removed: {error}");
        }
    }

    /// The candidate becomes the stable version; the old instances stop.
    async fn promote(&self) -> Result<(), Failure> {
        self.remote
            .set_policy(self.service, &TrafficPolicy::stable(&self.candidate))
            .await
            .map_err(Failure::Broken)?;
        tokio::time::sleep(SETTLE).await;
        let stopped = self
            .remote
            .stop_version(self.service, &self.stable)
            .await
            .map_err(|e| {
                Failure::Broken(format!(
                    "{} is live, but the old instances could not be stopped: {e}",
                    self.candidate
                ))
            })?;
        println!(
            "{} {} now runs {} ({} stopped)",
            self.console.green("Released."),
            self.service,
            self.candidate,
            if stopped.is_empty() {
                "nothing".to_owned()
            } else {
                stopped.join(", ")
            }
        );
        Ok(())
    }

    async fn canary(&self, steps: &[u8], args: &DeployArgs) -> Result<(), Failure> {
        let limits = Limits {
            max_error_rate: args.max_error_rate,
            max_p99_ratio: args.max_p99_ratio,
            p99_floor: args.p99_floor,
            min_requests: f64::from(args.min_requests),
        };
        for &weight in steps {
            self.set(weight).await.map_err(Failure::Broken)?;
            let step_started = Instant::now();
            let (stable_before, candidate_before) = self.scrape().await.map_err(Failure::Broken)?;
            let mut last = (RedStats::default(), RedStats::default());
            while step_started.elapsed() < args.interval {
                tokio::time::sleep(TICK.min(args.interval)).await;
                if self.interrupted(weight).await.map_err(Failure::Broken)? {
                    return Err(self
                        .roll_back("the policy was changed by someone else (bazaar rollback?)")
                        .await);
                }
                let (stable_now, candidate_now) = self.scrape().await.map_err(Failure::Broken)?;
                let stable = stable_now.since(&stable_before);
                let candidate = candidate_now.since(&candidate_before);
                print_progress(
                    self.console,
                    weight,
                    step_started.elapsed(),
                    &stable,
                    &candidate,
                );
                if let Some(reason) = breach(&candidate, &stable, &limits) {
                    println!();
                    return Err(self.roll_back(&format!("at {weight} %: {reason}")).await);
                }
                last = (stable, candidate);
            }
            println!();
            if last.1.requests < limits.min_requests {
                println!(
                    "  {} only {} request(s) reached the candidate at {weight} %: too few to judge it",
                    self.console.yellow("!"),
                    last.1.requests
                );
            }
        }
        self.promote().await
    }

    async fn blue_green(&self, args: &DeployArgs) -> Result<(), Failure> {
        let paths = if args.smoke.is_empty() {
            default_smoke_paths(self.service)
        } else {
            args.smoke.clone()
        };
        if paths.is_empty() {
            return Err(self
                .roll_back(&format!(
                    "{} has no route to smoke-test by default; name one with --smoke",
                    self.service
                ))
                .await);
        }
        let gateway = crate::state::running(&args.data_dir)
            .map(|s| s.gateway)
            .ok_or_else(|| {
                Failure::Usage("no `bazaar up` is running in this data directory".into())
            })?;
        let token = demo_token(self.remote, &gateway).await;
        for path in &paths {
            if let Err(reason) = self.smoke(&gateway, path, token.as_deref()).await {
                return Err(self
                    .roll_back(&format!("smoke check failed: {reason}"))
                    .await);
            }
            println!(
                "  {} smoke check {path}: {SMOKE_REQUESTS} of {SMOKE_REQUESTS} answered by {} without a server error",
                self.console.green("✓"),
                self.candidate
            );
        }
        self.set(100).await.map_err(Failure::Broken)?;
        println!(
            "  {} all traffic on {} (green); {} (blue) kept for {} — `bazaar rollback {}` switches back",
            self.console.green("✓"),
            self.candidate,
            self.stable,
            humantime::format_duration(args.rollback_window),
            self.service
        );
        let window = Instant::now();
        while window.elapsed() < args.rollback_window {
            tokio::time::sleep(TICK.min(args.rollback_window)).await;
            if self.interrupted(100).await.map_err(Failure::Broken)? {
                return Err(self.roll_back("switched back by bazaar rollback").await);
            }
        }
        self.promote().await
    }
}

fn print_progress(
    console: Console,
    weight: u8,
    elapsed: Duration,
    stable: &RedStats,
    candidate: &RedStats,
) {
    let p99 = |s: &RedStats| {
        s.p99().map_or_else(
            || "-".to_owned(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    print!(
        "\r  {} {weight:>3} %  {:>4}s  candidate {:>5} req {:>5.1} % err p99 {:>6}   stable {:>5} req {:>5.1} % err p99 {:>6}   ",
        console.dim("step"),
        elapsed.as_secs(),
        candidate.requests,
        candidate.error_rate() * 100.0,
        p99(candidate),
        stable.requests,
        stable.error_rate() * 100.0,
        p99(stable),
    );
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// `5,25,50,100`: increasing percentages ending at 100.
fn parse_steps(text: &str) -> Result<Vec<u8>, String> {
    let steps: Vec<u8> = text
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u8>()
                .ok()
                .filter(|w| (1..=100).contains(w))
                .ok_or_else(|| format!("--steps {text:?}: {s:?} is not a percentage from 1 to 100"))
        })
        .collect::<Result<_, _>>()?;
    if !steps.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!("--steps {text:?}: the weights must increase"));
    }
    if steps.last() != Some(&100) {
        return Err(format!("--steps {text:?}: the last step must be 100"));
    }
    Ok(steps)
}

/// The fault rule `--fault-*` flags ask the candidate to inject, if any.
fn fault_rule(
    service: &str,
    version: &str,
    args: &DeployArgs,
) -> Result<Option<FaultRule>, String> {
    if args.fault_error_rate.is_none()
        && args.fault_delay.is_none()
        && args.fault_drop_rate.is_none()
    {
        return Ok(None);
    }
    let mut rule = FaultRule::for_service(service);
    rule.version = Some(version.to_owned());
    rule.error_rate = args.fault_error_rate.unwrap_or(0.0);
    rule.drop_rate = args.fault_drop_rate.unwrap_or(0.0);
    rule.delay_ms = args
        .fault_delay
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    rule.validate().map_err(|e| format!("--fault-*: {e}"))?;
    Ok(Some(rule))
}

/// GET routes of `service` in the gateway's default table that any signed-in customer may use.
fn default_smoke_paths(service: &str) -> Vec<String> {
    gateway::routes::default_routes()
        .into_iter()
        .filter(|r| r.service == service && r.roles.is_empty())
        .filter(|r| r.methods.is_empty() || r.methods.iter().any(|m| m == "GET"))
        .map(|r| r.prefix)
        .take(1)
        .collect()
}

/// An access token of the demo customer, so smoke checks reach routes that need a sign-in.
async fn demo_token(remote: &Remote, gateway: &str) -> Option<String> {
    let customer = users::demo::CUSTOMER;
    let body = serde_json::json!({ "email": customer.email, "password": customer.password });
    let (status, body) = remote
        .call(
            Method::POST,
            &format!("{gateway}/api/auth/login"),
            Some(&body),
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    if !status.is_success() {
        return None;
    }
    serde_json::from_slice::<Value>(&body).ok()?["access_token"]
        .as_str()
        .map(str::to_owned)
}

/// Requests of one smoke check.
const SMOKE_REQUESTS: u32 = 20;

impl Release<'_> {
    /// [`SMOKE_REQUESTS`] GETs of `path` sent to the candidate: none may be a server error,
    /// and the gateways' metrics must show the candidate answered them all (until the gateways
    /// learn of the new instances they fall back to the stable ones, so this waits for that).
    async fn smoke(&self, gateway: &str, path: &str, token: Option<&str>) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, before) = self.scrape().await?;
            let bearer = token.map(|t| format!("Bearer {t}"));
            let mut headers = vec![(contracts::release::CANARY_HEADER, "candidate")];
            if let Some(bearer) = &bearer {
                headers.push(("authorization", bearer.as_str()));
            }
            let url = format!("{gateway}{path}");
            for _ in 0..SMOKE_REQUESTS {
                let (status, _) = self
                    .remote
                    .get_with(&url, &headers, Duration::from_secs(10))
                    .await?;
                if status.is_server_error() {
                    return Err(format!("GET {path} answered {status}"));
                }
            }
            let (_, after) = self.scrape().await?;
            let answered = after.since(&before).requests;
            if answered >= f64::from(SMOKE_REQUESTS) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the gateways sent only {answered} of {SMOKE_REQUESTS} requests to {}",
                    self.candidate
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

pub(crate) async fn rollback(args: RollbackArgs) -> ExitCode {
    let console = Console::detect();
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    let service = match releasable(&args.service) {
        Ok(service) => service.name(),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(crate::args::EXIT_USAGE);
        }
    };
    let result = async {
        let policy = remote.policy(service).await?;
        let Some((stable, candidate)) = policy.and_then(|p| p.candidate.map(|c| (p.stable, c)))
        else {
            return Err(format!(
                "{service} has no release in progress: nothing to roll back"
            ));
        };
        let started = Instant::now();
        remote
            .set_policy(service, &TrafficPolicy::stable(&stable))
            .await?;
        println!(
            "{} all traffic of {service} on {stable}",
            console.green("✓")
        );
        tokio::time::sleep(SETTLE).await;
        let stopped = remote.stop_version(service, &candidate).await?;
        println!(
            "{} {candidate} stopped ({}) in {:.1}s",
            console.green("✓"),
            if stopped.is_empty() {
                "no instance left".to_owned()
            } else {
                stopped.join(", ")
            },
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{} {message}", console.red("error:"));
            ExitCode::FAILURE
        }
    }
}

pub(crate) async fn releases(args: ReleasesArgs) -> ExitCode {
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    match render_releases(&remote).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn render_releases(remote: &Remote) -> Result<String, String> {
    let all = remote
        .registry
        .instances()
        .await
        .map_err(|e| format!("the registry: {}", chassis::error::ErrorChain(&e)))?
        .instances;
    let mut services: Vec<&str> = all.iter().map(|i| i.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    let mut rows = Vec::new();
    for service in services.into_iter().filter(|s| releasable(s).is_ok()) {
        let policy = remote.policy(service).await?;
        // Passing and total instances of each version.
        let mut by_version: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
        for instance in all.iter().filter(|i| i.service == service) {
            let counts = by_version.entry(&instance.version).or_default();
            counts.0 += usize::from(instance.status == HealthStatus::Passing);
            counts.1 += 1;
        }
        let versions: Vec<String> = by_version
            .iter()
            .map(|(version, (passing, total))| format!("{version} {passing}/{total}"))
            .collect();
        let (stable, candidate, weight, sticky) = match &policy {
            Some(p) => (
                p.stable.clone(),
                p.candidate.clone().unwrap_or_else(|| "-".into()),
                if p.candidate.is_some() {
                    format!("{} %", p.weight)
                } else {
                    "-".into()
                },
                match p.sticky {
                    Stickiness::None => "-".to_owned(),
                    Stickiness::User => "user".to_owned(),
                },
            ),
            None => ("(all)".into(), "-".into(), "-".into(), "-".into()),
        };
        rows.push(vec![
            service.to_owned(),
            stable,
            candidate,
            weight,
            sticky,
            versions.join(", "),
        ]);
    }
    Ok(table::render(
        "",
        &[
            "SERVICE",
            "STABLE",
            "CANDIDATE",
            "WEIGHT",
            "STICKY",
            "INSTANCES (passing/total)",
        ],
        &rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_must_increase_to_100() {
        assert_eq!(parse_steps("5,25,50,100"), Ok(vec![5, 25, 50, 100]));
        assert_eq!(parse_steps("100"), Ok(vec![100]));
        assert!(parse_steps("5,5,100").is_err_and(|e| e.contains("increase")));
        assert!(parse_steps("5,50").is_err_and(|e| e.contains("last step")));
        assert!(parse_steps("0,100").is_err_and(|e| e.contains("\"0\"")));
        assert!(parse_steps("5,abc,100").is_err_and(|e| e.contains("\"abc\"")));
    }

    #[test]
    fn smoke_paths_default_to_the_services_first_route() {
        assert_eq!(default_smoke_paths("catalog"), ["/api/products"]);
        assert_eq!(default_smoke_paths("orders"), ["/api/orders"]);
    }
}

//! The faults: at random moments, SIGKILL a random instance (`up` restarts it), freeze one for
//! a few seconds (SIGSTOP, then SIGCONT: it holds its connections but answers nothing, as if
//! cut off from the network), or switch a fault rule (errors, latency, dropped connections in
//! payments, shipping or the catalog) on or off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chassis::discovery::RegistryClient;
use chassis::error::ErrorChain;
use contracts::release::{FaultRule, fault_key};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::state::{self, InstanceState};
use crate::system::Up;

/// Services killed first, so that every run kills orders (mid-saga: there are always sagas
/// under way), the registry and an event consumer, whatever the dice say later.
const FIRST_KILLS: [&str; 3] = ["orders", "registry", "notifications"];
/// How often each service is picked to be killed, relative to the others. Orders run the
/// sagas, so they get killed most.
const KILL_WEIGHTS: [(&str, u32); 11] = [
    ("orders", 4),
    ("payments", 2),
    ("catalog", 2),
    ("shipping", 2),
    ("notifications", 2),
    ("registry", 1),
    ("gateway", 1),
    ("users", 1),
    ("cart", 1),
    ("recommendations", 1),
    ("telemetry", 1),
];
/// Services that may be frozen (cut off) for a while.
const FREEZABLE: [&str; 5] = ["payments", "catalog", "shipping", "notifications", "users"];
/// How long a freeze lasts, in ms.
const FREEZE_MS: std::ops::RangeInclusive<u64> = 1_500..=5_000;

/// The fault rules a run switches on and off (named `chaos-…`).
fn rules() -> Vec<(&'static str, FaultRule)> {
    let rule = |service: &str, change: &dyn Fn(&mut FaultRule)| {
        let mut rule = FaultRule::for_service(service);
        change(&mut rule);
        rule
    };
    vec![
        (
            "chaos-payments-errors",
            rule("payments", &|r| {
                r.route = Some("/charges".into());
                r.error_rate = 0.3;
                r.status = 503;
            }),
        ),
        (
            "chaos-payments-drops",
            rule("payments", &|r| {
                r.route = Some("/charges".into());
                r.drop_rate = 0.2;
            }),
        ),
        (
            "chaos-shipping-latency",
            rule("shipping", &|r| {
                r.delay_ms = 1_500;
                r.delay_rate = 0.5;
            }),
        ),
        (
            "chaos-shipping-errors",
            rule("shipping", &|r| {
                r.error_rate = 0.3;
                r.status = 500;
            }),
        ),
        (
            "chaos-catalog-errors",
            rule("catalog", &|r| {
                r.route = Some("/reservations".into());
                r.error_rate = 0.25;
                r.status = 503;
            }),
        ),
        (
            "chaos-catalog-latency",
            rule("catalog", &|r| {
                r.delay_ms = 800;
                r.delay_rate = 0.3;
            }),
        ),
    ]
}

/// What the monkey did.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Doings {
    /// SIGKILLs, by service.
    pub(crate) kills: BTreeMap<String, u64>,
    /// Freezes, by service.
    pub(crate) freezes: BTreeMap<String, u64>,
    /// Fault rules switched on.
    pub(crate) rules_on: u64,
    /// Fault rules switched off.
    pub(crate) rules_off: u64,
    /// Moves that could not be made (the target was down, the registry did not answer).
    pub(crate) skipped: u64,
}

impl Doings {
    /// Every SIGKILL.
    pub(crate) fn total_kills(&self) -> u64 {
        self.kills.values().sum()
    }
}

/// Makes trouble every `every` (on average) until `stop`.
pub(crate) async fn run(
    up: Arc<Up>,
    registry: RegistryClient,
    every: Duration,
    seed: u64,
    doings: Arc<Mutex<Doings>>,
    stop: CancellationToken,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let rules = rules();
    let mut on = vec![false; rules.len()];
    let mut frozen = tokio::task::JoinSet::new();
    let mut moves = 0_usize;
    loop {
        let pause = every.mul_f64(rng.random_range(0.5..1.5));
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        let instances = up.instances();
        let dice = rng.random_range(0..100);
        let done = if moves < FIRST_KILLS.len() {
            kill_one(&instances, FIRST_KILLS[moves], &mut rng)
        } else if dice < 60 {
            let service = weighted(&mut rng);
            kill_one(&instances, service, &mut rng)
        } else if dice < 75 {
            let service = FREEZABLE[rng.random_range(0..FREEZABLE.len())];
            freeze_one(&instances, service, &mut rng, &mut frozen)
        } else {
            let i = rng.random_range(0..rules.len());
            let (name, rule) = &rules[i];
            match switch(&registry, name, rule, !on[i]).await {
                Ok(()) => {
                    on[i] = !on[i];
                    Some(if on[i] { Move::RuleOn } else { Move::RuleOff })
                }
                Err(error) => {
                    tracing::debug!(%error, "fault rule not switched");
                    None
                }
            }
        };
        moves += 1;
        if let Ok(mut doings) = doings.lock() {
            match done {
                Some(Move::Kill(service)) => *doings.kills.entry(service).or_default() += 1,
                Some(Move::Freeze(service)) => *doings.freezes.entry(service).or_default() += 1,
                Some(Move::RuleOn) => doings.rules_on += 1,
                Some(Move::RuleOff) => doings.rules_off += 1,
                None => doings.skipped += 1,
            }
        }
    }
    // Every frozen instance thaws before the run is judged.
    while frozen.join_next().await.is_some() {}
}

/// One move.
enum Move {
    Kill(String),
    Freeze(String),
    RuleOn,
    RuleOff,
}

/// A service drawn by [`KILL_WEIGHTS`].
fn weighted(rng: &mut StdRng) -> &'static str {
    let total: u32 = KILL_WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut left = rng.random_range(0..total);
    for (service, weight) in KILL_WEIGHTS {
        if left < weight {
            return service;
        }
        left -= weight;
    }
    KILL_WEIGHTS[0].0
}

/// A live instance of `service`, if any.
fn pick<'a>(
    instances: &'a [InstanceState],
    service: &str,
    rng: &mut StdRng,
) -> Option<&'a InstanceState> {
    let live: Vec<&InstanceState> = instances
        .iter()
        .filter(|i| i.service == service && i.pid != 0 && state::is_alive(i.pid))
        .collect();
    (!live.is_empty()).then(|| live[rng.random_range(0..live.len())])
}

fn signal(pid: u32, signal: Signal) -> bool {
    i32::try_from(pid).is_ok_and(|pid| kill(Pid::from_raw(pid), signal).is_ok())
}

fn kill_one(instances: &[InstanceState], service: &str, rng: &mut StdRng) -> Option<Move> {
    let instance = pick(instances, service, rng)?;
    signal(instance.pid, Signal::SIGKILL).then(|| {
        tracing::info!(instance = %instance.id, pid = instance.pid, "killed");
        Move::Kill(service.to_owned())
    })
}

fn freeze_one(
    instances: &[InstanceState],
    service: &str,
    rng: &mut StdRng,
    frozen: &mut tokio::task::JoinSet<()>,
) -> Option<Move> {
    let instance = pick(instances, service, rng)?;
    let pid = instance.pid;
    if !signal(pid, Signal::SIGSTOP) {
        return None;
    }
    let thaw_in = Duration::from_millis(rng.random_range(FREEZE_MS));
    tracing::info!(instance = %instance.id, pid, ?thaw_in, "frozen");
    frozen.spawn(async move {
        tokio::time::sleep(thaw_in).await;
        signal(pid, Signal::SIGCONT);
    });
    Some(Move::Freeze(service.to_owned()))
}

/// Sets the rule `name` (`on`) or removes it.
async fn switch(
    registry: &RegistryClient,
    name: &str,
    rule: &FaultRule,
    on: bool,
) -> Result<(), String> {
    let key = fault_key(name);
    let result = if on {
        let value = serde_json::to_string(rule).map_err(|e| e.to_string())?;
        registry.kv_put(&key, &value, None).await.map(drop)
    } else {
        registry.kv_delete(&key).await.map(drop)
    };
    result.map_err(|e| format!("the registry: {}", ErrorChain(&e)))
}

/// Removes every fault rule a chaos run set, asking the registry again until it answers or
/// `within` passes.
pub(crate) async fn clear_rules(registry: &RegistryClient, within: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let mut last = Ok(());
        for (name, rule) in rules() {
            if let Err(error) = switch(registry, name, &rule, false).await {
                last = Err(error);
            }
        }
        if last.is_ok() || tokio::time::Instant::now() > deadline {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_valid_and_named_as_the_run_clears_them() {
        for (name, rule) in rules() {
            assert!(name.starts_with("chaos-"), "{name}");
            rule.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(
                rule.error_rate > 0.0 || rule.drop_rate > 0.0 || rule.delay_ms > 0,
                "{name} injects something"
            );
        }
    }

    #[test]
    fn kills_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for _ in 0..22_000 {
            *counts.entry(weighted(&mut rng)).or_default() += 1;
        }
        // 4 in 18 for orders, 1 in 18 for the registry.
        let orders = counts["orders"];
        let registry = counts["registry"];
        assert!((4_500..5_300).contains(&orders), "{counts:?}");
        assert!((1_000..1_450).contains(&registry), "{counts:?}");
        assert_eq!(counts.len(), KILL_WEIGHTS.len(), "every service drawn");
    }
}

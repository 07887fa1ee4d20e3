//! The instances the registry knows, in memory, with the rules that move their health.
//!
//! An instance registers itself once it is listening, so it starts `passing`. It turns
//! `critical` when nothing listens at its health URL any more, when its HTTP check fails
//! `failures_before_critical` times in a row (one slow answer under a burst is not a dead
//! instance), or when its TTL runs out without a heartbeat; it turns `passing` again on the
//! next good check or heartbeat, and is removed once it has been critical for
//! `deregister_after`. Every change of membership or health bumps the [`Index`] and records it
//! as the service's index, which blocking queries compare against.
//!
//! Times are passed in (`now`), so the rules are tested without sleeping.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use contracts::discovery::{HealthStatus, Instance, Registration, ServiceSummary};

use crate::index::Index;

#[derive(Debug, Clone)]
struct Entry {
    instance: Instance,
    ttl: Option<Duration>,
    last_heartbeat: Instant,
    /// The TTL ran out and no heartbeat came since.
    ttl_expired: bool,
    /// Why the HTTP checks make the instance critical, if they do.
    check_failure: Option<String>,
    /// HTTP checks failed since the last one that passed.
    failures_in_a_row: u32,
    critical_since: Option<Instant>,
    /// When the next HTTP check is due; the first waits one interval, so an instance is not
    /// checked before it has heard back from its own registration.
    next_check: Instant,
    checking: bool,
}

#[derive(Debug, Default)]
struct State {
    instances: BTreeMap<String, Entry>,
    /// Index of the last change per service; kept after the last instance leaves.
    service_index: HashMap<String, u64>,
}

/// Why an HTTP check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    /// Nothing listens there (the connection was refused): the process is gone, so the
    /// instance turns critical at once.
    Unreachable(String),
    /// No answer in time, or not a success: it counts towards `failures_before_critical`.
    Unhealthy(String),
}

/// A health check that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    /// Instance id.
    pub id: String,
    /// URL to poll.
    pub url: String,
}

/// The set of registered instances.
#[derive(Debug)]
pub struct Catalog {
    state: Mutex<State>,
    index: Arc<Index>,
    check_interval: Duration,
    failures_before_critical: u32,
    deregister_after: Duration,
}

impl Catalog {
    /// An empty catalog sharing `index` with the KV store (`failures_before_critical` is at
    /// least 1; 0 counts as 1).
    pub fn new(
        index: Arc<Index>,
        check_interval: Duration,
        failures_before_critical: u32,
        deregister_after: Duration,
    ) -> Self {
        Self {
            state: Mutex::new(State::default()),
            index,
            check_interval,
            failures_before_critical: failures_before_critical.max(1),
            deregister_after,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn changed(&self, state: &mut State, service: &str) {
        let index = self.index.bump();
        state.service_index.insert(service.to_owned(), index);
    }

    /// Adds or replaces instance `id`. Returns the stored instance.
    pub fn register(&self, id: &str, registration: Registration, now: Instant) -> Instance {
        let mut state = self.lock();
        let instance = Instance {
            id: id.to_owned(),
            service: registration.service,
            address: registration.address,
            version: registration.version,
            health_url: registration.health_url,
            meta: registration.meta,
            status: HealthStatus::Passing,
            output: None,
            registered_at: Utc::now(),
        };
        let entry = Entry {
            instance: instance.clone(),
            ttl: registration.ttl_ms.map(Duration::from_millis),
            last_heartbeat: now,
            ttl_expired: false,
            check_failure: None,
            failures_in_a_row: 0,
            critical_since: None,
            next_check: now + self.check_interval,
            checking: false,
        };
        if let Some(previous) = state.instances.insert(id.to_owned(), entry)
            && previous.instance.service != instance.service
        {
            self.changed(&mut state, &previous.instance.service);
        }
        self.changed(&mut state, &instance.service);
        instance
    }

    /// The service instance `id` belongs to, if it is known.
    pub fn service_of(&self, id: &str) -> Option<String> {
        self.lock()
            .instances
            .get(id)
            .map(|entry| entry.instance.service.clone())
    }

    /// Removes instance `id`; `false` if it was unknown.
    pub fn deregister(&self, id: &str) -> bool {
        let mut state = self.lock();
        match state.instances.remove(id) {
            Some(entry) => {
                self.changed(&mut state, &entry.instance.service);
                true
            }
            None => false,
        }
    }

    /// Renews the TTL of instance `id`; `None` if it is unknown (it should register again).
    pub fn heartbeat(&self, id: &str, now: Instant) -> Option<HealthStatus> {
        let mut state = self.lock();
        let entry = state.instances.get_mut(id)?;
        entry.last_heartbeat = now;
        entry.ttl_expired = false;
        Some(self.settle(&mut state, id, now))
    }

    /// Checks that are due, marking them in progress.
    pub fn due_checks(&self, now: Instant) -> Vec<DueCheck> {
        let mut state = self.lock();
        state
            .instances
            .iter_mut()
            .filter(|(_, e)| !e.checking && e.next_check <= now)
            .map(|(id, e)| {
                e.checking = true;
                DueCheck {
                    id: id.clone(),
                    url: e.instance.health_url.clone(),
                }
            })
            .collect()
    }

    /// Records the outcome of an HTTP check of `id`: `None` if it passed, or why it failed.
    pub fn record_check(&self, id: &str, failure: Option<CheckFailure>, now: Instant) {
        let mut state = self.lock();
        let Some(entry) = state.instances.get_mut(id) else {
            return;
        };
        entry.checking = false;
        entry.next_check = now + self.check_interval;
        match failure {
            None => {
                entry.failures_in_a_row = 0;
                entry.check_failure = None;
            }
            Some(failure) => {
                entry.failures_in_a_row = entry.failures_in_a_row.saturating_add(1);
                let (why, at_once) = match failure {
                    CheckFailure::Unreachable(why) => (why, true),
                    CheckFailure::Unhealthy(why) => (why, false),
                };
                if at_once
                    || entry.check_failure.is_some()
                    || entry.failures_in_a_row >= self.failures_before_critical
                {
                    entry.check_failure = Some(why);
                } else {
                    tracing::info!(
                        instance_id = id,
                        failed = entry.failures_in_a_row,
                        before_critical = self.failures_before_critical,
                        output = %why,
                        "health check failed; still passing"
                    );
                }
            }
        }
        self.settle(&mut state, id, now);
    }

    /// Marks instances whose TTL ran out critical, and removes those critical for too long.
    /// Returns the ids removed.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let mut state = self.lock();
        let expired: Vec<String> = state
            .instances
            .iter_mut()
            .filter(|(_, e)| {
                !e.ttl_expired
                    && e.ttl
                        .is_some_and(|ttl| now.duration_since(e.last_heartbeat) > ttl)
            })
            .map(|(id, e)| {
                e.ttl_expired = true;
                id.clone()
            })
            .collect();
        for id in &expired {
            self.settle(&mut state, id, now);
        }
        let removed: Vec<String> = state
            .instances
            .iter()
            .filter(|(_, e)| {
                e.critical_since
                    .is_some_and(|since| now.duration_since(since) >= self.deregister_after)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &removed {
            if let Some(entry) = state.instances.remove(id) {
                tracing::info!(instance_id = %id, service_name = %entry.instance.service, "critical for too long; removed");
                self.changed(&mut state, &entry.instance.service);
            }
        }
        removed
    }

    /// Derives the status of `id` from its TTL and check flags; bumps the index if it changed.
    fn settle(&self, state: &mut State, id: &str, now: Instant) -> HealthStatus {
        let Some(entry) = state.instances.get_mut(id) else {
            return HealthStatus::Critical;
        };
        let reasons: Vec<&str> = entry
            .ttl_expired
            .then_some(TTL_EXPIRED)
            .into_iter()
            .chain(entry.check_failure.as_deref())
            .collect();
        let status = if reasons.is_empty() {
            HealthStatus::Passing
        } else {
            HealthStatus::Critical
        };
        entry.instance.output = (!reasons.is_empty()).then(|| reasons.join("; "));
        if status == entry.instance.status {
            return status;
        }
        entry.instance.status = status;
        entry.critical_since = (status == HealthStatus::Critical).then_some(now);
        let service = entry.instance.service.clone();
        tracing::info!(instance_id = id, service_name = %service, ?status, output = entry.instance.output.as_deref(), "health changed");
        self.changed(state, &service);
        status
    }

    /// The index of the last change to `service` (0 if it never had an instance).
    pub fn service_index(&self, service: &str) -> u64 {
        self.lock().service_index.get(service).copied().unwrap_or(0)
    }

    /// Instances of `service`, only passing ones if `passing_only`, with the service's index.
    pub fn service(&self, service: &str, passing_only: bool) -> (u64, Vec<Instance>) {
        let state = self.lock();
        let instances = state
            .instances
            .values()
            .filter(|e| e.instance.service == service)
            .filter(|e| !passing_only || e.instance.status == HealthStatus::Passing)
            .map(|e| e.instance.clone())
            .collect();
        (
            state.service_index.get(service).copied().unwrap_or(0),
            instances,
        )
    }

    /// Every instance, ordered by service then id.
    pub fn all(&self) -> Vec<Instance> {
        let state = self.lock();
        let mut all: Vec<Instance> = state
            .instances
            .values()
            .map(|e| e.instance.clone())
            .collect();
        all.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
        all
    }

    /// Every service with its counts.
    pub fn services(&self) -> Vec<ServiceSummary> {
        let state = self.lock();
        let mut by_service: BTreeMap<&str, ServiceSummary> = BTreeMap::new();
        for entry in state.instances.values() {
            let instance = &entry.instance;
            let summary = by_service
                .entry(&instance.service)
                .or_insert_with(|| ServiceSummary {
                    name: instance.service.clone(),
                    passing: 0,
                    total: 0,
                    versions: Vec::new(),
                });
            summary.total += 1;
            if instance.status == HealthStatus::Passing {
                summary.passing += 1;
            }
            if !summary.versions.contains(&instance.version) {
                summary.versions.push(instance.version.clone());
            }
        }
        by_service.into_values().collect()
    }
}

/// Output of an instance whose TTL ran out.
pub const TTL_EXPIRED: &str = "TTL expired: no heartbeat";

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(service: &str, ttl_ms: Option<u64>) -> Registration {
        Registration {
            service: service.into(),
            address: "http://127.0.0.1:9".into(),
            version: "1.0.0".into(),
            health_url: "http://127.0.0.1:9/health/ready".into(),
            ttl_ms,
            meta: BTreeMap::new(),
        }
    }

    fn catalog() -> Catalog {
        Catalog::new(
            Arc::new(Index::new(0)),
            Duration::from_secs(2),
            3,
            Duration::from_secs(10),
        )
    }

    #[test]
    fn registration_bumps_the_service_index() {
        let catalog = catalog();
        let t0 = Instant::now();
        assert_eq!(catalog.service_index("users"), 0);
        catalog.register("users-1", registration("users", None), t0);
        let first = catalog.service_index("users");
        assert!(first > 0);
        catalog.register("orders-1", registration("orders", None), t0);
        assert_eq!(
            catalog.service_index("users"),
            first,
            "other services do not move it"
        );
        assert!(catalog.deregister("users-1"));
        assert!(catalog.service_index("users") > first);
        assert!(!catalog.deregister("users-1"));
    }

    #[test]
    fn missed_ttl_turns_critical_then_heartbeat_recovers() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", Some(1000)), t0);
        catalog.expire(t0 + Duration::from_millis(900));
        assert_eq!(catalog.service("users", true).1.len(), 1);
        catalog.expire(t0 + Duration::from_millis(1100));
        assert!(catalog.service("users", true).1.is_empty());
        assert_eq!(
            catalog.service("users", false).1[0].output.as_deref(),
            Some(TTL_EXPIRED)
        );
        // A passing HTTP check does not hide a missing heartbeat.
        catalog.record_check("users-1", None, t0 + Duration::from_millis(1200));
        assert!(catalog.service("users", true).1.is_empty());
        assert_eq!(
            catalog.heartbeat("users-1", t0 + Duration::from_millis(1300)),
            Some(HealthStatus::Passing)
        );
        assert_eq!(catalog.service("users", true).1.len(), 1);
    }

    #[test]
    fn critical_for_too_long_is_removed() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", None), t0);
        catalog.record_check(
            "users-1",
            Some(CheckFailure::Unreachable("connection refused".into())),
            t0 + Duration::from_secs(2),
        );
        let (_, instances) = catalog.service("users", false);
        assert_eq!(instances[0].status, HealthStatus::Critical);
        assert!(catalog.expire(t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(
            catalog.expire(t0 + Duration::from_secs(12)),
            vec!["users-1".to_owned()]
        );
        assert!(catalog.all().is_empty());
    }

    #[test]
    fn a_good_check_brings_a_critical_instance_back() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", None), t0);
        catalog.record_check(
            "users-1",
            Some(CheckFailure::Unreachable("refused".into())),
            t0,
        );
        assert!(catalog.service("users", true).1.is_empty());
        catalog.record_check("users-1", None, t0 + Duration::from_secs(1));
        assert_eq!(catalog.service("users", true).1.len(), 1);
        assert!(catalog.expire(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn slow_answers_turn_an_instance_critical_only_when_they_keep_coming() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", None), t0);
        let slow = || Some(CheckFailure::Unhealthy("no answer within 1s".into()));
        let at = |s| t0 + Duration::from_secs(s);
        let passing = || catalog.service("users", true).1.len();
        catalog.record_check("users-1", slow(), at(2));
        catalog.record_check("users-1", slow(), at(4));
        assert_eq!(passing(), 1, "two misses in a row are not a dead instance");
        catalog.record_check("users-1", None, at(6));
        catalog.record_check("users-1", slow(), at(8));
        catalog.record_check("users-1", slow(), at(10));
        assert_eq!(passing(), 1, "a good check starts the count again");
        catalog.record_check("users-1", slow(), at(12));
        assert_eq!(passing(), 0, "the third in a row");
        let (_, instances) = catalog.service("users", false);
        assert_eq!(instances[0].output.as_deref(), Some("no answer within 1s"));
        catalog.record_check("users-1", None, at(14));
        assert_eq!(passing(), 1, "one good check brings it back");
    }

    #[test]
    fn first_check_waits_one_interval() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", None), t0);
        assert!(catalog.due_checks(t0).is_empty());
        let due = catalog.due_checks(t0 + Duration::from_secs(2));
        assert_eq!(due.len(), 1);
        assert!(
            catalog.due_checks(t0 + Duration::from_secs(3)).is_empty(),
            "in progress"
        );
    }

    #[test]
    fn summaries_count_passing_and_versions() {
        let catalog = catalog();
        let t0 = Instant::now();
        catalog.register("users-1", registration("users", None), t0);
        let mut canary = registration("users", None);
        canary.version = "1.1.0".into();
        catalog.register("users-2", canary, t0);
        catalog.record_check(
            "users-2",
            Some(CheckFailure::Unreachable("down".into())),
            t0,
        );
        let services = catalog.services();
        assert_eq!(services.len(), 1);
        assert_eq!((services[0].passing, services[0].total), (1, 2));
        assert_eq!(
            services[0].versions,
            vec!["1.0.0".to_owned(), "1.1.0".to_owned()]
        );
    }
}

//! Traffic policies: which version of a service a request goes to.
//!
//! Each service may have a [`TrafficPolicy`] in the registry's KV store (`traffic/<service>`);
//! the gateway watches the whole prefix and swaps in the new set at once, so a change applies
//! to the next request while requests in flight finish where they were sent. Without a policy a
//! service's instances all take traffic, whatever their versions.
//!
//! A request goes to the candidate with the policy's weight, decided per request, or per user
//! with `sticky: user` (a user's bucket, 0 to 99, is a hash of the user id: a user on the
//! candidate at 5 % stays there at 25 %). The `x-bazaar-canary` header overrides both:
//! `candidate` (or `always`) and `stable` (or `never`); smoke checks of a release use it. When
//! the chosen side has no instance the other side serves: a policy never turns a working service
//! into an outage.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chassis::discovery::Endpoint;
use contracts::discovery::KvEntry;
use contracts::release::{Stickiness, TRAFFIC_PREFIX, TrafficPolicy};
use http::HeaderValue;

/// Which version a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The policy's stable version.
    Stable,
    /// The policy's candidate version.
    Candidate,
}

/// The traffic policies of every service that has one.
#[derive(Debug, Default)]
pub struct Policies {
    by_service: RwLock<Arc<HashMap<String, Arc<TrafficPolicy>>>>,
}

impl Policies {
    /// The policy of `service`, if it has one.
    pub fn get(&self, service: &str) -> Option<Arc<TrafficPolicy>> {
        let map = self
            .by_service
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.is_empty() {
            return None;
        }
        map.get(service).cloned()
    }

    /// Replaces every policy with those stored under `traffic/`. A policy that does not parse
    /// or validate is logged and its service keeps the policy it had.
    pub fn replace(&self, entries: &[KvEntry]) -> Vec<(String, Arc<TrafficPolicy>)> {
        let previous = Arc::clone(
            &self
                .by_service
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut next = HashMap::new();
        for entry in entries {
            let Some(service) = entry.key.strip_prefix(TRAFFIC_PREFIX) else {
                continue;
            };
            let parsed = serde_json::from_str::<TrafficPolicy>(&entry.value)
                .map_err(|e| e.to_string())
                .and_then(|policy| policy.validate().map(|()| policy));
            match parsed {
                Ok(policy) => {
                    next.insert(service.to_owned(), Arc::new(policy));
                }
                Err(error) => {
                    tracing::warn!(key = %entry.key, %error, "ignoring an invalid traffic policy");
                    if let Some(kept) = previous.get(service) {
                        next.insert(service.to_owned(), Arc::clone(kept));
                    }
                }
            }
        }
        for (service, policy) in &next {
            if previous.get(service) != Some(policy) {
                tracing::info!(
                    %service,
                    stable = %policy.stable,
                    candidate = policy.candidate.as_deref().unwrap_or("-"),
                    weight = policy.weight,
                    "traffic policy applied"
                );
            }
        }
        for service in previous.keys().filter(|s| !next.contains_key(*s)) {
            tracing::info!(%service, "traffic policy removed; every instance takes traffic");
        }
        let mut applied: Vec<_> = next
            .iter()
            .map(|(service, policy)| (service.clone(), Arc::clone(policy)))
            .collect();
        applied.sort_by(|a, b| a.0.cmp(&b.0));
        *self
            .by_service
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(next);
        applied
    }
}

/// The side a request goes to: the header's choice, else the user's bucket (sticky policies),
/// else a fresh draw; `random` is a number from 0 to 99.
pub fn choose(
    policy: &TrafficPolicy,
    user_id: Option<&str>,
    header: Option<&HeaderValue>,
    random: u8,
) -> Side {
    if policy.candidate.is_none() {
        return Side::Stable;
    }
    match header.map(HeaderValue::as_bytes) {
        Some(b"candidate" | b"always") => return Side::Candidate,
        Some(b"stable" | b"never") => return Side::Stable,
        _ => {}
    }
    let bucket = match (policy.sticky, user_id) {
        (Stickiness::User, Some(user)) => bucket(user),
        _ => random,
    };
    if bucket < policy.weight {
        Side::Candidate
    } else {
        Side::Stable
    }
}

/// The instances of `side`; when it has none, those of the other side. Stable instances are
/// those of the stable version; when none runs (the policy names a version that is gone),
/// every instance that is not the candidate's.
pub fn instances(
    peers: &[Arc<Endpoint>],
    policy: &TrafficPolicy,
    side: Side,
) -> Vec<Arc<Endpoint>> {
    let candidate = policy.candidate.as_deref();
    let of_candidate = |e: &&Arc<Endpoint>| candidate == Some(e.version.as_str());
    let candidates = || {
        peers
            .iter()
            .filter(of_candidate)
            .cloned()
            .collect::<Vec<_>>()
    };
    let stables = || {
        let exact: Vec<_> = peers
            .iter()
            .filter(|e| e.version == policy.stable)
            .cloned()
            .collect();
        if exact.is_empty() {
            peers.iter().filter(|e| !of_candidate(e)).cloned().collect()
        } else {
            exact
        }
    };
    let chosen = match side {
        Side::Candidate => candidates(),
        Side::Stable => stables(),
    };
    if !chosen.is_empty() {
        return chosen;
    }
    match side {
        Side::Candidate => stables(),
        Side::Stable => candidates(),
    }
}

/// A user's bucket, 0 to 99: FNV-1a of the id, the same in every gateway and every release.
fn bucket(user_id: &str) -> u8 {
    let hash = user_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    u8::try_from(hash % 100).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn policy(weight: u8, sticky: Stickiness) -> TrafficPolicy {
        TrafficPolicy {
            stable: "1.0".into(),
            candidate: Some("2.0".into()),
            weight,
            sticky,
        }
    }

    fn peers(versions: &[&str]) -> Vec<Arc<Endpoint>> {
        let epoch = Instant::now();
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Arc::new(Endpoint::new(
                    format!("svc-{i}"),
                    format!("http://127.0.0.1:{}", 9000 + i),
                    (*v).to_owned(),
                    epoch,
                ))
            })
            .collect()
    }

    fn versions(endpoints: &[Arc<Endpoint>]) -> Vec<&str> {
        endpoints.iter().map(|e| e.version.as_str()).collect()
    }

    #[test]
    fn the_weight_is_the_candidates_share_of_draws() {
        let p = policy(25, Stickiness::None);
        let candidates = (0..100)
            .filter(|&r| choose(&p, None, None, r) == Side::Candidate)
            .count();
        assert_eq!(candidates, 25);
        assert_eq!(
            choose(&policy(0, Stickiness::None), None, None, 0),
            Side::Stable
        );
        assert_eq!(
            choose(&policy(100, Stickiness::None), None, None, 99),
            Side::Candidate
        );
        let no_candidate = TrafficPolicy::stable("1.0");
        assert_eq!(choose(&no_candidate, None, None, 0), Side::Stable);
    }

    #[test]
    fn the_header_overrides_the_weight() {
        let p = policy(0, Stickiness::None);
        for (value, side) in [
            ("candidate", Side::Candidate),
            ("always", Side::Candidate),
            ("stable", Side::Stable),
            ("never", Side::Stable),
        ] {
            let header = HeaderValue::from_static(value);
            assert_eq!(choose(&p, None, Some(&header), 0), side, "{value}");
        }
        let p = policy(100, Stickiness::None);
        assert_eq!(
            choose(&p, None, Some(&HeaderValue::from_static("never")), 0),
            Side::Stable
        );
    }

    #[test]
    fn sticky_users_keep_their_side_and_stay_on_the_candidate_as_it_grows() {
        let users: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
        let on_candidate = |weight| -> Vec<&String> {
            let p = policy(weight, Stickiness::User);
            users
                .iter()
                .filter(|u| (0..20).all(|r| choose(&p, Some(u), None, r * 5) == Side::Candidate))
                .collect()
        };
        let at_5 = on_candidate(5);
        let at_25 = on_candidate(25);
        assert!((20..=90).contains(&at_5.len()), "{}", at_5.len());
        assert!((170..=330).contains(&at_25.len()), "{}", at_25.len());
        assert!(at_5.iter().all(|u| at_25.contains(u)));
    }

    #[test]
    fn instances_follow_the_side_and_fall_back_when_it_has_none() {
        let mixed = peers(&["1.0", "2.0", "1.0", "0.9"]);
        let p = policy(50, Stickiness::None);
        assert_eq!(versions(&instances(&mixed, &p, Side::Candidate)), ["2.0"]);
        assert_eq!(
            versions(&instances(&mixed, &p, Side::Stable)),
            ["1.0", "1.0"]
        );

        let stable_gone = peers(&["0.9", "2.0"]);
        assert_eq!(
            versions(&instances(&stable_gone, &p, Side::Stable)),
            ["0.9"]
        );
        let candidate_gone = peers(&["1.0"]);
        assert_eq!(
            versions(&instances(&candidate_gone, &p, Side::Candidate)),
            ["1.0"]
        );
        let only_candidate = peers(&["2.0"]);
        assert_eq!(
            versions(&instances(&only_candidate, &p, Side::Stable)),
            ["2.0"]
        );
    }

    #[test]
    fn invalid_policies_keep_the_previous_one() {
        let policies = Policies::default();
        let entry = |key: &str, value: &str| KvEntry {
            key: key.into(),
            value: value.into(),
            create_index: 1,
            modify_index: 1,
        };
        policies.replace(&[entry("traffic/catalog", r#"{"stable":"1.0"}"#)]);
        assert_eq!(
            policies.get("catalog").map(|p| p.stable.clone()),
            Some("1.0".into())
        );
        policies.replace(&[entry("traffic/catalog", r#"{"stable":"1.0","weight":300}"#)]);
        assert_eq!(policies.get("catalog").map(|p| p.weight), Some(0));
        policies.replace(&[]);
        assert!(policies.get("catalog").is_none());
    }
}

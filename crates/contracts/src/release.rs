//! Releases: the traffic policy that splits a service between two versions, and the fault rules
//! that make instances misbehave on purpose. Both live in the registry's KV store as JSON, under
//! [`TRAFFIC_PREFIX`] and [`FAULTS_PREFIX`]; gateways and services watch them.

use serde::{Deserialize, Serialize};

/// KV prefix of traffic policies: `traffic/<service>`.
pub const TRAFFIC_PREFIX: &str = "traffic/";
/// KV prefix of fault rules: `faults/<name>`.
pub const FAULTS_PREFIX: &str = "faults/";
/// Request header that picks a version at the gateway: `candidate` (or `always`) sends the
/// request to the candidate, `stable` (or `never`) to the stable version, whatever the weight.
pub const CANARY_HEADER: &str = "x-bazaar-canary";

/// The KV key of `service`'s traffic policy.
pub fn traffic_key(service: &str) -> String {
    format!("{TRAFFIC_PREFIX}{service}")
}

/// The KV key of the fault rule `name`.
pub fn fault_key(name: &str) -> String {
    format!("{FAULTS_PREFIX}{name}")
}

/// Checks a name a person chooses (a version label, a fault rule's name): 1 to `max` letters,
/// digits, `.`, `_` or `-`, so it fits in a KV key and an instance id as it is.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1 to {max} letters, digits, '.', '_' or '-'"
        ))
    }
}

/// How a service's requests are split between its stable and its candidate version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// The version that takes the traffic the candidate does not.
    pub stable: String,
    /// The version being released, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Percentage of requests (0 to 100) the candidate receives.
    #[serde(default)]
    pub weight: u8,
    /// What keeps a caller on one version as the weight changes.
    #[serde(default)]
    pub sticky: Stickiness,
}

impl TrafficPolicy {
    /// All traffic to `version`.
    pub fn stable(version: impl Into<String>) -> Self {
        Self {
            stable: version.into(),
            candidate: None,
            weight: 0,
            sticky: Stickiness::None,
        }
    }

    /// Checks the fields a JSON document can get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.stable.trim().is_empty() {
            return Err("stable must name a version".into());
        }
        if self.weight > 100 {
            return Err(format!("weight must be 0 to 100, not {}", self.weight));
        }
        match &self.candidate {
            Some(candidate) if candidate.trim().is_empty() => {
                Err("candidate must name a version".into())
            }
            Some(candidate) if *candidate == self.stable => {
                Err(format!("candidate and stable are both {candidate}"))
            }
            None if self.weight > 0 => {
                Err(format!("weight {} needs a candidate version", self.weight))
            }
            _ => Ok(()),
        }
    }
}

/// What keeps a caller on one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stickiness {
    /// Every request is weighed on its own.
    #[default]
    None,
    /// A signed-in user always lands on the same side for a given weight, and stays on the
    /// candidate as its weight grows (anonymous requests are weighed on their own).
    User,
}

/// A fault the instances it matches inject into their own requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// Service whose instances inject it.
    pub service: String,
    /// Only instances of this version; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Only requests whose path starts with this; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Share of requests (0 to 1) answered with `status` instead of being handled.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error_rate: f64,
    /// Status of injected errors (500 to 599).
    #[serde(default = "default_status")]
    pub status: u16,
    /// Milliseconds added before handling.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub delay_ms: u64,
    /// Share of requests (0 to 1) delayed by `delay_ms`.
    #[serde(default = "one")]
    pub delay_rate: f64,
    /// Share of requests (0 to 1) whose connection is dropped without an answer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drop_rate: f64,
}

impl FaultRule {
    /// A rule for `service` that does nothing yet.
    pub fn for_service(service: impl Into<String>) -> Self {
        Self {
            service: service.into(),
            version: None,
            route: None,
            error_rate: 0.0,
            status: default_status(),
            delay_ms: 0,
            delay_rate: one(),
            drop_rate: 0.0,
        }
    }

    /// Checks the fields a JSON document or a command line can get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.service.trim().is_empty() {
            return Err("service must name a service".into());
        }
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("delay_rate", self.delay_rate),
            ("drop_rate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, not {rate}"));
            }
        }
        if !(500..=599).contains(&self.status) {
            return Err(format!(
                "status must be a server error (500 to 599), not {}",
                self.status
            ));
        }
        if self.delay_ms > 60_000 {
            return Err(format!(
                "delay_ms must be at most 60000 (a minute), not {}",
                self.delay_ms
            ));
        }
        if self.route.as_ref().is_some_and(|r| !r.starts_with('/')) {
            return Err("route must be a path starting with /".into());
        }
        if self.error_rate == 0.0 && self.drop_rate == 0.0 && self.delay_ms == 0 {
            return Err("the rule injects nothing: set error_rate, drop_rate or delay_ms".into());
        }
        Ok(())
    }

    /// Whether an instance of `service` at `version` injects this rule into a request for `path`.
    pub fn applies(&self, service: &str, version: &str, path: &str) -> bool {
        self.service == service
            && self.version.as_deref().is_none_or(|v| v == version)
            && self.route.as_deref().is_none_or(|r| path.starts_with(r))
    }
}

fn default_status() -> u16 {
    500
}

fn one() -> f64 {
    1.0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(rate: &f64) -> bool {
    *rate == 0.0
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero_u64(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_checked() {
        assert!(TrafficPolicy::stable("1.0").validate().is_ok());
        let canary = TrafficPolicy {
            stable: "1.0".into(),
            candidate: Some("1.1".into()),
            weight: 25,
            sticky: Stickiness::User,
        };
        assert!(canary.validate().is_ok());
        for (bad, why) in [
            (
                TrafficPolicy {
                    weight: 101,
                    ..canary.clone()
                },
                "0 to 100",
            ),
            (
                TrafficPolicy {
                    candidate: None,
                    ..canary.clone()
                },
                "needs a candidate",
            ),
            (
                TrafficPolicy {
                    candidate: Some("1.0".into()),
                    ..canary.clone()
                },
                "both 1.0",
            ),
            (
                TrafficPolicy {
                    stable: " ".into(),
                    ..canary.clone()
                },
                "stable must",
            ),
        ] {
            let error = bad.validate().expect_err("refused");
            assert!(error.contains(why), "{error}");
        }
        let parsed: TrafficPolicy = serde_json::from_str(
            r#"{"stable":"1.0","candidate":"1.1","weight":5,"sticky":"user"}"#,
        )
        .expect("parses");
        assert_eq!(parsed.sticky, Stickiness::User);
        assert!(serde_json::from_str::<TrafficPolicy>(r#"{"stable":"1","wieght":5}"#).is_err());
    }

    #[test]
    fn fault_rules_are_checked_and_scoped() {
        let mut rule = FaultRule::for_service("payments");
        assert!(
            rule.validate()
                .expect_err("empty")
                .contains("injects nothing")
        );
        rule.error_rate = 0.2;
        assert!(rule.validate().is_ok());
        rule.status = 404;
        assert!(rule.validate().expect_err("status").contains("500 to 599"));
        rule.status = 503;
        rule.drop_rate = 1.5;
        assert!(rule.validate().expect_err("rate").contains("drop_rate"));
        rule.drop_rate = 0.0;
        rule.route = Some("charges".into());
        assert!(rule.validate().is_err());
        rule.route = Some("/charges".into());
        rule.version = Some("2.0".into());
        assert!(rule.applies("payments", "2.0", "/charges/1"));
        assert!(!rule.applies("payments", "1.0", "/charges/1"));
        assert!(!rule.applies("payments", "2.0", "/refunds"));
        assert!(!rule.applies("orders", "2.0", "/charges"));
        let parsed: FaultRule =
            serde_json::from_str(r#"{"service":"payments","error_rate":0.5}"#).expect("parses");
        assert_eq!((parsed.status, parsed.delay_rate), (500, 1.0));
    }
}

//! The registry's wire types: what instances send when they register, and what queries return.
//!
//! The registry API (`platform/registry`) serves these under `/v1/`; the chassis discovery
//! client consumes them. Blocking queries return the registry's index in the body and in the
//! [`INDEX_HEADER`] header; a client passes it back as `?index=` to wait for the next change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Shortest TTL an instance may ask for.
pub const MIN_TTL_MS: u64 = 100;
/// Longest TTL an instance may ask for (one hour).
pub const MAX_TTL_MS: u64 = 3_600_000;
/// Longest KV key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Largest KV value, in bytes.
pub const MAX_VALUE_LEN: usize = 512 * 1024;

/// Response header carrying the registry index a blocking query can wait on.
pub const INDEX_HEADER: &str = "x-bazaar-index";

/// An instance announcing itself (`PUT /v1/instances/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Service name, such as `users`: lowercase letters, digits and `-`.
    pub service: String,
    /// Base URL the instance serves on, such as `http://127.0.0.1:7711`.
    pub address: String,
    /// Version of the code the instance runs; traffic policies split by it.
    pub version: String,
    /// URL the registry polls; any 2xx answer is healthy.
    pub health_url: String,
    /// How long the registry waits for a heartbeat before marking the instance critical.
    /// `None` disables the TTL check and relies on the HTTP check alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
    /// Free-form labels (`pid`, `zone`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

/// Health of an instance as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Answering its health check and heartbeating: receives traffic.
    Passing,
    /// Failed its health check or missed its TTL: receives no traffic, removed if it stays so.
    Critical,
}

/// A registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique id of the instance, such as `users-1`.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Base URL.
    pub address: String,
    /// Version of the code the instance runs.
    pub version: String,
    /// URL the registry polls.
    pub health_url: String,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
    /// Current health.
    pub status: HealthStatus,
    /// Why the instance is critical, or the last check's outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// When it (last) registered.
    pub registered_at: DateTime<Utc>,
}

/// Answer to `GET /v1/services/{service}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInstances {
    /// Service name.
    pub service: String,
    /// Index of the last change to this service; pass it back as `?index=` to wait for the next.
    pub index: u64,
    /// Instances that match the query (only passing ones unless `?passing=false`).
    pub instances: Vec<Instance>,
}

/// Answer to `GET /v1/instances`: every instance of every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceList {
    /// Registry index at the time of the answer.
    pub index: u64,
    /// All instances, ordered by service and id.
    pub instances: Vec<Instance>,
}

/// One service in `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Instances currently passing.
    pub passing: usize,
    /// Instances registered, passing or not.
    pub total: usize,
    /// Distinct versions among the instances.
    pub versions: Vec<String>,
}

/// Answer to `GET /v1/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    /// Registry index at the time of the answer.
    pub index: u64,
    /// Services ordered by name.
    pub services: Vec<ServiceSummary>,
}

/// A key in the registry's key-value store (`GET /v1/kv/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The key, a `/`-separated path.
    pub key: String,
    /// The value, UTF-8 text (traffic policies are JSON documents).
    pub value: String,
    /// Index at which the key was created.
    pub create_index: u64,
    /// Index of the last write; pass it as `?cas=` to update only if nobody wrote since.
    pub modify_index: u64,
}

/// Answer to a KV write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvWrite {
    /// Index of the write.
    pub index: u64,
}

/// Answer to `GET /v1/kv?prefix=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvList {
    /// Index of the last change under the prefix; pass it back as `?index=` to wait for the next.
    pub index: u64,
    /// The keys under the prefix, in key order.
    pub entries: Vec<KvEntry>,
}

/// Checks a KV key: `/`-separated segments of letters, digits, `.`, `_` and `-`. Every
/// backend of the registry role holds keys to this rule.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("must be 1 to {MAX_KEY_LEN} bytes long"));
    }
    let valid_segment = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if key.split('/').all(valid_segment) {
        Ok(())
    } else {
        Err("must be /-separated, non-empty segments of letters, digits, '.', '_' and '-'".into())
    }
}

/// What is wrong with registering instance `id` as `registration`, field by field (empty
/// when nothing is). Every backend of the registry role holds registrations to these rules.
pub fn registration_problems(id: &str, registration: &Registration) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let mut check = |field, result: Result<(), String>| {
        if let Err(reason) = result {
            problems.push((field, reason));
        }
    };
    check("id", check_name(id, 128));
    check("service", check_service(&registration.service));
    check("address", check_url(&registration.address));
    check("health_url", check_url(&registration.health_url));
    let version = &registration.version;
    if version.is_empty()
        || version.len() > 64
        || version.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        check(
            "version",
            Err("must be 1 to 64 characters without spaces".into()),
        );
    }
    if registration
        .ttl_ms
        .is_some_and(|ttl| !(MIN_TTL_MS..=MAX_TTL_MS).contains(&ttl))
    {
        check(
            "ttl_ms",
            Err(format!("must be between {MIN_TTL_MS} and {MAX_TTL_MS}")),
        );
    }
    if registration.meta.len() > 32
        || registration
            .meta
            .iter()
            .any(|(k, val)| k.is_empty() || k.len() > 64 || val.len() > 512)
    {
        check(
            "meta",
            Err("at most 32 entries, keys of 1 to 64 bytes, values up to 512 bytes".into()),
        );
    }
    problems
}

fn check_name(name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1 to {max} letters, digits, '-', '_' or '.'"
        ))
    }
}

fn check_service(name: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err("must be lowercase letters, digits and '-', starting with a letter".into())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(authority)) if !authority.host().is_empty() => Ok(()),
        _ => Err(format!("{url:?} is not an absolute http(s) URL")),
    }
}

#[cfg(test)]
mod rules {
    use super::*;

    #[test]
    fn keys_are_paths_of_safe_segments() {
        assert!(check_key("traffic/users").is_ok());
        assert!(check_key("faults/payments/v1.2_x-y").is_ok());
        for bad in [
            "",
            "/leading",
            "trailing/",
            "double//slash",
            "space here",
            "ünïcode",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[test]
    fn every_bad_field_of_a_registration_is_named() {
        let good = Registration {
            service: "users".into(),
            address: "http://127.0.0.1:7711".into(),
            version: "0.1.0".into(),
            health_url: "http://127.0.0.1:7711/health/ready".into(),
            ttl_ms: Some(10_000),
            meta: BTreeMap::new(),
        };
        assert!(registration_problems("users-1", &good).is_empty());
        let bad = Registration {
            service: "Users!".into(),
            address: "not a url".into(),
            version: "".into(),
            health_url: "ftp://x/y".into(),
            ttl_ms: Some(5),
            meta: BTreeMap::new(),
        };
        let fields: Vec<&str> = registration_problems("bad id", &bad)
            .into_iter()
            .map(|(field, _)| field)
            .collect();
        assert_eq!(
            fields,
            [
                "id",
                "service",
                "address",
                "health_url",
                "version",
                "ttl_ms"
            ]
        );
    }
}

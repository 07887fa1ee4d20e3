//! The registry's wire types: what instances send when they register, and what queries return.
//!
//! The registry API (`platform/registry`) serves these under `/v1/`; the chassis discovery
//! client consumes them. Blocking queries return the registry's index in the body and in the
//! [`INDEX_HEADER`] header; a client passes it back as `?index=` to wait for the next change.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

//! The registry's HTTP API, under `/v1/`.
//!
//! | route | what |
//! |---|---|
//! | `PUT /v1/instances/{id}` | register (or replace) an instance |
//! | `DELETE /v1/instances/{id}` | deregister |
//! | `PUT /v1/instances/{id}/heartbeat` | renew the TTL (404: register again) |
//! | `GET /v1/instances` | every instance, any health |
//! | `GET /v1/services` | services with instance counts and versions |
//! | `GET /v1/services/{service}?passing&index&wait` | instances of a service; blocking |
//! | `GET /v1/prometheus/targets` | every instance as Prometheus HTTP service discovery |
//! | `GET /v1/kv?prefix=` | keys under a prefix |
//! | `GET /v1/kv/{key}?index&wait` | a key; blocking |
//! | `PUT /v1/kv/{key}?cas=` | write a key (check-and-set with `cas`) |
//! | `DELETE /v1/kv/{key}?cas=` | delete a key |

pub mod instances;
pub mod kv;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, put};
use chassis::HttpError;
use chassis::authz::{OPERATOR, callers};
use contracts::discovery::INDEX_HEADER;
use http::HeaderValue;
use serde::Deserialize;

use crate::catalog::Catalog;
use crate::kv::KvStore;

/// Wait used when a blocking query gives an index but no `wait`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Registered instances.
    pub catalog: Arc<Catalog>,
    /// Keys.
    pub kv: Arc<KvStore>,
    /// Longest `wait` a blocking query may ask for.
    pub max_wait: Duration,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar registry",
        description = "Instances, their health, blocking queries and a KV store of traffic policies and fault rules."
    ),
    paths(
        instances::register,
        instances::deregister,
        instances::heartbeat,
        instances::list,
        instances::prometheus_targets,
        instances::services,
        instances::service,
        kv::list,
        kv::get,
        kv::put,
        kv::delete
    )
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    // Any service of the CA reads, and registers itself (the handlers hold a service to its
    // own name); only the operator changes traffic policies and fault rules.
    let changes = Router::new()
        .route("/v1/kv/{*key}", put(kv::put).delete(kv::delete))
        .route_layer(callers(&[OPERATOR]));
    Router::new()
        .route("/v1/instances", get(instances::list))
        .route(
            "/v1/instances/{id}",
            put(instances::register).delete(instances::deregister),
        )
        .route("/v1/instances/{id}/heartbeat", put(instances::heartbeat))
        .route("/v1/services", get(instances::services))
        .route("/v1/prometheus/targets", get(instances::prometheus_targets))
        .route("/v1/services/{service}", get(instances::service))
        .route("/v1/kv", get(kv::list))
        .route("/v1/kv/{*key}", get(kv::get))
        .merge(changes)
        .with_state(state)
}

/// `?index=&wait=` of a blocking query.
#[derive(Debug, Default, Deserialize)]
pub struct Blocking {
    /// Return once the watched thing's index differs from this.
    pub index: Option<u64>,
    /// Longest time to hold the request (`30s`, `500ms`).
    pub wait: Option<String>,
}

impl Blocking {
    /// How long to wait, if this is a blocking query at all.
    pub fn wait(&self, max: Duration) -> Result<Option<(u64, Duration)>, HttpError> {
        let Some(index) = self.index else {
            return Ok(None);
        };
        let wait = match &self.wait {
            None => DEFAULT_WAIT,
            Some(text) => humantime::parse_duration(text).map_err(|e| {
                HttpError::bad_request(format!("wait={text:?} is not a duration: {e}"))
            })?,
        };
        Ok(Some((index, wait.min(max))))
    }
}

/// The index header every read answer carries.
pub fn index_header(index: u64) -> [(http::HeaderName, HeaderValue); 1] {
    [(
        http::HeaderName::from_static(INDEX_HEADER),
        HeaderValue::from(index),
    )]
}

//! Instance registration and queries.

use std::time::Instant;

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chassis::HttpError;
use chassis::authz::OPERATOR;
use chassis::error::Validation;
use chassis::extract::{Json, Path, Query};
use chassis::mtls::CallerService;
use chassis::server::middleware::Quiet;
use contracts::discovery::{InstanceList, Registration, ServiceInstances, ServiceList};
use contracts::problem::Problem;
use http::StatusCode;
use serde::Deserialize;

use super::{AppState, Blocking, index_header};

/// Over mTLS a service registers, renews and removes only instances of itself; the operator
/// any (a request without a calling service came over a listener without mTLS).
fn may_act_for(caller: Option<&CallerService>, service: &str) -> Result<(), HttpError> {
    match caller {
        Some(caller) if caller.name() != service && caller.name() != OPERATOR => {
            tracing::warn!(
                caller = caller.name(),
                service,
                "refused a service acting for instances of another"
            );
            Err(HttpError::forbidden(format!(
                "{} may not register, renew or remove instances of {service}",
                caller.name()
            ))
            .with_slug("forbidden-caller"))
        }
        _ => Ok(()),
    }
}

/// `PUT /v1/instances/{id}`.
#[utoipa::path(put, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path, description = "The instance's id")),
    request_body(content = Object, description = "service, address, version, health_url, ttl_ms, meta"),
    responses(
        (status = 200, description = "Registered", body = Object),
        (status = 403, description = "A service registers only itself", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn register(
    State(state): State<AppState>,
    caller: Option<Extension<CallerService>>,
    Path(id): Path<String>,
    Json(registration): Json<Registration>,
) -> Result<Response, HttpError> {
    validate(&id, &registration)?;
    may_act_for(caller.as_deref(), &registration.service)?;
    if let Some(previous) = state.catalog.service_of(&id) {
        may_act_for(caller.as_deref(), &previous)?;
    }
    let instance = state.catalog.register(&id, registration, Instant::now());
    tracing::info!(instance_id = %id, service_name = %instance.service, address = %instance.address, service_version = %instance.version, "registered");
    Ok(Json(instance).into_response())
}

/// `DELETE /v1/instances/{id}`.
#[utoipa::path(delete, path = "/v1/instances/{id}", tag = "instances", params(("id" = String, Path, description = "The instance's id")),
    responses(
        (status = 204, description = "Gone"),
        (status = 403, description = "A service removes only itself", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn deregister(
    State(state): State<AppState>,
    caller: Option<Extension<CallerService>>,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    if let Some(service) = state.catalog.service_of(&id) {
        may_act_for(caller.as_deref(), &service)?;
    }
    if state.catalog.deregister(&id) {
        tracing::info!(instance_id = %id, "deregistered");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(HttpError::not_found(format!("no instance {id:?}")))
    }
}

/// `PUT /v1/instances/{id}/heartbeat`.
#[utoipa::path(put, path = "/v1/instances/{id}/heartbeat", tag = "instances", params(("id" = String, Path, description = "The instance's id")),
    responses(
        (status = 200, description = "The instance's health", body = Object),
        (status = 403, description = "A service renews only itself", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown: register again", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Option<Extension<CallerService>>,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    if let Some(service) = state.catalog.service_of(&id) {
        may_act_for(caller.as_deref(), &service)?;
    }
    match state.catalog.heartbeat(&id, Instant::now()) {
        Some(status) => {
            let mut response = Json(serde_json::json!({ "status": status })).into_response();
            response.extensions_mut().insert(Quiet);
            Ok(response)
        }
        None => Err(HttpError::not_found(format!(
            "no instance {id:?}; register again"
        ))),
    }
}

/// `GET /v1/instances`.
#[utoipa::path(get, path = "/v1/instances", tag = "instances",
    responses((status = 200, description = "Every instance", body = Object)))]
pub async fn list(State(state): State<AppState>) -> Response {
    let index = state.kv.index().current();
    (
        index_header(index),
        Json(InstanceList {
            index,
            instances: state.catalog.all(),
        }),
    )
        .into_response()
}

/// `GET /v1/prometheus/targets`: every instance as a target group of Prometheus's HTTP
/// service discovery (`http_sd_configs`), so replicas and release instances are scraped as
/// they come and go. Each is labelled with its `service`, `version` and `instance_id`; one that
/// is down stays listed until it is removed, so its `up` shows 0 meanwhile.
#[utoipa::path(get, path = "/v1/prometheus/targets", tag = "instances",
    responses((status = 200, description = "Prometheus HTTP service discovery target groups", body = Vec<Object>)))]
pub async fn prometheus_targets(State(state): State<AppState>) -> Json<Vec<serde_json::Value>> {
    let groups = state
        .catalog
        .all()
        .into_iter()
        .filter_map(|instance| {
            let (scheme, rest) = instance.address.split_once("://")?;
            let host_port = rest.split('/').next().filter(|h| !h.is_empty())?;
            Some(serde_json::json!({
                "targets": [host_port],
                "labels": {
                    "__scheme__": scheme,
                    "service": instance.service,
                    "version": instance.version,
                    "instance_id": instance.id,
                },
            }))
        })
        .collect();
    Json(groups)
}

/// `GET /v1/services`.
#[utoipa::path(get, path = "/v1/services", tag = "services",
    responses((status = 200, description = "Every service, with its instance counts", body = Object)))]
pub async fn services(State(state): State<AppState>) -> Response {
    let index = state.kv.index().current();
    (
        index_header(index),
        Json(ServiceList {
            index,
            services: state.catalog.services(),
        }),
    )
        .into_response()
}

/// Query of `GET /v1/services/{service}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// Only passing instances (the default).
    #[serde(default = "yes")]
    passing: bool,
    /// See [`Blocking`]; not flattened, since flattening turns numbers into strings.
    index: Option<u64>,
    wait: Option<String>,
}

fn yes() -> bool {
    true
}

/// `GET /v1/services/{service}`: blocks while the service's index equals `?index`.
#[utoipa::path(get, path = "/v1/services/{service}", tag = "services",
    params(("service" = String, Path, description = "The service"), ServiceQuery),
    responses((status = 200, description = "Its instances (a blocking query with index and wait)", body = Object)))]
pub async fn service(
    State(state): State<AppState>,
    Path(service): Path<String>,
    Query(query): Query<ServiceQuery>,
) -> Result<Response, HttpError> {
    let blocking = Blocking {
        index: query.index,
        wait: query.wait,
    };
    if let Some((index, wait)) = blocking.wait(state.max_wait)? {
        let catalog = &state.catalog;
        state
            .kv
            .index()
            .wait_until(wait, || catalog.service_index(&service) != index)
            .await;
    }
    let (index, instances) = state.catalog.service(&service, query.passing);
    let mut response = (
        index_header(index),
        Json(ServiceInstances {
            service,
            index,
            instances,
        }),
    )
        .into_response();
    // Every process watches the services it calls; those polls are not news.
    response.extensions_mut().insert(Quiet);
    Ok(response)
}

/// Checks a registration field by field (the rules every backend of the registry role keeps).
fn validate(id: &str, registration: &Registration) -> Result<(), HttpError> {
    let mut v = Validation::new();
    for (field, reason) in contracts::discovery::registration_problems(id, registration) {
        v.add(field, reason);
    }
    v.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration() -> Registration {
        Registration {
            service: "users".into(),
            address: "http://127.0.0.1:7711".into(),
            version: "0.1.0".into(),
            health_url: "http://127.0.0.1:7711/health/ready".into(),
            ttl_ms: Some(10_000),
            meta: Default::default(),
        }
    }

    #[test]
    fn accepts_a_well_formed_registration() {
        assert!(validate("users-1", &registration()).is_ok());
    }

    #[test]
    fn names_every_bad_field() {
        let bad = Registration {
            service: "Users!".into(),
            address: "not a url".into(),
            version: "".into(),
            health_url: "ftp://x/y".into(),
            ttl_ms: Some(5),
            meta: Default::default(),
        };
        let error = validate("bad id", &bad).expect_err("invalid");
        let problem = error.to_problem();
        let fields: Vec<&str> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        let rules = contracts::discovery::registration_problems("bad id", &bad);
        let expected: Vec<&str> = rules.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields, expected,
            "each broken rule is a field of the problem"
        );
        assert_eq!(fields.len(), 6);
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

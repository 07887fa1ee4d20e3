//! The operations console at `/console`, for administrators: the service map with each
//! instance's version and health, live RED per service and per version, traffic policies with
//! the state of a running release, fault rules in force, checkout sagas and recent orders,
//! recent and slowest traces (each with its waterfall), and dead letters with replay.
//!
//! Who is asking is what the gateway verified from the session cookie and passed on
//! ([`chassis::auth::Caller`]); the console never reads the token itself. Sagas and orders
//! come through the gateway with the administrator's token, like any API client's; the rest
//! from [`Ops`](crate::ops::Ops), with the storefront's own identity.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use contracts::discovery::{HealthStatus, Instance};
use contracts::release::TrafficPolicy;
use contracts::traces::{SpanStatus, Trace};
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::ops::{OpsError, Red, RedTable};
use crate::pages::AppState;
use crate::session::{Session, now_seconds, set_cookies};
use crate::shop::{Page, ShopError, encode};
use crate::views::page;

/// A session whose token is younger than this is a login that just happened.
const FRESH_LOGIN_SECONDS: i64 = 60;
/// Traces each list shows.
const TRACES_SHOWN: u32 = 8;
/// Recent orders shown.
const ORDERS_SHOWN: u32 = 10;
/// Where the services sit on the map: the edge, the shop's services, the platform.
const EDGE: [&str; 2] = ["gateway", "web"];
const PLATFORM: [&str; 2] = ["registry", "telemetry"];

/// The console's routes (under the storefront's, reached through the gateway's `/console`
/// route, which reads the session cookie).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(overview))
        .route("/console/traces/{id}", get(trace))
        .route("/console/dead-letters/{service}/{id}/replay", post(replay))
}

/// The administrator the gateway passed on, or the answer for anyone else: a signed-out
/// visitor (or one whose token lapsed and cannot be refreshed) is sent to sign in, a customer
/// is told the console is not theirs.
async fn administrator(
    state: &AppState,
    headers: &HeaderMap,
    mut session: Session,
    here: &str,
) -> Result<(chassis::auth::Caller, Session), Response> {
    match chassis::auth::Caller::from_headers(headers) {
        Ok(Some(caller)) if caller.is_admin() => Ok((caller, session)),
        Ok(Some(_)) => Err(page(
            StatusCode::FORBIDDEN,
            "error.html",
            context! {
                heading => "Administrators only",
                message => "The operations console is for administrators. Sign in with an administrator's account to use it.",
            },
        )),
        Ok(None) | Err(_) => {
            let now = now_seconds();
            // A token issued a moment ago that the gateway still did not pass on: the route
            // does not read the cookie. Signing in again would only come back here.
            let fresh = session.claims().is_some_and(|claims| {
                now - i64::try_from(claims.iat).unwrap_or(0) < FRESH_LOGIN_SECONDS
            });
            if fresh {
                tracing::warn!(
                    "the gateway passed no identity for a fresh session: does its /console route set session_cookie?"
                );
                return Err(page(
                    StatusCode::UNAUTHORIZED,
                    "error.html",
                    context! {
                        heading => "Signed in, but not here",
                        message => format!("You are signed in, but the gateway did not pass who you are on to the console. Its /console route needs session_cookie = \"{}\" (see platform/gateway/routes.toml).", crate::session::ACCESS),
                    },
                ));
            }
            // The access cookie may have expired: refresh it and come back, so the gateway
            // sees the new one. One the gateway refused (its key is gone, say) is dropped.
            let mut cookies = session.refresh_if_due(&state.shop, now).await;
            let response = if session.access.is_some() && !cookies.is_empty() {
                Redirect::to(here).into_response()
            } else {
                if session.access.is_some() {
                    cookies.extend(session.sign_out_cookies());
                }
                Redirect::to(&format!("/login?next={}", encode(here))).into_response()
            };
            let mut response = response;
            set_cookies(response.headers_mut(), cookies);
            Err(response)
        }
    }
}

/// One service on the map.
#[derive(Debug, Serialize)]
struct ServiceView {
    name: String,
    tier: &'static str,
    instances: Vec<Instance>,
    passing: usize,
    versions: Vec<String>,
    red: Option<Red>,
    /// RED of each version, when it runs more than one.
    by_version: Vec<(String, Option<Red>)>,
}

/// A traffic policy and how each of its versions is doing.
#[derive(Debug, Serialize)]
struct ReleaseView {
    service: String,
    policy: TrafficPolicy,
    /// `canary`, `blue-green` (a candidate taking no traffic yet, or all of it) or `stable`.
    state: &'static str,
    stable: VersionView,
    candidate: Option<VersionView>,
}

#[derive(Debug, Serialize)]
struct VersionView {
    version: String,
    instances: usize,
    red: Option<Red>,
}

fn tier(service: &str) -> &'static str {
    if EDGE.contains(&service) {
        "edge"
    } else if PLATFORM.contains(&service) {
        "platform"
    } else {
        "service"
    }
}

/// The service map: every service with its instances, versions and RED.
fn service_map(instances: &[Instance], red: &RedTable) -> Vec<ServiceView> {
    let mut services: Vec<ServiceView> = Vec::new();
    for instance in instances {
        match services.last_mut() {
            Some(last) if last.name == instance.service => last.instances.push(instance.clone()),
            _ => services.push(ServiceView {
                name: instance.service.clone(),
                tier: tier(&instance.service),
                instances: vec![instance.clone()],
                passing: 0,
                versions: Vec::new(),
                red: red.services.get(&instance.service).cloned(),
                by_version: Vec::new(),
            }),
        }
    }
    for service in &mut services {
        service.passing = service
            .instances
            .iter()
            .filter(|i| i.status == HealthStatus::Passing)
            .count();
        let mut versions: Vec<String> = service
            .instances
            .iter()
            .map(|i| i.version.clone())
            .collect();
        versions.sort();
        versions.dedup();
        if versions.len() > 1 {
            let of_service = red.versions.get(&service.name);
            service.by_version = versions
                .iter()
                .map(|v| (v.clone(), of_service.and_then(|by| by.get(v)).cloned()))
                .collect();
        }
        service.versions = versions;
    }
    // Edge first, then the shop's services, then the platform; by name within each.
    services.sort_by_key(|s| {
        let rank = match s.tier {
            "edge" => 0,
            "service" => 1,
            _ => 2,
        };
        (rank, s.name.clone())
    });
    services
}

/// Each traffic policy with its versions' instances and RED.
fn releases(
    policies: Vec<(String, TrafficPolicy)>,
    instances: &[Instance],
    red: &RedTable,
) -> Vec<ReleaseView> {
    let version = |service: &str, version: &str| VersionView {
        version: version.to_owned(),
        instances: instances
            .iter()
            .filter(|i| {
                i.service == service && i.version == version && i.status == HealthStatus::Passing
            })
            .count(),
        red: red
            .versions
            .get(service)
            .and_then(|by_version| by_version.get(version))
            .cloned(),
    };
    policies
        .into_iter()
        .map(|(service, policy)| {
            let state = match (&policy.candidate, policy.weight) {
                (None, _) => "stable",
                (Some(_), 0 | 100) => "blue-green",
                (Some(_), _) => "canary",
            };
            ReleaseView {
                stable: version(&service, &policy.stable),
                candidate: policy.candidate.as_deref().map(|c| version(&service, c)),
                state,
                service,
                policy,
            }
        })
        .collect()
}

/// What a part of the page could not show, said in its place.
fn unavailable(what: &str, error: &dyn std::fmt::Display) -> String {
    format!("{what} could not be read: {error}")
}

#[derive(Debug, serde::Deserialize)]
struct Notice {
    replayed: Option<String>,
    failed: Option<String>,
}

async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    axum::extract::Query(notice): axum::extract::Query<Notice>,
) -> Response {
    let (_, session) = match administrator(&state, &headers, session, "/console").await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let ops = &state.ops;
    let caller = session.caller();
    let orders_path = format!("/api/orders?page_size={ORDERS_SHOWN}");
    let (instances, policies, faults, sagas, orders) = tokio::join!(
        ops.instances(),
        ops.policies(),
        ops.faults(),
        state.shop.get::<Page<Json>>("/api/sagas", &caller),
        state.shop.get::<Page<Json>>(&orders_path, &caller),
    );
    let mut problems: Vec<String> = Vec::new();
    let instances = instances.unwrap_or_else(|error| {
        problems.push(unavailable("The registry's instances", &error));
        Vec::new()
    });
    let (red, (dead_letters, failed), recent, slowest) = tokio::join!(
        ops.red(&instances),
        ops.dead_letters(&instances),
        ops.traces(&instances, false, TRACES_SHOWN),
        ops.traces(&instances, true, TRACES_SHOWN),
    );
    problems.extend(
        failed
            .into_iter()
            .map(|reason| format!("Dead letters could not be listed: {reason}")),
    );
    let policies = policies.unwrap_or_else(|error| {
        problems.push(unavailable("Traffic policies", &error));
        Vec::new()
    });
    let faults = faults.unwrap_or_else(|error| {
        problems.push(unavailable("Fault rules", &error));
        Vec::new()
    });
    let mut traces_of = |result: Result<_, OpsError>| {
        result.unwrap_or_else(|error| {
            problems.push(unavailable("Traces", &error));
            Vec::new()
        })
    };
    let (recent, slowest) = (traces_of(recent), traces_of(slowest));
    let mut api = |what: &str, result: Result<Page<Json>, ShopError>| {
        result.map(|page| page.items).unwrap_or_else(|error| {
            problems.push(unavailable(what, &error.message()));
            Vec::new()
        })
    };
    let (sagas, orders) = (api("Sagas", sagas), api("Orders", orders));
    let notice = match (notice.replayed, notice.failed) {
        (Some(id), _) => Some(format!("Dead letter {id} was replayed and handled.")),
        (None, Some(reason)) => Some(format!("The replay failed: {reason}")),
        (None, None) => None,
    };
    let services = service_map(&instances, &red);
    let releases = releases(policies, &instances, &red);
    let faults: Vec<Json> = faults
        .into_iter()
        .map(|(name, rule)| json!({ "name": name, "rule": rule }))
        .collect();
    let interval = format!("{:.0} s", red.interval.as_secs_f64());
    let response = page(
        StatusCode::OK,
        "console.html",
        context! {
            signed_in => true,
            admin => true,
            services,
            releases,
            faults,
            recent,
            slowest,
            sagas,
            orders,
            dead_letters,
            problems,
            notice,
            interval,
            instance_count => instances.len(),
        },
    );
    no_store(response)
}

/// Console pages change by the second and are for one person: never cached.
fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// One span as a row of the waterfall.
#[derive(Debug, Serialize)]
struct SpanRow {
    service: String,
    instance: Option<String>,
    version: Option<String>,
    name: String,
    depth: usize,
    /// Offset from the trace's start and length, in percent of the trace.
    left: f64,
    width: f64,
    start_ms: f64,
    duration_ms: f64,
    error: bool,
    message: Option<String>,
}

/// The waterfall: spans depth-first, each under its parent, placed on the trace's timeline;
/// the trace's length in milliseconds.
fn waterfall(trace: &Trace) -> (Vec<SpanRow>, f64) {
    let Some((start, end)) = trace.bounds() else {
        return (Vec::new(), 0.0);
    };
    let total = (end - start).max(1) as f64;
    let rows = trace
        .tree_order()
        .into_iter()
        .map(|(depth, span)| {
            let offset = (span.start_unix_nanos - start) as f64;
            let length = span.duration_nanos() as f64;
            SpanRow {
                service: span.service.clone(),
                instance: span.instance.clone(),
                version: span.version.clone(),
                name: span.name.clone(),
                depth,
                left: offset / total * 100.0,
                width: (length / total * 100.0).max(0.3),
                start_ms: offset / 1e6,
                duration_ms: length / 1e6,
                error: span.status == SpanStatus::Error,
                message: span.status_message.clone(),
            }
        })
        .collect();
    (rows, total / 1e6)
}

async fn trace(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let here = format!("/console/traces/{}", encode(&id));
    if let Err(response) = administrator(&state, &headers, session, &here).await {
        return response;
    }
    // A trace id is 32 lowercase hex digits; anything else is not asked for.
    if !contracts::traces::is_trace_id(&id) {
        return page(
            StatusCode::NOT_FOUND,
            "error.html",
            context! { heading => "Not found", message => "A trace id is 32 lowercase hexadecimal digits." },
        );
    }
    let trace = match state.ops.instances().await {
        Ok(instances) => state.ops.trace(&instances, &id).await,
        Err(error) => Err(error),
    };
    match trace {
        Ok(trace) => {
            let (spans, total_ms) = waterfall(&trace);
            no_store(page(
                StatusCode::OK,
                "trace.html",
                context! { signed_in => true, admin => true, id, spans, total_ms },
            ))
        }
        Err(error) => {
            let (status, message) = match error.status() {
                Some(StatusCode::NOT_FOUND) => (
                    StatusCode::NOT_FOUND,
                    "The telemetry service keeps no trace with this id (old traces are dropped)."
                        .to_owned(),
                ),
                _ => {
                    tracing::warn!(%error, "a trace could not be read");
                    (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
                }
            };
            page(
                status,
                "error.html",
                context! { heading => "No trace", message },
            )
        }
    }
}

async fn replay(
    State(state): State<AppState>,
    headers: HeaderMap,
    session: Session,
    Path((service, id)): Path<(String, String)>,
) -> Response {
    let (admin, _) = match administrator(&state, &headers, session, "/console").await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let outcome = match state.ops.instances().await {
        Ok(instances) => state.ops.replay(&instances, &service, &id).await,
        Err(error) => Err(error),
    };
    tracing::info!(
        admin = %admin.user_id,
        service,
        dead_letter = id,
        replayed = outcome.is_ok(),
        "an administrator replayed a dead letter from the console"
    );
    let to = match outcome {
        Ok(()) => format!("/console?replayed={}#dead-letters", encode(&id)),
        Err(error) => format!(
            "/console?failed={}#dead-letters",
            encode(&error.to_string())
        ),
    };
    Redirect::to(&to).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use contracts::traces::{Span, SpanKind};

    use super::*;

    fn span(id: &str, parent: Option<&str>, start_ms: i64, end_ms: i64) -> Span {
        Span {
            trace_id: "t".repeat(32),
            span_id: id.to_owned(),
            parent_span_id: parent.map(str::to_owned),
            service: "svc".to_owned(),
            instance: None,
            version: None,
            name: id.to_owned(),
            kind: SpanKind::Server,
            start_unix_nanos: start_ms * 1_000_000,
            end_unix_nanos: end_ms * 1_000_000,
            status: SpanStatus::Unset,
            status_message: None,
            attributes: BTreeMap::new(),
            events: Vec::new(),
            links: Vec::new(),
        }
    }

    #[test]
    fn the_waterfall_places_spans_on_the_traces_timeline() {
        let trace = Trace {
            trace_id: "t".repeat(32),
            spans: vec![
                span("child", Some("root"), 10, 60),
                span("root", None, 0, 100),
                span("grandchild", Some("child"), 20, 30),
                span("orphan", Some("gone"), 50, 100),
            ],
        };
        let (rows, total) = waterfall(&trace);
        assert!((total - 100.0).abs() < 1e-9);
        let names: Vec<(&str, usize)> = rows.iter().map(|r| (r.name.as_str(), r.depth)).collect();
        assert_eq!(
            names,
            [("root", 0), ("child", 1), ("grandchild", 2), ("orphan", 0)]
        );
        assert!((rows[1].left - 10.0).abs() < 1e-9 && (rows[1].width - 50.0).abs() < 1e-9);
        assert!((rows[2].duration_ms - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_release_is_a_canary_while_both_versions_take_traffic() {
        let policy = |candidate: Option<&str>, weight: u8| TrafficPolicy {
            candidate: candidate.map(str::to_owned),
            weight,
            ..TrafficPolicy::stable("1.0")
        };
        let states: Vec<&str> = releases(
            vec![
                ("a".into(), policy(None, 0)),
                ("b".into(), policy(Some("2.0"), 25)),
                ("c".into(), policy(Some("2.0"), 0)),
            ],
            &[],
            &RedTable::default(),
        )
        .iter()
        .map(|r| r.state)
        .collect();
        assert_eq!(states, ["stable", "canary", "blue-green"]);
    }

    #[test]
    fn a_service_sits_in_its_tier() {
        assert_eq!(
            [tier("gateway"), tier("orders"), tier("registry")],
            ["edge", "service", "platform"]
        );
    }
}

//! `/health/live` and `/health/ready`.
//!
//! Live means the process answers: a supervisor restarts it when it stops. Ready means it should
//! get traffic: its database answers, it is registered (when it registers at all), and it is not
//! shutting down. The registry polls `ready`, so an instance that loses its database leaves the
//! pool of passing instances until it gets it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde::Serialize;

use crate::db::Db;
use crate::extract::Json;

/// How long the readiness check waits for the database.
const DATABASE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What decides whether this instance is ready.
#[derive(Debug)]
pub struct Readiness {
    database: Option<Db>,
    registered: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    /// Readiness that checks `database` and, if `registers`, waits for registration.
    pub fn new(database: Option<Db>, registers: bool) -> Self {
        Self {
            database,
            registered: AtomicBool::new(!registers),
            draining: AtomicBool::new(false),
        }
    }

    /// Whether registration has completed.
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Records that the registry knows (or forgot) this instance.
    pub fn set_registered(&self, registered: bool) {
        self.registered.store(registered, Ordering::Release);
    }

    /// Marks the instance as shutting down: not ready from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Runs every check.
    pub async fn report(&self) -> ReadyReport {
        let database = match &self.database {
            None => Check::Skipped,
            Some(db) => match tokio::time::timeout(DATABASE_CHECK_TIMEOUT, db.ping()).await {
                Ok(Ok(())) => Check::Ok,
                Ok(Err(error)) => Check::Failing(error.to_string()),
                Err(_) => Check::Failing("no answer within 2s".into()),
            },
        };
        let registration = if self.is_registered() {
            Check::Ok
        } else {
            Check::Failing("not registered yet".into())
        };
        let draining = self.draining.load(Ordering::Acquire);
        let ready = !draining && database.passes() && registration.passes();
        ReadyReport {
            status: if ready {
                "ready"
            } else if draining {
                "draining"
            } else {
                "not_ready"
            },
            checks: Checks {
                database,
                registration,
            },
        }
    }
}

/// Outcome of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Passing.
    Ok,
    /// Not applicable to this process.
    Skipped,
    /// Failing, and why.
    Failing(String),
}

impl Check {
    fn passes(&self) -> bool {
        !matches!(self, Self::Failing(_))
    }
}

/// Body of `/health/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyReport {
    /// `ready`, `not_ready` or `draining`.
    pub status: &'static str,
    /// Each check.
    pub checks: Checks,
}

/// The individual readiness checks.
#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    /// The database answers a ping.
    pub database: Check,
    /// The registry knows this instance.
    pub registration: Check,
}

/// The health routes. `/health/live` names the instance, which is how discovery by DNS learns
/// who answers at an address ([`crate::discovery`]).
pub fn routes(readiness: Arc<Readiness>, info: &crate::ServiceInfo) -> Router {
    let live = Arc::new(serde_json::json!({
        "status": "live",
        "service": info.name,
        "version": info.version,
        "instance": info.instance_id,
    }));
    Router::new()
        .route(
            "/health/live",
            get(move || std::future::ready(Json(Arc::clone(&live)))),
        )
        .route("/health/ready", get(ready))
        .with_state(readiness)
}

async fn ready(State(readiness): State<Arc<Readiness>>) -> Response {
    let report = readiness.report().await;
    let status = if report.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Polls `<base_url>/health/ready` through `transport` until it answers 2xx; `false` if
/// `within` passes first (`None`: keep polling).
pub async fn wait_until_ready(
    transport: &crate::client::Transport,
    base_url: &str,
    within: Option<Duration>,
) -> bool {
    let deadline = within.map(|within| tokio::time::Instant::now() + within);
    let url = format!("{}/health/ready", base_url.trim_end_matches('/'));
    loop {
        let Ok(request) = http::Request::get(&url).body(axum::body::Body::empty()) else {
            return false;
        };
        if let Ok(response) = transport.send(request).await
            && response.status().is_success()
        {
            return true;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_registered_and_not_draining() {
        let readiness = Readiness::new(None, true);
        assert_eq!(readiness.report().await.status, "not_ready");
        readiness.set_registered(true);
        assert_eq!(readiness.report().await.status, "ready");
        readiness.set_draining();
        assert_eq!(readiness.report().await.status, "draining");
    }
}

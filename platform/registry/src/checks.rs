//! The registry's active side: HTTP health checks of every instance, and TTL expiry.
//!
//! A sweep runs four times a second: it expires TTLs and removes instances that stayed critical
//! too long (both in memory, cheap), and starts the HTTP checks that are due, each in its own
//! task so one slow instance never delays the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use chassis::client::Transport;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CheckFailure, DueCheck};

/// How often the sweep runs.
pub const SWEEP: Duration = Duration::from_millis(250);

/// Runs sweeps until `stop` is cancelled.
pub fn spawn(
    catalog: Arc<Catalog>,
    transport: Transport,
    timeout: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    chassis::worker::every(SWEEP, stop, move || {
        let now = Instant::now();
        catalog.expire(now);
        for due in catalog.due_checks(now) {
            tokio::spawn(check(Arc::clone(&catalog), transport.clone(), due, timeout));
        }
        std::future::ready(())
    })
}

async fn check(catalog: Arc<Catalog>, transport: Transport, due: DueCheck, timeout: Duration) {
    let failure = match http::Request::get(&due.url).body(Body::empty()) {
        Err(error) => Some(CheckFailure::Unreachable(format!(
            "invalid health URL: {error}"
        ))),
        Ok(request) => match tokio::time::timeout(timeout, transport.send(request)).await {
            Err(_) => Some(CheckFailure::Unhealthy(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))),
            Ok(Err(error)) => {
                let why = chassis::error::ErrorChain(&error).to_string();
                Some(if refused(&error) {
                    CheckFailure::Unreachable(why)
                } else {
                    CheckFailure::Unhealthy(why)
                })
            }
            Ok(Ok(response)) if response.status().is_success() => None,
            Ok(Ok(response)) => Some(CheckFailure::Unhealthy(format!(
                "health check answered {}",
                response.status()
            ))),
        },
    };
    catalog.record_check(&due.id, failure, Instant::now());
}

/// Whether `error` comes from a refused connection: nothing listens at that port.
fn refused(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source()).any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
    })
}

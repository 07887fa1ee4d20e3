//! The control API of a running `up`: start instances of a service at another version, and stop
//! one. `bazaar deploy` and `bazaar rollback` use it to bring up a release and take the losing
//! set down; `up` keeps supervising what it started, restarts it if it crashes, and stops it on
//! Ctrl-C with the rest.
//!
//! It listens on 127.0.0.1 only, on a port the system picks, written to `run.json` as `control`:
//!
//! | route | what |
//! |---|---|
//! | `POST /instances` `{"service","version","count"}` | start `count` instances; answers when all are ready |
//! | `DELETE /instances/{id}` | stop one instance gracefully |
//!
//! The HTTP side only validates and hands a [`Command`] to `up`'s main loop, which owns the
//! supervisors.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{delete, post};
use chassis::HttpError;
use chassis::extract::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use crate::args::Service;
use crate::state::InstanceState;

/// Most instances one request starts.
pub(crate) const MAX_COUNT: u8 = 8;

/// A request for `up`'s main loop.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start `count` instances of `service` reporting `version`.
    Start {
        service: Service,
        version: String,
        count: u8,
        reply: oneshot::Sender<Result<Vec<InstanceState>, String>>,
    },
    /// Stop the instance `id`; the answer is `false` when there is no such instance.
    Stop {
        id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// Body of `POST /instances`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartRequest {
    pub(crate) service: String,
    pub(crate) version: String,
    #[serde(default = "one")]
    pub(crate) count: u8,
}

fn one() -> u8 {
    1
}

/// Binds the API on 127.0.0.1 and serves it in the background; returns its URL and the stream
/// of commands.
pub(crate) async fn serve() -> std::io::Result<(String, UnboundedReceiver<Command>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (sender, commands) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/instances", post(start))
        .route("/instances/{id}", delete(stop))
        .with_state(sender);
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            eprintln!("the control API stopped: {error}");
        }
    });
    Ok((url, commands))
}

/// Checks a version label: what `bazaar deploy --version` may name.
pub(crate) fn check_version(version: &str) -> Result<(), String> {
    contracts::release::check_name("version", version, 40)
}

/// The services a release can replace: those behind the gateway.
pub(crate) fn releasable(name: &str) -> Result<Service, String> {
    match Service::parse(name) {
        Some(Service::Registry | Service::Telemetry | Service::Gateway) => Err(format!(
            "{name} cannot be released by version: releases are for the services behind the gateway"
        )),
        Some(service) => Ok(service),
        None => {
            let known: Vec<&str> = Service::ALL
                .iter()
                .filter(|s| !matches!(s, Service::Registry | Service::Telemetry | Service::Gateway))
                .map(|s| s.name())
                .collect();
            Err(format!(
                "unknown service {name:?} (known: {})",
                known.join(", ")
            ))
        }
    }
}

async fn start(
    State(commands): State<UnboundedSender<Command>>,
    Json(request): Json<StartRequest>,
) -> Result<(StatusCode, Json<Vec<InstanceState>>), HttpError> {
    let service = releasable(&request.service).map_err(HttpError::bad_request)?;
    check_version(&request.version).map_err(HttpError::bad_request)?;
    if !(1..=MAX_COUNT).contains(&request.count) {
        return Err(HttpError::bad_request(format!(
            "count must be 1 to {MAX_COUNT}, not {}",
            request.count
        )));
    }
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Start {
            service,
            version: request.version,
            count: request.count,
            reply,
        })
        .map_err(|_| HttpError::unavailable("bazaar up is stopping", 1))?;
    match answer.await {
        Ok(Ok(started)) => Ok((StatusCode::CREATED, Json(started))),
        Ok(Err(reason)) => Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "start-failed",
            "Instances did not start",
        )
        .with_detail(reason)),
        Err(_) => Err(HttpError::unavailable("bazaar up is stopping", 1)),
    }
}

async fn stop(
    State(commands): State<UnboundedSender<Command>>,
    Path(id): Path<String>,
) -> Result<StatusCode, HttpError> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Stop {
            id: id.clone(),
            reply,
        })
        .map_err(|_| HttpError::unavailable("bazaar up is stopping", 1))?;
    match answer.await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(HttpError::not_found(format!("no instance {id:?}"))),
        Err(_) => Err(HttpError::unavailable("bazaar up is stopping", 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_services_are_checked() {
        assert!(check_version("2.0.0-rc.1").is_ok());
        assert!(check_version("").is_err());
        assert!(check_version("two words").is_err());
        assert!(check_version(&"9".repeat(41)).is_err());
        assert_eq!(releasable("catalog"), Ok(Service::Catalog));
        assert!(releasable("gateway").is_err_and(|e| e.contains("behind the gateway")));
        assert!(releasable("nope").is_err_and(|e| e.contains("known: users")));
    }
}

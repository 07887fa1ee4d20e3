//! `bazaar events`: the dead letters of the consuming services, and replaying one. The services
//! are found through the registry, as they find each other.

use std::process::ExitCode;

use chassis::client::{CallError, ServiceClient};
use chassis::config::DiscoveryConfig;
use chassis::discovery::Discovery;
use chassis::error::ErrorChain;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::args::{EventsAction, EventsArgs, Service};
use crate::state;
use crate::table;

/// The services that consume events.
const CONSUMERS: [Service; 2] = [Service::Notifications, Service::Recommendations];

pub(crate) async fn run(args: EventsArgs) -> ExitCode {
    let registry = state::registry_url(
        args.registry.clone(),
        state::running(&args.data_dir).as_ref(),
    );
    let stop = CancellationToken::new();
    let config = DiscoveryConfig {
        registry: Some(registry.clone()),
        ..DiscoveryConfig::default()
    };
    let transport = state::operator_transport(&args.data_dir);
    let discovery = Discovery::new(&config, transport.clone(), &stop);
    let client = ServiceClient::new(discovery, transport, &config, "cli");
    let code = match args.action {
        EventsAction::DeadLetters { service } => {
            let services: Vec<Service> = service.map_or_else(|| CONSUMERS.to_vec(), |s| vec![s]);
            list(&client, &services, &registry).await
        }
        EventsAction::Replay { service, id } => replay(&client, service, &id).await,
    };
    stop.cancel();
    code
}

async fn list(client: &ServiceClient, services: &[Service], registry: &str) -> ExitCode {
    let mut rows = Vec::new();
    for service in services {
        let name = service.name();
        match client
            .get(name, "/internal/dead-letters")
            .send()
            .await
            .and_then(|r| r.json::<Value>())
        {
            Ok(page) => {
                for letter in page["items"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                    rows.push(vec![
                        name.to_owned(),
                        text(&letter["id"]),
                        text(&letter["event"]["type"]),
                        text(&letter["event"]["source"]),
                        letter["attempts"].to_string(),
                        text(&letter["dead_at"]),
                        if letter["replayed_at"].is_null() {
                            "no".to_owned()
                        } else {
                            "yes".to_owned()
                        },
                        text(&letter["error"]),
                    ]);
                }
            }
            Err(error) => {
                eprintln!(
                    "error: cannot ask {name} (through the registry at {registry}): {}",
                    ErrorChain(&error)
                );
                return ExitCode::FAILURE;
            }
        }
    }
    if rows.is_empty() {
        println!("No dead letters: every event was handled.");
    } else {
        print!(
            "{}",
            table::render(
                "",
                &[
                    "SERVICE", "ID", "TYPE", "FROM", "ATTEMPTS", "DEAD AT", "REPLAYED", "ERROR"
                ],
                &rows,
            )
        );
    }
    ExitCode::SUCCESS
}

async fn replay(client: &ServiceClient, service: Service, id: &str) -> ExitCode {
    let name = service.name();
    let path = format!("/internal/dead-letters/{id}/replay");
    match client
        .post(name, &path)
        .send()
        .await
        .and_then(|r| r.error_for_status())
    {
        Ok(_) => {
            println!("Replayed dead letter {id} of {name}: handled.");
            ExitCode::SUCCESS
        }
        Err(CallError::Status {
            problem: Some(problem),
            status,
            ..
        }) => {
            eprintln!(
                "error: {name} refused to replay {id} ({status}): {}",
                problem.detail.unwrap_or(problem.title)
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: cannot ask {name}: {}", ErrorChain(&error));
            ExitCode::FAILURE
        }
    }
}

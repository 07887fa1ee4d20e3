//! `bazaar monolith`: the shop's services in one process, calling each other in place.
//!
//! The same services as `up` runs (the registry, users, catalog, orders, payments, shipping,
//! notifications, recommendations, cart and the gateway), each still with its own port, its
//! own database file and its own routes, but built into one process that shares an
//! [`Exchange`]: a call from one to another is a function call through the callee's
//! middleware and routes, with no socket, TLS or HTTP framing ([`chassis::inproc`]). What is
//! left out is what only a distributed system needs (the trace store, mTLS between services,
//! a supervisor restarting what crashed) and the storefront. It writes `run.json` like `up`,
//! so `bazaar load`, `status` and `demo` find it; it is the other side of
//! `bazaar demo monolith-vs-microservices`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use chassis::client::Transport;
use chassis::config::{Loader, Sources};
use chassis::inproc::Exchange;
use clap::Parser;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::args::{Cli, Command, EXIT_USAGE, MonolithArgs, Service};
use crate::serve::InProcess;
use crate::state::{self, InstanceState, RunState};

/// The services, in the order they start: the registry first, the gateway last.
const TIERS: [&[Service]; 3] = [
    &[Service::Registry],
    &[
        Service::Users,
        Service::Catalog,
        Service::Orders,
        Service::Payments,
        Service::Shipping,
        Service::Notifications,
        Service::Recommendations,
        Service::Cart,
    ],
    &[Service::Gateway],
];

/// Every service the monolith runs.
pub(crate) fn services() -> impl Iterator<Item = Service> {
    TIERS.into_iter().flatten().copied()
}

/// Longest wait for a service to answer its readiness check.
const READY_WITHIN: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: MonolithArgs) -> ExitCode {
    let ports = match ports(args.base_port) {
        Ok(ports) => ports,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if let Err(error) = std::fs::create_dir_all(&args.data_dir) {
        eprintln!("error: cannot create {}: {error}", args.data_dir.display());
        return ExitCode::FAILURE;
    }
    let shutdown = chassis::server::shutdown_on_signal();
    let exchange = Exchange::new();
    let mut tasks = JoinSet::new();
    let mut urls = BTreeMap::new();
    for tier in TIERS {
        let registry = urls.get(&Service::Registry).cloned();
        let mut listening = Vec::new();
        for &service in tier {
            let argv = argv(
                service,
                ports[&service],
                &args.data_dir,
                registry.as_deref(),
            );
            let Ok(Cli {
                command: Command::Serve(serve),
            }) = Cli::try_parse_from(&argv)
            else {
                eprintln!("error: the arguments for {} do not parse", service.name());
                return ExitCode::FAILURE;
            };
            let loader = match crate::serve::overrides(&serve) {
                Ok(overrides) => Loader::new(Sources::from_process(None, overrides)),
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let (told, address) = oneshot::channel();
            let in_process = InProcess {
                exchange: exchange.clone(),
                listening: told,
            };
            let stop = shutdown.clone();
            tasks.spawn(async move {
                let served = crate::serve::serve(service, &loader, stop, Some(in_process)).await;
                (service, served)
            });
            listening.push((service, address));
        }
        // Each service binds its own port (0: the system picks one, so no other process can
        // take it between a choice and the bind) and says which; then it must get ready.
        let probe = Transport::http();
        for (service, address) in listening {
            let started = async {
                let Ok(address) = address.await else {
                    // It ended before listening: `tasks` says how.
                    return std::future::pending().await;
                };
                let url = format!("http://{address}");
                let ready = chassis::health::wait_until_ready(&probe, &url, Some(READY_WITHIN));
                ready.await.then_some(url)
            };
            tokio::select! {
                started = started => match started {
                    Some(url) => {
                        urls.insert(service, url);
                    }
                    None => {
                        eprintln!("error: {} did not get ready within {READY_WITHIN:?}", service.name());
                        shutdown.cancel();
                        drain(tasks).await;
                        return ExitCode::FAILURE;
                    }
                },
                Some(ended) = tasks.join_next() => {
                    report(ended);
                    shutdown.cancel();
                    drain(tasks).await;
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let url = |service: Service| urls[&service].clone();
    let registry = url(Service::Registry);
    let instances = services()
        .map(|service| InstanceState {
            id: format!("{}-1", service.name()),
            service: service.name().to_owned(),
            url: url(service),
            pid: std::process::id(),
            https: None,
        })
        .collect();
    let gateway = url(Service::Gateway);
    let run = RunState {
        pid: std::process::id(),
        registry: registry.clone(),
        gateway: gateway.clone(),
        control: String::new(),
        instances,
    };
    if let Err(error) = state::write(&args.data_dir, &run) {
        eprintln!("error: cannot write run.json: {error}");
        shutdown.cancel();
        drain(tasks).await;
        return ExitCode::FAILURE;
    }
    println!(
        "Bazaar is up as one process (pid {}): {} services calling each other in place.\n\n  Shop API    {gateway}/api/\n  Registry    {registry}\n  Data        {}\n\nPress Ctrl-C to stop.",
        std::process::id(),
        services().count(),
        args.data_dir.display()
    );
    let code = tokio::select! {
        () = shutdown.cancelled() => ExitCode::SUCCESS,
        Some(ended) = tasks.join_next() => {
            report(ended);
            shutdown.cancel();
            ExitCode::FAILURE
        }
    };
    drain(tasks).await;
    let _ = std::fs::remove_file(state::run_file(&args.data_dir));
    chassis::trace::shutdown().await;
    chassis::telemetry::flush();
    code
}

/// Every service's port: from `base` as `up` assigns them, or 0 (the system picks one as the
/// service binds) when `base` is 0.
fn ports(base: u16) -> Result<BTreeMap<Service, u16>, String> {
    let mut ports = BTreeMap::new();
    for service in services() {
        let port = if base == 0 {
            0
        } else {
            let offset = chassis::ports::offset(service.name()).unwrap_or(0);
            base.checked_add(offset)
                .filter(|p| !chassis::ports::is_reserved(*p))
                .ok_or_else(|| {
                    format!(
                        "--base-port {base}: {} would get port {base}+{offset}, which is out of range or taken by a database or broker",
                        service.name()
                    )
                })?
        };
        ports.insert(service, port);
    }
    Ok(ports)
}

/// The `bazaar serve` command line of `service`, as `up` would write it for a plain-HTTP
/// system on one machine (demo data seeded, no trace export); every service but the registry
/// is told where the `registry` is.
fn argv(
    service: Service,
    port: u16,
    data_dir: &std::path::Path,
    registry: Option<&str>,
) -> Vec<String> {
    let mut argv: Vec<String> = [
        "bazaar",
        "serve",
        service.name(),
        "--instance-id",
        &format!("{}-1", service.name()),
        "--port",
        &port.to_string(),
        "--data-dir",
        &data_dir.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(registry) = registry {
        argv.extend(["--registry".to_owned(), registry.to_owned()]);
    }
    match service {
        Service::Users => argv.extend(["--set".to_owned(), "users.seed_demo=true".to_owned()]),
        Service::Catalog => argv.extend(["--set".to_owned(), "catalog.seed_demo=true".to_owned()]),
        _ => {}
    }
    argv
}

fn report(ended: Result<(Service, Result<(), chassis::StartError>), tokio::task::JoinError>) {
    match ended {
        Ok((service, Ok(()))) => eprintln!("error: {} stopped", service.name()),
        Ok((service, Err(error))) => eprintln!(
            "error: {} failed: {}",
            service.name(),
            chassis::error::ErrorChain(&error)
        ),
        Err(error) => eprintln!("error: a service panicked: {error}"),
    }
}

/// Waits for every service to stop (they were told to).
async fn drain(mut tasks: JoinSet<(Service, Result<(), chassis::StartError>)>) {
    while let Some(ended) = tasks.join_next().await {
        if let Ok((_, Err(error))) = ended {
            tracing::warn!(error = %chassis::error::ErrorChain(&error), "a service stopped with an error");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_gets_the_port_up_would_give_it() {
        let given = ports(7700).expect("ports");
        assert_eq!(given[&Service::Gateway], 7700);
        assert_eq!(given[&Service::Registry], 7701);
        assert_eq!(given[&Service::Cart], 7718);
        let picked_on_bind = ports(0).expect("ports");
        assert_eq!(picked_on_bind.len(), 10);
        assert!(picked_on_bind.values().all(|&port| port == 0));
    }

    #[test]
    fn each_service_is_served_as_up_would_serve_it() {
        let users = argv(
            Service::Users,
            7711,
            std::path::Path::new("/d"),
            Some("http://127.0.0.1:7701"),
        );
        assert_eq!(
            users.join(" "),
            "bazaar serve users --instance-id users-1 --port 7711 --data-dir /d --registry http://127.0.0.1:7701 --set users.seed_demo=true"
        );
        assert!(matches!(
            Cli::try_parse_from(&users).map(|c| c.command),
            Ok(Command::Serve(_))
        ));
        let registry = argv(Service::Registry, 0, std::path::Path::new("/d"), None);
        assert_eq!(
            registry.join(" "),
            "bazaar serve registry --instance-id registry-1 --port 0 --data-dir /d"
        );
    }
}

//! `bazaar serve <service>`: one service in this process, configured from defaults, an optional
//! file, `BAZAAR_*` variables and flags. Bad configuration exits with code 64 and one line
//! naming the key and the value.

use std::net::SocketAddr;
use std::process::ExitCode;

use chassis::config::{ChassisConfig, ConfigError, Loader, Override, Sources, check_url_scheme};
use chassis::{ServiceInfo, StartError};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::args::{EXIT_USAGE, ServeArgs, Service};

/// Runs the service until SIGINT or SIGTERM (or, with `--exit-with-parent`, until standard
/// input closes).
pub(crate) async fn run(args: ServeArgs) -> ExitCode {
    let service = args.service;
    let exit_with_parent = args.exit_with_parent;
    let loader = match overrides(&args) {
        Ok(overrides) => Loader::new(Sources::from_process(args.config.clone(), overrides)),
        Err(error) => return usage_error(&error),
    };
    let shutdown = chassis::server::shutdown_on_signal();
    if exit_with_parent {
        exit_when_stdin_closes(shutdown.clone());
    }
    let served = serve(service, &loader, shutdown, None).await;
    // The spans of the last requests, before the process goes.
    chassis::trace::shutdown().await;
    let code = match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(error)) => usage_error(&error),
        Err(error) => {
            tracing::error!(error = %chassis::error::ErrorChain(&error), "{} failed", service.name());
            eprintln!("error: {}", chassis::error::ErrorChain(&error));
            ExitCode::FAILURE
        }
    };
    // And the last log lines.
    chassis::telemetry::flush();
    code
}

/// What a service run inside `bazaar monolith` shares with the process.
pub(crate) struct InProcess {
    /// Where it calls (and is called by) the other services in place ([`chassis::inproc`]).
    pub(crate) exchange: chassis::inproc::Exchange,
    /// Told the address it listens on, once it does (its port may be 0 until then).
    pub(crate) listening: tokio::sync::oneshot::Sender<SocketAddr>,
}

/// Runs `service` as `loader` configures it until `shutdown`; `in_process` when it is one of
/// the monolith's services rather than a process of its own.
pub(crate) async fn serve(
    service: Service,
    loader: &Loader,
    shutdown: CancellationToken,
    in_process: Option<InProcess>,
) -> Result<(), StartError> {
    let (exchange, listening) = in_process.map(|p| (p.exchange, p.listening)).unzip();
    let prepare = |service: Service, chassis: &mut ChassisConfig| {
        chassis.exchange.clone_from(&exchange);
        prepare(service, chassis)
    };
    let announce = |address: SocketAddr| {
        if let Some(listening) = listening {
            // Nobody waiting is no reason to stop serving.
            let _ = listening.send(address);
        }
    };
    // Every service starts the same way: its configuration, the checks all share, its
    // application (some take the shutdown token for their background work), then serving.
    macro_rules! start {
        ($service:ident $(, $shutdown:expr)?) => {{
            let mut config = $service::Config::load(loader, $service::SERVICE)?;
            prepare(service, &mut config.chassis)?;
            let application = $service::Application::build(config $(, $shutdown)?).await?;
            announce(application.local_addr());
            application.run_until_stopped(shutdown).await
        }};
    }
    match service {
        Service::Registry => start!(registry),
        Service::Telemetry => start!(telemetry),
        Service::Users => start!(users),
        Service::Catalog => start!(catalog),
        Service::Orders => start!(orders, &shutdown),
        Service::Payments => start!(payments),
        Service::Shipping => start!(shipping),
        Service::Notifications => start!(notifications, &shutdown),
        Service::Recommendations => start!(recommendations, &shutdown),
        Service::Web => start!(web, &shutdown),
        Service::Cart => start!(cart, &shutdown),
        Service::Gateway => start!(gateway, &shutdown),
    }
}

/// Checks `discovery.dns`: a name to resolve, and a scheme services answer on.
fn check_dns(dns: &chassis::config::DnsConfig) -> Result<(), ConfigError> {
    if !matches!(dns.scheme.as_str(), "http" | "https") {
        return Err(ConfigError::invalid(
            "discovery.dns.scheme",
            format!("{:?}", dns.scheme),
            "expected http or https",
        ));
    }
    if dns.name.trim().is_empty() {
        return Err(ConfigError::invalid(
            "discovery.dns.name",
            "\"\"",
            "expected a DNS name such as {service}-pods.bazaar.svc.cluster.local",
        ));
    }
    Ok(())
}

/// Checks `discovery.etcd`: one or more http(s) endpoints, and a prefix that ends a path
/// segment (so one system's keys never run into another's).
fn check_etcd(etcd: &chassis::config::EtcdConfig) -> Result<(), ConfigError> {
    if etcd.endpoints.is_empty() {
        return Err(ConfigError::invalid(
            "discovery.etcd.endpoints",
            "[]",
            "expected at least one URL such as http://127.0.0.1:2379",
        ));
    }
    for endpoint in &etcd.endpoints {
        check_url_scheme("discovery.etcd.endpoints", endpoint, &["http", "https"])?;
    }
    if !etcd.prefix.starts_with('/') || !etcd.prefix.ends_with('/') || etcd.prefix.len() < 2 {
        return Err(ConfigError::invalid(
            "discovery.etcd.prefix",
            format!("{:?}", etcd.prefix),
            "expected a path that starts and ends with '/', such as /bazaar/",
        ));
    }
    Ok(())
}

/// Checks what every service shares, fixes the instance id, and starts logging.
fn prepare(service: Service, chassis: &mut ChassisConfig) -> Result<(), ConfigError> {
    if chassis.discovery.registry.as_deref() == Some("") {
        chassis.discovery.registry = None;
    }
    if let Some(registry) = &chassis.discovery.registry {
        // etcd in the registry's place is written etcd+http://host:port/prefix/.
        if registry.starts_with("etcd+") {
            if chassis::config::EtcdConfig::from_url(registry).is_none() {
                return Err(ConfigError::invalid(
                    "discovery.registry",
                    format!("{registry:?}"),
                    "expected etcd+http://host:port/prefix/",
                ));
            }
        } else {
            check_url_scheme("discovery.registry", registry, &["http", "https"])?;
        }
    }
    if let Some(dns) = &chassis.discovery.dns {
        check_dns(dns)?;
    }
    if let Some(etcd) = &chassis.discovery.etcd {
        check_etcd(etcd)?;
    }
    if let Some(url) = &chassis.database.url {
        chassis::config::check_secret_url_scheme(
            "database.url",
            url,
            &["sqlite", "postgres", "postgresql"],
        )?;
    }
    let info = ServiceInfo::new(service.name(), env!("CARGO_PKG_VERSION"), chassis);
    chassis.instance_id = Some(info.instance_id.clone());
    let identity = chassis::mtls::Identity::configured(&chassis.mtls)?;
    chassis::telemetry::init(
        &info,
        &chassis.log,
        &chassis.trace,
        chassis::client::Transport::with_identity(identity),
    )
}

/// The flags as config overrides, in the order given.
pub(crate) fn overrides(args: &ServeArgs) -> Result<Vec<Override>, ConfigError> {
    let flag = |key: &str, flag: &str, value: &Option<String>| {
        value.as_ref().map(|value| Override {
            key: key.to_owned(),
            value: value.clone(),
            origin: format!("{flag} {value}"),
        })
    };
    let mut overrides: Vec<Override> = [
        flag("http.port", "--port", &args.port),
        flag("http.host", "--host", &args.host),
        flag("data_dir", "--data-dir", &args.data_dir),
        flag("database.url", "--db", &args.db),
        flag("discovery.registry", "--registry", &args.registry),
        flag("instance_id", "--instance-id", &args.instance_id),
        flag("version", "--service-version", &args.service_version),
    ]
    .into_iter()
    .flatten()
    .collect();
    for pair in &args.set {
        let Some((key, value)) = pair.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
            return Err(ConfigError::Unreadable(format!(
                "--set {pair:?} must look like KEY=VALUE"
            )));
        };
        overrides.push(Override {
            key: key.trim().to_owned(),
            value: value.to_owned(),
            origin: format!("--set {pair}"),
        });
    }
    Ok(overrides)
}

fn usage_error(error: &ConfigError) -> ExitCode {
    eprintln!("{error}");
    ExitCode::from(EXIT_USAGE)
}

/// `up` keeps each child's standard input open; when `up` goes away, even by SIGKILL, the pipe
/// closes and the child shuts down instead of living on as an orphan.
fn exit_when_stdin_closes(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        loop {
            match stdin.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        tracing::info!("parent process gone; shutting down");
        shutdown.cancel();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve_args(line: &[&str]) -> ServeArgs {
        let cli = crate::args::Cli::try_parse_from(line).expect("parses");
        match cli.command {
            crate::args::Command::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn flags_become_overrides_with_their_origin() {
        let args = serve_args(&[
            "bazaar",
            "serve",
            "users",
            "--port",
            "80",
            "--set",
            "users.seed_demo=true",
        ]);
        let overrides = overrides(&args).expect("valid");
        let keys: Vec<(&str, &str, &str)> = overrides
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str(), o.origin.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("http.port", "80", "--port 80"),
                ("users.seed_demo", "true", "--set users.seed_demo=true")
            ]
        );
    }

    #[test]
    fn discovery_by_dns_names_its_bad_key() {
        let good = chassis::config::DnsConfig::default();
        assert!(check_dns(&good).is_ok());
        let error = check_dns(&chassis::config::DnsConfig {
            scheme: "ftp".into(),
            ..good.clone()
        })
        .expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid config: discovery.dns.scheme = \"ftp\" (from configuration): expected http or https"
        );
        let error = check_dns(&chassis::config::DnsConfig {
            name: " ".into(),
            ..good
        })
        .expect_err("invalid");
        assert!(
            error
                .to_string()
                .starts_with("invalid config: discovery.dns.name")
        );
    }

    #[test]
    fn a_set_without_equals_is_refused() {
        let args = serve_args(&["bazaar", "serve", "users", "--set", "nonsense"]);
        let error = overrides(&args).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid config: --set \"nonsense\" must look like KEY=VALUE"
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let args = serve_args(&["bazaar", "serve", "users", "--port", "eighty"]);
        let loader = Loader::new(Sources {
            file: None,
            env: vec![],
            overrides: overrides(&args).expect("valid"),
        });
        let error = users::Config::load(&loader, users::SERVICE).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "invalid config: http.port = \"eighty\" (from --port eighty): expected u16"
        );
    }

    #[test]
    fn discovery_by_etcd_names_its_bad_key() {
        let etcd = chassis::config::EtcdConfig::default();
        assert!(check_etcd(&etcd).is_ok());
        for (bad, named) in [
            (
                chassis::config::EtcdConfig {
                    endpoints: vec![],
                    ..etcd.clone()
                },
                "discovery.etcd.endpoints = []",
            ),
            (
                chassis::config::EtcdConfig {
                    endpoints: vec!["127.0.0.1:2379".into()],
                    ..etcd.clone()
                },
                "discovery.etcd.endpoints = \"127.0.0.1:2379\"",
            ),
            (
                chassis::config::EtcdConfig {
                    prefix: "bazaar".into(),
                    ..etcd.clone()
                },
                "discovery.etcd.prefix = \"bazaar\"",
            ),
        ] {
            let error = check_etcd(&bad).expect_err("refused").to_string();
            assert!(error.contains(named), "{error}");
        }
    }
}

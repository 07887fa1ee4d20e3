//! What `bazaar up` starts: the instances, their ports, and the command line of each. Pure, so
//! the rules are tested without starting anything.

use std::path::Path;

use chassis::tls::TlsConfig;

use crate::args::Service;

/// Most replicas of one service.
pub(crate) const MAX_REPLICAS: u8 = 16;

/// One process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InstanceSpec {
    /// `users-1`, `users-2`, ...
    pub(crate) id: String,
    /// What it runs.
    pub(crate) service: Service,
    /// Port to bind; 0 for a free one.
    pub(crate) port: u16,
    /// Version it reports, when not the code's own (a release started by `bazaar deploy`).
    pub(crate) version: Option<String>,
}

impl InstanceSpec {
    /// Start tier: the registry first, then the trace store, then the services, then the
    /// gateway; stopping goes in reverse, so the gateway stops taking requests before what it
    /// calls goes away, and the last spans reach the trace store.
    pub(crate) fn tier(&self) -> usize {
        match self.service {
            Service::Registry => 0,
            Service::Telemetry => 1,
            Service::Users
            | Service::Catalog
            | Service::Orders
            | Service::Payments
            | Service::Shipping
            | Service::Notifications
            | Service::Recommendations
            | Service::Cart
            | Service::Web => 2,
            Service::Gateway => 3,
        }
    }
}

/// The instances for `base_port` and `--replicas` flags, in start order.
pub(crate) fn instances(base_port: u16, replicas: &[String]) -> Result<Vec<InstanceSpec>, String> {
    let mut counts: Vec<(Service, u8)> = Service::ALL.iter().map(|s| (*s, 1)).collect();
    for flag in replicas {
        let (name, count) = flag
            .split_once('=')
            .ok_or_else(|| format!("--replicas {flag:?}: expected SERVICE=N, such as users=2"))?;
        let service = Service::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = Service::ALL.iter().map(|s| s.name()).collect();
            format!(
                "--replicas {flag:?}: unknown service {name:?} (known: {})",
                known.join(", ")
            )
        })?;
        let count: u8 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REPLICAS).contains(n))
            .ok_or_else(|| {
                format!("--replicas {flag:?}: N must be a number from 1 to {MAX_REPLICAS}")
            })?;
        if !service.scales_out() && count != 1 {
            return Err(format!(
                "--replicas {flag:?}: the {} runs as a single instance",
                service.name()
            ));
        }
        if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == service) {
            entry.1 = count;
        }
    }
    let mut specs = Vec::new();
    for (service, count) in counts {
        for n in 1..=count {
            let port = if base_port == 0 || n > 1 {
                0
            } else {
                port_of(base_port, service)?
            };
            specs.push(InstanceSpec {
                id: format!("{}-{n}", service.name()),
                service,
                port,
                version: None,
            });
        }
    }
    Ok(specs)
}

fn port_of(base_port: u16, service: Service) -> Result<u16, String> {
    let offset = chassis::ports::offset(service.name()).unwrap_or(0);
    let port = base_port.checked_add(offset).ok_or_else(|| {
        format!(
            "--base-port {base_port}: {} would need port {base_port}+{offset}, above 65535",
            service.name()
        )
    })?;
    if chassis::ports::is_reserved(port) {
        return Err(format!(
            "--base-port {base_port}: {} would get port {port}, which belongs to a database or broker on this machine",
            service.name()
        ));
    }
    Ok(port)
}

/// The HTTPS port of the gateway whose HTTP port is `http_port` (the base port).
fn https_port(http_port: u16) -> Result<u16, String> {
    let offset = chassis::ports::offset("gateway-tls").unwrap_or(43);
    match http_port.checked_add(offset) {
        Some(port) if !chassis::ports::is_reserved(port) => Ok(port),
        Some(port) => Err(format!(
            "--base-port {http_port}: the gateway's HTTPS would get port {port}, which belongs to a database or broker on this machine"
        )),
        None => Err(format!(
            "--base-port {http_port}: the gateway's HTTPS would need port {http_port}+{offset}, above 65535"
        )),
    }
}

/// The database URL of `service` on the PostgreSQL server `server`: its own database,
/// `<prefix>_<service>`, keeping the server's user, host and parameters. The prefix is the
/// database named in `server`, or `bazaar`: `postgres://host/shop` gives `shop_users`.
pub(crate) fn database_url(server: &str, service: Service) -> Result<String, String> {
    let mut url = url::Url::parse(server).map_err(|e| format!("--db {server:?}: {e}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql")
        || url.host_str().is_none_or(str::is_empty)
    {
        return Err(format!(
            "--db {server:?}: expected a PostgreSQL server URL such as postgres://postgres@127.0.0.1:5432"
        ));
    }
    let prefix = url.path().trim_matches('/').to_owned();
    let prefix = if prefix.is_empty() {
        "bazaar"
    } else {
        prefix.as_str()
    };
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "--db {server:?}: the database prefix {prefix:?} must be lowercase letters, digits and _"
        ));
    }
    url.set_path(&format!("/{prefix}_{}", service.name()));
    Ok(url.to_string())
}

/// Checks `--cart-store`: `embedded` or a Redis URL. The embedded store is a file one process
/// opens, so several cart instances need Redis.
pub(crate) fn check_cart_store(store: &str, specs: &[InstanceSpec]) -> Result<(), String> {
    if store != "embedded" && !store.starts_with("redis://") && !store.starts_with("rediss://") {
        return Err(format!(
            "--cart-store {store:?}: expected embedded or a redis:// URL"
        ));
    }
    let carts = specs.iter().filter(|s| s.service == Service::Cart).count();
    if store == "embedded" && carts > 1 {
        return Err(format!(
            "--replicas cart={carts}: the embedded cart store is one file for one process; add --cart-store redis://127.0.0.1:6379"
        ));
    }
    Ok(())
}

/// Checks `--bus`: a NATS URL.
pub(crate) fn check_bus(bus: &str) -> Result<(), String> {
    match url::Url::parse(bus) {
        Ok(url) if url.scheme() == "nats" && url.host_str().is_some() => Ok(()),
        _ => Err(format!(
            "--bus {bus:?}: expected a NATS URL such as nats://127.0.0.1:4222"
        )),
    }
}

/// Checks `--ratelimit`: a Redis URL.
pub(crate) fn check_ratelimit(store: &str) -> Result<(), String> {
    match url::Url::parse(store) {
        Ok(url) if matches!(url.scheme(), "redis" | "rediss") && url.host_str().is_some() => Ok(()),
        _ => Err(format!(
            "--ratelimit {store:?}: expected a Redis URL such as redis://127.0.0.1:6379"
        )),
    }
}

/// What every instance's arguments are made from, besides its own spec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shared<'a> {
    /// The data directory.
    pub(crate) data_dir: &'a Path,
    /// The registry, once it runs.
    pub(crate) registry: Option<&'a str>,
    /// `--db`.
    pub(crate) db_server: Option<&'a str>,
    /// Most connections each instance's pool opens on that server (its share of the server's).
    pub(crate) db_pool: Option<u32>,
    /// `--config`.
    pub(crate) config: Option<&'a Path>,
    /// `--cart-store`.
    pub(crate) cart_store: &'a str,
    /// `--bus`.
    pub(crate) bus: Option<&'a str>,
    /// `--ratelimit`.
    pub(crate) ratelimit: Option<&'a str>,
    /// `--threads`: worker threads of each instance.
    pub(crate) threads: usize,
    /// The trace store's span endpoint (`…/v1/traces`).
    pub(crate) traces: Option<&'a str>,
    /// The gateway's certificate from the development CA, unless one is configured.
    pub(crate) tls: Option<&'a TlsConfig>,
    /// The folder of the services' mTLS certificates (`<service>.pem`, `.key`, `ca.pem`).
    pub(crate) pki: Option<&'a Path>,
}

/// The `bazaar serve` arguments of one instance.
pub(crate) fn child_args(spec: &InstanceSpec, shared: &Shared<'_>) -> Result<Vec<String>, String> {
    let Shared {
        data_dir,
        registry,
        db_server,
        db_pool,
        config,
        cart_store,
        bus,
        ratelimit,
        threads,
        traces,
        tls,
        pki,
    } = *shared;
    let mut args = vec![
        "serve".to_owned(),
        spec.service.name().to_owned(),
        "--instance-id".to_owned(),
        spec.id.clone(),
        "--port".to_owned(),
        spec.port.to_string(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        // `up` reads the children's logs, so they must be JSON.
        "--set".to_owned(),
        "log.format=json".to_owned(),
        "--exit-with-parent".to_owned(),
        "--threads".to_owned(),
        threads.to_string(),
    ];
    if let Some(registry) = registry {
        args.extend(["--registry".to_owned(), registry.to_owned()]);
    }
    // Every service sends its spans to the trace store, which does not trace itself, nor does
    // the registry, whose traffic is all heartbeats and watches. Traces start at the gateway.
    if let Some(traces) =
        traces.filter(|_| !matches!(spec.service, Service::Registry | Service::Telemetry))
    {
        args.extend(["--set".to_owned(), format!("trace.endpoint={traces}")]);
        if spec.service != Service::Gateway {
            args.extend(["--set".to_owned(), "trace.start_traces=false".to_owned()]);
        }
    }
    if let Some(pki) = pki {
        let service = spec.service.name();
        args.extend([
            "--set".to_owned(),
            format!("mtls.ca={}", pki.join("ca.pem").display()),
            "--set".to_owned(),
            format!("mtls.cert={}", pki.join(format!("{service}.pem")).display()),
            "--set".to_owned(),
            format!("mtls.key={}", pki.join(format!("{service}.key")).display()),
        ]);
    }
    if let Some(version) = &spec.version {
        args.extend(["--service-version".to_owned(), version.clone()]);
    }
    if let Some(server) = db_server.filter(|_| spec.service.has_database()) {
        args.extend(["--db".to_owned(), database_url(server, spec.service)?]);
        if let Some(pool) = db_pool {
            args.extend([
                "--set".to_owned(),
                format!("database.max_connections={pool}"),
            ]);
        }
    }
    if let Some(config) = config {
        args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    if spec.service == Service::Cart {
        args.extend(["--set".to_owned(), format!("cart.store={cart_store}")]);
    }
    if let Some(store) = ratelimit.filter(|_| spec.service == Service::Gateway) {
        args.extend([
            "--set".to_owned(),
            format!("gateway.ratelimit_store={store}"),
        ]);
    }
    if let Some(tls) = tls.filter(|_| spec.service == Service::Gateway) {
        let port = if spec.port == 0 {
            0
        } else {
            https_port(spec.port)?
        };
        args.extend([
            "--set".to_owned(),
            format!("gateway.tls.port={port}"),
            "--set".to_owned(),
            format!("gateway.tls.cert={}", tls.cert.display()),
            "--set".to_owned(),
            format!("gateway.tls.key={}", tls.key.display()),
        ]);
    }
    if let Some(bus) = bus {
        args.extend([
            "--set".to_owned(),
            "events.transport=nats".to_owned(),
            "--set".to_owned(),
            format!("events.nats_url={bus}"),
        ]);
    }
    // A fresh data directory gets the demo accounts and the demo catalog.
    match spec.service {
        Service::Users => args.extend(["--set".to_owned(), "users.seed_demo=true".to_owned()]),
        Service::Catalog => args.extend(["--set".to_owned(), "catalog.seed_demo=true".to_owned()]),
        Service::Registry
        | Service::Telemetry
        | Service::Orders
        | Service::Payments
        | Service::Shipping
        | Service::Notifications
        | Service::Recommendations
        | Service::Cart
        | Service::Web
        | Service::Gateway => {}
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_uses_the_design_ports() {
        let specs = instances(7700, &[]).expect("valid");
        let ports: Vec<(&str, u16)> = specs.iter().map(|s| (s.id.as_str(), s.port)).collect();
        assert_eq!(
            ports,
            [
                ("registry-1", 7701),
                ("telemetry-1", 7702),
                ("users-1", 7711),
                ("catalog-1", 7712),
                ("orders-1", 7713),
                ("payments-1", 7714),
                ("shipping-1", 7715),
                ("notifications-1", 7716),
                ("recommendations-1", 7717),
                ("cart-1", 7718),
                ("web-1", 7719),
                ("gateway-1", 7700)
            ]
        );
    }

    #[test]
    fn replicas_beyond_the_first_take_free_ports() {
        let specs = instances(7700, &["users=3".into()]).expect("valid");
        let users: Vec<(&str, u16)> = specs
            .iter()
            .filter(|s| s.service == Service::Users)
            .map(|s| (s.id.as_str(), s.port))
            .collect();
        assert_eq!(users, [("users-1", 7711), ("users-2", 0), ("users-3", 0)]);
        assert!(
            instances(0, &[])
                .expect("valid")
                .iter()
                .all(|s| s.port == 0)
        );
    }

    #[test]
    fn bad_flags_are_named() {
        assert_eq!(
            instances(7700, &["users".into()]).expect_err("bad"),
            "--replicas \"users\": expected SERVICE=N, such as users=2"
        );
        assert!(
            instances(7700, &["shop=2".into()])
                .expect_err("bad")
                .contains("unknown service \"shop\"")
        );
        assert!(
            instances(7700, &["users=0".into()])
                .expect_err("bad")
                .contains("from 1 to 16")
        );
        assert!(
            instances(7700, &["registry=2".into()])
                .expect_err("bad")
                .contains("single instance")
        );
        assert!(instances(5421, &[]).expect_err("bad").contains("port 5432"));
        assert!(
            instances(65530, &[])
                .expect_err("bad")
                .contains("above 65535")
        );
    }

    #[test]
    fn cart_replicas_need_redis() {
        let two = instances(0, &["cart=2".into()]).expect("valid");
        assert!(
            check_cart_store("embedded", &two)
                .expect_err("refused")
                .contains("--cart-store redis://")
        );
        assert!(check_cart_store("redis://127.0.0.1:6379", &two).is_ok());
        assert!(check_cart_store("memcached://x", &two).is_err());
        assert!(check_cart_store("embedded", &instances(0, &[]).expect("valid")).is_ok());
    }

    #[test]
    fn each_service_gets_its_own_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432", Service::Users).expect("valid"),
            "postgres://postgres@127.0.0.1:5432/bazaar_users"
        );
        assert_eq!(
            database_url(
                "postgresql://u:p@db/shop?sslmode=disable",
                Service::Registry
            )
            .expect("valid"),
            "postgresql://u:p@db/shop_registry?sslmode=disable"
        );
        assert!(database_url("postgres://h/Bad-Name", Service::Users).is_err());
        assert!(database_url("mysql://x", Service::Users).is_err());
        assert!(database_url("not a url", Service::Users).is_err());
    }

    #[test]
    fn child_command_lines() {
        let spec = InstanceSpec {
            id: "users-2".into(),
            service: Service::Users,
            port: 0,
            version: None,
        };
        let shared = Shared {
            data_dir: Path::new(".bazaar"),
            registry: Some("http://127.0.0.1:7701"),
            db_server: Some("postgres://pg@h:5432"),
            db_pool: None,
            config: None,
            cart_store: "embedded",
            bus: Some("nats://127.0.0.1:4222"),
            ratelimit: Some("redis://127.0.0.1:6379"),
            threads: 1,
            traces: Some("http://127.0.0.1:7702/v1/traces"),
            tls: None,
            pki: None,
        };
        let args = child_args(&spec, &shared).expect("valid");
        assert_eq!(
            args.join(" "),
            "serve users --instance-id users-2 --port 0 --data-dir .bazaar --set log.format=json --exit-with-parent --threads 1 \
             --registry http://127.0.0.1:7701 \
             --set trace.endpoint=http://127.0.0.1:7702/v1/traces --set trace.start_traces=false \
             --db postgres://pg@h:5432/bazaar_users \
             --set events.transport=nats --set events.nats_url=nats://127.0.0.1:4222 --set users.seed_demo=true"
        );
        assert!(check_bus("nats://127.0.0.1:4222").is_ok());
        assert!(check_bus("redis://127.0.0.1:6379").is_err());
        assert!(check_bus("nats").is_err());
        let gateway = InstanceSpec {
            id: "gateway-1".into(),
            service: Service::Gateway,
            port: 7700,
            version: None,
        };
        let args = child_args(
            &gateway,
            &Shared {
                data_dir: Path::new("d"),
                db_server: Some("postgres://pg@h"),
                db_pool: None,
                bus: None,
                ..shared
            },
        )
        .expect("valid");
        assert!(
            !args.contains(&"--db".to_owned()),
            "the gateway has no database"
        );
        assert!(
            args.contains(&"gateway.ratelimit_store=redis://127.0.0.1:6379".to_owned()),
            "only the gateway gets the rate-limit store: {args:?}"
        );
        assert!(
            args.contains(&"trace.endpoint=http://127.0.0.1:7702/v1/traces".to_owned())
                && !args.contains(&"trace.start_traces=false".to_owned()),
            "the gateway starts traces: {args:?}"
        );
        for service in [Service::Registry, Service::Telemetry] {
            let spec = InstanceSpec {
                id: format!("{}-1", service.name()),
                service,
                port: 0,
                version: None,
            };
            let args = child_args(&spec, &shared).expect("valid").join(" ");
            assert!(
                !args.contains("trace."),
                "{} is not traced: {args}",
                service.name()
            );
        }
        let tls = TlsConfig {
            cert: "d/tls/server.pem".into(),
            key: "d/tls/server.key".into(),
            ..TlsConfig::default()
        };
        let with_tls = Shared {
            tls: Some(&tls),
            ..shared
        };
        let args = child_args(&gateway, &with_tls).expect("valid");
        assert!(
            args.join(" ").contains(
                "--set gateway.tls.port=7743 --set gateway.tls.cert=d/tls/server.pem --set gateway.tls.key=d/tls/server.key"
            ),
            "{args:?}"
        );
        assert!(
            !child_args(&spec, &with_tls)
                .expect("valid")
                .join(" ")
                .contains("tls"),
            "only the gateway serves HTTPS"
        );
        let with_mtls = Shared {
            pki: Some(Path::new("d/pki")),
            ..shared
        };
        for spec in [&spec, &gateway] {
            let service = spec.service.name();
            assert!(
                child_args(spec, &with_mtls)
                    .expect("valid")
                    .join(" ")
                    .contains(&format!(
                        "--set mtls.ca=d/pki/ca.pem --set mtls.cert=d/pki/{service}.pem --set mtls.key=d/pki/{service}.key"
                    )),
                "each service presents its own certificate"
            );
        }
        let high = InstanceSpec {
            port: 65500,
            ..gateway.clone()
        };
        assert!(child_args(&high, &with_tls).is_err());
        assert!(check_ratelimit("redis://127.0.0.1:6379").is_ok());
        assert!(check_ratelimit("local").is_err());
    }
}

//! `up --profile`: the backends and instance counts a profile stands for, and a check, before
//! anything starts, that every server the system will use answers.

use std::time::Duration;

use crate::args::{Profile, Service, UpArgs};

/// The servers of the production profile, where a developer's machine has them.
pub(crate) const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
pub(crate) const NATS: &str = "nats://127.0.0.1:4222";
pub(crate) const REDIS: &str = "redis://127.0.0.1:6379";
/// Instances of each service that scales out, in the production profile.
pub(crate) const PRODUCTION_REPLICAS: u8 = 2;

/// `args` with the profile's settings filled in wherever a flag left them open.
pub(crate) fn apply(args: &UpArgs) -> UpArgs {
    let mut args = args.clone();
    if args.profile == Profile::Embedded {
        return args;
    }
    args.db.get_or_insert_with(|| POSTGRES.to_owned());
    args.bus.get_or_insert_with(|| NATS.to_owned());
    args.ratelimit.get_or_insert_with(|| REDIS.to_owned());
    if args.cart_store == "embedded" {
        REDIS.clone_into(&mut args.cart_store);
    }
    // `--replicas` flags given win; the profile's come first so a later flag overrides them.
    let named: Vec<String> = args
        .replicas
        .iter()
        .filter_map(|flag| flag.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .collect();
    let mut replicas: Vec<String> = Service::ALL
        .iter()
        .filter(|s| s.scales_out() && !named.iter().any(|n| n == s.name()))
        .map(|s| format!("{}={PRODUCTION_REPLICAS}", s.name()))
        .collect();
    replicas.append(&mut args.replicas);
    args.replicas = replicas;
    args
}

/// The servers `args` point at, each with the flag that names it: `(what, flag, URL)`.
pub(crate) fn servers(args: &UpArgs) -> Vec<(&'static str, &'static str, &str)> {
    let mut servers = Vec::new();
    if let Some(db) = &args.db {
        servers.push(("PostgreSQL", "--db", db.as_str()));
    }
    if let Some(bus) = &args.bus {
        servers.push(("NATS", "--bus", bus.as_str()));
    }
    if let Some(store) = &args.ratelimit {
        servers.push(("Redis", "--ratelimit", store.as_str()));
    }
    if args.cart_store != "embedded" {
        servers.push(("Redis", "--cart-store", args.cart_store.as_str()));
    }
    if let Some(etcd) = &args.etcd {
        servers.push(("etcd", "--etcd", etcd.as_str()));
    }
    servers
}

/// Connections left unused on the server: for `psql`, a migration tool, a monitoring agent.
const SPARE_CONNECTIONS: u32 = 5;
/// Pools kept room for beyond the system's own: a release's candidate instances.
const RELEASE_ROOM: u32 = 4;
/// The fewest connections an instance's pool works well with: one for its requests, one for
/// its event relay and consumer.
const MIN_POOL: u32 = 2;

/// The most connections each of `pools` instances may open on the PostgreSQL server of `server`
/// so that, with room for a release's candidates, they stay within what the server allows
/// (`max_connections`, less the superuser reserve and the connections already open). Never more
/// than the chassis's own default; an error naming the numbers when the server is too small.
pub(crate) async fn postgres_budget(server: &str, pools: usize) -> Result<u32, String> {
    use sqlx::Connection;
    let url = url::Url::parse(server).map_err(|e| format!("--db {server:?}: {e}"))?;
    // Any database answers for the server's settings: the one the URL names (which may not
    // exist yet), else `postgres`, else `template1` (for a server without `postgres`, or a
    // user not allowed in it).
    let named = url.path().trim_start_matches('/').to_owned();
    let candidates = [named.as_str(), "postgres", "template1"];
    let mut failure = String::new();
    let mut connected = None;
    for database in candidates.into_iter().filter(|d| !d.is_empty()) {
        let mut url = url.clone();
        url.set_path(&format!("/{database}"));
        match sqlx::PgConnection::connect(url.as_str()).await {
            Ok(connection) => {
                connected = Some(connection);
                break;
            }
            Err(error) => failure = error.to_string(),
        }
    }
    let mut connection =
        connected.ok_or_else(|| format!("--db {}: {failure}", redacted(server)))?;
    let (max, reserved, open): (i32, i32, i64) = sqlx::query_as(
        "SELECT current_setting('max_connections')::int,
                current_setting('superuser_reserved_connections')::int,
                (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')",
    )
    .fetch_one(&mut connection)
    .await
    .map_err(|e| format!("--db {}: reading max_connections: {e}", redacted(server)))?;
    let _ = connection.close().await;
    let share = pool_share(
        u32::try_from(max).unwrap_or(0),
        u32::try_from(reserved).unwrap_or(0),
        u32::try_from(open).unwrap_or(u32::MAX),
        u32::try_from(pools).unwrap_or(u32::MAX),
    );
    share.ok_or_else(|| {
        format!(
            "PostgreSQL at {} allows {max} connections ({reserved} reserved, {open} open): too few \
             for {pools} instances with a database to get {MIN_POOL} each; raise max_connections \
             or run fewer replicas",
            redacted(server)
        )
    })
}

/// Each pool's share of `max` connections, `reserved` and `open` ones set aside; `None` below
/// [`MIN_POOL`].
fn pool_share(max: u32, reserved: u32, open: u32, pools: u32) -> Option<u32> {
    let free = max
        .saturating_sub(reserved)
        .saturating_sub(open)
        .saturating_sub(SPARE_CONNECTIONS);
    let share = free / pools.saturating_add(RELEASE_ROOM).max(1);
    let default = chassis::config::DatabaseConfig::default().max_connections;
    (share >= MIN_POOL).then(|| share.min(default))
}

/// `url` without its password, for printing.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Checks that every server of `args` takes a TCP connection within `timeout`, so a server
/// that is down is named at once instead of as a dozen services that never get ready.
pub(crate) async fn check_reachable(args: &UpArgs, timeout: Duration) -> Result<(), String> {
    for (what, flag, url) in servers(args) {
        let parsed = url::Url::parse(url).map_err(|e| format!("{flag} {url:?}: {e}"))?;
        let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
        let port = parsed.port_or_known_default().unwrap_or(match what {
            "PostgreSQL" => 5432,
            "NATS" => 4222,
            "etcd" => 2379,
            _ => 6379,
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let reached = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port)))
            .await
            .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))
            .and_then(|connected| connected.map_err(|e| e.to_string()));
        if let Err(reason) = reached {
            let hint = if args.profile == Profile::Production {
                format!("start it, or point {flag} at yours (the production profile needs it)")
            } else {
                format!("start it, or leave {flag} out")
            };
            return Err(format!(
                "{what} at {host}:{port} ({flag}) is not reachable: {reason}; {hint}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn up(flags: &[&str]) -> UpArgs {
        let cli = Cli::parse_from(["bazaar", "up"].iter().chain(flags));
        match cli.command {
            Command::Up(args) => args,
            other => panic!("not up: {other:?}"),
        }
    }

    #[test]
    fn embedded_changes_nothing() {
        let args = apply(&up(&[]));
        assert_eq!(args.db, None);
        assert_eq!(args.bus, None);
        assert_eq!(args.ratelimit, None);
        assert_eq!(args.cart_store, "embedded");
        assert!(args.replicas.is_empty());
    }

    #[test]
    fn production_fills_in_servers_and_replicas_and_flags_win() {
        let args = apply(&up(&["--profile", "production"]));
        assert_eq!(args.db.as_deref(), Some(POSTGRES));
        assert_eq!(args.bus.as_deref(), Some(NATS));
        assert_eq!(args.ratelimit.as_deref(), Some(REDIS));
        assert_eq!(args.cart_store, REDIS);
        assert!(args.replicas.contains(&"gateway=2".to_owned()));
        assert!(args.replicas.contains(&"cart=2".to_owned()));
        assert!(!args.replicas.iter().any(|r| r.starts_with("registry")));
        let specs = crate::up::plan::instances(0, &args.replicas).expect("a valid plan");
        assert_eq!(specs.len(), 2 + 10 * 2);

        let args = apply(&up(&[
            "--profile",
            "production",
            "--db",
            "postgres://me@db.example:5433/shop",
            "--replicas",
            "orders=3",
        ]));
        assert_eq!(
            args.db.as_deref(),
            Some("postgres://me@db.example:5433/shop")
        );
        let specs = crate::up::plan::instances(0, &args.replicas).expect("a valid plan");
        assert_eq!(
            specs
                .iter()
                .filter(|s| s.service == Service::Orders)
                .count(),
            3
        );
        assert_eq!(
            specs.iter().filter(|s| s.service == Service::Users).count(),
            2
        );
    }

    #[test]
    fn pools_share_what_the_server_allows() {
        // PostgreSQL's defaults, nothing else connected, the production profile's 18 pools.
        assert_eq!(pool_share(100, 3, 1, 18), Some(4));
        // A roomy server: the chassis's default, no more.
        assert_eq!(pool_share(1000, 3, 1, 18), Some(8));
        // A busy small one: refused rather than starved.
        assert_eq!(pool_share(100, 3, 60, 18), None);
        assert_eq!(pool_share(0, 3, 0, 18), None);
    }

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redacted("postgres://shop:s3cret@db:5432/bazaar"),
            "postgres://shop:***@db:5432/bazaar"
        );
        assert_eq!(redacted(NATS), NATS);
    }

    #[tokio::test]
    async fn a_server_that_is_down_is_named_with_its_flag() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let args = apply(&up(&[
            "--profile",
            "production",
            "--bus",
            &format!("nats://127.0.0.1:{port}"),
        ]));
        // Only the bus is checked here: the others may or may not run on this machine.
        let args = UpArgs {
            db: None,
            ratelimit: None,
            cart_store: "embedded".to_owned(),
            ..args
        };
        let error = check_reachable(&args, Duration::from_secs(2))
            .await
            .expect_err("nobody listens");
        assert!(
            error.starts_with(&format!(
                "NATS at 127.0.0.1:{port} (--bus) is not reachable"
            )),
            "{error}"
        );
        assert!(error.contains("point --bus at yours"), "{error}");
    }

    #[tokio::test]
    #[ignore = "needs PostgreSQL at 127.0.0.1:5432 (or BAZAAR_TEST_POSTGRES_URL)"]
    async fn the_budget_is_read_through_any_database_the_server_lets_in() {
        let server = std::env::var("BAZAAR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut url = url::Url::parse(&server).expect("a URL");
        // The databases `up` makes from this name do not exist yet; `postgres` answers instead.
        url.set_path("/bazaar_budget_no_such_database");
        let budget = postgres_budget(url.as_str(), 4)
            .await
            .expect("read through another database");
        let default = chassis::config::DatabaseConfig::default().max_connections;
        assert!((MIN_POOL..=default).contains(&budget), "{budget}");

        let error = postgres_budget("postgres://nobody:secret@127.0.0.1:9/shop", 4)
            .await
            .expect_err("nothing listens there");
        assert!(
            error.starts_with("--db postgres://nobody:***@127.0.0.1:9/shop: "),
            "the server named, its password not: {error}"
        );
    }
}

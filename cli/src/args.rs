//! Command-line arguments.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit code for invalid configuration or arguments (BSD `EX_USAGE`).
pub(crate) const EXIT_USAGE: u8 = 64;

/// Bazaar: a microservices shop you can run on a laptop.
#[derive(Debug, Parser)]
#[command(name = "bazaar", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Start the whole system, one process per service instance, and stop it with Ctrl-C.
    Up(UpArgs),
    /// Run one service in this process (what `up` starts for each instance).
    Serve(ServeArgs),
    /// Show the instances, versions and health the registry knows.
    Status(StatusArgs),
    /// Delete the data directory, so the next `up` starts with fresh data.
    Reset(ResetArgs),
    /// Events a consumer gave up on (dead letters): list them, or replay one.
    Events(EventsArgs),
    /// Release a new version of a service: canary (weight in steps, rolled back on a breach)
    /// or blue-green (smoke-tested, switched at once, old set kept for a rollback window).
    Deploy(DeployArgs),
    /// Send all of a service's traffic back to its stable version and stop the candidate.
    Rollback(RollbackArgs),
    /// Traffic policies, versions and instance health per service.
    Releases(ReleasesArgs),
    /// Fault rules: errors, latency and dropped connections instances inject on purpose.
    Faults(FaultsArgs),
    /// Draw one trace as a waterfall (`bazaar trace <id>`, the id from an error's `trace_id`),
    /// or list traces to look at (`--slowest N`, `--errors`).
    Trace(TraceArgs),
    /// Every instance's log lines merged in time order, from the files `up` keeps:
    /// `bazaar logs orders payments --level warn`, `bazaar logs --trace <id>`, `--follow`.
    Logs(LogsArgs),
    /// A live table of every service's request rate, errors and p50/p99 latency.
    Top(TopArgs),
    /// Checkouts from many customers while instances are killed, frozen and made to fail;
    /// then every order is checked (stock, money, shipment, email). Starts its own system.
    Chaos(ChaosArgs),
    /// Load a running system with customers' journeys (browse, view, log in, buy, dashboard),
    /// open loop at a rate or closed loop with N users; report latency percentiles per journey
    /// and endpoint.
    Load(LoadArgs),
    /// Run one pattern live against the system and explain it step by step: `checkout`,
    /// `declined-card`, `payments-outage`, `crash-mid-saga`, `lost-consumer`, `discovery`,
    /// `rate-limit`, `mtls-refusal`, `canary-rollback`, `blue-green`,
    /// `monolith-vs-microservices`.
    Demo(DemoArgs),
    /// The shop's services in one process, calling each other in place (no trace store,
    /// storefront or mTLS): the monolith `bazaar demo monolith-vs-microservices` compares.
    Monolith(MonolithArgs),
    /// Ask one instance's health endpoint whether it is up: exit 0 on a 2xx answer, 1
    /// otherwise. For container health checks, where there is no curl
    /// (`bazaar probe http://127.0.0.1:9090/health/ready`).
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MonolithArgs {
    /// Where the services keep their databases and `run.json` is written.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// The gateway's port; the others follow as with `up` (0: free ports).
    #[arg(long, default_value_t = 7700)]
    pub(crate) base_port: u16,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// The scenario.
    #[arg(value_enum)]
    pub(crate) scenario: Scenario,
    /// Start a system for the scenario (and stop it after) even if `up` runs in the data
    /// directory. Without a running `up`, one is started anyway.
    #[arg(long)]
    pub(crate) fresh: bool,
    /// How long each side is loaded in `monolith-vs-microservices`.
    #[arg(long, default_value = "20s", value_parser = duration)]
    pub(crate) duration: std::time::Duration,
    /// The data directory of a running `up`.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

/// A scenario of `bazaar demo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// The happy path: gateway, the orders saga, catalog, payments, shipping, events, email.
    Checkout,
    /// A declined card: compensation in reverse order, stock released, no money held.
    DeclinedCard,
    /// Payments fails for a while: retries with backoff, then success; the breaker's state.
    PaymentsOutage,
    /// Orders killed with SIGKILL mid-saga and restarted: the saga resumes, one charge.
    CrashMidSaga,
    /// Notifications down while orders are placed: every email arrives once when it returns.
    LostConsumer,
    /// A replica dies: the registry marks it critical, callers stop using it, nothing fails.
    Discovery,
    /// A burst meets 429s with Retry-After.
    RateLimit,
    /// A caller without a valid certificate, and a service calling a route it may not.
    MtlsRefusal,
    /// A canary that fails a share of its requests is rolled back on its own.
    CanaryRollback,
    /// A blue-green release: the new set smoke-tested, switched at once.
    BlueGreen,
    /// The same checkout load against the services built into one process and against the
    /// distributed system: throughput, latency, memory and CPU side by side.
    MonolithVsMicroservices,
}

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// The URL to ask, plain `http://` (the admin port, `http.admin_port`, serves health
    /// without a certificate).
    #[arg(value_name = "URL")]
    pub(crate) url: String,
    /// Longest wait for the answer.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = duration)]
    pub(crate) timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Journeys started per second, on schedule whatever the shop's speed (open loop); each is
    /// timed from when it should have started.
    #[arg(long, value_name = "PER_SECOND", conflicts_with = "users")]
    pub(crate) rate: Option<f64>,
    /// Customers shopping at once, each starting a journey when the last ended (closed loop);
    /// 16 when neither this nor --rate is given.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=5000))]
    pub(crate) users: Option<u16>,
    /// How long journeys keep starting.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = duration)]
    pub(crate) duration: std::time::Duration,
    /// Stop after this many journeys (or at --duration, whichever comes first); the warm-up's
    /// are not counted.
    #[arg(long, value_name = "N")]
    pub(crate) journeys: Option<u64>,
    /// Journeys run this long first, at the same rate or with the same customers, and are
    /// left out of the report (one line says what they measured): the system's connections,
    /// pools and caches grow to the load before the measuring starts.
    #[arg(long, default_value = "0s", value_name = "DURATION", value_parser = duration)]
    pub(crate) warmup: std::time::Duration,
    /// Weights of the journeys (TOML, `[weights]`); a shop's day by default.
    #[arg(long, value_name = "FILE")]
    pub(crate) scenario: Option<PathBuf>,
    /// Customer accounts made for the run, each with a card.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=2000))]
    pub(crate) accounts: u16,
    /// How often a progress line is printed.
    #[arg(long, default_value = "2s", value_name = "DURATION", value_parser = duration)]
    pub(crate) every: std::time::Duration,
    /// Seed of the journeys drawn, to repeat a run's mix.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// The gateway to load; by default the one a running `up` in the data directory started.
    #[arg(long, value_name = "URL")]
    pub(crate) gateway: Option<String>,
    /// The data directory of a running `up`.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// How long customers shop while faults happen (at least 10s).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = duration)]
    pub(crate) duration: std::time::Duration,
    /// Customers shopping at once, each placing an order and waiting for it to settle.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=500))]
    pub(crate) customers: u16,
    /// Time between faults, on average (each pause is drawn between half and one and a half
    /// times this).
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = duration)]
    pub(crate) every: std::time::Duration,
    /// Longest wait, after the faults stop, for every checkout to finish and every event to
    /// be handled.
    #[arg(long, default_value = "3m", value_name = "DURATION", value_parser = duration)]
    pub(crate) settle: std::time::Duration,
    /// Seed of the choices (which instance, which fault, what is bought), to replay a run's
    /// sequence; random when absent. Timing still varies.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// A PostgreSQL server (`postgres://user@host:5432`): the run gets fresh databases on it
    /// (`chaos_<run>_<service>`) instead of SQLite files.
    #[arg(long, value_name = "URL")]
    pub(crate) db: Option<String>,
    /// Carry events through NATS JetStream (`nats://127.0.0.1:4222`), in streams of this run.
    #[arg(long, value_name = "URL")]
    pub(crate) bus: Option<String>,
    /// Run N instances of a service (`--replicas orders=2`), as with `up`.
    #[arg(long = "replicas", value_name = "SERVICE=N")]
    pub(crate) replicas: Vec<String>,
    /// Where the system keeps its data and logs; a new temporary directory by default, deleted
    /// after a run without violations.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Keep the data directory, databases and streams even when the run passes.
    #[arg(long)]
    pub(crate) keep: bool,
    /// Also write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// How often the table is redrawn (each row covers the interval).
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    pub(crate) every: String,
    /// Print one table, after one interval, and stop (for scripts).
    #[arg(long)]
    pub(crate) once: bool,
    /// Registry to find the instances through; by default the one a running `up` in the data
    /// directory started.
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    /// The data directory of a running `up`.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// Only these services' lines (all when none is named).
    pub(crate) services: Vec<Service>,
    /// Only the lines of this trace (its `trace_id`, from a problem or `bazaar trace`).
    #[arg(long, value_name = "TRACE_ID")]
    pub(crate) trace: Option<String>,
    /// Only the lines of this request (its `request_id`).
    #[arg(long, value_name = "REQUEST_ID")]
    pub(crate) request: Option<String>,
    /// Only lines at this level or above.
    #[arg(long, value_enum)]
    pub(crate) level: Option<LogLevel>,
    /// Keep printing lines as they are written, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print the lines as the JSON they are stored as.
    #[arg(long)]
    pub(crate) json: bool,
    /// The data directory `up` writes its logs under.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

/// Log levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum LogLevel {
    /// Everything.
    Trace,
    /// Details for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something to look at.
    Warn,
    /// Something failed.
    Error,
}

impl LogLevel {
    /// The level of a log line's `level` field (`INFO`, `WARN`, ...).
    pub(crate) fn parse(level: &str) -> Option<Self> {
        match level.to_ascii_uppercase().as_str() {
            "TRACE" => Some(Self::Trace),
            "DEBUG" => Some(Self::Debug),
            "INFO" => Some(Self::Info),
            "WARN" => Some(Self::Warn),
            "ERROR" => Some(Self::Error),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").args(["trace_id", "slowest", "errors"]).multiple(false))]
pub(crate) struct TraceArgs {
    /// The trace to draw: 32 hex digits, as in a problem's `trace_id` or a log line's.
    pub(crate) trace_id: Option<String>,
    /// List the N slowest traces kept.
    #[arg(long, value_name = "N")]
    pub(crate) slowest: Option<u32>,
    /// List the latest traces with a failed span.
    #[arg(long)]
    pub(crate) errors: bool,
    /// Only traces this service took part in (with a list).
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// How many traces a list shows (`--errors`, or the latest when nothing else is asked).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub(crate) limit: u32,
    /// The telemetry service to ask; by default the one the registry knows.
    #[arg(long, value_name = "URL")]
    pub(crate) telemetry: Option<String>,
    /// Registry to find the telemetry service through; by default the one a running `up` in
    /// the data directory started.
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    /// The data directory of a running `up`.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) action: EventsAction,
    /// Registry to find the services through; by default the one a running `up` in the data
    /// directory started.
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) registry: Option<String>,
    /// The data directory of a running `up`.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR, global = true)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum EventsAction {
    /// The dead letters of every consuming service (or of one).
    DeadLetters {
        /// Only this service's.
        #[arg(long)]
        service: Option<Service>,
    },
    /// Runs a dead letter's handler again.
    Replay {
        /// The service that holds it.
        service: Service,
        /// Its id, from `bazaar events dead-letters`.
        id: String,
    },
}

/// The processes Bazaar is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Service {
    /// Service registry and KV store.
    Registry,
    /// Trace store (OTLP receiver).
    Telemetry,
    /// Accounts and tokens.
    Users,
    /// Products, categories, stock and reservations.
    Catalog,
    /// Orders, priced by the catalog.
    Orders,
    /// Shopping carts.
    Cart,
    /// Charges, refunds and the ledger.
    Payments,
    /// Shipments and tracking.
    Shipping,
    /// Emails to customers, from events.
    Notifications,
    /// Products bought together, from events.
    Recommendations,
    /// The storefront's web pages.
    Web,
    /// The API gateway.
    Gateway,
}

impl Service {
    /// Every service, in start order.
    pub(crate) const ALL: [Service; 12] = [
        Service::Registry,
        Service::Telemetry,
        Service::Users,
        Service::Catalog,
        Service::Orders,
        Service::Payments,
        Service::Shipping,
        Service::Notifications,
        Service::Recommendations,
        Service::Cart,
        Service::Web,
        Service::Gateway,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Registry => registry::SERVICE,
            Self::Telemetry => telemetry::SERVICE,
            Self::Users => users::SERVICE,
            Self::Catalog => catalog::SERVICE,
            Self::Orders => orders::SERVICE,
            Self::Cart => cart::SERVICE,
            Self::Payments => payments::SERVICE,
            Self::Shipping => shipping::SERVICE,
            Self::Notifications => notifications::SERVICE,
            Self::Recommendations => recommendations::SERVICE,
            Self::Web => web::SERVICE,
            Self::Gateway => gateway::SERVICE,
        }
    }

    /// Whether it runs as several instances (all but the registry and the trace store, which
    /// are one each).
    pub(crate) fn scales_out(self) -> bool {
        !matches!(self, Self::Registry | Self::Telemetry)
    }

    /// Whether the service has a database of its own.
    pub(crate) fn has_database(self) -> bool {
        !matches!(self, Self::Gateway | Self::Cart | Self::Web)
    }

    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Which backends `up` runs the system on, and how many instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Profile {
    /// SQLite files, events over each producer's feed, carts and rate limits in-process, one
    /// instance of each service: nothing to install.
    Embedded,
    /// PostgreSQL (a database per service), NATS JetStream, Redis for carts and rate limits,
    /// and two instances of every service that scales out, the gateway included: the shape of
    /// a deployment, on one machine.
    Production,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct UpArgs {
    /// `embedded`, or `production`: PostgreSQL at postgres://postgres@127.0.0.1:5432, NATS at
    /// nats://127.0.0.1:4222, Redis at redis://127.0.0.1:6379 and two replicas of every
    /// service but the registry and the trace store. `--db`, `--bus`, `--ratelimit`,
    /// `--cart-store` and `--replicas` given beside it win.
    #[arg(long, value_enum, default_value = "embedded")]
    pub(crate) profile: Profile,
    /// Where databases, keys and logs live.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// First port: the gateway gets it, every other service a fixed offset from it. 0 picks
    /// free ports for everything (tests, or several systems on one machine).
    #[arg(long, default_value_t = chassis::ports::BASE)]
    pub(crate) base_port: u16,
    /// Run N instances of a service (`--replicas users=2`); repeat for several services.
    #[arg(long = "replicas", value_name = "SERVICE=N")]
    pub(crate) replicas: Vec<String>,
    /// A PostgreSQL server (`postgres://user@host:5432`) to use instead of SQLite files; each
    /// service gets its own database on it (`bazaar_<service>`, or `<name>_<service>` when the
    /// URL names a database), created if missing.
    #[arg(long, value_name = "URL")]
    pub(crate) db: Option<String>,
    /// A TOML config file passed to every service.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where carts live: `embedded` (a file in the data directory) or a Redis URL
    /// (`redis://127.0.0.1:6379`), which cart replicas need.
    #[arg(long, value_name = "STORE", default_value = "embedded")]
    pub(crate) cart_store: String,
    /// Carry events through NATS JetStream (`nats://127.0.0.1:4222`) instead of each
    /// producer's feed.
    #[arg(long, value_name = "URL")]
    pub(crate) bus: Option<String>,
    /// Keep instances, traffic policies and fault rules in etcd (`http://127.0.0.1:2379`, a path
    /// naming the key prefix: `http://127.0.0.1:2379/shop/`) instead of the built-in registry,
    /// which then does not run.
    #[arg(long, value_name = "URL")]
    pub(crate) etcd: Option<String>,
    /// Keep the gateways' rate-limit buckets in Redis (`redis://127.0.0.1:6379`), shared by
    /// gateway replicas, instead of in each process.
    #[arg(long, value_name = "URL")]
    pub(crate) ratelimit: Option<String>,
    /// Worker threads of each service process. One each measured fastest where a dozen
    /// processes share a laptop's cores (docs/decisions.md); give more to let one process use
    /// several cores.
    #[arg(long, value_name = "N", default_value = "1")]
    pub(crate) threads: NonZeroUsize,
    /// Services talk plain HTTP to each other instead of mutual TLS, and check no caller: only
    /// to measure what mTLS costs.
    #[arg(long)]
    pub(crate) no_mtls: bool,
    /// How long each service's certificate is valid; `up` renews it when a third is left.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = duration)]
    pub(crate) cert_lifetime: std::time::Duration,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The service to run.
    pub(crate) service: Service,
    /// A TOML config file (keys as in the README's config reference).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Port to listen on (`http.port`); 0 picks a free one.
    #[arg(long)]
    pub(crate) port: Option<String>,
    /// Address to bind (`http.host`).
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Data directory (`data_dir`).
    #[arg(long)]
    pub(crate) data_dir: Option<String>,
    /// The service's database URL (`database.url`): `sqlite://file.db` or `postgres://…`.
    #[arg(long, value_name = "URL")]
    pub(crate) db: Option<String>,
    /// Registry URL (`discovery.registry`); an empty value runs without a registry.
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    /// Instance id (`instance_id`).
    #[arg(long)]
    pub(crate) instance_id: Option<String>,
    /// Version to report (`version`), as a canary would.
    #[arg(long)]
    pub(crate) service_version: Option<String>,
    /// Any config key: `--set users.access_token_ttl=5m`. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) set: Vec<String>,
    /// Stop when standard input closes: `up` uses it so children never outlive it.
    #[arg(long, hide = true)]
    pub(crate) exit_with_parent: bool,
    /// Worker threads of the async runtime; one per core by default.
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<NonZeroUsize>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Registry to ask; by default the one a running `up` in the data directory started.
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    /// Data directory of the `up` to ask about.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ResetArgs {
    /// The data directory to delete.
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn service_names_round_trip() {
        for service in Service::ALL {
            assert_eq!(Service::parse(service.name()), Some(service));
        }
        assert_eq!(Service::parse("nope"), None);
    }
}

/// How `bazaar deploy` moves traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Strategy {
    /// Weight in steps, each checked against the stable version.
    Canary,
    /// Smoke-test the new set, switch everything at once, keep the old set for a while.
    BlueGreen,
}

/// Checks that the duration flag `flag` is at least `min`; the error names the flag, its value
/// and what the minimum is for (`--duration 2s: a run lasts at least 10s`).
pub(crate) fn at_least(
    flag: &str,
    value: std::time::Duration,
    min: std::time::Duration,
    why: &str,
) -> Result<(), String> {
    if value < min {
        return Err(format!(
            "{flag} {}: {why} {}",
            humantime::format_duration(value),
            humantime::format_duration(min)
        ));
    }
    Ok(())
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 30s or 500ms: {e}"))
}

fn rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("{text:?} is not a rate between 0 and 1 (0.2 is 20 %)"))
}

fn ratio(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 1.0)
        .ok_or_else(|| format!("{text:?} is not a ratio of at least 1"))
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// Service to release (catalog, orders, ...).
    pub(crate) service: String,
    /// Version the new instances report (1.1.0, 2.0-rc1, ...).
    #[arg(long)]
    pub(crate) version: String,
    #[arg(long, value_enum, default_value = "canary")]
    pub(crate) strategy: Strategy,
    /// Canary weights in percent, increasing, ending at 100.
    #[arg(long, default_value = "5,25,50,100")]
    pub(crate) steps: String,
    /// Time at each canary step.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) interval: std::time::Duration,
    /// Instances of the new version (default: as many as the stable version has).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub(crate) instances: Option<u8>,
    /// How far the candidate's error rate may exceed the stable's (0.02: two points).
    #[arg(long, default_value = "0.02", value_parser = rate)]
    pub(crate) max_error_rate: f64,
    /// How many times the stable version's p99 latency the candidate's may be.
    #[arg(long, default_value = "1.5", value_parser = ratio)]
    pub(crate) max_p99_ratio: f64,
    /// A p99 latency the candidate may always reach, however fast the stable version is.
    #[arg(long, default_value = "100ms", value_parser = duration)]
    pub(crate) p99_floor: std::time::Duration,
    /// Requests the candidate needs in a step before it is judged.
    #[arg(long, default_value_t = 20)]
    pub(crate) min_requests: u32,
    /// Keep each signed-in user on one version as the weight grows.
    #[arg(long)]
    pub(crate) sticky_users: bool,
    /// Simulate a bad release: the new version fails this share of requests (0 to 1).
    #[arg(long, value_parser = rate)]
    pub(crate) fault_error_rate: Option<f64>,
    /// Simulate a slow release: the new version adds this delay to its requests.
    #[arg(long, value_parser = duration)]
    pub(crate) fault_delay: Option<std::time::Duration>,
    /// Simulate a crashing release: the new version drops this share of connections.
    #[arg(long, value_parser = rate)]
    pub(crate) fault_drop_rate: Option<f64>,
    /// Blue-green: gateway path to smoke-test the new set on (repeatable; default: the
    /// service's first route).
    #[arg(long, value_name = "PATH")]
    pub(crate) smoke: Vec<String>,
    /// Blue-green: how long the old set keeps running after the switch.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub(crate) rollback_window: std::time::Duration,
    /// Registry URL (default: the one `bazaar up` runs in the data directory).
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// Service whose release to undo.
    pub(crate) service: String,
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ReleasesArgs {
    #[arg(long, value_name = "URL")]
    pub(crate) registry: Option<String>,
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct FaultsArgs {
    #[command(subcommand)]
    pub(crate) action: FaultsAction,
    #[arg(long, value_name = "URL", global = true)]
    pub(crate) registry: Option<String>,
    #[arg(long, env = "BAZAAR_DATA_DIR", default_value = chassis::config::DEFAULT_DATA_DIR, global = true)]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum FaultsAction {
    /// Create or replace the rule NAME; it applies within a second.
    Set {
        /// Name of the rule (letters, digits, '.', '_', '-').
        name: String,
        /// Service whose instances inject it.
        #[arg(long)]
        service: String,
        /// Only instances of this version.
        #[arg(long)]
        version: Option<String>,
        /// Only requests whose path starts with this.
        #[arg(long)]
        route: Option<String>,
        /// Share of requests answered with an error (0 to 1).
        #[arg(long, value_parser = rate)]
        error_rate: Option<f64>,
        /// Status of injected errors.
        #[arg(long, default_value_t = 500)]
        status: u16,
        /// Delay added to requests.
        #[arg(long, value_parser = duration)]
        delay: Option<std::time::Duration>,
        /// Share of requests delayed (0 to 1).
        #[arg(long, default_value = "1", value_parser = rate)]
        delay_rate: f64,
        /// Share of requests whose connection is dropped (0 to 1).
        #[arg(long, value_parser = rate)]
        drop_rate: Option<f64>,
    },
    /// Every rule.
    List,
    /// Remove the rule NAME, or every rule with --all.
    Clear {
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

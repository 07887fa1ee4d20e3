//! Starting and stopping `bazaar up` from a test.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_bazaar");

/// A running `bazaar up`.
pub(crate) struct Running {
    child: Option<Child>,
    /// The servers of the production rehearsal, cleaned when the system stops.
    backends: Option<Backends>,
    output: Arc<Mutex<String>>,
    pub(crate) data_dir: PathBuf,
    pub(crate) gateway: String,
    pub(crate) http: reqwest::Client,
}

impl Running {
    /// Runs `bazaar up --data-dir <data_dir> --base-port 0 <extra>` and waits for it to be up.
    pub(crate) fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// As [`Running::start`], with extra environment variables (configuration overrides such
    /// as `BAZAAR_PAYMENTS__PROCESSOR_LATENCY`), which every instance inherits.
    pub(crate) fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let backends = Backends::for_data_dir(data_dir);
        let mut command = Command::new(BIN);
        command
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--base-port", "0"])
            .args(extra)
            .envs(env.iter().copied());
        if let Some(backends) = &backends {
            backends.configure(&mut command, extra, env);
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bazaar up starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            // Whole lines: stderr is unbuffered, so a line `up` writes there can arrive in
            // pieces, and must not be cut by stdout's lines in between.
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stream);
                let mut line = Vec::new();
                while lines.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    output
                        .lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            });
        }
        let mut running = Self {
            child: Some(child),
            backends,
            output,
            data_dir: data_dir.to_path_buf(),
            gateway: String::new(),
            http: reqwest::Client::new(),
        };
        running.gateway = running.wait_until_up();
        running.http = operator_client(data_dir);
        running
    }

    fn wait_until_up(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(state) = self.run_state()
                && self.output().contains("Press Ctrl-C to stop.")
            {
                return state["gateway"].as_str().expect("gateway url").to_owned();
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("waitable"))
            {
                panic!("bazaar up exited early ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "bazaar up not up within 90s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `run.json`, while `up` runs.
    pub(crate) fn run_state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.data_dir.join("run.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// `(instance id, pid)` of every instance of `service`, from `run.json`.
    pub(crate) fn instances(&self, service: &str) -> Vec<(String, i32)> {
        let state = self.run_state().expect("run.json");
        state["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .filter(|i| i["service"] == service)
            .map(|i| {
                let id = i["id"].as_str().expect("id").to_owned();
                (
                    id,
                    i32::try_from(i["pid"].as_u64().expect("pid")).expect("pid fits"),
                )
            })
            .collect()
    }

    /// Base URL of the first instance of `service`, from `run.json`.
    pub(crate) fn url_of(&self, service: &str) -> String {
        let state = self.run_state().expect("run.json");
        state["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["service"] == service)
            .and_then(|i| i["url"].as_str())
            .expect("an instance with a url")
            .to_owned()
    }

    /// Pids of every instance, from `run.json`.
    pub(crate) fn all_pids(&self) -> Vec<i32> {
        let state = self.run_state().expect("run.json");
        state["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| i32::try_from(i["pid"].as_u64().expect("pid")).expect("pid fits"))
            .collect()
    }

    /// Pids of every instance of `service`, from `run.json`.
    pub(crate) fn pids(&self, service: &str) -> Vec<i32> {
        let state = self.run_state().expect("run.json");
        state["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .filter(|i| i["service"] == service)
            .map(|i| i32::try_from(i["pid"].as_u64().expect("pid")).expect("pid fits"))
            .collect()
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().expect("lock").clone()
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// GET `path` through the gateway, with a bearer token if given.
    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(self.at(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("gateway answers")
    }

    /// POST `body` as JSON to `path` through the gateway.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        self.http
            .post(self.at(path))
            .json(body)
            .send()
            .await
            .expect("gateway answers")
    }

    /// As [`Running::interrupt`], keeping the system's databases and streams for the next `up`
    /// on the same data directory (they are on the servers, not in the directory).
    pub(crate) fn interrupt_keeping_data(mut self) -> (ExitStatus, String) {
        if let Some(backends) = self.backends.take() {
            PARKED
                .lock()
                .expect("lock")
                .push((self.data_dir.clone(), backends));
        }
        self.interrupt()
    }

    /// Ctrl-C, then waits for `up` to exit; returns its status and everything it printed.
    pub(crate) fn interrupt(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        kill(pid, Signal::SIGINT).expect("signal delivered");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("waitable") {
                // Let the reader threads drain what is left.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "bazaar up did not stop within 30s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(backends) = self.backends.take() {
            backends.clean();
        }
    }
}

/// The production rehearsal: with `BAZAAR_E2E_PROFILE=production` (as `.ci/run` sets for its
/// last pass), every test's system runs `up --profile production`, on PostgreSQL, NATS
/// JetStream and Redis with two instances of each service, under names of its own (databases,
/// streams, keys) that are removed when it stops.
pub(crate) struct Backends {
    /// `e2e_p<pid>_<n>`: the database prefix, stream prefix and key prefix of one system.
    prefix: String,
    /// The PostgreSQL server, as a URL to its maintenance database.
    postgres: String,
    nats: String,
}

/// Systems stopped with [`Running::interrupt_keeping_data`], by data directory.
static PARKED: Mutex<Vec<(PathBuf, Backends)>> = Mutex::new(Vec::new());

/// Whether the tests run the production rehearsal (`BAZAAR_E2E_PROFILE=production`).
pub(crate) fn production() -> bool {
    match std::env::var("BAZAAR_E2E_PROFILE")
        .unwrap_or_default()
        .as_str()
    {
        "" | "embedded" => false,
        "production" => true,
        other => panic!("BAZAAR_E2E_PROFILE={other:?}: expected embedded or production"),
    }
}

impl Backends {
    /// The backends of a system on `data_dir`: those a stopped one left for it, or new ones.
    fn for_data_dir(data_dir: &Path) -> Option<Self> {
        if !production() {
            return None;
        }
        let mut parked = PARKED.lock().expect("lock");
        if let Some(i) = parked.iter().position(|(dir, _)| dir == data_dir) {
            return Some(parked.remove(i).1);
        }
        drop(parked);
        Some(Self::new())
    }

    fn new() -> Self {
        static SYSTEMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        static SWEPT: std::sync::Once = std::sync::Once::new();
        let n = SYSTEMS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let backends = Self {
            prefix: format!("e2e_p{}_{n}", std::process::id()),
            postgres: std::env::var("BAZAAR_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
            nats: std::env::var("BAZAAR_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
        };
        // What earlier runs left behind (a run killed before its systems stopped): the
        // databases and streams of test processes that no longer exist.
        SWEPT.call_once(|| {
            backends.sweep(|system| {
                let pid = system
                    .split('_')
                    .nth(1)
                    .and_then(|p| p[1..].parse::<i32>().ok());
                pid.is_some_and(|pid| !alive(pid))
            });
        });
        backends
    }

    /// `up --profile production` on this system's own names; what the test sets itself wins.
    fn configure(&self, command: &mut Command, extra: &[&str], env: &[(&str, &str)]) {
        command.args(["--profile", "production"]);
        if !extra.contains(&"--bus") {
            command.args(["--bus", &self.nats]);
        }
        if !extra.contains(&"--db") {
            let mut url = url::Url::parse(&self.postgres).expect("a PostgreSQL URL");
            url.set_path(&format!("/{}", self.prefix));
            command.args(["--db", url.as_str()]);
        }
        for (name, value) in [
            ("BAZAAR_EVENTS__NATS_PREFIX", self.prefix.clone()),
            (
                "BAZAAR_CART__REDIS_PREFIX",
                format!("{}:cart:", self.prefix),
            ),
            (
                "BAZAAR_GATEWAY__RATELIMIT_PREFIX",
                format!("{}:ratelimit:", self.prefix),
            ),
        ] {
            if !env.iter().any(|(set, _)| *set == name) {
                command.env(name, value);
            }
        }
    }

    /// Drops the system's databases and deletes its streams.
    fn clean(self) {
        let ours = self.prefix.clone();
        self.sweep(move |prefix| prefix == ours);
    }

    /// Drops the databases and deletes the streams of every system `doomed` picks by its
    /// prefix (`e2e_p<pid>_<n>`).
    fn sweep(&self, doomed: impl Fn(&str) -> bool + Send + 'static) {
        // `e2e_p12_3_orders` and `E2E_P12_3_ORDERS` belong to the system `e2e_p12_3`.
        fn system_of(name: &str) -> Option<String> {
            let name = name.to_lowercase();
            let mut parts = name.splitn(4, '_');
            let (e2e, pid, n) = (parts.next()?, parts.next()?, parts.next()?);
            (e2e == "e2e" && pid.starts_with('p') && parts.next().is_some())
                .then(|| format!("{e2e}_{pid}_{n}"))
        }
        let postgres = self.postgres.clone();
        let nats = self.nats.clone();
        let cleaning = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async {
                if let Ok(mut admin) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&postgres).await
                {
                    let names: Vec<(String,)> = sqlx::query_as(
                        "SELECT datname FROM pg_database WHERE datname LIKE 'e2e\\_p%'",
                    )
                    .fetch_all(&mut admin)
                    .await
                    .unwrap_or_default();
                    for (name,) in names {
                        if system_of(&name).is_some_and(|system| doomed(&system)) {
                            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE \"{name}\" WITH (FORCE)"
                            )))
                            .execute(&mut admin)
                            .await;
                        }
                    }
                }
                if let Ok(client) = async_nats::connect(&nats).await {
                    let js = async_nats::jetstream::new(client);
                    let mut names = js.stream_names();
                    let mut streams = Vec::new();
                    while let Some(Ok(name)) = futures_util::StreamExt::next(&mut names).await {
                        if system_of(&name).is_some_and(|system| doomed(&system)) {
                            streams.push(name);
                        }
                    }
                    for name in streams {
                        let _ = js.delete_stream(name).await;
                    }
                }
            });
        });
        let _ = cleaning.join();
    }
}

/// Whether process `pid` exists.
pub(crate) fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// A database prefix on the test PostgreSQL server for one `up --db`, whose databases
/// (`<prefix>_<service>`) are dropped by [`PgPrefix::drop_all`].
pub(crate) struct PgPrefix {
    server: String,
    prefix: String,
}

impl PgPrefix {
    /// A prefix unique to this test process and `name`.
    pub(crate) fn new(name: &str) -> Self {
        let server = std::env::var("BAZAAR_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        Self {
            server,
            prefix: format!("e2e_{name}_{}", std::process::id()),
        }
    }

    /// The `--db` URL.
    pub(crate) fn url(&self) -> String {
        let mut url = url::Url::parse(&self.server).expect("url");
        url.set_path(&format!("/{}", self.prefix));
        url.to_string()
    }

    /// Checks that every database of `services` exists, and drops it.
    pub(crate) async fn drop_all(&self, services: &[&str]) {
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&self.server)
            .await
            .expect("connects");
        for service in services {
            let name = format!("{}_{service}", self.prefix);
            let exists: Option<(i32,)> =
                sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut admin)
                    .await
                    .expect("query");
            assert!(exists.is_some(), "database {name} was created");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .expect("drops");
        }
    }
}

/// The services that keep a database.
pub(crate) const WITH_DATABASES: [&str; 9] = [
    "registry",
    "telemetry",
    "users",
    "catalog",
    "orders",
    "payments",
    "shipping",
    "notifications",
    "recommendations",
];

/// An HTTP client that calls the gateway plainly and services over mTLS as the operator, with
/// the certificate `up` issued in `data_dir`.
pub(crate) fn operator_client(data_dir: &Path) -> reqwest::Client {
    client_as(data_dir, "operator")
}

/// An HTTP client that calls services over mTLS as `name` (a service, or the operator), with
/// the certificate `up` issued it in `data_dir`.
pub(crate) fn client_as(data_dir: &Path, name: &str) -> reqwest::Client {
    let pki = data_dir.join("pki");
    let identity = chassis::mtls::Identity::load(&chassis::mtls::MtlsConfig {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{name}.pem")),
        key: pki.join(format!("{name}.key")),
        ..chassis::mtls::MtlsConfig::default()
    })
    .expect("the certificate is usable")
    .expect("configured");
    reqwest::Client::builder()
        .tls_backend_preconfigured((*identity.client_config(&[])).clone())
        .build()
        .expect("client")
}

/// Sends `request` and reads its answer as JSON.
pub(crate) async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("a JSON answer")
}

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
        let mut child = Command::new(BIN)
            .args(["up", "--data-dir"])
            .arg(data_dir)
            .args(["--base-port", "0"])
            .args(extra)
            .envs(env.iter().copied())
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
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
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
pub(crate) const WITH_DATABASES: [&str; 8] = [
    "registry",
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

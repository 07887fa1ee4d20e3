//! A running system as a command drives it: the `bazaar up` a chaos run or a demo starts, its
//! gateway (as customers and an administrator reach it) and its services (as the operator
//! reaches them, over mTLS).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chassis::client::{ServiceClient, Transport};
use chassis::config::DiscoveryConfig;
use chassis::discovery::Discovery;
use chassis::error::ErrorChain;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::state::{self, InstanceState};
use crate::storefront::{Answer, Ask, Storefront};

/// Longest wait for `up` to start every instance.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for `up` to stop after Ctrl-C.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A `bazaar up` child process (or a `bazaar monolith`, which writes the same `run.json`).
#[derive(Debug)]
pub(crate) struct Up {
    child: Child,
    /// `up` or `monolith`.
    command: &'static str,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Up {
    /// Starts `bazaar up` in `data_dir` on free ports with `extra` flags and `env`, and waits
    /// until it has started every instance.
    pub(crate) async fn start(
        data_dir: &Path,
        extra: &[String],
        env: &[(&str, String)],
    ) -> Result<Self, String> {
        Self::launch("up", data_dir, extra, env).await
    }

    /// Starts `bazaar monolith` in `data_dir` on free ports with `env`, and waits until every
    /// service in it is ready.
    pub(crate) async fn monolith(data_dir: &Path, env: &[(&str, String)]) -> Result<Self, String> {
        Self::launch("monolith", data_dir, &[], env).await
    }

    async fn launch(
        command: &'static str,
        data_dir: &Path,
        extra: &[String],
        env: &[(&str, String)],
    ) -> Result<Self, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the bazaar executable: {e}"))?;
        let log = Self::log_of(command, data_dir);
        let output = std::fs::File::create(&log)
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
        let mut child = Command::new(exe);
        child
            .arg(command)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--base-port", "0"])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .kill_on_drop(true);
        for (name, value) in env {
            child.env(name, value);
        }
        let child = child
            .spawn()
            .map_err(|e| format!("cannot start bazaar {command}: {e}"))?;
        let mut up = Self {
            child,
            command,
            data_dir: data_dir.to_owned(),
            log,
        };
        up.wait_until_started().await?;
        Ok(up)
    }

    async fn wait_until_started(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let pid = self.child.id();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "bazaar {} stopped ({status}); its output is in {}:\n{}",
                    self.command,
                    self.log.display(),
                    tail(&self.log, 20)
                ));
            }
            if state::running(&self.data_dir).is_some_and(|s| Some(s.pid) == pid) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "bazaar {} did not start within {START_TIMEOUT:?}; its output is in {}:\n{}",
                    self.command,
                    self.log.display(),
                    tail(&self.log, 20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Every instance as `up` last wrote it down (pids change on restarts).
    pub(crate) fn instances(&self) -> Vec<InstanceState> {
        state::running(&self.data_dir)
            .map(|s| s.instances)
            .unwrap_or_default()
    }

    /// The registry's address.
    pub(crate) fn registry(&self) -> Result<String, String> {
        state::running(&self.data_dir)
            .map(|s| s.registry)
            .ok_or_else(|| "bazaar up stopped".to_owned())
    }

    /// Where its output goes: beside `data_dir`, named for the command.
    fn log_of(command: &str, data_dir: &Path) -> PathBuf {
        data_dir.with_extension(format!("{command}.log"))
    }

    /// Stops it, then deletes its data directory and its output: for a system started only
    /// for the command at hand.
    pub(crate) async fn stop_and_remove(self) {
        let (data_dir, log) = (self.data_dir.clone(), self.log.clone());
        self.stop().await;
        let _ = std::fs::remove_dir_all(data_dir);
        let _ = std::fs::remove_file(log);
    }

    /// Stops it as Ctrl-C would, and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The running shop, as customers, an administrator and the operator reach it.
#[derive(Debug)]
pub(crate) struct Shop {
    storefront: Storefront,
    transport: Transport,
    services: ServiceClient,
    stop: CancellationToken,
}

impl Shop {
    /// The shop `up` runs in `data_dir`.
    pub(crate) fn connect(data_dir: &Path) -> Result<Self, String> {
        let running = state::running(data_dir)
            .ok_or_else(|| format!("no bazaar up is running in {}", data_dir.display()))?;
        let transport = state::operator_transport(data_dir);
        let stop = CancellationToken::new();
        let config = DiscoveryConfig {
            registry: Some(running.registry.clone()),
            ..DiscoveryConfig::default()
        };
        let discovery = Discovery::new(&config, transport.clone(), &stop);
        let services = ServiceClient::new(discovery, transport.clone(), &config, "cli");
        Ok(Self {
            storefront: Storefront::of_running(data_dir, transport.clone())?,
            transport,
            services,
            stop,
        })
    }

    /// The gateway.
    pub(crate) fn storefront(&self) -> &Storefront {
        &self.storefront
    }

    /// Sends one request to the gateway.
    pub(crate) async fn send(&self, ask: Ask<'_>) -> Result<Answer, String> {
        self.storefront.send(ask).await
    }

    /// Sends `ask` until it gets an answer below 500 (other than 429), for up to a minute: for
    /// setting things up while the system may still be warming up.
    pub(crate) async fn insist(&self, ask: Ask<'_>) -> Result<Answer, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = match self.send(ask).await {
                Ok(answer) if !crate::storefront::retryable(answer.status) => {
                    return Ok(answer);
                }
                Ok(answer) => format!(
                    "{} {}: {} {}",
                    ask.method, ask.path, answer.status, answer.body
                ),
                Err(error) => error,
            };
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `GET path` through the gateway as `token`, asked again until it answers 200 or `within`
    /// passes.
    pub(crate) async fn read(
        &self,
        path: &str,
        token: &str,
        within: Duration,
    ) -> Result<Value, String> {
        self.storefront.read(path, token, within).await
    }

    /// `GET path` of `service` as the operator, asked again until it answers 200 or `within`
    /// passes.
    pub(crate) async fn read_service(
        &self,
        service: &str,
        path: &str,
        within: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let answer = self
                .services
                .get(service, path)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.json::<Value>());
            match answer {
                Ok(body) => return Ok(body),
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("GET {path} of {service}: {}", ErrorChain(&error)));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }

    /// The transport the operator calls with (for the registry).
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

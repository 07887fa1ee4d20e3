//! Keeps one instance running: starts `bazaar serve …` as a child, files its output under
//! `logs/<instance>.log` and shows it on the terminal, restarts it with backoff when it dies,
//! and stops it gracefully (SIGTERM, then SIGKILL after the grace period) when asked.
//!
//! Each child runs in its own process group, so Ctrl-C reaches only `up`, which then stops the
//! children in order. Each child's standard input is a pipe `up` holds open: if `up` dies, even
//! by SIGKILL, the pipe closes and the child shuts itself down.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::plan::InstanceSpec;
use crate::console::{Console, LogLine};

/// First pause before a restart; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the instance was healthy, the crash is news.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// What happened to an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The instance logged its address.
    Listening { id: String, url: String, pid: u32 },
    /// The instance logged the address of its HTTPS listener.
    ListeningTls { id: String, url: String },
    /// The instance's process ended without being asked to.
    Exited {
        id: String,
        status: String,
        restart_in: Duration,
    },
}

/// mimalloc settings for the instances `up` starts, unless the environment sets them: commit
/// memory as it is used and return freed memory at once. Eleven mostly idle processes on a
/// laptop then hold about 195 MB instead of 335 MB, at no measurable cost in throughput
/// (`bench/gateway.sh`; docs/decisions.md).
const ALLOCATOR_DEFAULTS: [(&str, &str); 2] = [
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ("MIMALLOC_PURGE_DELAY", "0"),
];

/// Supervises one instance.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub(crate) spec: InstanceSpec,
    pub(crate) exe: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) log_path: PathBuf,
    pub(crate) console: Console,
    /// Width of the instance column on the terminal.
    pub(crate) width: usize,
    pub(crate) events: mpsc::UnboundedSender<Event>,
    pub(crate) grace: Duration,
}

impl Supervisor {
    /// Runs (and reruns) the instance until `stop` is cancelled, then stops it.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let this = Arc::new(self);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let outcome = match this.spawn() {
                Ok(child) => this.watch(child, &stop).await,
                Err(error) => Some(format!("could not start: {error}")),
            };
            let Some(status) = outcome else { return };
            if started.elapsed() > STABLE_RUN {
                backoff = FIRST_BACKOFF;
            }
            let _ = this.events.send(Event::Exited {
                id: this.spec.id.clone(),
                status,
                restart_in: backoff,
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn spawn(self: &Arc<Self>) -> std::io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command.args(&self.args);
        for (name, value) in ALLOCATOR_DEFAULTS {
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let log = Arc::new(Mutex::new(None));
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(Arc::clone(self).pipe(stdout, pid, Arc::clone(&log)));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(Arc::clone(self).pipe(stderr, pid, log));
        }
        Ok(child)
    }

    /// Waits for the child to exit (`Some(status)`) or for `stop` (`None`, child stopped).
    async fn watch(&self, mut child: Child, stop: &CancellationToken) -> Option<String> {
        // Held, never written: closing it is how the child learns that `up` is gone.
        let stdin = child.stdin.take();
        let status = tokio::select! {
            status = child.wait() => status,
            () = stop.cancelled() => {
                self.terminate(&mut child).await;
                drop(stdin);
                return None;
            }
        };
        drop(stdin);
        if stop.is_cancelled() {
            return None;
        }
        Some(match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown status: {error}"),
        })
    }

    /// SIGTERM, then SIGKILL if the child outlives the grace period.
    async fn terminate(&self, child: &mut Child) {
        let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        if tokio::time::timeout(self.grace, child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{} did not stop within {:?}; killing it",
                self.spec.id, self.grace
            );
            let _ = child.kill().await;
        }
    }

    /// Copies a child's output to its log file and the terminal, and reports its address.
    async fn pipe(
        self: Arc<Self>,
        output: impl AsyncRead + Unpin,
        pid: u32,
        log: Arc<Mutex<Option<tokio::fs::File>>>,
    ) {
        let mut lines = BufReader::new(output).lines();
        while let Ok(Some(raw)) = lines.next_line().await {
            self.append(&log, &raw).await;
            let line = LogLine::parse(&raw);
            if let Some(url) = line
                .message()
                .and_then(|m| m.strip_prefix(chassis::server::LISTENING_PREFIX))
            {
                let _ = self.events.send(Event::Listening {
                    id: self.spec.id.clone(),
                    url: url.to_owned(),
                    pid,
                });
            } else if let Some(url) = line
                .message()
                .and_then(|m| m.strip_prefix(chassis::server::TLS_LISTENING_PREFIX))
            {
                let _ = self.events.send(Event::ListeningTls {
                    id: self.spec.id.clone(),
                    url: url.to_owned(),
                });
            }
            println!(
                "{}",
                self.console
                    .render_log(&self.spec.id, self.spec.service.name(), self.width, &line)
            );
        }
    }

    async fn append(&self, log: &Mutex<Option<tokio::fs::File>>, line: &str) {
        let mut file = log.lock().await;
        if file.is_none() {
            let opened = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log_path)
                .await;
            match opened {
                Ok(opened) => *file = Some(opened),
                Err(error) => {
                    eprintln!("cannot write {}: {error}", self.log_path.display());
                    return;
                }
            }
        }
        if let Some(file) = file.as_mut() {
            let _ = file.write_all(format!("{line}\n").as_bytes()).await;
        }
    }
}

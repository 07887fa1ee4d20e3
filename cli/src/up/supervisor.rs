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
use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::InstanceSpec;
use crate::console::{Console, LogLine};

/// First pause before a restart; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the instance was healthy, the crash is news. A crash
/// loop dies within seconds of each start; an instance killed after serving for a while (a
/// chaos run kills one every few seconds) comes back at once.
const STABLE_RUN: Duration = Duration::from_secs(10);

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
    /// The ports the instance listened on, once it did: a restart asks for them again.
    pub(crate) ports: std::sync::Mutex<Ports>,
}

/// Ports an instance started on port 0 was given: a restarted instance keeps them, so that
/// whoever was told its address (every service is told the registry's) still reaches it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    http: Option<u16>,
    tls: Option<u16>,
    /// The current run of the instance listened.
    listened: bool,
}

impl Ports {
    /// `args` with each port left to the system (`--port 0`, `gateway.tls.port=0`) replaced by
    /// the one it was given last time.
    fn pin(self, args: &[String]) -> Vec<String> {
        let mut pinned = args.to_vec();
        for i in 0..pinned.len() {
            let after_port_flag = i > 0 && pinned[i - 1] == "--port";
            match (after_port_flag, pinned[i].as_str(), self.http, self.tls) {
                (true, "0", Some(port), _) => pinned[i] = port.to_string(),
                (false, "gateway.tls.port=0", _, Some(port)) => {
                    pinned[i] = format!("gateway.tls.port={port}");
                }
                _ => {}
            }
        }
        pinned
    }
}

/// The port of a `scheme://host:port` address.
fn port_of(url: &str) -> Option<u16> {
    url::Url::parse(url).ok()?.port()
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
            if let Ok(mut ports) = this.ports.lock()
                && !ports.listened
            {
                // It died before listening: perhaps its old port is taken now; let it pick
                // another.
                *ports = Ports::default();
            }
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
        let ports = self
            .ports
            .lock()
            .map(|mut p| {
                p.listened = false;
                *p
            })
            .unwrap_or_default();
        command.args(ports.pin(&self.args));
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
        let log = Arc::new(std::sync::Mutex::new(None));
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
    ///
    /// Lines are written in batches: whatever the pipe holds is read, then written with one
    /// write to the file and one to the terminal. Under load the services log thousands of
    /// lines a second, and a write (and, through `tokio::fs`, a hand-off to a blocking thread)
    /// per line made `up` one of the system's larger users of CPU.
    async fn pipe(
        self: Arc<Self>,
        output: impl AsyncRead + Unpin,
        pid: u32,
        log: Arc<std::sync::Mutex<Option<std::fs::File>>>,
    ) {
        let mut reader = BufReader::new(output);
        let (mut raw, mut to_file, mut to_screen) = (String::new(), String::new(), String::new());
        loop {
            raw.clear();
            match reader.read_line(&mut raw).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = raw.strip_suffix('\n').unwrap_or(&raw);
            let text = text.strip_suffix('\r').unwrap_or(text);
            to_file.push_str(text);
            to_file.push('\n');
            let line = LogLine::parse(text);
            let message = line.message();
            let message = message.as_deref().unwrap_or_default();
            if let Some(url) = message.strip_prefix(chassis::server::LISTENING_PREFIX) {
                if let Ok(mut ports) = self.ports.lock() {
                    ports.http = port_of(url).or(ports.http);
                    ports.listened = true;
                }
                let _ = self.events.send(Event::Listening {
                    id: self.spec.id.clone(),
                    url: url.to_owned(),
                    pid,
                });
            } else if let Some(url) = message.strip_prefix(chassis::server::TLS_LISTENING_PREFIX) {
                if let Ok(mut ports) = self.ports.lock() {
                    ports.tls = port_of(url).or(ports.tls);
                }
                let _ = self.events.send(Event::ListeningTls {
                    id: self.spec.id.clone(),
                    url: url.to_owned(),
                });
            }
            to_screen.push_str(&self.console.render_log(
                &self.spec.id,
                self.spec.service.name(),
                self.width,
                &line,
            ));
            to_screen.push('\n');
            if reader.buffer().is_empty() {
                self.write_out(&log, &mut to_file, &mut to_screen);
            }
        }
        self.write_out(&log, &mut to_file, &mut to_screen);
    }

    /// Appends `to_file` to the instance's log file and prints `to_screen`, emptying both.
    fn write_out(
        &self,
        log: &std::sync::Mutex<Option<std::fs::File>>,
        to_file: &mut String,
        to_screen: &mut String,
    ) {
        if !to_file.is_empty()
            && let Ok(mut file) = log.lock()
        {
            if file.is_none() {
                match std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log_path)
                {
                    Ok(opened) => *file = Some(opened),
                    Err(error) => {
                        eprintln!("cannot write {}: {error}", self.log_path.display());
                    }
                }
            }
            if let Some(file) = file.as_mut() {
                let _ = file.write_all(to_file.as_bytes());
            }
        }
        if !to_screen.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(to_screen.as_bytes());
            let _ = out.flush();
        }
        to_file.clear();
        to_screen.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_restart_asks_for_the_ports_the_instance_was_given() {
        let started = args("serve gateway --port 0 --set gateway.tls.port=0 --set x=0");
        let given = Ports {
            http: port_of("http://127.0.0.1:41234"),
            tls: port_of("https://127.0.0.1:41300"),
            listened: true,
        };
        assert_eq!(
            given.pin(&started),
            args("serve gateway --port 41234 --set gateway.tls.port=41300 --set x=0")
        );
        // Nothing learned yet, or fixed ports: unchanged.
        assert_eq!(Ports::default().pin(&started), started);
        let fixed = args("serve registry --port 8500");
        assert_eq!(given.pin(&fixed), fixed);
    }
}

//! `bazaar up`: the whole system on one machine, one process per instance.
//!
//! The registry starts first; once it is ready the services and the gateway start together, each
//! told where the registry is. `up` learns each instance's address from its `listening on` log
//! line, waits until its `/health/ready` answers, then prints the table of services and the
//! demo accounts and keeps showing the merged logs. A crashed instance is restarted with backoff
//! and reported. Ctrl-C (or SIGTERM) stops the gateway first, then the services, then the
//! registry, each gracefully.
//!
//! # Layout
//! - [`plan`]: instances, ports and command lines (no I/O).
//! - [`supervisor`]: one child process, its logs and its restarts.

pub(crate) mod control;
pub(crate) mod pki;
mod plan;
mod profile;
mod supervisor;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chassis::client::Transport;
use chassis::config::{Loader, Sources};
use chassis::tls::TlsConfig;
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use self::plan::InstanceSpec;
use self::supervisor::{Event, Supervisor};
use crate::args::{EXIT_USAGE, Service, UpArgs};
use crate::console::Console;
use crate::state::{self, InstanceState, RunState};

/// Longest time `up` waits for every instance to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Time each instance gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(12);

/// Why `up` stopped with an error.
#[derive(Debug, thiserror::Error)]
enum UpError {
    /// Bad arguments (exit code 64).
    #[error("{0}")]
    Usage(String),
    /// Something on the machine is in the way.
    #[error("{0}")]
    Environment(String),
    /// An instance did not come up.
    #[error("{id} did not become ready: {reason}")]
    NotReady { id: String, reason: String },
    /// Ctrl-C during start-up.
    #[error("interrupted")]
    Interrupted,
}

pub(crate) async fn run(args: UpArgs) -> ExitCode {
    let args = profile::apply(&args);
    let console = Console::detect();
    let interrupted = chassis::server::shutdown_on_signal();
    let mut system = System::default();
    let result = start(&args, console, &interrupted, &mut system).await;
    let code = match &result {
        Ok(()) => {
            tokio::select! {
                () = interrupted.cancelled() => {}
                () = system.watch(&args.data_dir, console) => {}
            }
            ExitCode::SUCCESS
        }
        Err(UpError::Interrupted) => ExitCode::SUCCESS,
        Err(UpError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(error) => {
            eprintln!("{} {error}", console.red("error:"));
            if let UpError::NotReady { id, .. } = error {
                show_log_tail(&args.data_dir.join("logs").join(format!("{id}.log")));
            }
            ExitCode::FAILURE
        }
    };
    if system.tiers.is_empty() {
        return code;
    }
    println!("{}", console.bold("Stopping Bazaar…"));
    system.stop().await;
    // Only our own state file: a refused second `up` must not erase the running one's.
    if state::running(&args.data_dir).is_some_and(|s| s.pid == std::process::id()) {
        let _ = std::fs::remove_file(state::run_file(&args.data_dir));
    }
    println!("Stopped.");
    code
}

/// The running instances and their supervisors.
#[derive(Debug, Default)]
struct System {
    /// Supervisors by start tier; stopped in reverse.
    tiers: BTreeMap<usize, Vec<Running>>,
    instances: BTreeMap<String, InstanceState>,
    events: Option<UnboundedReceiver<Event>>,
    /// Starts instances after start-up too (the control API's releases).
    launcher: Option<Launcher>,
    /// Requests of the control API.
    commands: Option<UnboundedReceiver<control::Command>>,
    registry: String,
    gateway: String,
    control: String,
}

/// One supervised instance.
#[derive(Debug)]
struct Running {
    id: String,
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

/// What starting an instance needs: the executable, the flags every instance shares, and
/// where supervisors report.
#[derive(Debug, Clone)]
struct Launcher {
    exe: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    registry: Option<String>,
    db_server: Option<String>,
    db_pool: Option<u32>,
    config: Option<std::path::PathBuf>,
    cart_store: String,
    bus: Option<String>,
    ratelimit: Option<String>,
    threads: usize,
    /// The trace store's span endpoint, once it is up.
    traces: Option<String>,
    tls: Option<TlsConfig>,
    /// The folder of the services' mTLS certificates, unless `--no-mtls`.
    pki: Option<std::path::PathBuf>,
    /// How `up` calls the services: as the operator, over mTLS.
    transport: Transport,
    console: Console,
    width: usize,
    events: mpsc::UnboundedSender<Event>,
}

impl Launcher {
    /// Starts supervising `spec` and files it under its tier.
    fn launch(&self, spec: &InstanceSpec, system: &mut System) -> Result<(), UpError> {
        let shared = plan::Shared {
            data_dir: &self.data_dir,
            registry: self.registry.as_deref(),
            db_server: self.db_server.as_deref(),
            db_pool: self.db_pool,
            config: self.config.as_deref(),
            cart_store: &self.cart_store,
            bus: self.bus.as_deref(),
            ratelimit: self.ratelimit.as_deref(),
            threads: self.threads,
            traces: self.traces.as_deref(),
            tls: self.tls.as_ref(),
            pki: self.pki.as_deref(),
        };
        let args = plan::child_args(spec, &shared).map_err(UpError::Usage)?;
        let supervisor = Supervisor {
            spec: spec.clone(),
            exe: self.exe.clone(),
            args,
            log_path: self.data_dir.join("logs").join(format!("{}.log", spec.id)),
            console: self.console,
            width: self.width,
            events: self.events.clone(),
            grace: STOP_GRACE,
            ports: std::sync::Mutex::default(),
        };
        let stop = CancellationToken::new();
        let handle = tokio::spawn(supervisor.run(stop.clone()));
        system.tiers.entry(spec.tier()).or_default().push(Running {
            id: spec.id.clone(),
            handle,
            stop,
        });
        Ok(())
    }
}

async fn start(
    args: &UpArgs,
    console: Console,
    interrupted: &CancellationToken,
    system: &mut System,
) -> Result<(), UpError> {
    let started = Instant::now();
    let mut specs = plan::instances(args.base_port, &args.replicas).map_err(UpError::Usage)?;
    // etcd in the registry's place: no registry runs, and everyone is told etcd's URL instead.
    let etcd = match &args.etcd {
        Some(url) => {
            let registry = format!("etcd+{url}");
            if chassis::config::EtcdConfig::from_url(&registry).is_none() {
                return Err(UpError::Usage(format!(
                    "--etcd {url:?}: expected an etcd client URL such as http://127.0.0.1:2379"
                )));
            }
            specs.retain(|spec| spec.service != Service::Registry);
            Some(registry)
        }
        None => None,
    };
    plan::check_cart_store(&args.cart_store, &specs).map_err(UpError::Usage)?;
    if let Some(bus) = &args.bus {
        plan::check_bus(bus).map_err(UpError::Usage)?;
    }
    if let Some(store) = &args.ratelimit {
        plan::check_ratelimit(store).map_err(UpError::Usage)?;
    }
    if let Some(db) = &args.db {
        plan::database_url(db, Service::Users).map_err(UpError::Usage)?;
    }
    if let Some(config) = args.config.as_ref().filter(|c| !c.is_file()) {
        return Err(UpError::Usage(format!(
            "--config {}: no such file",
            config.display()
        )));
    }
    if args.cert_lifetime < pki::MIN_LIFETIME {
        return Err(UpError::Usage(format!(
            "--cert-lifetime {}: must be at least {}",
            humantime::format_duration(args.cert_lifetime),
            humantime::format_duration(pki::MIN_LIFETIME)
        )));
    }
    profile::check_reachable(args, Duration::from_secs(3))
        .await
        .map_err(UpError::Environment)?;
    // Every instance's pool on one PostgreSQL server: together within what the server allows.
    let db_pool = match &args.db {
        Some(server) => {
            let pools = specs.iter().filter(|s| s.service.has_database()).count();
            let budget = profile::postgres_budget(server, pools)
                .await
                .map_err(UpError::Environment)?;
            Some(budget)
        }
        None => None,
    };
    let data_dir = &args.data_dir;
    prepare_data_dir(data_dir)?;
    let tls = dev_certificate(args, data_dir)?;
    let (pki, transport) = if args.no_mtls {
        (None, Transport::http())
    } else {
        let pki = pki::Pki::issue(&pki::dir(data_dir), args.cert_lifetime)
            .map_err(|e| UpError::Environment(e.to_string()))?;
        let transport = pki
            .operator()
            .map_err(|e| UpError::Environment(e.to_string()))?;
        (Some(pki), transport)
    };
    let pki_dir = pki.as_ref().map(|pki| pki.dir().to_path_buf());
    if let Some(pki) = pki {
        tokio::spawn(pki.renew_until(interrupted.child_token()));
    }
    let exe = std::env::current_exe()
        .map_err(|e| UpError::Environment(format!("cannot find the bazaar executable: {e}")))?;
    let width = specs.iter().map(|s| s.id.len()).max().unwrap_or(8);
    let (sender, mut events) = mpsc::unbounded_channel();

    println!(
        "{} {} in {}",
        console.bold("Starting Bazaar"),
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    let servers = profile::servers(args);
    if !servers.is_empty() {
        let listed: Vec<String> = servers
            .iter()
            .map(|(what, flag, url)| format!("{what} {} ({flag})", profile::redacted(url)))
            .collect();
        println!("on {}", listed.join(", "));
    }
    if let Some(pool) = db_pool {
        println!("each instance's PostgreSQL pool opens at most {pool} connections");
    }
    let mut launcher = Launcher {
        exe,
        data_dir: data_dir.clone(),
        registry: None,
        db_server: args.db.clone(),
        db_pool,
        config: args.config.clone(),
        cart_store: args.cart_store.clone(),
        bus: args.bus.clone(),
        ratelimit: args.ratelimit.clone(),
        threads: args.threads.get(),
        traces: None,
        tls,
        pki: pki_dir,
        transport,
        console,
        // Room for release instances such as `catalog-2.0.0-1`.
        width: width.max(16),
        events: sender,
    };

    // The registry first, for everyone to register with; then the trace store, for everyone
    // to send spans to; then the rest.
    if let Some(etcd) = etcd {
        system.registry = etcd.clone();
        launcher.registry = Some(etcd);
    }
    let (first, rest): (Vec<&InstanceSpec>, Vec<&InstanceSpec>) =
        specs.iter().partition(|s| s.service == Service::Registry);
    let (second, rest): (Vec<&InstanceSpec>, Vec<&InstanceSpec>) = rest
        .into_iter()
        .partition(|s| s.service == Service::Telemetry);
    let deadline = Instant::now() + START_TIMEOUT;
    for (tier, group) in [first, second, rest].iter().enumerate() {
        for spec in group {
            launcher.launch(spec, system)?;
        }
        let ready = wait_ready(
            group,
            &launcher.transport,
            &mut events,
            deadline,
            interrupted,
            console,
        )
        .await?;
        system.record(ready);
        match tier {
            0 if args.etcd.is_none() => {
                system.registry = system.url_of(Service::Registry);
                launcher.registry = Some(system.registry.clone());
            }
            1 => {
                let telemetry = system.url_of(Service::Telemetry);
                launcher.traces = Some(format!("{}/v1/traces", telemetry.trim_end_matches('/')));
            }
            _ => {}
        }
    }
    system.gateway = system.url_of(Service::Gateway);
    system.events = Some(events);
    system.launcher = Some(launcher);
    let (control, commands) = control::serve()
        .await
        .map_err(|e| UpError::Environment(format!("cannot start the control API: {e}")))?;
    system.control = control;
    system.commands = Some(commands);
    system.save(data_dir);

    print!(
        "\n{}",
        summary(system, data_dir, started.elapsed(), console)
    );
    Ok(())
}

/// The gateway's HTTPS certificate, issued by the development CA in `<data>/tls` (made on the
/// first run), unless `gateway.tls` is configured, in which case the gateway uses that.
fn dev_certificate(args: &UpArgs, data_dir: &Path) -> Result<Option<TlsConfig>, UpError> {
    let loader = Loader::new(Sources::from_process(args.config.clone(), Vec::new()));
    let configured = loader
        .section("gateway", &gateway::Settings::default())
        .map_err(|e| UpError::Usage(e.to_string()))?;
    if configured.tls.is_some() {
        return Ok(None);
    }
    // Data directories from before the PKI had its own name kept the CA in `tls/`.
    let (old, dir) = (data_dir.join("tls"), pki::dir(data_dir));
    if old.join("ca.pem").is_file() && !dir.exists() {
        std::fs::rename(&old, &dir).map_err(|e| {
            UpError::Environment(format!(
                "cannot move {} to {}: {e}",
                old.display(),
                dir.display()
            ))
        })?;
    }
    chassis::tls::DevCa::open(&dir)
        .and_then(|ca| ca.issue_server(0, &[]))
        .map(Some)
        .map_err(|e| UpError::Environment(e.to_string()))
}

fn prepare_data_dir(data_dir: &Path) -> Result<(), UpError> {
    if let Some(running) = state::running(data_dir) {
        return Err(UpError::Environment(format!(
            "bazaar up (pid {}) is already running on {}; stop it, or use another --data-dir",
            running.pid,
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir.join("logs"))
        .and_then(|()| {
            std::fs::write(
                data_dir.join(state::MARKER),
                "Bazaar data directory: `bazaar reset` deletes it.\n",
            )
        })
        .map_err(|e| {
            UpError::Environment(format!(
                "cannot use {} as the data directory: {e}",
                data_dir.display()
            ))
        })
}

/// Waits until every instance in `specs` logged its address and answers `/health/ready`.
async fn wait_ready(
    specs: &[&InstanceSpec],
    transport: &Transport,
    events: &mut UnboundedReceiver<Event>,
    deadline: Instant,
    interrupted: &CancellationToken,
    console: Console,
) -> Result<Vec<InstanceState>, UpError> {
    let mut pending: HashSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    let services: BTreeMap<&str, Service> =
        specs.iter().map(|s| (s.id.as_str(), s.service)).collect();
    let mut polls = JoinSet::new();
    let mut ready = Vec::new();
    let mut https: BTreeMap<String, String> = BTreeMap::new();
    let started = Instant::now();
    while !pending.is_empty() {
        tokio::select! {
            () = interrupted.cancelled() => return Err(UpError::Interrupted),
            () = tokio::time::sleep_until(deadline.into()) => {
                let mut waiting: Vec<&str> = pending.into_iter().collect();
                waiting.sort_unstable();
                return Err(UpError::NotReady { id: waiting.join(", "), reason: format!("not ready within {START_TIMEOUT:?}") });
            }
            Some(event) = events.recv() => match event {
                Event::Listening { id, url, pid } if pending.contains(id.as_str()) => {
                    let transport = transport.clone();
                    polls.spawn(async move {
                        chassis::health::wait_until_ready(&transport, &url, None).await;
                        (id, url, pid)
                    });
                }
                Event::ListeningTls { id, url } => {
                    https.insert(id, url);
                }
                Event::Exited { id, status, .. } if pending.contains(id.as_str()) => {
                    return Err(UpError::NotReady { id, reason: format!("it exited ({status})") });
                }
                _ => {}
            },
            Some(Ok((id, url, pid))) = polls.join_next() => {
                let service = services.get(id.as_str()).map_or("?", |s| s.name()).to_owned();
                println!("  {} {id} ready on {url} {}", console.green("✓"), console.dim(&format!("({} ms)", started.elapsed().as_millis())));
                pending.remove(id.as_str());
                let https = https.remove(&id);
                ready.push(InstanceState { id, service, url, pid, https });
            }
        }
    }
    Ok(ready)
}

impl System {
    fn record(&mut self, ready: Vec<InstanceState>) {
        for instance in ready {
            self.instances.insert(instance.id.clone(), instance);
        }
    }

    fn url_of(&self, service: Service) -> String {
        self.instances
            .values()
            .find(|i| i.service == service.name())
            .map(|i| i.url.clone())
            .unwrap_or_default()
    }

    fn save(&self, data_dir: &Path) {
        let run = RunState {
            pid: std::process::id(),
            registry: self.registry.clone(),
            gateway: self.gateway.clone(),
            control: self.control.clone(),
            instances: self.instances.values().cloned().collect(),
        };
        if let Err(error) = state::write(data_dir, &run) {
            eprintln!(
                "warning: cannot write {}: {error}",
                state::run_file(data_dir).display()
            );
        }
    }

    /// Reports crashes and restarts until the event stream ends, and carries out the control
    /// API's commands. A started or restarted instance is announced once it is ready; waiting
    /// for it never holds up news of other instances.
    async fn watch(&mut self, data_dir: &Path, console: Console) {
        let Some(mut events) = self.events.take() else {
            return;
        };
        let mut commands = self.commands.take();
        let mut readiness = JoinSet::new();
        let mut starts = Starts::default();
        loop {
            let command = async {
                match commands.as_mut() {
                    Some(commands) => commands.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = events.recv() => match event {
                    None => return,
                    Some(Event::Exited { id, status, restart_in }) => {
                        if let Some(reply) = starts.fail(&id) {
                            eprintln!("{} {id} exited while starting ({status})", console.red("!"));
                            self.abandon(&reply.ids);
                            self.save(data_dir);
                            let _ = reply.sender.send(Err(format!("{id} exited while starting ({status}); see {}", data_dir.join("logs").join(format!("{id}.log")).display())));
                        } else {
                            // One write: stderr is unbuffered, and a line written in pieces
                            // can be cut by another process's output.
                            let line = format!("{} {id} exited unexpectedly ({status}); restarting in {restart_in:?}", console.red("!"));
                            eprintln!("{line}");
                        }
                    }
                    Some(Event::ListeningTls { id, url }) => {
                        if let Some(instance) = self.instances.get_mut(&id) {
                            instance.https = Some(url);
                        }
                    }
                    Some(Event::Listening { id, url, pid }) => {
                        let transport = self.launcher.as_ref().map_or_else(Transport::http, |l| l.transport.clone());
                        readiness.spawn(async move {
                            let ready = chassis::health::wait_until_ready(&transport, &url, Some(START_TIMEOUT)).await;
                            (id, url, pid, ready)
                        });
                    }
                },
                Some(command) = command => {
                    self.command(command, &mut starts, console);
                    self.save(data_dir);
                }
                Some(Ok((id, url, pid, ready))) = readiness.join_next() => {
                    let starting = starts.service_of(&id);
                    let known = self.instances.get(&id).map(|i| (i.service.clone(), i.https.clone()));
                    let Some((service, https)) = starting.clone().map(|s| (s, None)).or(known) else {
                        continue; // stopped while it was coming up
                    };
                    let instance = InstanceState { id: id.clone(), service, url: url.clone(), pid, https };
                    if starting.is_some() {
                        if !ready {
                            if let Some(reply) = starts.fail(&id) {
                                self.abandon(&reply.ids);
                                self.save(data_dir);
                                let _ = reply.sender.send(Err(format!("{id} was not ready within {START_TIMEOUT:?}")));
                            }
                            continue;
                        }
                        eprintln!("{} {id} started on {url}", console.green("✓"));
                        self.instances.insert(id.clone(), instance.clone());
                        if let Some((reply, started)) = starts.ready(instance) {
                            let _ = reply.send(Ok(started));
                        }
                    } else {
                        if ready {
                            eprintln!("{} {id} restarted on {url}", console.green("✓"));
                        } else {
                            eprintln!("{} {id} restarted on {url} but is not ready after {START_TIMEOUT:?}", console.red("!"));
                        }
                        self.instances.insert(id, instance);
                    }
                    self.save(data_dir);
                }
            }
        }
    }

    /// Carries out one command of the control API.
    fn command(&mut self, command: control::Command, starts: &mut Starts, console: Console) {
        match command {
            control::Command::Start {
                service,
                version,
                count,
                reply,
            } => {
                let Some(launcher) = self.launcher.clone() else {
                    let _ = reply.send(Err("bazaar up is still starting".to_owned()));
                    return;
                };
                let mut ids = Vec::new();
                for _ in 0..count {
                    let spec = InstanceSpec {
                        id: self.free_id(service, &version),
                        service,
                        port: 0,
                        version: Some(version.clone()),
                    };
                    println!(
                        "  {} starting {} ({} {version})",
                        console.dim("…"),
                        spec.id,
                        service.name()
                    );
                    if let Err(error) = launcher.launch(&spec, self) {
                        self.abandon(&ids);
                        let _ = reply.send(Err(error.to_string()));
                        return;
                    }
                    ids.push(spec.id);
                }
                starts.add(service.name(), ids, reply);
            }
            control::Command::Stop { id, reply } => {
                let Some(running) = self.detach(&id) else {
                    let _ = reply.send(false);
                    return;
                };
                println!("  {} stopping {id}", console.dim("…"));
                // Stopping an instance that is still starting gives up its whole request.
                if let Some(request) = starts.fail(&id) {
                    self.abandon(&request.ids);
                    let _ = request
                        .sender
                        .send(Err(format!("{id} was stopped while starting")));
                }
                running.stop.cancel();
                // Answer once the process is gone, so the caller can count on it.
                tokio::spawn(async move {
                    let _ = running.handle.await;
                    let _ = reply.send(true);
                });
            }
        }
    }

    /// An id for a new instance of `service` at `version`: `catalog-2.0.0-1`, `-2`, ...
    fn free_id(&self, service: Service, version: &str) -> String {
        let taken = |id: &str| self.tiers.values().flatten().any(|r| r.id == id);
        (1..)
            .map(|n| format!("{}-{version}-{n}", service.name()))
            .find(|id| !taken(id))
            .unwrap_or_default()
    }

    /// Takes the instance `id` out of the system (its supervisor keeps running until stopped).
    fn detach(&mut self, id: &str) -> Option<Running> {
        self.instances.remove(id);
        self.tiers.values_mut().find_map(|tier| {
            let at = tier.iter().position(|r| r.id == id)?;
            Some(tier.remove(at))
        })
    }

    /// Stops, in the background, instances started for a request that failed.
    fn abandon(&mut self, ids: &[String]) {
        for id in ids {
            if let Some(running) = self.detach(id) {
                running.stop.cancel();
                tokio::spawn(running.handle);
            }
        }
    }

    /// Stops the tiers in reverse start order, each instance gracefully.
    async fn stop(&mut self) {
        while let Some((_, tier)) = self.tiers.pop_last() {
            for running in &tier {
                running.stop.cancel();
            }
            for running in tier {
                let _ = running.handle.await;
            }
        }
    }
}

/// Instances being started for the control API, and whom to tell when they are all ready.
#[derive(Debug, Default)]
struct Starts {
    /// Service of each instance being started, and the request it belongs to.
    pending: BTreeMap<String, (String, usize)>,
    requests: BTreeMap<usize, StartRequest>,
    next: usize,
}

/// One `POST /instances` being carried out.
#[derive(Debug)]
struct StartRequest {
    ids: Vec<String>,
    ready: Vec<InstanceState>,
    sender: StartReply,
}

/// Where the answer to a `POST /instances` goes.
type StartReply = tokio::sync::oneshot::Sender<Result<Vec<InstanceState>, String>>;

impl Starts {
    fn add(&mut self, service: &str, ids: Vec<String>, sender: StartReply) {
        let key = self.next;
        self.next += 1;
        for id in &ids {
            self.pending.insert(id.clone(), (service.to_owned(), key));
        }
        self.requests.insert(
            key,
            StartRequest {
                ids,
                ready: Vec::new(),
                sender,
            },
        );
    }

    /// The service of `id` if it is being started.
    fn service_of(&self, id: &str) -> Option<String> {
        self.pending.get(id).map(|(service, _)| service.clone())
    }

    /// Records `instance` ready; when it was the last of its request, the request's answer.
    fn ready(&mut self, instance: InstanceState) -> Option<(StartReply, Vec<InstanceState>)> {
        let (_, key) = self.pending.remove(&instance.id)?;
        let request = self.requests.get_mut(&key)?;
        request.ready.push(instance);
        if request.ready.len() < request.ids.len() {
            return None;
        }
        let request = self.requests.remove(&key)?;
        Some((request.sender, request.ready))
    }

    /// Gives up the request `id` belongs to, if it is being started.
    fn fail(&mut self, id: &str) -> Option<StartRequest> {
        let (_, key) = self.pending.get(id)?.clone();
        let request = self.requests.remove(&key)?;
        for other in &request.ids {
            self.pending.remove(other);
        }
        Some(request)
    }
}

/// The table printed once everything is ready.
fn summary(system: &System, data_dir: &Path, took: Duration, console: Console) -> String {
    let rows: Vec<Vec<String>> = system
        .instances
        .values()
        .map(|i| {
            vec![
                i.service.clone(),
                i.id.clone(),
                i.url.clone(),
                i.pid.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "{} {} instances ready in {:.1}s\n\n",
        console.green("Bazaar is up."),
        system.instances.len(),
        took.as_secs_f64()
    );
    out.push_str(&crate::table::render(
        "  ",
        &["SERVICE", "INSTANCE", "URL", "PID"],
        &rows,
    ));
    let customer = users::demo::CUSTOMER;
    let admin = users::demo::ADMIN;
    let https = system
        .instances
        .values()
        .find(|i| i.service == Service::Gateway.name())
        .and_then(|i| i.https.as_deref())
        .map(|url| {
            format!(
                "  HTTPS       {url}/api/   (trust {})\n",
                data_dir.join("pki").join("ca.pem").display()
            )
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "\n  Shop        {}/   (open it in a browser)\n  Shop API    {}/api/\n{https}  Demo login  {} / {}\n  Admin       {} / {}\n  Console     {}/console   (as the admin)\n  Data        {}   (logs in {})\n  Look        bazaar top · bazaar trace --errors · bazaar logs --follow\n\n{}\n",
        system.gateway,
        system.gateway,
        customer.email,
        customer.password,
        admin.email,
        admin.password,
        system.gateway,
        data_dir.display(),
        data_dir.join("logs").display(),
        console.dim("Press Ctrl-C to stop."),
    ));
    out
}

fn show_log_tail(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    eprintln!("last lines of {}:", path.display());
    for line in &lines[lines.len().saturating_sub(15)..] {
        eprintln!("  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str) -> InstanceState {
        InstanceState {
            id: id.into(),
            service: "catalog".into(),
            url: format!("http://127.0.0.1:1/{id}"),
            pid: 1,
            https: None,
        }
    }

    #[test]
    fn a_start_request_is_answered_when_all_its_instances_are_ready_or_one_fails() {
        let mut starts = Starts::default();
        let (sender, mut answer) = tokio::sync::oneshot::channel();
        starts.add("catalog", vec!["c-1".into(), "c-2".into()], sender);
        assert_eq!(starts.service_of("c-1").as_deref(), Some("catalog"));
        assert!(
            starts.ready(instance("c-1")).is_none(),
            "one of two is not enough"
        );
        let (reply, ready) = starts.ready(instance("c-2")).expect("both ready");
        assert_eq!(ready.len(), 2);
        let _ = reply.send(Ok(ready));
        assert!(answer.try_recv().is_ok_and(|r| r.is_ok()));
        assert_eq!(
            starts.service_of("c-1"),
            None,
            "done requests are forgotten"
        );

        let (sender, _answer) = tokio::sync::oneshot::channel();
        starts.add("catalog", vec!["d-1".into(), "d-2".into()], sender);
        let failed = starts.fail("d-2").expect("a pending request");
        assert_eq!(failed.ids, ["d-1", "d-2"]);
        assert_eq!(
            starts.service_of("d-1"),
            None,
            "its other instances are given up too"
        );
        assert!(starts.ready(instance("d-1")).is_none());
    }

    #[test]
    fn summary_lists_instances_and_the_demo_login() {
        let mut system = System {
            gateway: "http://127.0.0.1:7700".into(),
            ..System::default()
        };
        system.record(vec![
            InstanceState {
                id: "gateway-1".into(),
                service: "gateway".into(),
                url: "http://127.0.0.1:7700".into(),
                pid: 11,
                https: Some("https://localhost:7743".into()),
            },
            InstanceState {
                id: "registry-1".into(),
                service: "registry".into(),
                url: "http://127.0.0.1:7701".into(),
                pid: 10,
                https: None,
            },
            InstanceState {
                id: "users-1".into(),
                service: "users".into(),
                url: "http://127.0.0.1:7711".into(),
                pid: 12,
                https: None,
            },
        ]);
        let text = summary(
            &system,
            Path::new(".bazaar"),
            Duration::from_millis(840),
            Console::plain(),
        );
        insta::assert_snapshot!(text, @r"
        Bazaar is up. 3 instances ready in 0.8s

          SERVICE   INSTANCE    URL                    PID
          gateway   gateway-1   http://127.0.0.1:7700  11
          registry  registry-1  http://127.0.0.1:7701  10
          users     users-1     http://127.0.0.1:7711  12

          Shop        http://127.0.0.1:7700/   (open it in a browser)
          Shop API    http://127.0.0.1:7700/api/
          HTTPS       https://localhost:7743/api/   (trust .bazaar/pki/ca.pem)
          Demo login  demo@bazaar.example / shop-till-you-drop
          Admin       admin@bazaar.example / keys-to-the-shop
          Console     http://127.0.0.1:7700/console   (as the admin)
          Data        .bazaar   (logs in .bazaar/logs)
          Look        bazaar top · bazaar trace --errors · bazaar logs --follow

        Press Ctrl-C to stop.
        ");
    }
}

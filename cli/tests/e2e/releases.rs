//! Releases end to end: `bazaar deploy`, `rollback` and `releases` against a running system,
//! under continuous load through the gateway, counting every request that failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::checkout::login;
use crate::system::{BIN, Running};

/// Clients that GET `/api/categories` through the gateway in a loop until stopped.
pub(crate) struct Load {
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<String>>>,
}

impl Load {
    pub(crate) fn start(running: &Running, clients: usize) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (sent, failed, stop) =
                    (Arc::clone(&sent), Arc::clone(&failed), Arc::clone(&stop));
                let (http, url) = (running.http.clone(), running.at("/api/categories"));
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome = match http.get(&url).send().await {
                            Ok(response) if response.status().is_success() => {
                                response.bytes().await.map(drop).map_err(|e| e.to_string())
                            }
                            Ok(response) => Err(format!("status {}", response.status())),
                            Err(error) => Err(error.to_string()),
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        if let Err(failure) = outcome {
                            failed.fetch_add(1, Ordering::Relaxed);
                            failures.push(failure);
                        }
                    }
                    failures
                })
            })
            .collect();
        Self {
            sent,
            failed,
            stop,
            tasks,
        }
    }

    /// Stops the clients; requests sent, and the failures.
    pub(crate) async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.expect("load client"));
        }
        assert_eq!(self.failed.load(Ordering::Relaxed), failures.len() as u64);
        (self.sent.load(Ordering::Relaxed), failures)
    }
}

/// Runs `bazaar <args> --data-dir <running>`; the exit code and everything it printed.
async fn bazaar(running: &Running, args: &[&str]) -> (Option<i32>, String) {
    run_bazaar(
        running.data_dir.clone(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    )
    .await
}

/// [`bazaar`] with owned arguments, for a command run in its own task.
pub(crate) async fn run_bazaar(
    data_dir: std::path::PathBuf,
    args: Vec<String>,
) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(BIN)
        .args(&args)
        .arg("--data-dir")
        .arg(&data_dir)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("bazaar runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text.replace('\r', "\n"))
}

/// The catalog's traffic policy, as stored in the registry.
pub(crate) async fn policy(running: &Running) -> Option<Value> {
    let registry = running.run_state().expect("run.json")["registry"]
        .as_str()
        .expect("registry")
        .to_owned();
    let response = running
        .http
        .get(format!("{registry}/v1/kv/traffic/catalog"))
        .send()
        .await
        .expect("registry answers");
    if response.status() == 404 {
        return None;
    }
    let entry: Value = response.json().await.expect("json");
    serde_json::from_str(entry["value"].as_str().expect("value")).ok()
}

/// `<prefix>-1` to `<prefix>-<n>`: the ids `up` gives a set of instances.
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}")).collect()
}

fn catalog_instances(running: &Running) -> Vec<String> {
    running
        .instances("catalog")
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn a_healthy_canary_reaches_100_percent_without_a_failed_request() {
    let data = tempfile::tempdir().expect("tempdir");
    let running = Running::start(data.path(), &[]);
    // As many as the stable version runs (two in the production rehearsal).
    let n = catalog_instances(&running).len();
    let load = Load::start(&running, 4);
    // What is tested here is a healthy release going all the way without a failed request.
    // The latency rule itself is unit-tested (release::analysis); on two cores shared with the
    // rest of the suite, a fresh candidate's p99 over a hundred requests is the machine's tail
    // (CI runs rolled it back at 250 ms against 100 ms), so it is judged against a floor only a
    // broken candidate crosses.
    let floor = "1s";
    let (code, out) = bazaar(
        &running,
        &[
            "deploy",
            "catalog",
            "--version",
            "9.1.0",
            "--steps",
            "20,60,100",
            "--interval",
            "2s",
            "--p99-floor",
            floor,
        ],
    )
    .await;
    let (sent, failures) = load.finish().await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Released. catalog now runs 9.1.0"), "{out}");
    assert!(out.contains("step  60 %"), "progress is shown:\n{out}");
    assert!(sent > 100, "the load ran: {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        policy(&running).await,
        Some(json!({ "stable": "9.1.0", "weight": 0, "sticky": "none" }))
    );
    assert_eq!(
        catalog_instances(&running),
        ids("catalog-9.1.0", n),
        "the old instance stopped"
    );
    let (_, releases) = bazaar(&running, &["releases"]).await;
    assert!(
        releases.lines().any(|l| l.starts_with("catalog")
            && l.contains("9.1.0")
            && l.contains(&format!("9.1.0 {n}/{n}"))),
        "{releases}"
    );
}

#[tokio::test]
async fn a_canary_failing_a_fifth_of_its_requests_is_rolled_back_at_its_first_step() {
    let data = tempfile::tempdir().expect("tempdir");
    let running = Running::start(data.path(), &[]);
    // As many as the stable version runs (two in the production rehearsal).
    let n = catalog_instances(&running).len();
    let load = Load::start(&running, 4);
    let started = Instant::now();
    let (code, out) = bazaar(
        &running,
        &[
            "deploy",
            "catalog",
            "--version",
            "9.2.0",
            "--steps",
            "10,50,100",
            "--interval",
            "20s",
            "--fault-error-rate",
            "0.2",
        ],
    )
    .await;
    let took = started.elapsed();
    // Keep the load on a moment after the rollback: the stable version serves it all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, failures) = load.finish().await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("rolled back: at 10 %: error rate"), "{out}");
    assert!(
        !out.contains("step  50 %"),
        "the weight never passed the failing step:\n{out}"
    );
    assert!(
        took < Duration::from_secs(20),
        "detected within the first step: {took:?}"
    );
    // Only the candidate fails, at a fifth of its 10 % share, for the seconds it took to tell.
    assert!(!failures.is_empty(), "the fault was injected");
    assert!(
        (failures.len() as f64) < sent as f64 * 0.10,
        "{} of {sent} failed: more than the 10 % step's share",
        failures.len()
    );
    assert!(
        failures
            .iter()
            .all(|f| f == "status 500 Internal Server Error"),
        "{failures:?}"
    );
    assert_eq!(
        policy(&running).await,
        Some(json!({ "stable": "0.1.0", "weight": 0, "sticky": "none" }))
    );
    assert_eq!(
        catalog_instances(&running),
        ids("catalog", n),
        "the candidate stopped"
    );
    let (_, faults) = bazaar(&running, &["faults", "list"]).await;
    assert!(
        faults.contains("no fault rules"),
        "the release's fault rule is gone:\n{faults}"
    );
}

#[tokio::test]
async fn blue_green_switches_and_rolls_back_without_losing_a_request() {
    let data = tempfile::tempdir().expect("tempdir");
    let running = Running::start(data.path(), &[]);
    // As many as the stable version runs (two in the production rehearsal).
    let n = catalog_instances(&running).len();
    let load = Load::start(&running, 4);

    // A switch that is rolled back inside its window.
    let args = [
        "deploy",
        "catalog",
        "--version",
        "9.3.0",
        "--strategy",
        "blue-green",
        "--rollback-window",
        "60s",
    ];
    let deploy = tokio::spawn(run_bazaar(
        running.data_dir.clone(),
        args.iter().map(|a| (*a).to_owned()).collect(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while policy(&running).await.is_none_or(|p| p["weight"] != 100) {
        assert!(Instant::now() < deadline, "blue-green never switched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, out) = bazaar(&running, &["rollback", "catalog"]).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = deploy.await.expect("deploy");
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("smoke check /api/products"), "{out}");
    assert!(out.contains("switched back by bazaar rollback"), "{out}");
    assert_eq!(catalog_instances(&running), ids("catalog", n));

    // A switch that stands: blue stops when the window closes.
    let (code, out) = bazaar(
        &running,
        &[
            "deploy",
            "catalog",
            "--version",
            "9.4.0",
            "--strategy",
            "blue-green",
            "--rollback-window",
            "2s",
        ],
    )
    .await;
    assert_eq!(code, Some(0), "{out}");
    let (sent, failures) = load.finish().await;
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert_eq!(catalog_instances(&running), ids("catalog-9.4.0", n));
}

#[tokio::test]
async fn sticky_users_stay_on_one_version_and_the_header_picks_one() {
    let data = tempfile::tempdir().expect("tempdir");
    let running = Running::start(data.path(), &[]);
    let state = running.run_state().expect("run.json");
    let (registry, control) = (
        state["registry"].as_str().expect("registry").to_owned(),
        state["control"].as_str().expect("control").to_owned(),
    );
    let started = running
        .http
        .post(format!("{control}/instances"))
        .json(&json!({ "service": "catalog", "version": "9.5.0" }))
        .send()
        .await
        .expect("control answers");
    assert_eq!(started.status(), 201);
    let refused = running
        .http
        .post(format!("{control}/instances"))
        .json(&json!({ "service": "gateway", "version": "9.5.0" }))
        .send()
        .await
        .expect("control answers");
    assert_eq!(refused.status(), 400);
    let put = running
        .http
        .put(format!("{registry}/v1/kv/traffic/catalog"))
        .body(r#"{"stable":"0.1.0","candidate":"9.5.0","weight":50,"sticky":"user"}"#)
        .send()
        .await
        .expect("registry answers");
    assert!(put.status().is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let gateway_metrics = running.url_of("gateway") + "/metrics";
    let served = |text: &str, version: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("bazaar_gateway_upstream_requests_total")
                    && l.contains("service=\"catalog\"")
                    && l.contains(&format!("version=\"{version}\""))
            })
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let counts = || async {
        let text = running
            .http
            .get(&gateway_metrics)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        (served(&text, "0.1.0"), served(&text, "9.5.0"))
    };

    // Each user's twenty requests land on one version; users land on both.
    let mut sides = std::collections::BTreeSet::new();
    for n in 0..40 {
        let email = format!("sticky-{n}@example.com");
        let signup = running
            .post_json(
                "/api/auth/signup",
                &json!({ "email": email, "password": "correct horse battery", "name": "Sticky" }),
            )
            .await;
        assert_eq!(
            signup.status(),
            201,
            "{}",
            signup.text().await.unwrap_or_default()
        );
        let token = login(&running, &email, "correct horse battery").await;
        let before = counts().await;
        for _ in 0..20 {
            assert_eq!(
                running.get("/api/categories", Some(&token)).await.status(),
                200
            );
        }
        let after = counts().await;
        let (stable, candidate) = (after.0 - before.0, after.1 - before.1);
        assert!(
            (stable, candidate) == (20.0, 0.0) || (stable, candidate) == (0.0, 20.0),
            "user {n} was split: {stable} stable, {candidate} candidate"
        );
        sides.insert(candidate > 0.0);
        if sides.len() == 2 && n >= 3 {
            break;
        }
    }
    assert_eq!(sides.len(), 2, "at 50 % some users land on each version");

    // The header overrides the weight and the stickiness.
    let before = counts().await;
    for _ in 0..10 {
        let response = running
            .http
            .get(running.at("/api/categories"))
            .header("x-bazaar-canary", "candidate")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
    }
    let after = counts().await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (0.0, 10.0));
}

#[tokio::test]
async fn ctrl_c_during_a_canary_rolls_it_back() {
    let data = tempfile::tempdir().expect("tempdir");
    let running = Running::start(data.path(), &[]);
    // As many as the stable version runs (two in the production rehearsal).
    let n = catalog_instances(&running).len();
    let deploy = tokio::process::Command::new(BIN)
        .args([
            "deploy",
            "catalog",
            "--version",
            "9.6.0",
            "--steps",
            "30,100",
            "--interval",
            "60s",
        ])
        .arg("--data-dir")
        .arg(&running.data_dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bazaar runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while policy(&running).await.is_none_or(|p| p["weight"] != 30) {
        assert!(
            Instant::now() < deadline,
            "the canary never reached its first step"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid =
        nix::unistd::Pid::from_raw(i32::try_from(deploy.id().expect("pid")).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal delivered");
    let output = deploy.wait_with_output().await.expect("deploy ends");
    let out = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("rolled back: interrupted"), "{out}");
    assert_eq!(
        policy(&running).await,
        Some(json!({ "stable": "0.1.0", "weight": 0, "sticky": "none" }))
    );
    assert_eq!(catalog_instances(&running), ids("catalog", n));
}

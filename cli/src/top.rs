//! `bazaar top`: a live table of every service's request rate, errors and latency, from the
//! RED metrics each instance exposes (`http_server_requests_total`,
//! `http_server_request_duration_seconds`), summed over its instances between two scrapes.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chassis::metrics::red::{
    RedStats, SERVER_BUCKETS as BUCKETS, SERVER_REQUESTS as REQUESTS, Sample, samples,
};
use contracts::discovery::HealthStatus;
use http::{Method, StatusCode};

use crate::args::{EXIT_USAGE, TopArgs};
use crate::console::Console;
use crate::remote::Remote;

/// Longest a scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

/// One service's counts at one scrape, and how many instances answered.
#[derive(Debug, Default)]
struct Scrape {
    stats: RedStats,
    instances: usize,
}

pub(crate) async fn run(args: TopArgs) -> ExitCode {
    let every = match humantime::parse_duration(&args.every) {
        Ok(every) if every >= Duration::from_millis(200) => every,
        _ => {
            eprintln!(
                "error: --every {:?}: expected a duration of at least 200ms, such as 2s",
                args.every
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    let console = Console::detect();
    let mut before = match scrape(&remote).await {
        Ok(first) => first,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!(
                "Is `bazaar up` running? Start it, or point at a registry with --registry URL."
            );
            return ExitCode::FAILURE;
        }
    };
    let mut at = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
        let now = match scrape(&remote).await {
            Ok(now) => now,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        let elapsed = at.elapsed();
        at = Instant::now();
        let table = render(&before, &now, elapsed, console);
        before = now;
        if args.once {
            print!("{table}");
            return ExitCode::SUCCESS;
        }
        // Clear the screen and draw again, as top does.
        print!("\x1b[2J\x1b[H{table}");
    }
}

/// Every passing instance's RED counts, by service (the registry and the gateway included).
async fn scrape(remote: &Remote) -> Result<BTreeMap<String, Scrape>, String> {
    let instances = remote
        .registry
        .instances()
        .await
        .map_err(|e| format!("the registry: {}", chassis::error::ErrorChain(&e)))?
        .instances;
    let scrapes = instances
        .iter()
        .filter(|i| i.status == HealthStatus::Passing)
        .map(|instance| async move {
            let url = format!("{}/metrics", instance.address.trim_end_matches('/'));
            let answer = remote.call(Method::GET, &url, None, SCRAPE_TIMEOUT).await;
            (instance.service.clone(), answer)
        });
    let mut by_service: BTreeMap<String, (Vec<Sample>, usize)> = BTreeMap::new();
    for (service, answer) in futures_util::future::join_all(scrapes).await {
        // An instance that does not answer this time is left out of this sample.
        if let Ok((StatusCode::OK, body)) = answer {
            let entry = by_service.entry(service).or_default();
            entry.0.extend(samples(&String::from_utf8_lossy(&body)));
            entry.1 += 1;
        }
    }
    Ok(by_service
        .into_iter()
        .map(|(service, (samples, instances))| {
            // Probes and scrapes (this one included) are not the service's traffic.
            let stats = RedStats::collect(&samples, REQUESTS, BUCKETS, |s| {
                s.labels
                    .get("route")
                    .is_none_or(|r| !r.starts_with("/health/") && r != "/metrics")
            });
            (service, Scrape { stats, instances })
        })
        .collect())
}

/// The table: per service, requests per second, errors per second and their share, p50 and
/// p99 latency over the interval.
fn render(
    before: &BTreeMap<String, Scrape>,
    now: &BTreeMap<String, Scrape>,
    elapsed: Duration,
    console: Console,
) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-3);
    let latency = |d: Option<Duration>| {
        d.map_or_else(
            || "–".to_owned(),
            |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        )
    };
    let rows: Vec<Vec<String>> = now
        .iter()
        .map(|(service, scrape)| {
            let delta = before
                .get(service)
                .map_or_else(|| scrape.stats.clone(), |b| scrape.stats.since(&b.stats));
            let errors = format!(
                "{:.1}/s ({:.1} %)",
                delta.errors / seconds,
                delta.error_rate() * 100.0
            );
            vec![
                service.clone(),
                scrape.instances.to_string(),
                format!("{:.1}", delta.requests / seconds),
                if delta.errors > 0.0 {
                    console.red(&errors)
                } else {
                    errors
                },
                latency(delta.quantile(0.5)),
                latency(delta.p99()),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "No instance is passing.\n".to_owned();
    }
    let mut out = crate::table::render(
        "",
        &["service", "instances", "req/s", "errors", "p50", "p99"],
        &rows,
    );
    out.push_str(&console.dim(&format!(
        "\nover the last {:.1} s; latency is the upper bound of its histogram bucket; Ctrl-C to stop\n",
        elapsed.as_secs_f64()
    )));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(requests: u32, failed: u32, fast: u32, slow: u32) -> Scrape {
        let text = format!(
            "{REQUESTS}{{method=\"GET\",route=\"/products\",status=\"200\"}} {requests}\n\
             {REQUESTS}{{method=\"GET\",route=\"/products\",status=\"503\"}} {failed}\n\
             {REQUESTS}{{method=\"GET\",route=\"/metrics\",status=\"200\"}} 1000\n\
             {BUCKETS}{{method=\"GET\",route=\"/products\",status=\"200\",le=\"0.005\"}} {fast}\n\
             {BUCKETS}{{method=\"GET\",route=\"/products\",status=\"200\",le=\"0.1\"}} {}\n\
             {BUCKETS}{{method=\"GET\",route=\"/products\",status=\"200\",le=\"+Inf\"}} {}\n",
            fast + slow,
            fast + slow
        );
        let samples = samples(&text);
        Scrape {
            stats: RedStats::collect(&samples, REQUESTS, BUCKETS, |s| {
                s.labels.get("route").is_none_or(|r| r != "/metrics")
            }),
            instances: 2,
        }
    }

    #[test]
    fn rates_errors_and_latency_over_the_interval() {
        let before = BTreeMap::from([("catalog".to_owned(), scrape(100, 0, 100, 0))]);
        let now = BTreeMap::from([
            ("catalog".to_owned(), scrape(290, 10, 198, 2)),
            ("users".to_owned(), scrape(0, 0, 0, 0)),
        ]);
        let table = render(&before, &now, Duration::from_secs(2), Console::plain());
        let catalog = table
            .lines()
            .find(|l| l.starts_with("catalog"))
            .expect("a catalog row");
        let cells: Vec<&str> = catalog
            .split("  ")
            .filter(|c| !c.trim().is_empty())
            .collect();
        assert_eq!(cells[1].trim(), "2", "{table}");
        assert_eq!(cells[2].trim(), "100.0", "{table}");
        assert_eq!(cells[3].trim(), "5.0/s (5.0 %)", "{table}");
        assert_eq!(cells[4].trim(), "5.0 ms", "{table}");
        assert_eq!(cells[5].trim(), "100.0 ms", "{table}");
        let users = table
            .lines()
            .find(|l| l.starts_with("users"))
            .expect("users");
        assert!(users.contains("0.0") && users.contains('–'), "{table}");
        assert_eq!(
            render(
                &BTreeMap::new(),
                &BTreeMap::new(),
                Duration::from_secs(1),
                Console::plain()
            ),
            "No instance is passing.\n"
        );
    }
}

//! `bazaar trace`: one trace drawn as a waterfall, or a list of traces worth a look, from the
//! telemetry service.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use contracts::discovery::HealthStatus;
use contracts::traces::{Span, SpanStatus, Trace, TraceSummary};
use http::{Method, StatusCode};

use crate::args::{EXIT_USAGE, TraceArgs};
use crate::console::Console;
use crate::remote::{self, Remote};

/// Longest a read from the telemetry service may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Width of the bars, in characters.
const BAR: usize = 32;

pub(crate) async fn run(args: TraceArgs) -> ExitCode {
    if let Some(id) = &args.trace_id
        && !contracts::traces::is_trace_id(id)
    {
        eprintln!(
            "error: {id:?} is not a trace id: expected 32 lowercase hex digits, as in a problem's trace_id"
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if args.slowest == Some(0) || !(1..=1000).contains(&args.limit) {
        eprintln!("error: --slowest and --limit take a number from 1 to 1000");
        return ExitCode::from(EXIT_USAGE);
    }
    let remote = Remote::connect(args.registry.clone(), &args.data_dir);
    let base = match telemetry_url(&remote, args.telemetry.clone()).await {
        Ok(base) => base,
        Err(error) => {
            eprintln!("error: {error}");
            eprintln!(
                "Is `bazaar up` running? Start it, or name the trace store with --telemetry URL."
            );
            return ExitCode::FAILURE;
        }
    };
    let console = Console::detect();
    let result = match &args.trace_id {
        Some(id) => fetch::<Trace>(&remote, &format!("{base}/v1/traces/{id}"))
            .await
            .map(|trace| waterfall(&trace, console)),
        None => {
            let query = match args.slowest {
                Some(n) => format!("order=slowest&limit={n}"),
                None => format!(
                    "order=recent&limit={}{}",
                    args.limit,
                    if args.errors { "&errors=true" } else { "" }
                ),
            };
            let query = match &args.service {
                Some(service) => format!("{query}&service={service}"),
                None => query,
            };
            fetch::<Vec<TraceSummary>>(&remote, &format!("{base}/v1/traces?{query}"))
                .await
                .map(|list| listing(&list, console))
        }
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The telemetry service's base URL: the flag, or a passing instance the registry knows.
async fn telemetry_url(remote: &Remote, explicit: Option<String>) -> Result<String, String> {
    if let Some(url) = explicit {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    remote
        .instances(telemetry::SERVICE)
        .await?
        .into_iter()
        .find(|i| i.status == HealthStatus::Passing)
        .map(|i| i.address.trim_end_matches('/').to_owned())
        .ok_or_else(|| "no telemetry service is registered and passing".to_owned())
}

async fn fetch<T: serde::de::DeserializeOwned>(remote: &Remote, url: &str) -> Result<T, String> {
    let (status, body) = remote.call(Method::GET, url, None, TIMEOUT).await?;
    if status != StatusCode::OK {
        return Err(remote::problem_detail(&body));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: unexpected answer: {e}"))
}

/// Milliseconds, to a tenth.
fn ms(nanos: i64) -> String {
    #[allow(clippy::cast_precision_loss)] // durations far below 2^52 ns
    let ms = nanos as f64 / 1e6;
    format!("{ms:.1} ms")
}

/// The trace as a tree in time order: offset from the trace's start, duration, service, the
/// span's name indented under its parent, and a bar placing it in the whole. Failed spans are
/// red, with their message underneath.
pub(crate) fn waterfall(trace: &Trace, console: Console) -> String {
    let Some((start, end)) = trace.bounds() else {
        return format!("trace {} has no spans\n", trace.trace_id);
    };
    let total = (end - start).max(1);
    let order = trace.tree_order();
    let errors = trace
        .spans
        .iter()
        .filter(|s| s.status == SpanStatus::Error)
        .count();
    let services: HashSet<&str> = trace.spans.iter().map(|s| s.service.as_str()).collect();
    let mut out = format!(
        "trace {}  {}  {} spans, {} failed, {} services\n\n",
        console.bold(&trace.trace_id),
        ms(total),
        trace.spans.len(),
        errors,
        services.len()
    );
    let service_width = trace
        .spans
        .iter()
        .map(|s| s.service.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let name_width = order
        .iter()
        .map(|(depth, s)| depth * 2 + s.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    out.push_str(&console.dim(&format!(
        "{:>10}  {:>10}  {:<service_width$}  {:<name_width$}  timeline\n",
        "offset", "duration", "service", "span"
    )));
    for (depth, span) in &order {
        let offset = span.start_unix_nanos - start;
        let name: String = format!("{}{}", "  ".repeat(*depth), span.name)
            .chars()
            .take(name_width)
            .collect();
        let line = format!(
            "{:>10}  {:>10}  {:<service_width$}  {:<name_width$}  |{}|",
            ms(offset),
            ms(span.duration_nanos()),
            span.service,
            name,
            bar(offset, span.duration_nanos(), total)
        );
        if span.status == SpanStatus::Error {
            out.push_str(&console.red(&line));
            out.push('\n');
            if let Some(why) = failure(span) {
                out.push_str(&console.red(&format!(
                    "{:>24}{:service_width$}  {}! {why}",
                    "",
                    "",
                    "  ".repeat(*depth)
                )));
                out.push('\n');
            }
        } else {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Why a span failed: its status message, else an error event's, else its HTTP status.
fn failure(span: &Span) -> Option<String> {
    if let Some(message) = &span.status_message {
        return Some(message.clone());
    }
    let event = span.events.iter().rev().find(|e| {
        e.attributes.get("level").and_then(|l| l.as_str()) == Some("ERROR")
            || e.attributes.contains_key("error")
            || e.attributes.contains_key("exception.message")
    });
    if let Some(event) = event {
        let detail = ["error", "exception.message"]
            .iter()
            .find_map(|k| event.attributes.get(*k).and_then(|v| v.as_str()));
        return Some(match detail {
            Some(detail) => format!("{}: {detail}", event.name),
            None => event.name.clone(),
        });
    }
    span.attributes
        .get("http.response.status_code")
        .map(|status| format!("answered {status}"))
}

/// A bar of [`BAR`] characters with the span's share of the trace filled in.
fn bar(offset: i64, duration: i64, total: i64) -> String {
    let cell = |nanos: i64| -> usize {
        let scaled = i128::from(nanos.max(0)) * BAR as i128 / i128::from(total.max(1));
        usize::try_from(scaled).unwrap_or(BAR).min(BAR)
    };
    let from = cell(offset).min(BAR - 1);
    let to = cell(offset + duration).max(from + 1).min(BAR);
    (0..BAR)
        .map(|i| if (from..to).contains(&i) { '█' } else { ' ' })
        .collect()
}

/// The traces as a table, with the command that draws each.
pub(crate) fn listing(list: &[TraceSummary], console: Console) -> String {
    if list.is_empty() {
        return "No traces match.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let errors = if t.errors > 0 {
                console.red(&t.errors.to_string())
            } else {
                "0".to_owned()
            };
            vec![
                t.trace_id.clone(),
                chassis::db::from_millis(t.start_unix_nanos / 1_000_000)
                    .format("%H:%M:%S")
                    .to_string(),
                ms(t.duration_nanos),
                t.spans.to_string(),
                errors,
                format!("{} {}", t.root_service, t.root_name),
            ]
        })
        .collect();
    let mut out = crate::table::render(
        "",
        &["trace", "started", "duration", "spans", "failed", "root"],
        &rows,
    );
    out.push_str(&console.dim("\nDraw one with: bazaar trace <trace>\n"));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use contracts::traces::SpanKind;

    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, name: &str, from: i64, to: i64) -> Span {
        Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            service: service.into(),
            instance: None,
            version: None,
            name: name.into(),
            kind: SpanKind::Server,
            start_unix_nanos: from,
            end_unix_nanos: to,
            status: SpanStatus::Unset,
            status_message: None,
            attributes: BTreeMap::new(),
            events: vec![],
            links: vec![],
        }
    }

    #[test]
    fn the_waterfall_nests_children_under_parents_in_time_order() {
        let mut failed = span(
            "d",
            Some("b"),
            "payments",
            "POST /charges",
            3_000_000,
            9_000_000,
        );
        failed.status = SpanStatus::Error;
        failed.status_message = Some("card declined".into());
        let trace = Trace {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            spans: vec![
                failed,
                span(
                    "c",
                    Some("a"),
                    "gateway",
                    "late sibling",
                    12_000_000,
                    13_000_000,
                ),
                span("a", None, "gateway", "POST /api/orders", 0, 20_000_000),
                span(
                    "b",
                    Some("a"),
                    "orders",
                    "POST /orders",
                    1_000_000,
                    10_000_000,
                ),
                span(
                    "e",
                    Some("missing"),
                    "notifications",
                    "orphan",
                    15_000_000,
                    16_000_000,
                ),
            ],
        };
        let drawn = waterfall(&trace, Console::plain());
        let lines: Vec<&str> = drawn.lines().collect();
        assert!(
            lines[0].contains("20.0 ms") && lines[0].contains("5 spans, 1 failed, 4 services"),
            "{drawn}"
        );
        let names: Vec<&str> = lines[3..]
            .iter()
            .filter(|l| l.contains('|'))
            .map(|l| {
                l.split("  ")
                    .filter(|p| !p.is_empty())
                    .nth(3)
                    .unwrap_or("")
                    .trim_end()
            })
            .collect();
        assert!(
            drawn.find("POST /api/orders") < drawn.find("  POST /orders"),
            "{drawn}"
        );
        assert!(
            drawn.find("    POST /charges") < drawn.find("  late sibling"),
            "{drawn}"
        );
        assert!(drawn.find("late sibling") < drawn.find("orphan"), "{drawn}");
        assert!(drawn.contains("! card declined"), "{drawn}");
        assert_eq!(names.len(), 5, "{drawn}");
        let root = lines
            .iter()
            .find(|l| l.contains("POST /api/orders"))
            .expect("root line");
        assert!(root.contains(&format!("|{}|", "█".repeat(BAR))), "{root}");
    }

    #[test]
    fn bars_place_a_span_in_the_whole() {
        assert_eq!(bar(0, 100, 100), "█".repeat(BAR));
        let half = bar(50, 50, 100);
        assert_eq!(half.chars().filter(|c| *c == '█').count(), BAR / 2);
        assert!(half.starts_with(' '));
        // A span too short to see still gets a cell.
        assert_eq!(bar(99, 0, 100).chars().filter(|c| *c == '█').count(), 1);
    }

    #[test]
    fn failures_say_why() {
        let mut s = span("a", None, "orders", "POST /orders", 0, 1);
        assert_eq!(failure(&s), None);
        s.attributes
            .insert("http.response.status_code".into(), 502.into());
        assert_eq!(failure(&s).as_deref(), Some("answered 502"));
        s.events.push(contracts::traces::SpanEvent {
            unix_nanos: 1,
            name: "charging failed".into(),
            attributes: BTreeMap::from([("error".into(), "card declined".into())]),
        });
        assert_eq!(
            failure(&s).as_deref(),
            Some("charging failed: card declined")
        );
        s.status_message = Some("boom".into());
        assert_eq!(failure(&s).as_deref(), Some("boom"));
    }

    #[test]
    fn the_list_names_each_trace() {
        let list = vec![TraceSummary {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            root_service: "gateway".into(),
            root_name: "POST /api/orders".into(),
            start_unix_nanos: 1_795_000_000_000_000_000,
            duration_nanos: 412_300_000,
            spans: 23,
            errors: 1,
            services: vec!["gateway".into(), "orders".into()],
        }];
        let text = listing(&list, Console::plain());
        assert!(text.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{text}");
        assert!(
            text.contains("412.3 ms") && text.contains("gateway POST /api/orders"),
            "{text}"
        );
        assert_eq!(listing(&[], Console::plain()), "No traces match.\n");
    }
}

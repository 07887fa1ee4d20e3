//! Log output through `tracing`: JSON lines carrying the service, version and instance on every
//! line, plus the fields of the spans an event happens in (the request span adds `request_id`,
//! `method`, `route`, and `trace_id` and `span_id` when the request is part of a trace); and
//! the spans themselves to an OpenTelemetry exporter ([`crate::trace`]).
//!
//! `bazaar up` reads these lines from each child's standard output, files them per instance and
//! shows a colored summary on the terminal, so the JSON shape here is a contract with the CLI:
//! `timestamp`, `level`, `message`, `service`, `instance` always exist.

mod batch;
mod lines;

use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::ServiceInfo;
use crate::config::{ConfigError, LogConfig, LogFormat};
use crate::trace::TraceConfig;

/// Spans that only describe a trace: a database call (`db`), an outgoing call (`call`), an
/// event published (`publish`). The log layer does not see them: their fields (`db.*`,
/// `peer.service`, `url.path`, ...) are the trace's, and a request opens many of them, each
/// formatted for the log when it opens and whenever a field is recorded (docs/decisions.md).
/// A line written inside one still carries the fields of the request, event or saga around it.
pub const TRACE_ONLY_SPANS: [&str; 3] = ["db", "call", "publish"];

/// Installs the process-wide subscriber: log lines as `log` says, and spans to the trace
/// exporter when `trace` names one (see [`crate::trace`]). Call once, early in `main`, inside
/// the Tokio runtime (log lines are then written in batches, see [`flush`]); call
/// [`crate::trace::shutdown`] and [`flush`] at the end.
///
/// Spans go out through `transport` (presenting the service's certificate when the trace
/// store is behind mTLS).
///
/// Fails on a bad filter in `log.level` or a bad `trace` setting; a second call (tests) is
/// ignored.
pub fn init(
    service: &ServiceInfo,
    log: &LogConfig,
    trace: &TraceConfig,
    transport: crate::client::Transport,
) -> Result<(), ConfigError> {
    let invalid = |e: tracing_subscriber::filter::ParseError| {
        ConfigError::invalid("log.level", format!("{:?}", log.level), e.to_string())
    };
    EnvFilter::try_new(&log.level).map_err(invalid)?;
    trace.validate()?;
    let endpoint = trace.resolved_endpoint(|key| std::env::var(key).ok())?;
    let filter = || filter(&log.level).map_err(invalid);
    let stdout = batch::BatchedStdout::start();
    let lines = match log.format {
        LogFormat::Json => lines::JsonLines::new(service, stdout)
            .with_filter(filter()?)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(stdout)
            .with_target(false)
            .compact()
            .with_filter(filter()?)
            .boxed(),
    };
    let mut layers = vec![lines];
    match endpoint {
        Some(endpoint) if !crate::trace::enabled() => {
            let tracer = crate::trace::provider(service, &endpoint, trace, transport)?;
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    // Nothing here reads OpenTelemetry's thread-local current context: parents
                    // come from tracing's own span stack, and propagation from `span.context()`.
                    // Activating it on every enter and exit of every span (each poll of an
                    // instrumented future) cost a busy service a few percent of its CPU.
                    .with_context_activation(false)
                    .with_filter(for_traces(crate::trace::recording))
                    .boxed(),
            );
        }
        _ => {}
    }
    // A list of layers, not an `Option` layer: a `None` layer counts as enabling everything, and
    // every request would build spans that nothing records (docs/decisions.md).
    // Already installed: a test binary or a second service in one process. Keep the first.
    drop(tracing_subscriber::registry().with(layers).try_init());
    Ok(())
}

/// Which spans and lines the trace layer sees. Spans at info whatever the log level: quiet logs
/// still give whole traces. Of the log lines written inside them, only warnings and errors
/// become span events: the rest are in the logs, under the same trace id, and would double
/// every export. The [`TRACE_ONLY_SPANS`] only where the work is recorded
/// ([`crate::trace::recording`]): in a trace not sampled they would be built, timed and
/// dropped, and neither layer wanting one, it is not made at all (docs/decisions.md).
/// `recording` is [`crate::trace::recording`] but in tests.
fn for_traces<S>(recording: fn() -> bool) -> impl tracing_subscriber::layer::Filter<S> {
    use tracing::Level;
    use tracing::subscriber::Interest;
    tracing_subscriber::filter::dynamic_filter_fn(move |meta, _| {
        if meta.is_span() {
            *meta.level() <= Level::INFO
                && (!TRACE_ONLY_SPANS.contains(&meta.name()) || recording())
        } else {
            *meta.level() <= Level::WARN
        }
    })
    // Asked once per callsite: only those spans are decided each time one opens.
    .with_callsite_filter(|meta| {
        let wanted = if meta.is_span() {
            Level::INFO
        } else {
            Level::WARN
        };
        if *meta.level() > wanted {
            Interest::never()
        } else if meta.is_span() && TRACE_ONLY_SPANS.contains(&meta.name()) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    })
}

/// Which lines and spans the log layer sees: those at `level` or above (start and stop lines
/// always, see `server::LIFECYCLE`), and no [`TRACE_ONLY_SPANS`].
fn filter<S>(
    level: &str,
) -> Result<
    impl tracing_subscriber::layer::Filter<S> + use<S>,
    tracing_subscriber::filter::ParseError,
> {
    let levels = EnvFilter::try_new(format!("{level},{}=info", crate::server::LIFECYCLE))?;
    let for_logs = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.is_span() && TRACE_ONLY_SPANS.contains(&meta.name()))
    });
    Ok(levels.and(for_logs))
}

/// Writes out the log lines still waiting in this process's batch. Call last before the
/// process exits: lines logged after it are written on the next batch, or not at all.
pub fn flush() {
    batch::flush();
}

/// Log lines captured in memory, as [`init`] would write them (tests).
#[cfg(test)]
pub(crate) mod capture {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// The lines written so far.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        /// Everything written.
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
        }

        /// Each line written, parsed, with its text.
        pub(crate) fn lines(&self) -> Vec<(String, serde_json::Value)> {
            self.text()
                .lines()
                .map(|line| {
                    let parsed = serde_json::from_str(line).expect("a JSON line");
                    (line.to_owned(), parsed)
                })
                .collect()
        }
    }

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl MakeWriter<'_> for Captured {
        type Writer = Self;

        fn make_writer(&self) -> Self {
            self.clone()
        }
    }

    /// A subscriber writing JSON lines of `orders-1` at `level` into the [`Captured`].
    pub(crate) fn subscriber(level: &str) -> (impl tracing::Subscriber + use<>, Captured) {
        let captured = Captured::default();
        let service = ServiceInfo {
            name: "orders".into(),
            version: "0.1.0".into(),
            instance_id: "orders-1".into(),
        };
        let lines = lines::JsonLines::new(&service, captured.clone())
            .with_filter(filter(level).expect("a level"));
        (tracing_subscriber::registry().with(lines), captured)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The names of the spans a layer was shown, in order.
    #[derive(Clone, Default)]
    struct Opened(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Opened {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if let Ok(mut opened) = self.0.lock() {
                opened.push(attrs.metadata().name().to_owned());
            }
        }
    }

    fn request_in_trace(flags: TraceFlags) -> crate::context::RequestContext {
        crate::context::RequestContext {
            request_id: "r-1".into(),
            path: "/orders".into(),
            trace: Some(SpanContext::new(
                TraceId::from(7),
                SpanId::from(9),
                flags,
                true,
                TraceState::default(),
            )),
        }
    }

    #[tokio::test]
    async fn the_spans_that_only_describe_a_trace_are_made_in_a_sampled_one_only() {
        let opened = Opened::default();
        let subscriber = tracing_subscriber::registry().with(
            opened
                .clone()
                .with_filter(for_traces(crate::context::trace_sampled)),
        );
        let _default = tracing::subscriber::set_default(subscriber);
        let work = || async {
            let _request = tracing::info_span!("saga step", step = "reserve").entered();
            let _db = tracing::info_span!("db", db.operation.name = "insert").entered();
            let _call = tracing::info_span!("call", peer.service = "catalog").entered();
            let _publish = tracing::info_span!("publish").entered();
            let _below = tracing::debug_span!("detail").entered();
        };
        crate::context::scope(request_in_trace(TraceFlags::SAMPLED), work()).await;
        crate::context::scope(request_in_trace(TraceFlags::NOT_SAMPLED), work()).await;
        work().await;
        let opened = opened.0.lock().map(|o| o.clone()).unwrap_or_default();
        assert_eq!(
            opened,
            [
                "saga step",
                "db",
                "call",
                "publish",
                "saga step",
                "saga step"
            ]
        );
    }

    #[test]
    fn a_line_carries_its_request_and_not_the_spans_of_the_trace() {
        let (subscriber, captured) = super::capture::subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "r-1", route = "/orders");
            let _request = request.enter();
            let db = tracing::info_span!("db", db.operation.name = "insert");
            let _db = db.enter();
            let call = tracing::info_span!("call", peer.service = "catalog");
            let _call = call.enter();
            tracing::warn!(attempt = 2, "slow");
            tracing::debug!("below the level");
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (text, line) = &lines[0];
        assert_eq!(line["message"], "slow");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["route"], "/orders");
        assert_eq!(line["instance"], "orders-1");
        assert!(!text.contains("db.operation.name"), "{text}");
        assert!(!text.contains("peer.service"), "{text}");
    }
}

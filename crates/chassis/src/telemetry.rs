//! Log output through `tracing`: JSON lines carrying the service, version and instance on every
//! line, plus the fields of the spans an event happens in (the request span adds `request_id`,
//! `method`, `route`, and `trace_id` and `span_id` when the request is part of a trace); and
//! the spans themselves to an OpenTelemetry exporter ([`crate::trace`]).
//!
//! `bazaar up` reads these lines from each child's standard output, files them per instance and
//! shows a colored summary on the terminal, so the JSON shape here is a contract with the CLI:
//! `timestamp`, `level`, `message`, `service`, `instance` always exist.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::ServiceInfo;
use crate::config::{ConfigError, LogConfig, LogFormat};
use crate::trace::TraceConfig;

/// Installs the process-wide subscriber: log lines as `log` says, and spans to the trace
/// exporter when `trace` names one (see [`crate::trace`]). Call once, early in `main`, inside
/// the Tokio runtime; call [`crate::trace::shutdown`] at the end.
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
    // Start and stop lines are always written (see `server::LIFECYCLE`).
    let filter = || {
        EnvFilter::try_new(format!("{},{}=info", log.level, crate::server::LIFECYCLE))
            .map_err(invalid)
    };
    let lines = match log.format {
        LogFormat::Json => {
            let mut layer = json_subscriber::fmt::layer()
                .with_target(true)
                .flatten_event(true)
                .with_current_span(false)
                .flatten_span_list_on_top_level(true);
            let inner = layer.inner_layer_mut();
            inner.add_static_field("service", service.name.clone().into());
            inner.add_static_field("version", service.version.clone().into());
            inner.add_static_field("instance", service.instance_id.clone().into());
            layer.with_filter(filter()?).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .compact()
            .with_filter(filter()?)
            .boxed(),
    };
    // Spans are recorded at info whatever the log level: quiet logs still give whole traces.
    // Of the log lines written inside them, only warnings and errors become span events: the
    // rest are in the logs, under the same trace id, and would double every export.
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
                    .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                        let wanted = if meta.is_span() {
                            tracing::Level::INFO
                        } else {
                            tracing::Level::WARN
                        };
                        *meta.level() <= wanted
                    }))
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

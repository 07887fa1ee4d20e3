//! Log output through `tracing`: JSON lines carrying the service, version and instance on every
//! line, plus the fields of the spans an event happens in (the request span adds `request_id`,
//! `method` and `route`).
//!
//! `bazaar up` reads these lines from each child's standard output, files them per instance and
//! shows a colored summary on the terminal, so the JSON shape here is a contract with the CLI:
//! `timestamp`, `level`, `message`, `service`, `instance` always exist.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::ServiceInfo;
use crate::config::{ConfigError, LogConfig, LogFormat};

/// Installs the process-wide subscriber. Call once, early in `main`.
///
/// Fails only on a bad filter in `log.level`; a second call (tests) is ignored.
pub fn init(service: &ServiceInfo, config: &LogConfig) -> Result<(), ConfigError> {
    let invalid = |e: tracing_subscriber::filter::ParseError| {
        ConfigError::invalid("log.level", format!("{:?}", config.level), e.to_string())
    };
    EnvFilter::try_new(&config.level).map_err(invalid)?;
    // Start and stop lines are always written (see `server::LIFECYCLE`).
    let filter = EnvFilter::try_new(format!(
        "{},{}=info",
        config.level,
        crate::server::LIFECYCLE
    ))
    .map_err(invalid)?;
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.format {
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
            registry.with(layer).try_init()
        }
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .compact(),
            )
            .try_init(),
    };
    // Already installed: a test binary or a second service in one process. Keep the first.
    drop(result);
    Ok(())
}

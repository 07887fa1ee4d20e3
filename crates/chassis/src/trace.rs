//! Distributed tracing: W3C trace context in, OpenTelemetry spans out.
//!
//! Every request is a server span whose parent is the caller's `traceparent`; every call to
//! another instance is a client span whose context goes out as the call's `traceparent`; an
//! event carries its producer's context in the envelope, and the consumer's span continues it
//! (and links to it). Spans are made with `tracing` and turned into OpenTelemetry spans by
//! `tracing-opentelemetry`, sampled parent-based (a request whose caller recorded it is
//! recorded; a new trace is recorded with probability `trace.sample_ratio`, at most
//! `trace.max_new_per_second` a second, and only where work enters: a request or an event,
//! never a poll), and exported in batches over OTLP/HTTP. In a trace not sampled, only the
//! spans where work enters are made (they decide, and carry the trace on); the database, call
//! and publish spans inside them are not ([`recording`]).
//!
//! Without an endpoint (`trace.endpoint`, or the standard `OTEL_EXPORTER_OTLP_*` variables)
//! nothing is recorded, and nothing costs more than reading one header: the incoming
//! `traceparent` is passed on unchanged to the calls a request makes, so a process that does
//! not export does not cut the trace in two.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SamplingDecision, SamplingResult, SdkTracer, SdkTracerProvider, ShouldSample,
};
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ServiceInfo;
use crate::client::Transport;
use crate::config::ConfigError;

/// `traceparent` as a header name.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// How long finished spans wait to be exported in a batch.
const EXPORT_EVERY: Duration = Duration::from_secs(1);

/// Largest answer read from a collector; it says "accepted" or why not.
const MAX_COLLECTOR_ANSWER: usize = 64 * 1024;

/// Trace export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TraceConfig {
    /// Where spans go: an OTLP/HTTP traces URL (`http://127.0.0.1:7702/v1/traces`). Unset:
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
    /// `/v1/traces`; none of them, no spans are recorded. `bazaar up` points every service at
    /// its telemetry service.
    pub endpoint: Option<String>,
    /// Share of new traces recorded, 0 to 1. A request whose caller recorded its trace is
    /// recorded whatever this says, so a trace is whole or absent.
    pub sample_ratio: f64,
    /// Most new traces this instance records a second, with bursts up to as many; beyond it a
    /// new trace is not recorded (its context still travels). 0: no limit. Bounds what tracing
    /// costs under load, where every trace recorded is some fifty spans for the trace store to
    /// keep, while a demo or a test, far below it, has every trace recorded.
    pub max_new_per_second: u32,
    /// Whether a request or event that arrives outside any trace starts one. `bazaar up`
    /// leaves it on at the gateway only: traces begin where requests enter the system, and
    /// the polling between services (event feeds, watches) stays out of the store. Health
    /// probes and scrapes never start one.
    pub start_traces: bool,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            sample_ratio: 1.0,
            max_new_per_second: 100,
            start_traces: true,
        }
    }
}

impl TraceConfig {
    /// The traces URL to export to, from the configuration or the standard variables; `None`
    /// when tracing is off (`OTEL_SDK_DISABLED=true` turns it off too).
    pub fn resolved_endpoint(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (key, url) = if let Some(url) = self.endpoint.clone() {
            ("trace.endpoint", url)
        } else if let Some(url) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)
        } else if let Some(base) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            )
        } else {
            return Ok(None);
        };
        if url.is_empty() {
            return Ok(None);
        }
        // `https://` is spoken with the service's mTLS identity: the embedded trace store.
        crate::config::check_url_scheme(key, &url, &["http", "https"])?;
        Ok(Some(url))
    }

    /// Checks the ratio.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                "trace.sample_ratio",
                self.sample_ratio.to_string(),
                "expected a number from 0 to 1",
            ));
        }
        Ok(())
    }
}

/// The process's tracer provider, once tracing is on.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// `trace.start_traces` of this process.
static STARTS_TRACES: AtomicBool = AtomicBool::new(true);

/// Whether spans are being recorded and exported in this process.
pub fn enabled() -> bool {
    PROVIDER.get().is_some()
}

/// Whether the work of the current task is recorded: this process exports spans, and the
/// request, event or saga it serves is in a sampled trace. Otherwise the spans that only
/// describe a trace ([`TRACE_ONLY_SPANS`](crate::telemetry::TRACE_ONLY_SPANS)) are not made at
/// all, and calls and events carry the request's own position on.
pub fn recording() -> bool {
    enabled() && crate::context::trace_sampled()
}

/// A tracer exporting to `endpoint`, its resource naming this instance. The caller adds
/// [`layer`] of it to the subscriber.
pub(crate) fn provider(
    service: &ServiceInfo,
    endpoint: &str,
    config: &TraceConfig,
    transport: Transport,
) -> Result<SdkTracer, ConfigError> {
    STARTS_TRACES.store(config.start_traces, Ordering::Relaxed);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Collector::new(transport))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| ConfigError::invalid("trace.endpoint", endpoint, error.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", service.name.clone()),
            KeyValue::new("service.version", service.version.clone()),
            KeyValue::new("service.instance.id", service.instance_id.clone()),
        ])
        .build();
    // Spans go out a second after they end rather than the SDK's five, so a trace is whole
    // by the time someone looks; `OTEL_BSP_SCHEDULE_DELAY` still decides when it is set.
    let mut batches = BatchConfigBuilder::default();
    if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
        batches = batches.with_scheduled_delay(EXPORT_EVERY);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batches.build())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Entrances::new(
            config.sample_ratio,
            config.max_new_per_second,
        ))))
        .with_id_generator(TimeOrderedIds::default())
        .with_resource(resource)
        .with_span_processor(processor)
        .build();
    let tracer = provider.tracer("bazaar");
    // A second service in one process (tests) keeps the first provider, as the subscriber does.
    let _ = PROVIDER.set(provider);
    Ok(tracer)
}

/// Which spans may begin a trace: a request served or an event consumed (server and consumer
/// spans), with probability `ratio`, at most `budget` a second. A span with no parent of
/// another kind is work no request or event asked for, such as a worker polling its table for
/// due rows or a service seeding its data: recorded, those made most of the traces of an idle system, ten a second, and
/// pushed the checkouts out of `bazaar trace` and the console. Work a request set going
/// carries the request's context ([`resume`]), so it stays in the request's trace.
#[derive(Debug, Clone)]
struct Entrances {
    /// Share of entrances recorded.
    ratio: f64,
    /// New traces recorded a second, as a token bucket (shared by clones); `None`: no limit.
    budget: Option<Arc<Mutex<Budget>>>,
}

impl Entrances {
    fn new(ratio: f64, max_per_second: u32) -> Self {
        Self {
            ratio,
            budget: (max_per_second > 0)
                .then(|| Arc::new(Mutex::new(Budget::full(max_per_second)))),
        }
    }

    /// Takes one new trace from the budget; `false` when this second's are spent.
    fn spend(&self) -> bool {
        match &self.budget {
            None => true,
            Some(budget) => budget
                .lock()
                .map(|mut budget| budget.take(Instant::now()))
                .unwrap_or(true),
        }
    }
}

/// A token bucket of new traces: `rate` a second, holding at most `rate`.
#[derive(Debug)]
struct Budget {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn full(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate);
        self.at = self.at.max(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl ShouldSample for Entrances {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        name: &str,
        span_kind: &SpanKind,
        attributes: &[KeyValue],
        links: &[Link],
    ) -> SamplingResult {
        match span_kind {
            SpanKind::Server | SpanKind::Consumer => {
                let result = Sampler::TraceIdRatioBased(self.ratio).should_sample(
                    parent_context,
                    trace_id,
                    name,
                    span_kind,
                    attributes,
                    links,
                );
                match result.decision {
                    SamplingDecision::RecordAndSample if !self.spend() => SamplingResult {
                        decision: SamplingDecision::Drop,
                        ..result
                    },
                    _ => result,
                }
            }
            SpanKind::Client | SpanKind::Producer | SpanKind::Internal => SamplingResult {
                decision: SamplingDecision::Drop,
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            },
        }
    }
}

/// Trace ids that begin with the time they were made: 48 bits of Unix milliseconds, then 80
/// random bits (the sampler's ratio reads the last 64). A trace store keys spans and traces by
/// trace id; random ids put each new trace on a random page of every such index, so each
/// batch of spans rewrote pages all over the file, while ids in time order fill the same few
/// pages at the index's end, as ULIDs and UUIDv7 do (AWS X-Ray's trace ids also begin with the
/// time). Span ids stay random.
#[derive(Debug, Default)]
struct TimeOrderedIds {
    random: RandomIdGenerator,
}

impl IdGenerator for TimeOrderedIds {
    fn new_trace_id(&self) -> TraceId {
        let millis = u128::from(crate::db::now_millis().unsigned_abs());
        let random = u128::from_be_bytes(self.random.new_trace_id().to_bytes());
        TraceId::from(((millis & ((1 << 48) - 1)) << 80) | (random >> 48))
    }

    fn new_span_id(&self) -> SpanId {
        self.random.new_span_id()
    }
}

/// Sends the spans still buffered and stops exporting. Call once, at the end of `main`.
pub async fn shutdown() {
    let Some(provider) = PROVIDER.get().cloned() else {
        return;
    };
    // The flush blocks its thread until the export, which runs on this runtime, is done.
    let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(error)) = flushed {
        tracing::warn!(%error, "the last spans could not be exported");
    }
}

/// The span context a request arrived with (`traceparent`), if any is valid.
pub fn extract(headers: &HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Makes `span` (a server or consumer span, not yet entered) a child of `parent`, and returns
/// the trace position the work inside it has: its own context when spans are recorded, else
/// the parent's, passed through. Without a parent, the span starts a trace only if `may_start`
/// and `trace.start_traces` allow; otherwise it is not recorded, and neither is anything it
/// calls.
pub fn adopt(span: &tracing::Span, parent: Context, may_start: bool) -> Option<SpanContext> {
    let passed = parent.span().span_context().clone();
    let starts = may_start && STARTS_TRACES.load(Ordering::Relaxed);
    if !(passed.is_valid() || starts) {
        if enabled() {
            let _ = span.set_parent(Context::new().with_remote_span_context(unsampled()));
        }
        return None;
    }
    let position = if enabled() {
        // Fails only for a span the subscriber disabled; then the parent's context carries on.
        match span.set_parent(parent) {
            Ok(()) => span.context().span().span_context().clone(),
            Err(_) => passed,
        }
    } else {
        passed
    };
    let position = position.is_valid().then_some(position)?;
    span.record("trace_id", tracing::field::display(position.trace_id()));
    span.record("span_id", tracing::field::display(position.span_id()));
    Some(position)
}

/// Where the current task stands in a trace: the current span when spans are recorded, else
/// the request's position, passed through. Work done later on the request's behalf (a saga's
/// steps) stores it and [`resume`]s it.
pub fn current() -> Option<SpanContext> {
    if enabled() {
        let here = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .clone();
        if here.is_valid() {
            return Some(here);
        }
    }
    crate::context::trace()
}

/// Makes `span` (not yet entered) a child of a stored position (`traceparent`); it never
/// starts a trace of its own. Returns the position the work inside it has, as [`adopt`] does.
pub fn resume(span: &tracing::Span, traceparent: Option<&str>) -> Option<SpanContext> {
    let parent = traceparent
        .and_then(parse_traceparent)
        .map(|position| Context::new().with_remote_span_context(position))
        .unwrap_or_default();
    adopt(span, parent, false)
}

/// The `traceparent` an event published now carries: a producer span's, child of the current
/// span, when spans are recorded; else the current request's position, passed through.
pub fn publishing(kind: &str) -> Option<String> {
    if recording()
        && tracing::Span::current()
            .context()
            .span()
            .span_context()
            .is_valid()
    {
        let span = tracing::info_span!(
            "publish",
            otel.name = %format_args!("{kind} publish"),
            otel.kind = "producer",
            messaging.operation.type = "publish",
            messaging.message.type = kind,
        );
        return traceparent(span.context().span().span_context());
    }
    crate::context::trace().and_then(|position| traceparent(&position))
}

/// Makes `span` (a consumer's, not yet entered) continue the trace of the event's producer,
/// and link to it; returns the position the handler works at, as [`adopt`] does.
pub fn consuming(span: &tracing::Span, producer: Option<&str>) -> Option<SpanContext> {
    let producer = producer.and_then(parse_traceparent);
    let Some(producer) = producer else {
        return adopt(span, Context::new(), true);
    };
    if enabled() {
        span.add_link(producer.clone());
    }
    adopt(
        span,
        Context::new().with_remote_span_context(producer),
        true,
    )
}

/// A parent that is not sampled: what a span that must not start a trace hangs from.
fn unsampled() -> SpanContext {
    SpanContext::new(
        TraceId::from(rand::random::<u128>().max(1)),
        SpanId::from(rand::random::<u64>().max(1)),
        TraceFlags::default(),
        true,
        TraceState::default(),
    )
}

/// The `traceparent` value of a span context.
pub fn traceparent(context: &SpanContext) -> Option<String> {
    // W3C Trace Context, version 00: `00-<trace id>-<span id>-<flags>`.
    context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        )
    })
}

/// Parses a `traceparent` value (an event envelope's).
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut headers = HeaderMap::new();
    headers.insert(TRACEPARENT, HeaderValue::from_str(value).ok()?);
    let context = extract(&headers);
    let span = context.span().span_context().clone();
    span.is_valid().then_some(span)
}

/// The trace id of a `traceparent` whose trace is recorded (sampled); what a resource can show
/// so its trace can be looked up.
pub fn recorded_trace_id(traceparent: &str) -> Option<String> {
    parse_traceparent(traceparent)
        .filter(SpanContext::is_sampled)
        .map(|position| position.trace_id().to_string())
}

/// Writes `traceparent` (and `tracestate`) for `context` into `headers`.
pub fn inject(context: &SpanContext, headers: &mut HeaderMap) {
    if !context.is_valid() {
        return;
    }
    let context = Context::new().with_remote_span_context(context.clone());
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// A client span for a call about to go out, its context written into the request's headers;
/// `None` (and the request's trace position passed through) outside a recorded request, so
/// heartbeats and exports do not start traces of their own.
pub fn outgoing<B>(request: &mut Request<B>) -> Option<tracing::Span> {
    if !recording() {
        if let Some(position) = crate::context::trace() {
            inject(&position, request.headers_mut());
        }
        return None;
    }
    let current = tracing::Span::current();
    if !current.context().span().span_context().is_valid() {
        return None;
    }
    let authority = request
        .uri()
        .authority()
        .map_or("", http::uri::Authority::as_str);
    let peer = request
        .extensions()
        .get::<crate::client::Peer>()
        .map_or(authority, |peer| peer.0.as_str());
    let span = tracing::info_span!(
        "call",
        otel.name = %format_args!("{} {}", request.method(), peer),
        otel.kind = "client",
        peer.service = peer,
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        http.request.method = %request.method(),
        server.address = authority,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    inject(
        &span.context().span().span_context().clone(),
        request.headers_mut(),
    );
    Some(span)
}

/// Renames a span that has started (`otel.name` is read only when a span starts).
pub fn rename(span: &tracing::Span, name: String) {
    if enabled() {
        span.context().span().update_name(name);
    }
}

/// Records a finished call or request on its span: the status, and an error for 5xx.
pub fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", i64::from(status));
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks `span` failed (no answer at all).
pub fn record_failure(span: &tracing::Span, error: &(dyn std::error::Error + 'static)) {
    span.record("otel.status_code", "ERROR");
    span.record(
        "otel.status_description",
        tracing::field::display(crate::error::ErrorChain(error)),
    );
}

/// The OTLP exporter's HTTP client: the chassis transport, driven on the runtime that was
/// current when tracing started (the exporter runs on a thread of its own).
#[derive(Debug)]
struct Collector {
    transport: Transport,
    runtime: Option<tokio::runtime::Handle>,
}

impl Collector {
    fn new(transport: Transport) -> Self {
        Self {
            transport,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for Collector {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let runtime = self
            .runtime
            .clone()
            .ok_or("tracing was started outside a Tokio runtime")?;
        let transport = self.transport.clone();
        runtime
            .spawn(async move {
                let response = transport.send(request.map(Body::from)).await?;
                let (parts, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, MAX_COLLECTOR_ANSWER)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn trace_ids_begin_with_the_time_and_end_at_random() {
        let ids = TimeOrderedIds::default();
        let millis = |id: TraceId| u128::from_be_bytes(id.to_bytes()) >> 80;
        let now = || u128::from(crate::db::now_millis().unsigned_abs());
        let before = now();
        let first = ids.new_trace_id();
        std::thread::sleep(Duration::from_millis(2));
        let second = ids.new_trace_id();
        let after = now();
        assert!((before..=after).contains(&millis(first)), "{first}");
        assert!(
            first.to_bytes() < second.to_bytes(),
            "{first} then {second}: not in time order"
        );
        // The sampler's ratio reads the last eight bytes: they must differ between ids made in
        // the same millisecond, and cover the range rather than sit in one corner of it.
        let tails: Vec<u64> = (0..64)
            .map(|_| u128::from_be_bytes(ids.new_trace_id().to_bytes()) as u64)
            .collect();
        let distinct: std::collections::HashSet<_> = tails.iter().collect();
        assert_eq!(distinct.len(), tails.len());
        assert!(tails.iter().any(|t| *t < u64::MAX / 4));
        assert!(tails.iter().any(|t| *t > u64::MAX / 4 * 3));
        assert_ne!(ids.new_span_id(), SpanId::INVALID);
    }

    #[test]
    fn the_budget_gives_its_rate_a_second_with_bursts_up_to_it() {
        let start = Instant::now();
        let mut budget = Budget {
            rate: 4.0,
            tokens: 4.0,
            at: start,
        };
        let taken = (0..10).filter(|_| budget.take(start)).count();
        assert_eq!(taken, 4, "a burst takes the whole budget and no more");
        let half = start + Duration::from_millis(500);
        let taken = (0..10).filter(|_| budget.take(half)).count();
        assert_eq!(taken, 2, "half a second gives half the rate back");
        let later = half + Duration::from_secs(60);
        let taken = (0..10).filter(|_| budget.take(later)).count();
        assert_eq!(taken, 4, "an idle minute refills no more than the rate");
        assert!(
            !budget.take(half),
            "a clock read out of order gives nothing back"
        );
    }

    #[test]
    fn entrances_start_traces_within_the_budget_only() {
        let decide = |sampler: &Entrances, kind: SpanKind| {
            sampler
                .should_sample(None, TraceId::from(7_u128), "request", &kind, &[], &[])
                .decision
        };
        let limited = Entrances::new(1.0, 3);
        let decisions: Vec<SamplingDecision> =
            (0..5).map(|_| decide(&limited, SpanKind::Server)).collect();
        assert_eq!(
            decisions,
            [
                SamplingDecision::RecordAndSample,
                SamplingDecision::RecordAndSample,
                SamplingDecision::RecordAndSample,
                SamplingDecision::Drop,
                SamplingDecision::Drop,
            ]
        );
        assert_eq!(
            decide(&limited, SpanKind::Internal),
            SamplingDecision::Drop,
            "a poll starts no trace"
        );
        let unlimited = Entrances::new(1.0, 0);
        assert!(
            (0..1000).all(
                |_| decide(&unlimited, SpanKind::Consumer) == SamplingDecision::RecordAndSample
            )
        );
        // Traces the ratio leaves out spend nothing of the budget.
        let none = Entrances::new(0.0, 1);
        assert_eq!(decide(&none, SpanKind::Server), SamplingDecision::Drop);
        assert!(none.spend(), "the budget is still whole");
    }

    #[test]
    fn the_endpoint_comes_from_the_config_then_the_standard_variables() -> anyhow::Result<()> {
        let config = TraceConfig::default();
        assert_eq!(config.resolved_endpoint(env(&[]))?, None);
        assert_eq!(
            config.resolved_endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))?,
            Some("http://c:4318/v1/traces".to_owned())
        );
        assert_eq!(
            config.resolved_endpoint(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/traces"),
            ]))?,
            Some("http://t:1/traces".to_owned())
        );
        let configured = TraceConfig {
            endpoint: Some("http://127.0.0.1:7702/v1/traces".into()),
            ..TraceConfig::default()
        };
        assert_eq!(
            configured.resolved_endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")]))?,
            Some("http://127.0.0.1:7702/v1/traces".to_owned())
        );
        assert_eq!(
            configured.resolved_endpoint(env(&[("OTEL_SDK_DISABLED", "true")]))?,
            None
        );
        Ok(())
    }

    #[test]
    fn bad_endpoints_and_ratios_are_named() {
        let grpc = TraceConfig {
            endpoint: Some("grpc://collector:4317".into()),
            ..TraceConfig::default()
        };
        let error = grpc
            .resolved_endpoint(env(&[]))
            .expect_err("grpc is not spoken")
            .to_string();
        assert!(error.contains("trace.endpoint"), "{error}");
        let from_env = TraceConfig::default()
            .resolved_endpoint(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]))
            .expect_err("no scheme")
            .to_string();
        assert!(
            from_env.contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{from_env}"
        );
        for ratio in [-0.1, 1.5, f64::NAN] {
            let error = TraceConfig {
                sample_ratio: ratio,
                ..TraceConfig::default()
            }
            .validate()
            .expect_err("out of range")
            .to_string();
            assert!(error.contains("trace.sample_ratio"), "{error}");
        }
    }

    #[test]
    fn traceparent_round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(value).expect("valid");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled());
        assert_eq!(traceparent(&context).as_deref(), Some(value));
        assert_eq!(
            recorded_trace_id(value).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            recorded_trace_id("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            None,
            "not sampled, not recorded"
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn only_requests_and_events_begin_traces_and_children_follow_their_parent() {
        let sampler = Sampler::ParentBased(Box::new(Entrances::new(1.0, 0)));
        let decide = |parent: Option<&Context>, kind: SpanKind| {
            sampler
                .should_sample(parent, TraceId::from(7_u128), "span", &kind, &[], &[])
                .decision
        };
        for kind in [SpanKind::Server, SpanKind::Consumer] {
            assert_eq!(
                decide(None, kind.clone()),
                SamplingDecision::RecordAndSample,
                "{kind:?}"
            );
        }
        // A worker's poll of its table, with no request around it.
        for kind in [SpanKind::Client, SpanKind::Producer, SpanKind::Internal] {
            assert_eq!(
                decide(None, kind.clone()),
                SamplingDecision::Drop,
                "{kind:?}"
            );
        }
        // Inside a recorded trace, every kind is recorded; inside an unrecorded one, none.
        let recorded = Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(7_u128),
            SpanId::from(9_u64),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let unrecorded = Context::new().with_remote_span_context(unsampled());
        for kind in [SpanKind::Client, SpanKind::Internal, SpanKind::Server] {
            assert_eq!(
                decide(Some(&recorded), kind.clone()),
                SamplingDecision::RecordAndSample
            );
            assert_eq!(decide(Some(&unrecorded), kind), SamplingDecision::Drop);
        }
        // The ratio still applies to entrances.
        let none = Entrances::new(0.0, 0);
        let result = none.should_sample(
            None,
            TraceId::from(7_u128),
            "s",
            &SpanKind::Server,
            &[],
            &[],
        );
        assert_eq!(result.decision, SamplingDecision::Drop);
    }
}

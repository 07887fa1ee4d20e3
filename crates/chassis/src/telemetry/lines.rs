//! The JSON log line, one object per line:
//!
//! ```text
//! {"timestamp":"2026-12-07T04:20:01.558730Z","level":"INFO","message":"request finished",
//!  "status":202,"latency_ms":20.5,"path":"/orders","request_id":"01a2…","method":"POST",
//!  "route":"/orders","trace_id":"01a2…","span_id":"429a…","target":"chassis::server::middleware",
//!  "service":"orders","version":"0.1.0","instance":"orders-1"}
//! ```
//!
//! The event's fields come first, then those of the spans it happened in, innermost first; a
//! name is written once, by the innermost that has it. The line's own keys ([`LINE_KEYS`])
//! are never a field's: a field named like one is left out, so name it otherwise
//! (`instance_id`, `upstream`). Span fields whose name holds a dot
//! (`otel.kind`, `http.route`, `messaging.operation.type`) follow OpenTelemetry's conventions
//! for the trace and are left out of the line.
//!
//! Each span keeps its fields already written as JSON, and a field recorded later replaces its
//! own pair only: the request span records its trace ids, route and status after it opens,
//! and a line costs no more than copying those pairs (docs/decisions.md).

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::ops::Range;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::ServiceInfo;

/// The keys every line has, written by the layer itself.
const LINE_KEYS: [&str; 6] = [
    "timestamp",
    "level",
    "target",
    "service",
    "version",
    "instance",
];

/// Writes each event as a JSON line to `W`.
pub(crate) struct JsonLines<W> {
    writer: W,
    /// `,"service":…,"version":…,"instance":…`, the same on every line.
    process: String,
}

impl<W> JsonLines<W> {
    pub(crate) fn new(service: &ServiceInfo, writer: W) -> Self {
        let mut process = String::new();
        for (name, value) in [
            ("service", &service.name),
            ("version", &service.version),
            ("instance", &service.instance_id),
        ] {
            pair_name(&mut process, name);
            string(&mut process, value);
        }
        Self { writer, process }
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = SpanFields::default();
        attrs.record(&mut Visitor(&mut fields));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        // Every span this layer sees got its fields in `on_new_span`.
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanFields>()
        {
            values.record(&mut Visitor(fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        thread_local! {
            static SCRATCH: RefCell<Line> = RefCell::new(Line::default());
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut line) => self.write(&mut line, event, &ctx),
            // Formatting a field logged a line of its own: give that one its own buffer.
            Err(_) => self.write(&mut Line::default(), event, &ctx),
        });
    }
}

impl<W> JsonLines<W>
where
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn write<S>(&self, line: &mut Line, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        line.clear();
        let metadata = event.metadata();
        line.text.push_str("{\"timestamp\":\"");
        // Writing into a String fails only if the clock's formatting does.
        let _ = SystemTime.format_time(&mut Writer::new(&mut line.text));
        line.text.push_str("\",\"level\":\"");
        line.text.push_str(metadata.level().as_str());
        line.text.push('"');
        event.record(&mut Visitor(&mut *line));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (name, range) in &fields.names {
                        if !line.written.contains(name) {
                            line.written.push(name);
                            line.text.push_str(&fields.text[range.clone()]);
                        }
                    }
                }
            }
        }
        pair_name(&mut line.text, "target");
        let target = line.log_target.take();
        string(
            &mut line.text,
            target.as_deref().unwrap_or(metadata.target()),
        );
        line.text.push_str(&self.process);
        line.text.push_str("}\n");
        // Nowhere to report a log line that could not be written.
        let _ = self.writer.make_writer().write_all(line.text.as_bytes());
    }
}

/// The line being written, kept per thread between events.
#[derive(Default)]
struct Line {
    text: String,
    /// The names already in `text`.
    written: Vec<&'static str>,
    /// The target of a line that came through the `log` crate (its `log.target` field).
    log_target: Option<String>,
}

impl Line {
    fn clear(&mut self) {
        self.text.clear();
        self.written.clear();
        self.written.extend(LINE_KEYS);
        self.log_target = None;
    }
}

/// A span's fields as they go into a line, kept in the span's extensions.
#[derive(Debug, Default)]
struct SpanFields {
    /// `,"name":value` for each field.
    text: String,
    /// Each field's name and where its pair is in `text`.
    names: Vec<(&'static str, Range<usize>)>,
}

/// Where a visitor puts the fields it is shown.
trait Fields {
    fn field(&mut self, field: &Field, value: Value<'_>);
}

impl Fields for SpanFields {
    fn field(&mut self, field: &Field, value: Value<'_>) {
        let name = field.name();
        if name.contains('.') {
            return;
        }
        if let Some(index) = self.names.iter().position(|(known, _)| *known == name) {
            let (_, old) = self.names.remove(index);
            let removed = old.len();
            self.text.replace_range(old, "");
            for (_, range) in &mut self.names[index..] {
                *range = range.start - removed..range.end - removed;
            }
        }
        let start = self.text.len();
        pair_name(&mut self.text, name);
        value.write(&mut self.text);
        self.names.push((name, start..self.text.len()));
    }
}

impl Fields for Line {
    fn field(&mut self, field: &Field, value: Value<'_>) {
        let name = field.name();
        if let Some(log) = name.strip_prefix("log.") {
            // `log.target`, `log.module_path`, `log.file`, `log.line`: where a `log` record
            // came from. Its target stands in for the event's, which names the bridge.
            if log == "target" {
                let mut target = String::new();
                value.write_raw(&mut target);
                self.log_target = Some(target);
            }
            return;
        }
        if self.written.contains(&name) {
            return;
        }
        self.written.push(name);
        pair_name(&mut self.text, name);
        value.write(&mut self.text);
    }
}

/// A field's value as `tracing` hands it over.
enum Value<'a> {
    Str(&'a str),
    Debug(&'a dyn fmt::Debug),
    Error(&'a (dyn std::error::Error + 'static)),
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
    F64(f64),
    Bool(bool),
}

impl Value<'_> {
    /// The value as JSON.
    fn write(&self, out: &mut String) {
        match *self {
            Self::Str(text) => string(out, text),
            Self::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Self::I64(_) | Self::U64(_) | Self::I128(_) | Self::U128(_) => self.write_raw(out),
            Self::F64(n) if n.is_finite() => self.write_raw(out),
            // JSON has no NaN or infinity: those are written as text, like any other value.
            Self::Debug(_) | Self::Error(_) | Self::F64(_) => {
                out.push('"');
                self.write_raw(&mut Escaped(out));
                out.push('"');
            }
        }
    }

    /// The value as text, unquoted and unescaped. A value whose own formatting fails leaves
    /// what it wrote before failing.
    fn write_raw(&self, out: &mut impl fmt::Write) {
        let _ = match *self {
            Self::Str(text) => out.write_str(text),
            Self::Debug(value) => write!(out, "{value:?}"),
            Self::Error(error) => write!(out, "{error}"),
            Self::I64(n) => write!(out, "{n}"),
            Self::U64(n) => write!(out, "{n}"),
            Self::I128(n) => write!(out, "{n}"),
            Self::U128(n) => write!(out, "{n}"),
            Self::F64(n) => write!(out, "{n}"),
            Self::Bool(b) => write!(out, "{b}"),
        };
    }
}

/// Hands each field to a [`Fields`].
struct Visitor<'a, F>(&'a mut F);

impl<F: Fields> Visit for Visitor<'_, F> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.field(field, Value::Str(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.field(field, Value::Debug(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.field(field, Value::Error(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.field(field, Value::I64(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.field(field, Value::U64(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.0.field(field, Value::I128(value));
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.0.field(field, Value::U128(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.field(field, Value::F64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.field(field, Value::Bool(value));
    }
}

/// `,"name":`
fn pair_name(out: &mut String, name: &str) {
    out.push(',');
    string(out, name);
    out.push(':');
}

/// `text` as a JSON string.
fn string(out: &mut String, text: &str) {
    out.push('"');
    escape(out, text);
    out.push('"');
}

/// Appends `text` escaped for the inside of a JSON string.
fn escape(out: &mut String, text: &str) {
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 | 0x7f => "",
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        plain = at + 1;
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
    }
    out.push_str(&text[plain..]);
}

/// Escapes what is written through it into the String.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        escape(self.0, text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::capture::subscriber;

    #[test]
    fn a_line_holds_the_event_then_its_spans_innermost_first_each_name_once() {
        let (subscriber, captured) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            let outer = tracing::info_span!("event", kind = "OrderPlaced", attempt = 1_u64);
            let _outer = outer.enter();
            let inner = tracing::info_span!("saga", saga = "s-1", attempt = 2_i64);
            let _inner = inner.enter();
            tracing::info!(attempt = 3, confirmed = true, "moved");
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (text, line) = &lines[0];
        assert_eq!(line["message"], "moved");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["confirmed"], true);
        assert_eq!(line["saga"], "s-1");
        assert_eq!(line["kind"], "OrderPlaced");
        assert_eq!(line["attempt"], 3, "the event's own value wins");
        assert_eq!(text.matches("\"attempt\"").count(), 1, "{text}");
        assert_eq!(line["target"], module_path!());
        assert_eq!(line["service"], "orders");
        assert_eq!(line["version"], "0.1.0");
        assert_eq!(line["instance"], "orders-1");
        let timestamp = line["timestamp"].as_str().expect("a timestamp");
        assert!(
            timestamp.len() == 27 && timestamp.ends_with('Z'),
            "RFC 3339 to the microsecond: {timestamp}"
        );
        assert!(text.starts_with("{\"timestamp\""), "{text}");
        assert!(captured.text().ends_with("}\n"), "one line, ended");
    }

    #[test]
    fn a_field_named_like_a_key_of_the_line_leaves_the_line_s_own_value() {
        let (subscriber, captured) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", service = "users", level = 3);
            let _entered = span.enter();
            tracing::info!(instance = "users-7", target = "elsewhere", "registered");
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (text, line) = &lines[0];
        for key in super::LINE_KEYS {
            assert_eq!(
                text.matches(&format!("\"{key}\":")).count(),
                1,
                "{key}: {text}"
            );
        }
        assert_eq!(line["service"], "orders");
        assert_eq!(line["instance"], "orders-1");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], module_path!());
    }

    #[test]
    fn a_field_recorded_later_is_written_once_with_its_last_value() {
        let (subscriber, captured) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = "r-1",
                route = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                otel.kind = "server",
                http.route = tracing::field::Empty,
            );
            let _entered = span.enter();
            tracing::info!("before");
            span.record("route", "/orders/{id}");
            span.record("trace_id", "t-1");
            span.record("route", "/orders");
            span.record("http.route", "/orders");
            tracing::info!("after");
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (before, _) = &lines[0];
        assert!(!before.contains("route"), "{before}");
        let (after, line) = &lines[1];
        assert_eq!(line["route"], "/orders");
        assert_eq!(line["trace_id"], "t-1");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(after.matches("route").count(), 1, "{after}");
        assert!(!after.contains("otel."), "{after}");
        assert!(!after.contains("server"), "{after}");
    }

    #[test]
    fn text_that_needs_escaping_round_trips() {
        let awkward = "a \"quoted\" \\ path\nwith a\ttab, a bell \u{7} and ünïcödé";
        let (subscriber, captured) = subscriber("info");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", path = awkward);
            let _entered = span.enter();
            let error = std::io::Error::other("disk \"full\"");
            tracing::warn!(
                debugged = ?vec!["x\"y"],
                error = &error as &dyn std::error::Error,
                ratio = f64::NAN,
                latency_ms = 1.5,
                big = u128::MAX,
                "{awkward}"
            );
        });
        let lines = captured.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (text, line) = &lines[0];
        assert_eq!(text.lines().count(), 1, "one line: {text}");
        assert_eq!(line["message"], awkward);
        assert_eq!(line["path"], awkward);
        assert_eq!(line["debugged"], "[\"x\\\"y\"]");
        assert_eq!(line["error"], "disk \"full\"");
        assert_eq!(line["ratio"], "NaN");
        assert_eq!(line["latency_ms"], 1.5);
        assert_eq!(line["level"], "WARN");
        assert!(text.contains(&format!("\"big\":{}", u128::MAX)), "{text}");
    }
}

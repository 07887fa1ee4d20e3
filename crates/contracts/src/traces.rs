//! The telemetry service's read API: traces as `bazaar trace` and other tools see them.
//!
//! Spans arrive over OTLP (`POST /v1/traces`, protobuf); they are read back as JSON:
//! `GET /v1/traces/{trace_id}` is a [`Trace`], `GET /v1/traces?order=slowest|recent&errors=true`
//! a list of [`TraceSummary`].

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// Trace and span ids are lowercase hex: 32 digits for a trace, 16 for a span.
pub fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && is_lower_hex(id) && id.bytes().any(|b| b != b'0')
}

/// See [`is_trace_id`].
pub fn is_span_id(id: &str) -> bool {
    id.len() == 16 && is_lower_hex(id) && id.bytes().any(|b| b != b'0')
}

fn is_lower_hex(id: &str) -> bool {
    id.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How a span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanStatus {
    /// Nothing said: a success unless an error is recorded elsewhere.
    Unset,
    /// Marked successful.
    Ok,
    /// Failed.
    Error,
}

/// What a span stands for (OpenTelemetry's span kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    /// Work inside a process.
    Internal,
    /// Handling a request.
    Server,
    /// Making a request.
    Client,
    /// Publishing a message.
    Producer,
    /// Handling a message.
    Consumer,
}

/// One span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// The trace it belongs to.
    pub trace_id: String,
    /// Its id.
    pub span_id: String,
    /// Its parent; none for a trace's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// `service.name` of the process that recorded it.
    pub service: String,
    /// `service.instance.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `service.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `GET /orders/{id}`, `order.placed process`, ...
    pub name: String,
    /// Server, client, producer, consumer or internal.
    pub kind: SpanKind,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nanos: i64,
    /// End, nanoseconds since the Unix epoch.
    pub end_unix_nanos: i64,
    /// How it ended.
    pub status: SpanStatus,
    /// Why it failed, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
    /// Its attributes (`http.route`, `http.response.status_code`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// What happened during it: log lines written inside it, errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
    /// Spans it is linked to (a consumer's span to its producer's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<SpanLink>,
}

impl Span {
    /// Its duration in nanoseconds (never negative).
    pub fn duration_nanos(&self) -> i64 {
        (self.end_unix_nanos - self.start_unix_nanos).max(0)
    }
}

/// Something that happened during a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// When, nanoseconds since the Unix epoch.
    pub unix_nanos: i64,
    /// What (a log line's message).
    pub name: String,
    /// Its fields.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// A link to another span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanLink {
    /// Its trace.
    pub trace_id: String,
    /// The span.
    pub span_id: String,
}

/// A whole trace, its spans in order of start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Its id.
    pub trace_id: String,
    /// Every span received for it.
    pub spans: Vec<Span>,
}

impl Trace {
    /// The spans depth-first, children in order of start; a span whose parent did not arrive is
    /// drawn as a root.
    pub fn tree_order(&self) -> Vec<(usize, &Span)> {
        let spans = &self.spans;
        let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
        let mut children: BTreeMap<Option<&str>, Vec<&Span>> = BTreeMap::new();
        for span in spans {
            let parent = span
                .parent_span_id
                .as_deref()
                .filter(|p| ids.contains(p) && *p != span.span_id);
            children.entry(parent).or_default().push(span);
        }
        for list in children.values_mut() {
            list.sort_by_key(|s| (s.start_unix_nanos, s.span_id.as_str()));
        }
        let mut order = Vec::with_capacity(spans.len());
        let mut stack: Vec<(usize, &Span)> = children
            .get(&None)
            .map(|roots| roots.iter().rev().map(|s| (0, *s)).collect())
            .unwrap_or_default();
        let mut seen = HashSet::new();
        while let Some((depth, span)) = stack.pop() {
            if !seen.insert(span.span_id.as_str()) {
                continue;
            }
            order.push((depth, span));
            if let Some(kids) = children.get(&Some(span.span_id.as_str())) {
                stack.extend(kids.iter().rev().map(|s| (depth + 1, *s)));
            }
        }
        order
    }

    /// When its first span started and its last ended, in Unix nanoseconds; `None` without
    /// spans.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        let start = self.spans.iter().map(|s| s.start_unix_nanos).min()?;
        let end = self.spans.iter().map(|s| s.end_unix_nanos).max()?;
        Some((start, end.max(start)))
    }
}

/// One line of a trace list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Its id.
    pub trace_id: String,
    /// The root span's service, or the earliest span's when the root has not arrived.
    pub root_service: String,
    /// The root span's name, likewise.
    pub root_name: String,
    /// Start of its earliest span, nanoseconds since the Unix epoch.
    pub start_unix_nanos: i64,
    /// From the earliest start to the latest end, nanoseconds.
    pub duration_nanos: i64,
    /// Spans received.
    pub spans: u32,
    /// Spans that failed.
    pub errors: u32,
    /// Services that recorded spans in it, sorted.
    pub services: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex_of_the_right_length() {
        assert!(is_trace_id("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(!is_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736"));
        assert!(!is_trace_id("00000000000000000000000000000000"));
        assert!(!is_trace_id("4bf92f3577b34da6"));
        assert!(!is_trace_id("4bf92f3577b34da6a3ce929d0e0e473g"));
        assert!(is_span_id("00f067aa0ba902b7"));
        assert!(!is_span_id("0000000000000000"));
        assert!(!is_span_id("00f067aa0ba902b"));
    }

    #[test]
    fn spans_serialize_without_empty_members() {
        let span = Span {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
            service: "orders".into(),
            instance: None,
            version: None,
            name: "POST /orders".into(),
            kind: SpanKind::Server,
            start_unix_nanos: 10,
            end_unix_nanos: 25,
            status: SpanStatus::Error,
            status_message: None,
            attributes: BTreeMap::new(),
            events: vec![],
            links: vec![],
        };
        assert_eq!(span.duration_nanos(), 15);
        assert_eq!(
            serde_json::to_value(&span).expect("serializes"),
            serde_json::json!({
                "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                "span_id": "00f067aa0ba902b7",
                "service": "orders",
                "name": "POST /orders",
                "kind": "server",
                "start_unix_nanos": 10,
                "end_unix_nanos": 25,
                "status": "error"
            })
        );
    }
}

//! OTLP trace requests (protobuf) into the spans the store keeps.
//!
//! A span with a malformed trace or span id cannot be placed in any trace: it is rejected and
//! counted, and the rest of the request is kept (OTLP's partial success).

use std::collections::BTreeMap;

use contracts::traces::{Span, SpanEvent, SpanKind, SpanLink, SpanStatus};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as ProtoKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

/// The spans of a request, and how many were rejected.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Spans to keep.
    pub spans: Vec<Span>,
    /// Spans that could not be kept.
    pub rejected: i64,
}

/// The spans of `request`, each named after its resource's service, instance and version.
pub fn spans(request: ExportTraceServiceRequest) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        let text = |key: &str| {
            resource
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let service = text("service.name").unwrap_or_else(|| "unknown".to_owned());
        let instance = text("service.instance.id");
        let version = text("service.version");
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                let (Some(trace_id), Some(span_id)) =
                    (id(&span.trace_id, 16), id(&span.span_id, 8))
                else {
                    decoded.rejected += 1;
                    continue;
                };
                let (status, status_message) = match span.status {
                    Some(status) => (
                        match StatusCode::try_from(status.code) {
                            Ok(StatusCode::Error) => SpanStatus::Error,
                            Ok(StatusCode::Ok) => SpanStatus::Ok,
                            _ => SpanStatus::Unset,
                        },
                        Some(status.message).filter(|m| !m.is_empty()),
                    ),
                    None => (SpanStatus::Unset, None),
                };
                decoded.spans.push(Span {
                    trace_id,
                    span_id,
                    parent_span_id: id(&span.parent_span_id, 8),
                    service: service.clone(),
                    instance: instance.clone(),
                    version: version.clone(),
                    name: span.name,
                    kind: match ProtoKind::try_from(span.kind) {
                        Ok(ProtoKind::Server) => SpanKind::Server,
                        Ok(ProtoKind::Client) => SpanKind::Client,
                        Ok(ProtoKind::Producer) => SpanKind::Producer,
                        Ok(ProtoKind::Consumer) => SpanKind::Consumer,
                        _ => SpanKind::Internal,
                    },
                    start_unix_nanos: nanos(span.start_time_unix_nano),
                    end_unix_nanos: nanos(span.end_time_unix_nano),
                    status,
                    status_message,
                    attributes: attributes(span.attributes),
                    events: span
                        .events
                        .into_iter()
                        .map(|event| SpanEvent {
                            unix_nanos: nanos(event.time_unix_nano),
                            name: event.name,
                            attributes: attributes(event.attributes),
                        })
                        .collect(),
                    links: span
                        .links
                        .into_iter()
                        .filter_map(|link| {
                            Some(SpanLink {
                                trace_id: id(&link.trace_id, 16)?,
                                span_id: id(&link.span_id, 8)?,
                            })
                        })
                        .collect(),
                });
            }
        }
    }
    decoded
}

/// Lowercase hex of an id of `len` bytes; `None` when it is missing, the wrong length or zero.
fn id(bytes: &[u8], len: usize) -> Option<String> {
    if bytes.len() != len || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// OTLP times are unsigned nanoseconds; ours are signed, good until 2262.
fn nanos(unsigned: u64) -> i64 {
    i64::try_from(unsigned).unwrap_or(i64::MAX)
}

fn attributes(list: Vec<KeyValue>) -> BTreeMap<String, serde_json::Value> {
    list.into_iter()
        .map(|kv| (kv.key, value(kv.value)))
        .collect()
}

fn value(any: Option<AnyValue>) -> serde_json::Value {
    match any.and_then(|v| v.value) {
        // An index into a profile's string table: meaningless outside profiles.
        None | Some(ProtoValue::StringValueStrindex(_)) => serde_json::Value::Null,
        Some(ProtoValue::StringValue(s)) => s.into(),
        Some(ProtoValue::BoolValue(b)) => b.into(),
        Some(ProtoValue::IntValue(i)) => i.into(),
        Some(ProtoValue::DoubleValue(d)) => d.into(),
        Some(ProtoValue::ArrayValue(array)) => {
            array.values.into_iter().map(|v| value(Some(v))).collect()
        }
        Some(ProtoValue::KvlistValue(list)) => {
            serde_json::Value::Object(attributes(list.values).into_iter().collect())
        }
        Some(ProtoValue::BytesValue(bytes)) => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    use super::*;

    fn text(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(ProtoValue::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn proto_span(trace: u8, span: u8, parent: u8) -> opentelemetry_proto::tonic::trace::v1::Span {
        opentelemetry_proto::tonic::trace::v1::Span {
            trace_id: vec![trace; 16],
            span_id: vec![span; 8],
            parent_span_id: if parent == 0 { vec![] } else { vec![parent; 8] },
            name: "GET /orders/{id}".into(),
            kind: ProtoKind::Server as i32,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 5_000,
            attributes: vec![KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(ProtoValue::IntValue(500)),
                }),
                ..Default::default()
            }],
            status: Some(Status {
                message: "boom".into(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        }
    }

    fn request(
        spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
    ) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", "orders"),
                        text("service.instance.id", "orders-1"),
                        text("service.version", "0.1.0"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn spans_take_their_resource_and_ids_in_hex() {
        let decoded = spans(request(vec![proto_span(0xab, 0x01, 0x02)]));
        assert_eq!(decoded.rejected, 0);
        let span = &decoded.spans[0];
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "01".repeat(8));
        assert_eq!(span.parent_span_id.as_deref(), Some("0202020202020202"));
        assert_eq!(span.service, "orders");
        assert_eq!(span.instance.as_deref(), Some("orders-1"));
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!(span.status, SpanStatus::Error);
        assert_eq!(span.status_message.as_deref(), Some("boom"));
        assert_eq!(span.duration_nanos(), 4_000);
        assert_eq!(
            span.attributes.get("http.response.status_code"),
            Some(&serde_json::json!(500))
        );
    }

    #[test]
    fn a_root_has_no_parent_and_bad_ids_are_rejected() {
        let mut no_trace = proto_span(0, 0x01, 0);
        no_trace.trace_id = vec![];
        let mut short_span = proto_span(0xab, 0x01, 0);
        short_span.span_id = vec![1, 2, 3];
        let decoded = spans(request(vec![
            proto_span(0xab, 0x03, 0),
            no_trace,
            short_span,
        ]));
        assert_eq!(decoded.rejected, 2);
        assert_eq!(decoded.spans.len(), 1);
        assert_eq!(decoded.spans[0].parent_span_id, None);
    }
}

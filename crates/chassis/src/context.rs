//! The request a task is serving, so errors and outgoing calls can name it without threading a
//! parameter through every function.
//!
//! The request middleware ([`crate::server`]) runs each handler inside [`scope`]; the chassis
//! client reads [`current`] to forward `x-request-id` (and [`trace`] to pass `traceparent` on
//! when this process records no spans), and [`crate::error::HttpError`] to fill `request_id`,
//! `trace_id` and `instance` in problem bodies. A task spawned from a handler does not inherit
//! the scope; wrap its future in [`scope`] again if it makes calls on the request's behalf.

use std::future::Future;

use opentelemetry::trace::SpanContext;

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// What identifies the request being served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// Correlation id, from the incoming `x-request-id` or generated at the edge.
    pub request_id: String,
    /// Path of the request, for problem bodies.
    pub path: String,
    /// Where the request stands in its trace: its server span, or the caller's span when this
    /// process records none ([`crate::trace`]).
    pub trace: Option<SpanContext>,
}

/// The request the current task serves, if any.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The current request id, if any.
pub fn request_id() -> Option<String> {
    CURRENT.try_with(|c| c.request_id.clone()).ok()
}

/// The current request's trace position, if it has one.
pub fn trace() -> Option<SpanContext> {
    CURRENT.try_with(|c| c.trace.clone()).ok().flatten()
}

/// Whether the current request's trace is being recorded (sampled), without copying its position.
pub fn trace_sampled() -> bool {
    CURRENT
        .try_with(|c| c.trace.as_ref().is_some_and(SpanContext::is_sampled))
        .unwrap_or(false)
}

/// Runs `future` as part of the request `context`. The task-local future itself, not an
/// `async fn` around it, which would hold `future` twice more.
pub fn scope<F: Future>(context: RequestContext, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(context, future)
}

/// A fresh request id: a UUIDv7, so ids sort by time.
pub fn new_request_id() -> String {
    // A UUIDv7 (time-ordered, so ids sort by arrival), its random bits from the thread's
    // generator: uuid's own draws from the kernel, a system call per request.
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    uuid::Builder::from_unix_timestamp_millis(millis, &rand::random())
        .into_uuid()
        .to_string()
}

/// Whether an incoming request id is acceptable to keep: short and made of safe characters, so
/// it can go into logs and headers unescaped.
pub fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_request_ids_are_distinct_time_ordered_uuids() {
        let first = new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_request_id();
        let parsed = uuid::Uuid::parse_str(&first).expect("a uuid");
        assert_eq!(parsed.get_version_num(), 7);
        assert_ne!(first, second);
        assert!(first < second, "ordered by time: {first} then {second}");
    }

    #[test]
    fn request_ids_are_checked() {
        assert!(is_valid_request_id(&new_request_id()));
        assert!(is_valid_request_id("req-42.a_b:c"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id("new\nline"));
        assert!(!is_valid_request_id(&"x".repeat(129)));
    }

    #[tokio::test]
    async fn scope_is_visible_inside_only() {
        assert_eq!(current(), None);
        let context = RequestContext {
            request_id: "abc".into(),
            path: "/x".into(),
            trace: None,
        };
        let seen = scope(context.clone(), async { current() }).await;
        assert_eq!(seen, Some(context));
    }
}

//! The one error type every HTTP handler returns, rendered as RFC 9457 problem+json.
//!
//! Services keep their own `thiserror` enum at the API edge and turn each variant into an
//! [`HttpError`] (status, stable slug, detail). Extractor rejections go through the same type via
//! the [`crate::extract`] wrappers, so a malformed body looks like every other error. A 5xx keeps
//! its cause out of the body: the cause chain is logged once, in the request span, and the client
//! sees only the request id to quote.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use axum::response::{IntoResponse, Response};
use contracts::headers::PROBLEM_JSON;
use contracts::problem::{FieldError, Problem, TYPE_PREFIX};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

use crate::context;

/// An error answered as `application/problem+json`. Boxed inside, so a `Result` carrying it
/// stays one pointer wide.
#[derive(Debug)]
pub struct HttpError {
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    slug: &'static str,
    title: Cow<'static, str>,
    detail: Option<String>,
    errors: Vec<FieldError>,
    headers: HeaderMap,
    cause: Option<Box<dyn StdError + Send + Sync>>,
}

impl HttpError {
    /// An error with a status, a stable slug (the end of its `type` URN) and a title.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            inner: Box::new(Inner {
                status,
                slug,
                title: title.into(),
                detail: None,
                errors: Vec::new(),
                headers: HeaderMap::new(),
                cause: None,
            }),
        }
    }

    /// 400: the request cannot be understood.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request").with_detail(detail)
    }

    /// 422: the request is well-formed but some fields are invalid.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        let mut error = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid input",
        )
        .with_detail(detail);
        error.inner.errors = errors;
        error
    }

    /// 401: no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized")
            .with_detail(detail)
            .with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            )
    }

    /// 403: valid credentials that do not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").with_detail(detail)
    }

    /// 404: nothing at this address.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found").with_detail(detail)
    }

    /// 409: the request conflicts with the current state.
    pub fn conflict(slug: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, slug, "Conflict").with_detail(detail)
    }

    /// 503: temporarily unable to serve; `retry_after` seconds is a hint for clients.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
        )
        .with_detail(detail)
        .with_header(RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// 500: a fault on our side. The cause is logged, never sent.
    pub fn internal(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        )
        .with_detail("the request failed on our side; quote the request id to report it")
        .with_cause(cause)
    }

    /// Replaces the slug, keeping status and title (a specific kind of 401, say).
    #[must_use]
    pub fn with_slug(mut self, slug: &'static str) -> Self {
        self.inner.slug = slug;
        self
    }

    /// Adds what went wrong this time.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.inner.detail = Some(detail.into());
        self
    }

    /// Adds a response header (`Retry-After`, `WWW-Authenticate`, ...).
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.inner.headers.insert(name, value);
        self
    }

    /// Keeps the underlying error for the log.
    #[must_use]
    pub fn with_cause(mut self, cause: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.inner.cause = Some(cause.into());
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The stable slug of the problem type.
    pub fn slug(&self) -> &'static str {
        self.inner.slug
    }

    /// The body this error renders to, with the current request's path and id.
    pub fn to_problem(&self) -> Problem {
        let request = context::current();
        Problem {
            kind: format!("{TYPE_PREFIX}{}", self.inner.slug),
            title: self.inner.title.to_string(),
            status: self.inner.status.as_u16(),
            detail: self.inner.detail.clone(),
            instance: request.as_ref().map(|r| r.path.clone()),
            trace_id: request
                .as_ref()
                .and_then(|r| r.trace.as_ref())
                .map(|t| t.trace_id().to_string()),
            request_id: request.map(|r| r.request_id),
            errors: self.inner.errors.clone(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.inner.status.as_u16(), self.inner.slug)?;
        if let Some(detail) = &self.inner.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl StdError for HttpError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .cause
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.inner.status.is_server_error() {
            // Logged here, inside the request span, so the line carries the request id.
            match &self.inner.cause {
                Some(cause) => tracing::error!(error = %ErrorChain(cause.as_ref()), "{self}"),
                None => tracing::warn!("{self}"),
            }
        }
        let problem = self.to_problem();
        problem_response(self.inner.status, &problem, self.inner.headers)
    }
}

/// Renders a problem body with the right content type.
pub fn problem_response(status: StatusCode, problem: &Problem, headers: HeaderMap) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().extend(headers);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// Displays an error and all its sources: `outer: middle: root`.
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

/// Collects field errors while a request body is turned into domain types, so the client learns
/// about every bad field at once.
#[derive(Debug, Default)]
pub struct Validation {
    errors: Vec<FieldError>,
}

impl Validation {
    /// Starts with no errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `result`'s value, or records its error against `field`.
    pub fn check<T, E: fmt::Display>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.add(field, error.to_string());
                None
            }
        }
    }

    /// Records an error against `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// The 422 error for everything recorded; call when a check returned `None`.
    pub fn into_error(self) -> HttpError {
        HttpError::validation(self.errors)
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), HttpError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }
}

/// An OpenAPI response (as JSON) of a problem+json body, described by `description`.
pub fn documented_problem(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

/// Adds to every operation of an OpenAPI document (as JSON) the problems the chassis answers on
/// any route, where the operation does not say them itself: 400 for a body, query or path it
/// cannot read and 422 for a field or parameter it refuses; with a request body, also 413 (too
/// large) and 415 (not JSON).
/// Also adds the `Problem` schema they refer to.
pub fn document_common_problems(document: &mut serde_json::Value) {
    use serde_json::json;
    let Some(paths) = document.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
            ) {
                continue;
            }
            let has_body = operation.get("requestBody").is_some();
            let has_parameters = operation
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|p| !p.is_empty());
            let Some(responses) = operation
                .as_object_mut()
                .map(|o| o.entry("responses").or_insert_with(|| json!({})))
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status)
                    .or_insert_with(|| documented_problem(description));
            };
            if has_body || has_parameters {
                add("400", "The body, query or path cannot be read");
                add("422", "A field or parameter is invalid");
            }
            if has_body {
                add("413", "The body is too large");
                add("415", "The body is not JSON");
            }
        }
    }
    let schema =
        serde_json::to_value(<contracts::problem::Problem as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
    let field =
        serde_json::to_value(<contracts::problem::FieldError as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
    if let Some(components) = document
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
        .and_then(|c| c.as_object_mut())
        && let Some(schemas) = components
            .entry("schemas")
            .or_insert_with(|| json!({}))
            .as_object_mut()
    {
        schemas.entry("Problem").or_insert(schema);
        schemas.entry("FieldError").or_insert(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn renders_problem_json_without_leaking_the_cause() {
        let error = HttpError::internal(std::io::Error::other("disk on fire at /var/secret"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let body = body_json(response).await;
        assert_eq!(body["type"], "urn:bazaar:problem:internal");
        assert_eq!(body["status"], 500);
        assert!(!body.to_string().contains("secret"), "{body}");
    }

    #[tokio::test]
    async fn validation_lists_every_field() {
        let mut v = Validation::new();
        let email: Option<u8> = v.check("email", Err::<u8, _>("is not an email address"));
        assert!(email.is_none());
        v.add("password", "is too short");
        let response = v.finish().expect_err("invalid").into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_json(response).await;
        assert_eq!(body["errors"][0]["field"], "email");
        assert_eq!(body["errors"][1]["message"], "is too short");
        assert_eq!(body["detail"], "2 fields are invalid");
    }

    #[test]
    fn chain_shows_every_source() {
        let error = HttpError::internal(std::io::Error::other("root cause"));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "500 internal: the request failed on our side; quote the request id to report it: root cause"
        );
    }
}

//! The telemetry HTTP API.
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/traces` | OTLP/HTTP span export (`application/x-protobuf`) |
//! | `GET /v1/traces/{trace_id}` | one trace, its spans by start time |
//! | `GET /v1/traces?order=slowest\|recent&errors=true&service=&limit=` | trace summaries |

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use chassis::HttpError;
use chassis::authz::{CONSOLE, OPERATOR, callers};
use chassis::extract::{Json, Path, Query};
use contracts::problem::Problem;
use contracts::traces::{Trace, TraceSummary};
use http::{HeaderMap, StatusCode, header};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde::Deserialize;

use crate::otlp;
use crate::store::{Filter, Order, Store};

/// OTLP's binary encoding.
const PROTOBUF: &str = "application/x-protobuf";

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Largest export request accepted, bytes.
    pub max_export_bytes: usize,
}

/// The service's OpenAPI document (served at `/openapi.json`).
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Bazaar telemetry",
        description = "Recent traces: OTLP/HTTP in, JSON out."
    ),
    paths(export, one, list)
)]
pub struct ApiDoc;

/// The API routes.
pub fn router(state: AppState) -> Router {
    let limit = state.max_export_bytes;
    // Every service exports; the operator reads (`bazaar trace`), and so does the console.
    let reading = Router::new()
        .route("/v1/traces", get(list))
        .route("/v1/traces/{trace_id}", get(one))
        .route_layer(callers(&[OPERATOR, CONSOLE]));
    Router::new()
        .route(
            "/v1/traces",
            post(export).layer(DefaultBodyLimit::max(limit)),
        )
        .merge(reading)
        .with_state(state)
}

/// `POST /v1/traces`: keeps the spans of an OTLP export request.
#[utoipa::path(post, path = "/v1/traces", tag = "traces",
    request_body(content = Vec<u8>, content_type = "application/x-protobuf", description = "An OTLP ExportTraceServiceRequest"),
    responses(
        (status = 200, description = "Kept (partial success says what was not)", content_type = "application/x-protobuf"),
        (status = 415, description = "Not protobuf", body = Problem, content_type = "application/problem+json"),
    ))]
async fn export(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(PROTOBUF) {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .with_detail(format!(
            "spans are accepted as {PROTOBUF} (OTLP/HTTP binary), not {content_type:?}"
        )));
    }
    if let Some(encoding) = headers
        .get(header::CONTENT_ENCODING)
        .filter(|v| v.as_bytes() != b"identity")
    {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .with_detail(format!(
            "compressed exports ({encoding:?}) are not accepted; send them uncompressed"
        )));
    }
    let request = ExportTraceServiceRequest::decode(body).map_err(|error| {
        HttpError::bad_request(format!("the body is not an OTLP trace export: {error}"))
    })?;
    let decoded = otlp::spans(request);
    state
        .store
        .insert(decoded.spans, chassis::db::now_millis())
        .await
        .map_err(HttpError::internal)?;
    let answer = ExportTraceServiceResponse {
        partial_success: (decoded.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: decoded.rejected,
            error_message: "spans need a 16-byte trace id and an 8-byte span id".to_owned(),
        }),
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROTOBUF)],
        answer.encode_to_vec(),
    )
        .into_response())
}

/// `GET /v1/traces/{trace_id}`.
#[utoipa::path(get, path = "/v1/traces/{trace_id}", tag = "traces",
    params(("trace_id" = String, Path, description = "32 hex digits")),
    responses(
        (status = 200, description = "The trace with every span", body = Object),
        (status = 404, description = "Not kept", body = Problem, content_type = "application/problem+json"),
    ))]
async fn one(
    State(state): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<Trace>, HttpError> {
    if !contracts::traces::is_trace_id(&trace_id) {
        return Err(HttpError::bad_request(format!(
            "{trace_id:?} is not a trace id (32 lowercase hex digits)"
        )));
    }
    state
        .store
        .trace(&trace_id)
        .await
        .map_err(HttpError::internal)?
        .map(Json)
        .ok_or_else(|| {
            HttpError::not_found(format!(
                "no trace {trace_id}: it was not sampled, has not arrived yet, or is older than the store keeps"
            ))
        })
}

/// Query of `GET /v1/traces`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    errors: Option<bool>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

/// `GET /v1/traces`.
#[utoipa::path(get, path = "/v1/traces", tag = "traces", params(ListQuery),
    responses((status = 200, description = "Trace summaries", body = Vec<Object>)))]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<TraceSummary>>, HttpError> {
    let order = match query.order.as_deref() {
        None | Some("recent") => Order::Recent,
        Some("slowest") => Order::Slowest,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "order {other:?}: expected slowest or recent"
            )));
        }
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(HttpError::bad_request(format!(
            "limit {limit}: expected 1 to 1000"
        )));
    }
    let filter = Filter {
        order,
        errors_only: query.errors.unwrap_or(false),
        service: query.service.filter(|s| !s.is_empty()),
        limit,
    };
    Ok(Json(
        state
            .store
            .list(&filter)
            .await
            .map_err(HttpError::internal)?,
    ))
}

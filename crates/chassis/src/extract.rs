//! Extractors whose rejections are [`HttpError`]s, so a malformed body, query or path gets the
//! same problem+json shape as every other error. Use these instead of axum's.

use axum::extract::FromRequest;
use axum::extract::FromRequestParts;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::error::HttpError;

/// JSON body extractor and response.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(HttpError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query string extractor.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(HttpError))]
pub struct Query<T>(pub T);

/// Path parameters extractor.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(HttpError))]
pub struct Path<T>(pub T);

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => {
                HttpError::new(status, "payload-too-large", "Payload too large").with_detail(detail)
            }
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                HttpError::new(status, "unsupported-media-type", "Unsupported media type")
                    .with_detail("expected a request body with content-type application/json")
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                HttpError::new(status, "invalid-body", "Invalid request body").with_detail(detail)
            }
            _ => HttpError::new(status, "malformed-body", "Malformed request body")
                .with_detail(detail),
        }
    }
}

impl From<QueryRejection> for HttpError {
    fn from(rejection: QueryRejection) -> Self {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "Invalid query string",
        )
        .with_detail(rejection.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(rejection: PathRejection) -> Self {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid-path",
            "Invalid path parameter",
        )
        .with_detail(rejection.body_text())
    }
}

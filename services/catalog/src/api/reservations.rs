//! Stock reservations, for the orders service.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chassis::HttpError;
use chassis::db::{from_millis, now_millis};
use chassis::error::Validation;
use chassis::extract::{Json, Path};
use chassis::idempotency;
use chrono::{DateTime, Utc};
use contracts::problem::Problem;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::domain::{Line, check_lines};
use crate::store::reservations::{Moved, RELEASED, Reservation, Reserved};

/// Body of `POST /reservations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReserveRequest {
    items: Vec<ReserveItem>,
}

/// One line.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReserveItem {
    sku: String,
    quantity: i64,
}

/// A reservation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReservationView {
    id: String,
    status: String,
    items: Vec<ItemView>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct ItemView {
    sku: String,
    quantity: i64,
}

impl From<Reservation> for ReservationView {
    fn from(r: Reservation) -> Self {
        Self {
            id: r.id,
            status: r.status,
            items: r
                .lines
                .into_iter()
                .map(|(sku, quantity)| ItemView { sku, quantity })
                .collect(),
            created_at: from_millis(r.created_at),
            expires_at: from_millis(r.expires_at),
        }
    }
}

/// `POST /reservations`: 201 when stock is held, 200 when the key was seen with the same
/// request (its reservation as it is now), 409 when stock is short, 422 for unknown skus or a
/// key reused for a different request. Nothing is held unless every line is.
#[utoipa::path(post, path = "/reservations", tag = "reservations", request_body = ReserveRequest,
    params(("idempotency-key" = String, Header, description = "Makes the request safe to repeat")),
    responses(
        (status = 201, description = "Stock held", body = ReservationView),
        (status = 200, description = "The key was seen with the same request", body = ReservationView),
        (status = 409, description = "Not enough stock", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown skus, bad lines, or the key reused", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<ReserveRequest>,
) -> Result<Response, HttpError> {
    let key = idempotency::required_key(&headers)?;
    let raw: Vec<(String, i64)> = body
        .items
        .into_iter()
        .map(|i| (i.sku, i.quantity))
        .collect();
    let lines = check_lines(&raw).map_err(|errors| {
        let mut v = Validation::new();
        for (field, message) in errors {
            v.add(&field, message);
        }
        v.into_error()
    })?;
    let now = now_millis();
    let ttl = i64::try_from(state.settings.reservation_ttl.as_millis()).unwrap_or(i64::MAX);
    let outcome = state
        .store
        .reserve(
            &key,
            &request_hash(&lines),
            &lines,
            now,
            now.saturating_add(ttl),
            state.settings.low_stock_threshold,
        )
        .await?;
    match outcome {
        Reserved::Created(reservation) => {
            tracing::info!(reservation = %reservation.id, lines = reservation.lines.len(), "stock reserved");
            Ok((
                StatusCode::CREATED,
                Json(ReservationView::from(reservation)),
            )
                .into_response())
        }
        Reserved::Replayed(reservation) => {
            Ok((StatusCode::OK, Json(ReservationView::from(reservation))).into_response())
        }
        Reserved::KeyReused => Err(idempotency::key_reused("request")),
        Reserved::UnknownSku(sku) => {
            let mut v = Validation::new();
            v.add("items", format!("no product {sku} is for sale"));
            Err(v.into_error())
        }
        Reserved::Insufficient { sku, available } => Err(HttpError::conflict(
            "insufficient-stock",
            format!("{sku}: only {available} available"),
        )),
    }
}

/// `GET /reservations/{id}`.
#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations",
    params(("id" = String, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its state does not allow it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, HttpError> {
    let reservation = state
        .store
        .reservation(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no reservation {id:?}")))?;
    Ok(Json(reservation.into()))
}

/// `DELETE /reservations/{id}`: releases held stock; a no-op on a released or expired one.
#[utoipa::path(delete, path = "/reservations/{id}", tag = "reservations",
    params(("id" = String, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "Released (or already)", body = ReservationView),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its state does not allow it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, HttpError> {
    answer(&id, state.store.release(&id, RELEASED, now_millis()).await?)
}

/// `POST /reservations/{id}/commit`: held units become sold; a no-op on a committed one.
#[utoipa::path(post, path = "/reservations/{id}/commit", tag = "reservations",
    params(("id" = String, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "Committed (or already)", body = ReservationView),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its state does not allow it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn commit(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, HttpError> {
    answer(&id, state.store.commit(&id, now_millis()).await?)
}

/// `POST /reservations/{id}/return`: committed units go back on hand (an order cancelled after
/// confirmation); a no-op on a returned one.
#[utoipa::path(post, path = "/reservations/{id}/return", tag = "reservations",
    params(("id" = String, Path, description = "The reservation's id")),
    responses(
        (status = 200, description = "Returned (or already)", body = ReservationView),
        (status = 404, description = "No such reservation", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Its state does not allow it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn give_back(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReservationView>, HttpError> {
    answer(&id, state.store.give_back(&id, now_millis()).await?)
}

fn answer(id: &str, moved: Moved) -> Result<Json<ReservationView>, HttpError> {
    match moved {
        Moved::Done(reservation) => Ok(Json(reservation.into())),
        Moved::Conflict(reservation) => Err(HttpError::conflict(
            "reservation-state",
            format!("reservation {id} is {}", reservation.status),
        )),
        Moved::NotFound => Err(HttpError::not_found(format!("no reservation {id:?}"))),
    }
}

/// What identifies a request for idempotency: its lines, in sku order.
fn request_hash(lines: &[Line]) -> String {
    chassis::idempotency::fingerprint(
        lines
            .iter()
            .map(|line| format!("{}:{};", line.sku.as_str(), line.quantity)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_line_order_and_case() {
        let a = check_lines(&[("mug-1".into(), 2), ("TEE-1".into(), 1)]).expect("valid");
        let b = check_lines(&[("tee-1".into(), 1), ("MUG-1".into(), 2)]).expect("valid");
        let c = check_lines(&[("tee-1".into(), 2), ("MUG-1".into(), 2)]).expect("valid");
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}

//! Checkout sagas for operators: one order's saga with every attempt, and the sagas with work
//! left (or stuck compensating).

use axum::extract::State;
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::db::from_millis;
use chassis::extract::{Json, Path, Query};
use chrono::{DateTime, Utc};
use contracts::page::Page;
use contracts::problem::Problem;
use serde::{Deserialize, Serialize};

use super::AppState;
use crate::store::sagas::{SagaRecord, StepRecord};

/// A saga as operators see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SagaView {
    id: String,
    order_id: String,
    user_id: String,
    status: String,
    step: Option<String>,
    attempts: u32,
    stuck: bool,
    reason: Option<String>,
    cancelled_by_customer: bool,
    last_error: Option<String>,
    reservation_id: Option<String>,
    charge_id: Option<String>,
    shipment_id: Option<String>,
    next_attempt_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<Vec<StepView>>,
}

/// One attempt at one step.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct StepView {
    step: String,
    attempt: i64,
    outcome: String,
    detail: Option<String>,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    duration_ms: Option<i64>,
}

impl From<StepRecord> for StepView {
    fn from(s: StepRecord) -> Self {
        Self {
            duration_ms: s.finished_at.map(|f| f - s.started_at),
            step: s.step,
            attempt: s.attempt,
            outcome: s.outcome,
            detail: s.detail,
            started_at: from_millis(s.started_at),
            finished_at: s.finished_at.map(from_millis),
        }
    }
}

impl From<SagaRecord> for SagaView {
    fn from(r: SagaRecord) -> Self {
        let stuck = r.saga.is_stuck();
        let saga = r.saga;
        Self {
            id: saga.id,
            order_id: saga.order_id,
            user_id: r.user_id,
            status: saga.status.to_string(),
            step: saga.step.map(|s| s.as_str().to_owned()),
            attempts: saga.attempts,
            stuck,
            reason: saga.reason,
            cancelled_by_customer: saga.by_customer,
            last_error: saga.last_error,
            reservation_id: saga.reservation_id,
            charge_id: saga.charge_id,
            shipment_id: saga.shipment_id,
            next_attempt_at: from_millis(saga.next_attempt_at),
            deadline_at: from_millis(saga.deadline_at),
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
            finished_at: r.finished_at.map(from_millis),
            steps: None,
        }
    }
}

fn admin_only(caller: &Caller) -> Result<(), HttpError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(HttpError::forbidden("sagas are for administrators"))
    }
}

/// `GET /orders/{id}/saga` (admin): the saga with every attempt, its outcome and timing.
#[utoipa::path(get, path = "/orders/{id}/saga", tag = "sagas", params(("id" = String, Path, description = "The order's id")),
    responses(
        (status = 200, description = "The checkout saga, every attempt of every step", body = SagaView),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn of_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SagaView>, HttpError> {
    admin_only(&caller)?;
    let record = state
        .store
        .saga_of_order(&id)
        .await?
        .ok_or_else(|| HttpError::not_found(format!("no saga for order {id:?}")))?;
    let steps = state.store.saga_steps(&record.saga.id).await?;
    let mut view = SagaView::from(record);
    view.steps = Some(steps.into_iter().map(StepView::from).collect());
    Ok(Json(view))
}

/// Query of `GET /sagas`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only sagas failing again and again to compensate.
    #[serde(default)]
    stuck: bool,
}

/// Most sagas `GET /sagas` lists.
const MAX_LISTED: i64 = 500;

/// `GET /sagas` (admin): sagas with work left, oldest first; `?stuck=true` for those that keep
/// failing to compensate and need an operator.
#[utoipa::path(get, path = "/sagas", tag = "sagas", params(ListParams),
    responses(
        (status = 200, description = "Sagas with work left, oldest first", body = Page<SagaView>),
        (status = 403, description = "Not an administrator", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<SagaView>>, HttpError> {
    admin_only(&caller)?;
    let sagas = state.store.active_sagas(params.stuck, MAX_LISTED).await?;
    Ok(Json(Page::complete(
        sagas.into_iter().map(SagaView::from).collect(),
    )))
}

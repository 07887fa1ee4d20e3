//! The key-value store's routes.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chassis::HttpError;
use chassis::extract::{Json, Path, Query};
use chassis::server::middleware::Quiet;
use contracts::discovery::{KvList, KvWrite};
use contracts::problem::Problem;
use http::StatusCode;
use serde::Deserialize;

use super::{AppState, Blocking, index_header};
use crate::kv::KvError;
use contracts::discovery::{MAX_VALUE_LEN, check_key};

/// Query of `GET /v1/kv`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Keys starting with this; all keys when absent.
    #[serde(default)]
    prefix: String,
}

/// `GET /v1/kv?prefix=`: blocks while the prefix's index equals `?index`. The answer's index
/// is the prefix's: the last write or deletion under it.
#[utoipa::path(get, path = "/v1/kv", tag = "kv", params(ListQuery, ("index" = Option<u64>, Query, description = "Block while the index is this"), ("wait" = Option<String>, Query, description = "Longest block, such as 30s")),
    responses((status = 200, description = "The entries under the prefix", body = Object)))]
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
    Query(blocking): Query<Blocking>,
) -> Result<Response, HttpError> {
    let kv = &state.kv;
    if let Some((index, wait)) = blocking.wait(state.max_wait)? {
        kv.index()
            .wait_until(wait, || kv.prefix_index(&query.prefix) != index)
            .await;
    }
    let index = kv.prefix_index(&query.prefix);
    let mut response = (
        index_header(index),
        Json(KvList {
            index,
            entries: kv.list(&query.prefix),
        }),
    )
        .into_response();
    if blocking.index.is_some() {
        response.extensions_mut().insert(Quiet);
    }
    Ok(response)
}

/// `GET /v1/kv/{key}`: blocks while the key's modify index equals `?index` (0: absent).
#[utoipa::path(get, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path, description = "The key (traffic/<service>, faults/<name>…)"), ("index" = Option<u64>, Query, description = "Block while the index is this"), ("wait" = Option<String>, Query, description = "Longest block, such as 30s")),
    responses(
        (status = 200, description = "The entry", body = Object),
        (status = 404, description = "No such key", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(blocking): Query<Blocking>,
) -> Result<Response, HttpError> {
    key_is_valid(&key)?;
    if let Some((index, wait)) = blocking.wait(state.max_wait)? {
        let kv = &state.kv;
        let modify_index = || kv.get(&key).map_or(0, |e| e.modify_index);
        kv.index()
            .wait_until(wait, || modify_index() != index)
            .await;
    }
    match state.kv.get(&key) {
        Some(entry) => {
            let mut response = (index_header(entry.modify_index), Json(entry)).into_response();
            // Gateways and services watch their policies; those polls are not news.
            response.extensions_mut().insert(Quiet);
            Ok(response)
        }
        None => {
            let mut response = HttpError::not_found(format!("no key {key:?}")).into_response();
            response.headers_mut().extend(index_header(0));
            Ok(response)
        }
    }
}

/// `?cas=` of writes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteQuery {
    /// Write only if the key's modify index is this (0: only if absent).
    cas: Option<u64>,
}

/// `PUT /v1/kv/{key}?cas=`: the body is the value, UTF-8 text.
#[utoipa::path(put, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path, description = "The key (traffic/<service>, faults/<name>…)"), WriteQuery),
    request_body(content = String, content_type = "text/plain", description = "The value, UTF-8"),
    responses(
        (status = 200, description = "Written", body = Object),
        (status = 403, description = "Only the operator writes", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cas index did not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<WriteQuery>,
    body: Bytes,
) -> Result<Response, HttpError> {
    key_is_valid(&key)?;
    if body.len() > MAX_VALUE_LEN {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
        )
        .with_detail(format!("values are at most {MAX_VALUE_LEN} bytes")));
    }
    let value = std::str::from_utf8(&body)
        .map_err(|_| HttpError::bad_request("the value must be UTF-8 text"))?;
    let entry = state
        .kv
        .put(&key, value, query.cas)
        .await
        .map_err(write_error)?;
    Ok((
        index_header(entry.modify_index),
        Json(KvWrite {
            index: entry.modify_index,
        }),
    )
        .into_response())
}

/// `DELETE /v1/kv/{key}?cas=`.
#[utoipa::path(delete, path = "/v1/kv/{key}", tag = "kv", params(("key" = String, Path, description = "The key (traffic/<service>, faults/<name>…)"), WriteQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Only the operator writes", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cas index did not match", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Path(key): Path<String>,
    Query(query): Query<WriteQuery>,
) -> Result<StatusCode, HttpError> {
    key_is_valid(&key)?;
    match state
        .kv
        .delete(&key, query.cas)
        .await
        .map_err(write_error)?
    {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(HttpError::not_found(format!("no key {key:?}"))),
    }
}

fn key_is_valid(key: &str) -> Result<(), HttpError> {
    check_key(key).map_err(|reason| HttpError::bad_request(format!("key {key:?} {reason}")))
}

fn write_error(error: KvError) -> HttpError {
    match error {
        KvError::CasMismatch { .. } => HttpError::conflict("cas-mismatch", error.to_string()),
        KvError::Db(source) => HttpError::internal(source),
    }
}

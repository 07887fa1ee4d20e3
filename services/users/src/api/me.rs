//! The signed-in user's profile.

use axum::extract::State;
use chassis::HttpError;
use chassis::auth::Caller;
use chassis::db::now_millis;
use chassis::error::Validation;
use chassis::extract::Json;
use serde::Deserialize;

use super::{AppState, UserView, UsersError};
use crate::domain::{DisplayName, Email};
use contracts::problem::Problem;

/// `GET /users/me`.
#[utoipa::path(get, path = "/users/me", tag = "profile",
    responses(
        (status = 200, description = "The signed-in user", body = UserView),
        (status = 401, description = "Not signed in, or the account is gone", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<UserView>, HttpError> {
    let user = state
        .store
        .find_by_id(caller.user_id)
        .await
        .map_err(UsersError::from)?
        .ok_or(UsersError::UnknownUser)?;
    Ok(Json(user.into()))
}

/// Body of `PUT /users/me`: the whole editable profile.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ProfileUpdate {
    name: String,
    email: String,
}

/// `PUT /users/me`: replaces name and email.
#[utoipa::path(put, path = "/users/me", tag = "profile", request_body = ProfileUpdate,
    responses(
        (status = 200, description = "The profile as changed", body = UserView),
        (status = 401, description = "Not signed in, or the account is gone", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account has this email", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ProfileUpdate>,
) -> Result<Json<UserView>, HttpError> {
    let mut v = Validation::new();
    let name = v.check("name", DisplayName::parse(&body.name));
    let email = v.check("email", Email::parse(&body.email));
    let (Some(name), Some(email)) = (name, email) else {
        return Err(v.into_error());
    };
    let user = state
        .store
        .update_profile(
            caller.user_id,
            name.as_str(),
            email.as_str(),
            &email.normalized(),
            now_millis(),
        )
        .await
        .map_err(UsersError::from)?
        .ok_or(UsersError::UnknownUser)?;
    tracing::info!(user_id = %user.id, "profile updated");
    Ok(Json(user.into()))
}

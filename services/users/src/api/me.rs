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

/// `GET /users/me`.
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
#[derive(Debug, Deserialize)]
pub struct ProfileUpdate {
    name: String,
    email: String,
}

/// `PUT /users/me`: replaces name and email.
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

//! Who is calling: the identity the gateway verified and passed on.
//!
//! The gateway checks the access token and sets `x-bazaar-user-id` and `x-bazaar-user-roles`,
//! after removing any copy the client sent. A handler takes [`Caller`] to require a signed-in
//! user (401 otherwise) or `Option<Caller>` where signing in is optional.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use contracts::auth::ROLE_ADMIN;
use contracts::headers::{USER_ID, USER_ROLES};
use http::request::Parts;
use uuid::Uuid;

use crate::error::HttpError;

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user's id.
    pub user_id: Uuid,
    /// The user's roles.
    pub roles: Vec<String>,
}

/// Whether a request may see something `owner` owns: a service calling with no user sees
/// everything; a user, as [`Caller::may_see`] says.
pub fn may_see(caller: Option<&Caller>, owner: &str) -> bool {
    caller.is_none_or(|caller| caller.may_see(owner))
}

impl Caller {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }

    /// Whether the caller may see something `owner` (a user id) owns: their own, or anything
    /// for an administrator.
    pub fn may_see(&self, owner: &str) -> bool {
        self.is_admin() || self.user_id.to_string() == owner
    }

    /// `Ok` if the caller has `role`, 403 otherwise.
    pub fn require_role(&self, role: &str) -> Result<(), HttpError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(HttpError::forbidden(format!("requires the {role} role")))
        }
    }

    fn from_parts(parts: &Parts) -> Result<Option<Self>, HttpError> {
        Self::from_headers(&parts.headers)
    }

    /// The caller the identity headers (or gRPC metadata, as headers) name: `None` without
    /// them, 401 when they are malformed.
    pub fn from_headers(headers: &http::HeaderMap) -> Result<Option<Self>, HttpError> {
        let Some(id) = headers.get(USER_ID) else {
            return Ok(None);
        };
        let user_id = id
            .to_str()
            .ok()
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| HttpError::unauthorized("the caller identity is malformed"))?;
        let roles = headers
            .get(USER_ROLES)
            .and_then(|r| r.to_str().ok())
            .map(|r| {
                r.split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Self { user_id, roles }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts)?.ok_or_else(|| HttpError::unauthorized("sign in to use this route"))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Self::from_parts(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = http::Request::builder();
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).expect("request").into_parts().0
    }

    #[test]
    fn reads_the_identity_headers() {
        let id = Uuid::now_v7();
        let caller = Caller::from_parts(&parts(&[
            (USER_ID, &id.to_string()),
            (USER_ROLES, "customer, admin"),
        ]))
        .expect("valid")
        .expect("present");
        assert_eq!(caller.user_id, id);
        assert!(caller.is_admin());
        assert!(caller.require_role("customer").is_ok());
        assert!(caller.require_role("support").is_err());
    }

    #[test]
    fn absent_is_none_and_malformed_is_401() {
        assert_eq!(Caller::from_parts(&parts(&[])).expect("valid"), None);
        let error = Caller::from_parts(&parts(&[(USER_ID, "not-a-uuid")])).expect_err("malformed");
        assert_eq!(error.status(), http::StatusCode::UNAUTHORIZED);
    }
}

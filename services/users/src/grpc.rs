//! `bazaar.users.v1.Users` over gRPC (`proto/bazaar/users/v1/users.proto` in contracts), served
//! on the service's own listener beside the REST routes (HTTP/2; mTLS under `up`).
//!
//! Only orders may call it (it looks up the customer of an order), and only on behalf of a user:
//! the end user travels in the `x-bazaar-user-*` metadata as over HTTP, and may see their own
//! account, or any if they are an administrator.

use axum::Router;
use chassis::auth::Caller;
use chassis::authz::callers;
use contracts::grpc::users::users_server::{SERVICE_NAME, Users, UsersServer};
use contracts::grpc::users::{GetUserRequest, User};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::store::Store;

/// The gRPC routes.
pub fn routes(store: Store) -> Router {
    Router::new()
        .route_service(
            &format!("/{SERVICE_NAME}/{{*method}}"),
            UsersServer::new(Accounts { store }),
        )
        .route_layer(callers(&["orders"]))
}

/// The implementation of `Users`.
#[derive(Debug, Clone)]
struct Accounts {
    store: Store,
}

#[tonic::async_trait]
impl Users for Accounts {
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let acting = Caller::from_headers(&request.metadata().clone().into_headers())
            .map_err(|e| Status::unauthenticated(e.to_string()))?
            .ok_or_else(|| {
                Status::permission_denied("act for a user: x-bazaar-user-id names nobody")
            })?;
        let id = &request.get_ref().id;
        let id = Uuid::parse_str(id)
            .map_err(|_| Status::invalid_argument(format!("id {id:?} is not a UUID")))?;
        if !acting.may_see(&id.to_string()) {
            tracing::warn!(acting = %acting.user_id, requested = %id, "refused a lookup of another user's account");
            return Err(Status::permission_denied(
                "a user may look up only their own account",
            ));
        }
        let user = self
            .store
            .find_by_id(id)
            .await
            .map_err(|error| {
                tracing::error!(error = %chassis::error::ErrorChain(&error), "looking up an account failed");
                Status::internal("the account could not be read")
            })?
            .ok_or_else(|| Status::not_found(format!("no account {id}")))?;
        Ok(Response::new(User {
            id: user.id.to_string(),
            email: user.email,
            name: user.name,
            roles: user.roles,
            created_at_ms: user.created_at,
        }))
    }
}

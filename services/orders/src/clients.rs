//! Calls to the catalog (prices, reservations), the cart, and the users service (the customer,
//! over gRPC), through the chassis clients (discovery, deadline, retries of what is safe to
//! repeat). The saga's other commands are sent by [`crate::runner`].

use std::collections::HashMap;

use chassis::auth::Caller;
use chassis::client::{CallError, GrpcClient, Idempotent, ServiceClient};
use contracts::grpc::users::GetUserRequest;
use contracts::grpc::users::users_client::UsersClient;
use contracts::headers::{USER_ID, USER_ROLES};
use contracts::money::Money;
use contracts::page::Page;
use http::StatusCode;
use serde::Deserialize;

use crate::domain::{CatalogPrice, Requested};

/// The users service, over gRPC: who a customer is.
#[derive(Debug, Clone)]
pub struct Users {
    client: GrpcClient,
    service: String,
}

/// What the users service said of a customer.
#[derive(Debug, Clone)]
pub enum CustomerLookup {
    /// The account, its name and email.
    Found(crate::store::Customer),
    /// There is no such account (any more).
    Gone,
    /// The users service could not say.
    Unknown(tonic::Status),
}

impl Users {
    /// The users service reached through `client` under the service name `service`.
    pub fn new(client: GrpcClient, service: &str) -> Self {
        Self {
            client,
            service: service.to_owned(),
        }
    }

    /// The account of `customer`, asked on their behalf (`users.GetUser`).
    pub async fn customer(&self, customer: &Caller) -> CustomerLookup {
        let id = customer.user_id.to_string();
        let roles = customer.roles.join(",");
        let answer = self
            .client
            .call(&self.service, Idempotent::Yes, |channel| {
                let mut request = tonic::Request::new(GetUserRequest { id: id.clone() });
                let metadata = request.metadata_mut();
                if let (Ok(id), Ok(roles)) = (id.parse(), roles.parse()) {
                    metadata.insert(USER_ID, id);
                    metadata.insert(USER_ROLES, roles);
                }
                async move { UsersClient::new(channel).get_user(request).await }
            })
            .await;
        match answer {
            Ok(user) => CustomerLookup::Found(crate::store::Customer {
                name: user.name,
                email: user.email,
            }),
            Err(status) if status.code() == tonic::Code::NotFound => CustomerLookup::Gone,
            Err(status) => CustomerLookup::Unknown(status),
        }
    }
}

/// Why the catalog could not answer.
#[derive(Debug, thiserror::Error)]
#[error("the catalog could not be asked")]
pub struct CatalogUnavailable(#[source] pub CallError);

/// What a reservation request led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Stock held, under this reservation id.
    Held(String),
    /// Not enough stock; the catalog's explanation.
    Insufficient(String),
    /// The catalog refused the lines (a sku not for sale); its explanation.
    Refused(String),
    /// The key's reservation exists but no longer holds stock (released or expired); its status.
    Spent(String),
}

#[derive(Debug, Deserialize)]
struct Product {
    sku: String,
    name: String,
    price: Money,
    active: bool,
}

#[derive(Debug, Deserialize)]
struct ReservationBody {
    id: String,
    status: String,
}

/// The catalog, as the orders context sees it.
#[derive(Debug, Clone)]
pub struct Catalog {
    client: ServiceClient,
    service: String,
}

impl Catalog {
    /// The catalog reached through `client` under the service name `service`.
    pub fn new(client: ServiceClient, service: &str) -> Self {
        Self {
            client,
            service: service.to_owned(),
        }
    }

    /// Current prices of the skus that are for sale, by sku.
    pub async fn prices(
        &self,
        skus: &[String],
    ) -> Result<HashMap<String, CatalogPrice>, CatalogUnavailable> {
        let path = format!("/products?page_size=100&sku={}", skus.join(","));
        let page: Page<Product> = self
            .client
            .get(&self.service, &path)
            .send()
            .await
            .and_then(|r| r.json())
            .map_err(CatalogUnavailable)?;
        Ok(page
            .items
            .into_iter()
            .filter(|p| p.active)
            .map(|p| {
                (
                    p.sku,
                    CatalogPrice {
                        name: p.name,
                        unit_price_minor: p.price.amount_minor,
                        currency: p.price.currency,
                    },
                )
            })
            .collect())
    }

    /// Holds stock for `items` under the idempotency key `key`.
    pub async fn reserve(
        &self,
        key: &str,
        items: &[Requested],
    ) -> Result<Reservation, CatalogUnavailable> {
        let body = serde_json::json!({
            "items": items.iter().map(|i| serde_json::json!({"sku": i.sku, "quantity": i.quantity})).collect::<Vec<_>>()
        });
        let response = self
            .client
            .post(&self.service, "/reservations")
            .idempotency_key(key)
            .json(&body)
            .send()
            .await
            .map_err(CatalogUnavailable)?;
        match response.status {
            StatusCode::OK | StatusCode::CREATED => {
                let held: ReservationBody = response.json().map_err(CatalogUnavailable)?;
                // A replayed key answers with the reservation as it is now, which may be spent.
                Ok(if held.status == "held" {
                    Reservation::Held(held.id)
                } else {
                    Reservation::Spent(held.status)
                })
            }
            StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                let status = response.status;
                let detail = match response.error_for_status() {
                    Err(CallError::Status {
                        problem: Some(problem),
                        ..
                    }) => problem.detail.unwrap_or(problem.title),
                    _ => "the catalog refused the reservation".to_owned(),
                };
                Ok(if status == StatusCode::CONFLICT {
                    Reservation::Insufficient(detail)
                } else {
                    Reservation::Refused(detail)
                })
            }
            _ => Err(CatalogUnavailable(
                response
                    .error_for_status()
                    .err()
                    .unwrap_or(CallError::Invalid {
                        service: self.service.clone(),
                        reason: "unexpected answer".into(),
                    }),
            )),
        }
    }
}

/// Why the cart could not be read or emptied.
#[derive(Debug, thiserror::Error)]
#[error("the cart could not be asked")]
pub struct CartUnavailable(#[source] pub CallError);

#[derive(Debug, Deserialize)]
struct CartBody {
    lines: Vec<CartLine>,
}

#[derive(Debug, Deserialize)]
struct CartLine {
    sku: String,
    quantity: i64,
}

/// The customer's cart, as the orders context sees it: skus and quantities.
#[derive(Debug, Clone)]
pub struct Carts {
    client: ServiceClient,
    service: String,
}

impl Carts {
    /// The cart service reached through `client` under the service name `service`.
    pub fn new(client: ServiceClient, service: &str) -> Self {
        Self {
            client,
            service: service.to_owned(),
        }
    }

    /// The lines of `user`'s cart, as `(sku, quantity)`.
    pub async fn lines(&self, user: &Caller) -> Result<Vec<(String, i64)>, CartUnavailable> {
        let cart: CartBody = self
            .on_behalf_of(self.client.get(&self.service, "/cart"), user)
            .send()
            .await
            .and_then(|r| r.json())
            .map_err(CartUnavailable)?;
        Ok(cart
            .lines
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect())
    }

    /// Empties `user`'s cart.
    pub async fn clear(&self, user: &Caller) -> Result<(), CartUnavailable> {
        self.on_behalf_of(
            self.client
                .call(http::Method::DELETE, &self.service, "/cart"),
            user,
        )
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map(drop)
        .map_err(CartUnavailable)
    }

    /// Passes the customer's verified identity on, as the gateway does.
    fn on_behalf_of<'a>(
        &self,
        call: chassis::client::Call<'a>,
        user: &Caller,
    ) -> chassis::client::Call<'a> {
        call.header(
            http::HeaderName::from_static(USER_ID),
            &user.user_id.to_string(),
        )
        .header(
            http::HeaderName::from_static(USER_ROLES),
            &user.roles.join(","),
        )
    }
}

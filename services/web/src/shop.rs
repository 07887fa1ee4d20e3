//! The public API, as the storefront calls it: through the gateway, with the shopper's token,
//! exactly as any other client of `/api` would. The storefront holds no data of its own and
//! gets no privilege the browser would not have.

use chassis::client::{CallError, ServiceClient};
use contracts::problem::Problem;
use http::header::AUTHORIZATION;
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The header an anonymous cart travels in.
pub const CART_ID: &str = "x-cart-id";

/// Why a call to the API did not give what the page needs.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    /// The API refused the request: the shopper can act on its problem (a wrong password,
    /// a declined card, a field to fix).
    #[error("{status}: {}", .problem.title)]
    Refused {
        /// The status.
        status: StatusCode,
        /// What the API said.
        problem: Box<Problem>,
    },
    /// The API could not be reached or failed.
    #[error("the shop is unavailable")]
    Unavailable(#[source] CallError),
}

impl ShopError {
    /// The status the API answered, for a refusal.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            Self::Unavailable(_) => None,
        }
    }

    /// What to tell the shopper: the problem's detail, else its title.
    pub fn message(&self) -> String {
        match self {
            Self::Refused { problem, .. } => {
                let mut message = problem
                    .detail
                    .clone()
                    .unwrap_or_else(|| problem.title.clone());
                for error in &problem.errors {
                    message.push_str(&format!(" {}: {}.", error.field, error.message));
                }
                message
            }
            Self::Unavailable(_) => {
                "The shop cannot answer right now. Please try again in a moment.".to_owned()
            }
        }
    }
}

impl From<CallError> for ShopError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Status {
                status,
                problem: Some(problem),
                ..
            } if status.is_client_error() => Self::Refused { status, problem },
            CallError::Status {
                status,
                problem: None,
                ..
            } if status.is_client_error() => Self::Refused {
                status,
                problem: Box::new(Problem {
                    kind: "about:blank".to_owned(),
                    title: status.canonical_reason().unwrap_or("Refused").to_owned(),
                    status: status.as_u16(),
                    detail: None,
                    instance: None,
                    request_id: None,
                    trace_id: None,
                    errors: Vec::new(),
                }),
            },
            other => Self::Unavailable(other),
        }
    }
}

/// A page of items and the cursor of the next.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// Tokens from a login, signup or refresh.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The access token (a JWT).
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
}

/// What a call carries of the shopper: their token and their anonymous cart.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The access token, when signed in.
    pub token: Option<String>,
    /// The anonymous cart's id, when there is one.
    pub cart: Option<String>,
}

/// The public API through the gateway.
#[derive(Debug, Clone)]
pub struct Shop {
    client: ServiceClient,
    gateway: String,
}

impl Shop {
    /// Calls the API through the gateway service named `gateway`.
    pub fn new(client: ServiceClient, gateway: String) -> Self {
        Self { client, gateway }
    }

    /// Sends `method path` with `body` as `caller`; the answer's JSON and headers.
    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        caller: &Caller,
        body: Option<&Value>,
    ) -> Result<(T, http::HeaderMap), ShopError> {
        let mut call = self.client.call(method, &self.gateway, path);
        if let Some(token) = &caller.token {
            call = call.header(AUTHORIZATION, &format!("Bearer {token}"));
        }
        if let Some(cart) = &caller.cart {
            call = call.header(http::HeaderName::from_static(CART_ID), cart);
        }
        if let Some(body) = body {
            call = call.json(body);
        }
        let response = call.send().await?.error_for_status()?;
        let headers = response.headers.clone();
        let value = if response.body.is_empty() {
            serde_json::from_value(Value::Null)
        } else {
            serde_json::from_slice(&response.body)
        };
        let value = value.map_err(|source| {
            ShopError::Unavailable(CallError::Decode {
                service: self.gateway.clone(),
                source: Box::new(source),
            })
        })?;
        Ok((value, headers))
    }

    /// GET `path` as `caller`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        caller: &Caller,
    ) -> Result<T, ShopError> {
        self.send(Method::GET, path, caller, None)
            .await
            .map(|(value, _)| value)
    }

    /// POST `body` to `path` as `caller`.
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        caller: &Caller,
        body: &Value,
    ) -> Result<T, ShopError> {
        self.send(Method::POST, path, caller, Some(body))
            .await
            .map(|(value, _)| value)
    }

    /// Places an order (`POST /api/orders`) as `caller`, once per idempotency `key`: the
    /// same key again answers with the same order.
    pub async fn place_order(
        &self,
        caller: &Caller,
        key: &str,
        body: &Value,
    ) -> Result<Value, ShopError> {
        let mut call = self
            .client
            .call(Method::POST, &self.gateway, "/api/orders")
            .json(body);
        if let Some(token) = &caller.token {
            call = call.header(AUTHORIZATION, &format!("Bearer {token}"));
        }
        if !key.is_empty() {
            call = call.idempotency_key(key);
        }
        Ok(call.send().await?.json()?)
    }

    /// Changes the cart with `method path` and `body`; the cart, and the anonymous cart's id
    /// when the API handed one out.
    pub async fn change_cart(
        &self,
        method: Method,
        path: &str,
        caller: &Caller,
        body: Option<&Value>,
    ) -> Result<(Value, Option<String>), ShopError> {
        let (cart, headers): (Value, _) = self.send(method, path, caller, body).await?;
        let id = headers
            .get(CART_ID)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok((cart, id))
    }
}

/// `value` as a query parameter.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

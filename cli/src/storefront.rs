//! The shop as its customers reach it: the gateway's public API, over plain HTTP or HTTPS,
//! through the chassis' connection pool. Used by `bazaar chaos` and `bazaar load`.

use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use chassis::client::Transport;
use chassis::error::ErrorChain;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::state;

/// An answer from the shop.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Value,
}

/// A request to the gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) token: Option<&'a str>,
    pub(crate) body: Option<&'a Value>,
    pub(crate) idempotency_key: Option<&'a str>,
    pub(crate) timeout: Duration,
}

impl<'a> Ask<'a> {
    /// `GET path` as `token`, within 10 s.
    pub(crate) fn get(path: &'a str, token: Option<&'a str>) -> Self {
        Self {
            method: &Method::GET,
            path,
            token,
            body: None,
            idempotency_key: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// `POST path` with a JSON body as `token`, within 10 s.
    pub(crate) fn post(path: &'a str, token: Option<&'a str>, body: &'a Value) -> Self {
        Self {
            method: &Method::POST,
            body: Some(body),
            ..Self::get(path, token)
        }
    }
}

/// Whether an answer with `status` is worth asking again: the shop failed or is throttling.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// The administrator every `up` seeds (README, "Demo accounts").
pub(crate) const DEMO_ADMIN: (&str, &str) = ("admin@bazaar.example", "keys-to-the-shop");

/// The gateway's public API.
#[derive(Debug)]
pub(crate) struct Storefront {
    transport: Transport,
    /// The gateway's address; read again from `run.json` when it stops answering (a restarted
    /// gateway may listen elsewhere), when `up` runs it.
    gateway: RwLock<String>,
    data_dir: Option<PathBuf>,
}

impl Storefront {
    /// The gateway of the `up` running in `data_dir`, called with `transport`.
    pub(crate) fn of_running(data_dir: &Path, transport: Transport) -> Result<Self, String> {
        let running = state::running(data_dir).ok_or_else(|| {
            format!(
                "no bazaar up is running in {} (start one, or name the gateway with --gateway)",
                data_dir.display()
            )
        })?;
        Ok(Self {
            transport,
            gateway: RwLock::new(running.gateway),
            data_dir: Some(data_dir.to_owned()),
        })
    }

    /// The gateway at `url` (`http://host:port`).
    pub(crate) fn at(url: &str, transport: Transport) -> Self {
        Self {
            transport,
            gateway: RwLock::new(url.trim_end_matches('/').to_owned()),
            data_dir: None,
        }
    }

    /// The gateway's base URL.
    pub(crate) fn gateway(&self) -> String {
        self.gateway.read().map(|g| g.clone()).unwrap_or_default()
    }

    /// Sends one request to the gateway; an error when nothing came back in time.
    pub(crate) async fn send(&self, ask: Ask<'_>) -> Result<Answer, String> {
        let gateway = self.gateway();
        let url = format!("{gateway}{}", ask.path);
        let mut request = Request::builder().method(ask.method).uri(&url);
        if let Some(token) = ask.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = ask.idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let body = match ask.body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let request = request.body(body).map_err(|e| format!("{url}: {e}"))?;
        let exchange = async {
            let response = self.transport.send(request).await.map_err(|e| {
                self.find_gateway(&gateway);
                format!("{url}: {}", ErrorChain(&e))
            })?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(ask.timeout, exchange)
            .await
            .map_err(|_| format!("{url} did not answer within {:?}", ask.timeout))?
    }

    /// Reads the gateway's address again if it is still `stale`.
    fn find_gateway(&self, stale: &str) {
        if let Some(running) = self.data_dir.as_deref().and_then(state::running)
            && running.gateway != stale
            && let Ok(mut gateway) = self.gateway.write()
        {
            *gateway = running.gateway;
        }
    }

    /// Logs `(email, password)` in once; the access token, or what the gateway answered.
    pub(crate) async fn log_in(&self, (email, password): (&str, &str)) -> Result<String, String> {
        let credentials = serde_json::json!({"email": email, "password": password});
        let answer = self
            .send(Ask::post("/api/auth/login", None, &credentials))
            .await?;
        answer.body["access_token"]
            .as_str()
            .filter(|_| answer.status == StatusCode::OK)
            .map(str::to_owned)
            .ok_or_else(|| format!("logging {email} in answered {}", answer.status))
    }

    /// `GET path` as `token`, asked again until it answers 200 or `within` passes (a service
    /// that was just killed takes a moment to come back).
    pub(crate) async fn read(
        &self,
        path: &str,
        token: &str,
        within: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.send(Ask::get(path, Some(token))).await {
                Ok(answer) if answer.status == StatusCode::OK => return Ok(answer.body),
                Ok(answer) => format!("GET {path}: {} {}", answer.status, answer.body),
                Err(error) => error,
            };
            if Instant::now() > deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

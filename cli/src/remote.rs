//! The running system as the release commands see it: the registry (instances, traffic
//! policies, fault rules), `up`'s control API (starting and stopping instances) and the
//! gateways' metrics.

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use chassis::client::Transport;
use chassis::discovery::RegistryClient;
use chassis::error::ErrorChain;
use contracts::discovery::{HealthStatus, Instance};
use contracts::release::{TrafficPolicy, traffic_key};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::state::{self, InstanceState};

/// Longest a call to the control API may take: starting instances waits for them to be ready.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest any other call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Handles on the running system.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) registry: RegistryClient,
    control: Option<String>,
    transport: Transport,
}

impl Remote {
    /// The system `up` runs in `data_dir`, or the registry at `registry` (then without the
    /// control API: nothing can be started or stopped).
    pub(crate) fn connect(registry: Option<String>, data_dir: &Path) -> Self {
        let running = state::running(data_dir);
        let registry = state::registry_url(registry, running.as_ref());
        let transport = state::operator_transport(data_dir);
        Self {
            registry: RegistryClient::connect(&registry, &transport),
            control: running.map(|s| s.control).filter(|c| !c.is_empty()),
            transport,
        }
    }

    /// Sends a request; the status and body of the answer.
    pub(crate) async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::builder().method(method).uri(url);
        let body = match body {
            Some(json) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        let request = request.body(body).map_err(|e| format!("{url}: {e}"))?;
        self.exchange(request, timeout).await
    }

    /// GETs `url` with `headers`; the status and body of the answer.
    pub(crate) async fn get_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Body::empty())
            .map_err(|e| format!("{url}: {e}"))?;
        self.exchange(request, timeout).await
    }

    /// Sends `request` and reads the whole answer, within `timeout`.
    async fn exchange(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), String> {
        let url = request.uri().to_string();
        let exchange = async {
            let response = self
                .transport
                .send(request)
                .await
                .map_err(|e| format!("{url}: {}", ErrorChain(&e)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("{url} did not answer within {timeout:?}"))?
    }

    /// Every registered instance of `service`, passing or not.
    pub(crate) async fn instances(&self, service: &str) -> Result<Vec<Instance>, String> {
        let all = self
            .registry
            .instances()
            .await
            .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
        Ok(all
            .instances
            .into_iter()
            .filter(|i| i.service == service)
            .collect())
    }

    /// The traffic policy of `service`, if it has one.
    pub(crate) async fn policy(&self, service: &str) -> Result<Option<TrafficPolicy>, String> {
        let entry = self
            .registry
            .kv_get(&traffic_key(service))
            .await
            .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
        entry
            .map(|e| {
                serde_json::from_str(&e.value).map_err(|error| {
                    format!("the traffic policy of {service} is not valid: {error}")
                })
            })
            .transpose()
    }

    /// Stores the traffic policy of `service`; gateways apply it within a moment.
    pub(crate) async fn set_policy(
        &self,
        service: &str,
        policy: &TrafficPolicy,
    ) -> Result<(), String> {
        policy.validate()?;
        let value = serde_json::to_string(policy).map_err(|e| e.to_string())?;
        self.registry
            .kv_put(&traffic_key(service), &value, None)
            .await
            .map_err(|e| format!("the registry: {}", ErrorChain(&e)))?;
        Ok(())
    }

    fn control(&self) -> Result<&str, String> {
        self.control.as_deref().ok_or_else(|| {
            "no `bazaar up` is running in this data directory (see --data-dir); releases start and stop instances through it".to_owned()
        })
    }

    /// Starts `count` instances of `service` reporting `version`; answers once they are ready.
    pub(crate) async fn start(
        &self,
        service: &str,
        version: &str,
        count: u8,
    ) -> Result<Vec<InstanceState>, String> {
        let url = format!("{}/instances", self.control()?);
        let body = serde_json::json!({ "service": service, "version": version, "count": count });
        let (status, body) = self
            .call(Method::POST, &url, Some(&body), CONTROL_TIMEOUT)
            .await?;
        if status.is_success() {
            serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
        } else {
            Err(problem_detail(&body))
        }
    }

    /// Stops the instance `id` gracefully; an instance that is already gone is not an error.
    pub(crate) async fn stop(&self, id: &str) -> Result<(), String> {
        let url = format!("{}/instances/{id}", self.control()?);
        let (status, body) = self
            .call(Method::DELETE, &url, None, CONTROL_TIMEOUT)
            .await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(problem_detail(&body))
        }
    }

    /// Stops every instance of `service` at `version`.
    pub(crate) async fn stop_version(
        &self,
        service: &str,
        version: &str,
    ) -> Result<Vec<String>, String> {
        let ids: Vec<String> = self
            .instances(service)
            .await?
            .into_iter()
            .filter(|i| i.version == version)
            .map(|i| i.id)
            .collect();
        for id in &ids {
            self.stop(id).await?;
        }
        Ok(ids)
    }

    /// The metrics of every passing gateway instance, one text per instance.
    pub(crate) async fn gateway_metrics(&self) -> Result<Vec<String>, String> {
        let gateways: Vec<Instance> = self
            .instances("gateway")
            .await?
            .into_iter()
            .filter(|i| i.status == HealthStatus::Passing)
            .collect();
        if gateways.is_empty() {
            return Err("no gateway is running".to_owned());
        }
        let mut texts = Vec::new();
        for gateway in gateways {
            let url = format!("{}/metrics", gateway.address);
            let (status, body) = self.call(Method::GET, &url, None, CALL_TIMEOUT).await?;
            if !status.is_success() {
                return Err(format!("{url} answered {status}"));
            }
            texts.push(String::from_utf8_lossy(&body).into_owned());
        }
        Ok(texts)
    }
}

/// The `detail` (or `title`) of a problem body, or the body itself.
pub(crate) fn problem_detail(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["detail"]
                .as_str()
                .or_else(|| v["title"].as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_details_are_read() {
        assert_eq!(
            problem_detail(br#"{"title":"Bad","detail":"count must be 1 to 8"}"#),
            "count must be 1 to 8"
        );
        assert_eq!(problem_detail(b"plain"), "plain");
    }
}

//! Self-registration: an instance announces itself once it is listening, renews its TTL with
//! heartbeats, registers again if the registry forgets it, and deregisters on shutdown.

use std::sync::Arc;
use std::time::Duration;

use contracts::discovery::Registration;
use tokio_util::sync::CancellationToken;

use super::registry_api::{Heartbeat, RegistryClient};
use crate::health::Readiness;

/// Longest pause between attempts to register while the registry is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The registration of this instance.
#[derive(Debug, Clone)]
pub struct Registrar {
    client: RegistryClient,
    id: String,
    registration: Registration,
    heartbeat: Duration,
}

impl Registrar {
    /// Prepares the registration of instance `id`.
    pub fn new(
        client: RegistryClient,
        id: String,
        registration: Registration,
        heartbeat: Duration,
    ) -> Self {
        Self {
            client,
            id,
            registration,
            heartbeat,
        }
    }

    /// Registers (retrying until the registry answers), marks the instance registered, then
    /// heartbeats until `stop` is cancelled. Deregistration is separate ([`Self::deregister`]):
    /// the server calls it before it drains, so no new traffic arrives while it does.
    pub async fn run(self, readiness: Arc<Readiness>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            let outcome = if readiness.is_registered() {
                self.client.heartbeat(&self.id).await
            } else {
                self.register().await.map(|()| Heartbeat::Renewed)
            };
            let pause = match outcome {
                Ok(Heartbeat::Renewed) => {
                    if failing || !readiness.is_registered() {
                        tracing::info!(registry = self.client.base(), "registered");
                    }
                    failing = false;
                    backoff = Duration::from_millis(100);
                    readiness.set_registered(true);
                    self.heartbeat
                }
                Ok(Heartbeat::Unknown) => {
                    tracing::warn!("registry forgot this instance; registering again");
                    readiness.set_registered(false);
                    Duration::ZERO
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(
                            registry = self.client.base(),
                            error = %crate::error::ErrorChain(&error),
                            "registry call failed; retrying"
                        );
                    }
                    failing = true;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if readiness.is_registered() {
                        self.heartbeat
                    } else {
                        backoff
                    }
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn register(&self) -> Result<(), super::RegistryError> {
        self.client.register(&self.id, &self.registration).await
    }

    /// Removes this instance from the registry, giving up after `timeout`.
    pub async fn deregister(&self, timeout: Duration) {
        match tokio::time::timeout(timeout, self.client.deregister(&self.id)).await {
            Ok(Ok(())) => tracing::info!("deregistered"),
            Ok(Err(error)) => {
                tracing::warn!(error = %crate::error::ErrorChain(&error), "deregistration failed")
            }
            Err(_) => tracing::warn!(?timeout, "deregistration timed out"),
        }
    }
}

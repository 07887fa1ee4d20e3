//! Where emails go: an SMTP server (lettre, over rustls) when one is configured, or the built-in
//! mailbox, which keeps them in the database for `GET /emails` so a newcomer sees them without
//! a mail server. The sender works through the queue and retries with backoff.

use std::time::Duration;

use chassis::db::now_millis;
use chassis::error::ErrorChain;
use futures_util::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::render;
use crate::store::{DELIVERED, EmailRecord, FAILED, SENT, Store};

/// Why an email could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address does not parse.
    #[error("{0:?} is not an email address")]
    Address(String),
    /// The message could not be built.
    #[error("the message could not be built")]
    Build(#[source] lettre::error::Error),
    /// The SMTP server refused or could not be reached.
    #[error("the SMTP server did not take the message")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// Hands rendered emails over.
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// The status an email has once handed over.
    fn delivered_status(&self) -> &'static str;

    /// Hands one email over.
    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), MailError>>;
}

/// The built-in mailbox: the database row is the delivered email.
#[derive(Debug, Clone, Copy)]
pub struct BuiltInMailbox;

impl Mailer for BuiltInMailbox {
    fn delivered_status(&self) -> &'static str {
        DELIVERED
    }

    fn send<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async { Ok(()) })
    }
}

/// An SMTP server.
#[derive(Debug, Clone)]
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Smtp {
    /// The server at `url` (`smtp://user:pass@host:587?tls=required`, `smtps://…`), sending as
    /// `from`.
    pub fn new(url: &str, from: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(MailError::Smtp)?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from
            .parse()
            .map_err(|_| MailError::Address(from.to_owned()))?;
        Ok(Self { transport, from })
    }
}

impl Mailer for Smtp {
    fn delivered_status(&self) -> &'static str {
        SENT
    }

    fn send<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_owned()))?;
            let message = Message::builder()
                .from(self.from.clone())
                .to(to)
                .subject(subject)
                .body(body.to_owned())
                .map_err(MailError::Build)?;
            self.transport
                .send(message)
                .await
                .map(drop)
                .map_err(MailError::Smtp)
        })
    }
}

/// How often the queue is looked at.
const SEND_EVERY: Duration = Duration::from_millis(100);

/// The wait after `attempts` failures: 1 s doubling to 5 minutes, jittered.
fn backoff(attempts: i64) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    let base = Duration::from_secs(1)
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(300));
    base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

/// Sends queued emails until `stop`.
pub fn start_sender(
    store: Store,
    mailer: std::sync::Arc<dyn Mailer>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    chassis::worker::every(SEND_EVERY, stop, move || {
        let store = store.clone();
        let mailer = std::sync::Arc::clone(&mailer);
        async move {
            match store.due(now_millis(), 50).await {
                Ok(due) => {
                    for email in due {
                        if let Err(error) = send_one(&store, mailer.as_ref(), &email).await {
                            tracing::warn!(email = %email.id, error = %ErrorChain(&error), "could not record an email");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "could not read the email queue")
                }
            }
        }
    })
}

async fn send_one(
    store: &Store,
    mailer: &dyn Mailer,
    email: &EmailRecord,
) -> Result<(), sqlx::Error> {
    let later = |attempts: i64| {
        now_millis()
            .saturating_add(i64::try_from(backoff(attempts).as_millis()).unwrap_or(i64::MAX))
    };
    // The address comes from users.user.registered, which may arrive after the event that
    // asked for this email: wait for it.
    let Some(customer) = store.customer(&email.user_id).await? else {
        return store
            .retry_later(
                &email.id,
                "no address known for this customer yet",
                later(email.attempts),
            )
            .await;
    };
    let data: serde_json::Value = serde_json::from_str(&email.data).unwrap_or_default();
    let rendered = match render::render(&email.kind, &data, &customer.name, &customer.email) {
        Ok(rendered) => rendered,
        Err(error) => {
            tracing::error!(email = %email.id, error = %ErrorChain(&error), "an email cannot be rendered");
            let reason = ErrorChain(&error).to_string();
            return store
                .finish(
                    &email.id,
                    FAILED,
                    Some(&customer.email),
                    None,
                    Some(&reason),
                    now_millis(),
                )
                .await;
        }
    };
    match mailer
        .send(&customer.email, &rendered.subject, &rendered.body)
        .await
    {
        Ok(()) => {
            tracing::info!(email = %email.id, kind = %email.kind, to = %customer.email, "email sent");
            store
                .finish(
                    &email.id,
                    mailer.delivered_status(),
                    Some(&customer.email),
                    Some((&rendered.subject, &rendered.body)),
                    None,
                    now_millis(),
                )
                .await
        }
        Err(error) => {
            let reason = ErrorChain(&error).to_string();
            tracing::warn!(email = %email.id, error = %reason, attempts = email.attempts + 1, "email not sent; will retry");
            store
                .retry_later(&email.id, &reason, later(email.attempts))
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_five_minutes() {
        assert!(backoff(0) <= Duration::from_secs(1));
        assert!(backoff(3) >= Duration::from_secs(4) && backoff(3) <= Duration::from_secs(8));
        assert!(backoff(40) <= Duration::from_secs(300));
        assert!(backoff(40) >= Duration::from_secs(150));
    }

    #[tokio::test]
    async fn smtp_urls_and_senders_are_checked() {
        assert!(Smtp::new("smtp://127.0.0.1:2525", "Bazaar <shop@bazaar.example>").is_ok());
        assert!(matches!(
            Smtp::new("smtp://127.0.0.1:2525", "not an address"),
            Err(MailError::Address(_))
        ));
        assert!(Smtp::new("ftp://nope", "shop@bazaar.example").is_err());
    }
}

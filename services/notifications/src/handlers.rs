//! Event handlers: each queues the email its event asks for, in the event's transaction (so a
//! redelivered event queues nothing more); `users.user.registered` also records the address.

use chassis::db::{WriteTransaction, now_millis};
use chassis::events::{Handler, HandlerError};
use contracts::events::{Envelope, Event, UserRegistered};
use futures_util::future::BoxFuture;

use crate::store::{self, Customer};

/// Queues an email of `kind` for the event's `user_id`.
#[derive(Debug, Clone, Copy)]
pub struct QueueEmail {
    /// The template.
    pub kind: &'static str,
}

impl Handler for QueueEmail {
    fn handle<'a>(
        &'a self,
        tx: &'a mut WriteTransaction,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let now = now_millis();
            if event.kind == UserRegistered::TYPE {
                let user: UserRegistered = event.decode()?;
                let customer = Customer {
                    email: user.email,
                    name: user.name,
                };
                store::upsert_customer(tx, &user.user_id, &customer, now).await?;
            }
            let user_id = event.data["user_id"]
                .as_str()
                .ok_or_else(|| format!("{} carries no user_id", event.kind))?;
            store::queue(
                tx,
                &event.id,
                self.kind,
                user_id,
                event.data["order_id"].as_str(),
                &event.data.to_string(),
                now,
            )
            .await?;
            Ok(())
        })
    }
}

//! Events: the envelope every event travels in, and the events Bazaar's services publish.
//!
//! An event's `type` is `<service>.<entity>.<verb>` (the CloudEvents `type`), its `source` the
//! producing service, and its payload carries a schema `version`: a consumer that meets a newer
//! major version than it knows refuses it (it goes to the dead letters) rather than misread it.
//!
//! | type | producer | payload |
//! |---|---|---|
//! | `users.user.registered` | users | [`UserRegistered`] |
//! | `orders.order.created` | orders | [`OrderCreated`] |
//! | `orders.order.confirmed` | orders | [`OrderConfirmed`] |
//! | `orders.order.cancelled` | orders | [`OrderCancelled`] |
//! | `payments.payment.charged` | payments | [`PaymentCharged`] |
//! | `payments.payment.refunded` | payments | [`PaymentRefunded`] |
//! | `shipping.shipment.created` | shipping | [`ShipmentCreated`] |
//! | `shipping.shipment.shipped` | shipping | [`ShipmentShipped`] |
//! | `shipping.shipment.delivered` | shipping | [`ShipmentDelivered`] |
//! | `catalog.stock.low` | catalog | [`StockLow`] |

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::money::Money;

/// One event on the wire, whatever the transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique id (a UUIDv7); consumers drop a second delivery of the same id.
    pub id: String,
    /// `<service>.<entity>.<verb>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Schema version of `data`.
    pub version: u32,
    /// When the state change happened.
    pub occurred_at: DateTime<Utc>,
    /// The producing service.
    pub source: String,
    /// W3C trace context of the request that caused it, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The request id that caused it, to find its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The producer's position of the event (its outbox order); set by the feed transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// The payload.
    pub data: serde_json::Value,
}

/// Why an envelope's payload could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The envelope holds another type of event.
    #[error("expected a {expected} event, got {got}")]
    WrongType {
        /// What was asked for.
        expected: &'static str,
        /// What the envelope holds.
        got: String,
    },
    /// A schema version this code does not know.
    #[error("{kind} version {version} is newer than the {known} this code reads")]
    TooNew {
        /// The event type.
        kind: String,
        /// Its version.
        version: u32,
        /// The newest this code reads.
        known: u32,
    },
    /// The payload does not match the schema.
    #[error("the {kind} payload does not match its schema: {source}")]
    Payload {
        /// The event type.
        kind: String,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
}

impl Envelope {
    /// The payload as `E`, checking type and version.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.kind != E::TYPE {
            return Err(DecodeError::WrongType {
                expected: E::TYPE,
                got: self.kind.clone(),
            });
        }
        if self.version > E::VERSION {
            return Err(DecodeError::TooNew {
                kind: self.kind.clone(),
                version: self.version,
                known: E::VERSION,
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|source| DecodeError::Payload {
            kind: self.kind.clone(),
            source,
        })
    }
}

/// A typed event.
pub trait Event: Serialize + DeserializeOwned + Send + Sync {
    /// `<service>.<entity>.<verb>`.
    const TYPE: &'static str;
    /// Schema version of the payload.
    const VERSION: u32;
}

macro_rules! event {
    ($name:ident, $kind:literal, $version:literal) => {
        impl Event for $name {
            const TYPE: &'static str = $kind;
            const VERSION: u32 = $version;
        }
    };
}

/// Somebody signed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRegistered {
    /// The account.
    pub user_id: String,
    /// Where to write to them.
    pub email: String,
    /// What to call them.
    pub name: String,
}
event!(UserRegistered, "users.user.registered", 1);

/// One line of an order, as events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// Sku.
    pub sku: String,
    /// Name at the time of the order.
    pub name: String,
    /// Units.
    pub quantity: i64,
    /// Unit price at the time of the order.
    pub unit_price: Money,
}

/// An order was placed (its checkout is starting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// What was ordered.
    pub lines: Vec<OrderLine>,
    /// What it costs.
    pub total: Money,
}
event!(OrderCreated, "orders.order.created", 1);

/// An order was paid, its stock committed and its shipment created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// What was bought.
    pub lines: Vec<OrderLine>,
    /// What was paid.
    pub total: Money,
}
event!(OrderConfirmed, "orders.order.confirmed", 1);

/// An order was cancelled; nothing is held or charged for it any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    /// The order.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// Why, for the customer.
    pub reason: String,
    /// What it would have cost.
    pub total: Money,
}
event!(OrderCancelled, "orders.order.cancelled", 1);

/// Money was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCharged {
    /// The charge.
    pub charge_id: String,
    /// The order it pays for.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// How much.
    pub amount: Money,
}
event!(PaymentCharged, "payments.payment.charged", 1);

/// Money was given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// The refund.
    pub refund_id: String,
    /// The charge it returns money from.
    pub charge_id: String,
    /// The order.
    pub order_id: String,
    /// How much.
    pub amount: Money,
}
event!(PaymentRefunded, "payments.payment.refunded", 1);

/// What events about a shipment carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentFacts {
    /// The shipment.
    pub shipment_id: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub user_id: String,
    /// Who carries it.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// A label was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentCreated(pub ShipmentFacts);
event!(ShipmentCreated, "shipping.shipment.created", 1);

/// The carrier picked the parcel up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentShipped(pub ShipmentFacts);
event!(ShipmentShipped, "shipping.shipment.shipped", 1);

/// The parcel arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentDelivered(pub ShipmentFacts);
event!(ShipmentDelivered, "shipping.shipment.delivered", 1);

/// A product's available stock fell to its threshold or below.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLow {
    /// The product.
    pub sku: String,
    /// Units that can still be sold.
    pub available: i64,
    /// The threshold it crossed.
    pub threshold: i64,
}
event!(StockLow, "catalog.stock.low", 1);

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: &str, version: u32, data: serde_json::Value) -> Envelope {
        Envelope {
            id: "e-1".into(),
            kind: kind.into(),
            version,
            occurred_at: Utc::now(),
            source: "users".into(),
            traceparent: None,
            request_id: None,
            position: Some(7),
            data,
        }
    }

    #[test]
    fn envelopes_decode_their_own_type_and_known_versions() {
        let data = serde_json::json!({"user_id": "u-1", "email": "ada@example.com", "name": "Ada"});
        let e = envelope(UserRegistered::TYPE, 1, data.clone());
        let user: UserRegistered = e.decode().expect("decodes");
        assert_eq!(user.email, "ada@example.com");
        assert!(matches!(
            e.decode::<StockLow>(),
            Err(DecodeError::WrongType { .. })
        ));
        assert!(matches!(
            envelope(UserRegistered::TYPE, 2, data).decode::<UserRegistered>(),
            Err(DecodeError::TooNew { version: 2, .. })
        ));
        assert!(matches!(
            envelope(UserRegistered::TYPE, 1, serde_json::json!({"user_id": 5}))
                .decode::<UserRegistered>(),
            Err(DecodeError::Payload { .. })
        ));
    }

    #[test]
    fn the_wire_form_calls_the_kind_type() {
        let e = envelope("catalog.stock.low", 1, serde_json::json!({}));
        let wire = serde_json::to_value(&e).expect("serializes");
        assert_eq!(wire["type"], "catalog.stock.low");
        assert!(wire.get("traceparent").is_none());
        let back: Envelope = serde_json::from_value(wire).expect("deserializes");
        assert_eq!(back, e);
    }
}

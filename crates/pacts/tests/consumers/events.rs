//! Event contracts: what notifications and recommendations read from the events they consume.
//! Each message of a pact is the envelope as it travels; the consumer's own code reads it (the
//! envelope, the typed payload, the email template that renders it), so a field the consumer
//! needs cannot go missing from the contract.

use contracts::events::{
    Envelope, Event, OrderCancelled, OrderConfirmed, ShipmentShipped, UserRegistered,
};
use pact_consumer::prelude::*;

use crate::pact;

const ADA: &str = "0190b5d8-0000-7000-8000-0000000000ad";
const ORDER: &str = "0190b5d8-1111-7000-8000-000000000001";

/// An envelope of `kind` from `source` around `data`.
fn envelope(kind: &str, source: &str, data: JsonPattern) -> JsonPattern {
    json_pattern!({
        "id": term!("^[0-9a-f-]{36}$", "0190b5d8-2222-7000-8000-000000000001"),
        "type": kind,
        "version": 1,
        "occurred_at": term!(
            "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$",
            "2026-11-26T10:00:00Z"
        ),
        "source": source,
        "data": data,
    })
}

fn money(amount_minor: i64) -> JsonPattern {
    json_pattern!({"amount_minor": like!(amount_minor), "currency": like!("USD")})
}

fn order_lines() -> JsonPattern {
    each_like!({
        "sku": like!("MUG-STONE"),
        "name": like!("Stoneware Mug"),
        "quantity": like!(2),
        "unit_price": money(1800),
    })
    .into()
}

fn order_confirmed() -> JsonPattern {
    envelope(
        OrderConfirmed::TYPE,
        "orders",
        json_pattern!({
            "order_id": like!(ORDER),
            "user_id": like!(ADA),
            "lines": order_lines(),
            "total": money(3600),
        }),
    )
}

fn order_cancelled() -> JsonPattern {
    envelope(
        OrderCancelled::TYPE,
        "orders",
        json_pattern!({
            "order_id": like!(ORDER),
            "user_id": like!(ADA),
            "reason": like!("the card was declined: card_declined"),
            "total": money(3900),
        }),
    )
}

/// The two order events `consumer` reads, as messages of its pact with orders.
fn order_messages(consumer: &str) -> PactBuilder {
    let mut orders = pact(consumer, "orders");
    orders
        .message_interaction("an order was confirmed", |mut i| {
            i.given("an order is confirmed");
            i.json_body(order_confirmed());
            i
        })
        .message_interaction("an order was cancelled", |mut i| {
            i.given("an order is cancelled because its card is declined");
            i.json_body(order_cancelled());
            i
        });
    orders
}

/// The envelope in a message's contents, read as the consumers read what a transport delivers.
fn delivered(contents: Option<Vec<u8>>) -> Envelope {
    let bytes = contents.expect("the message has contents");
    serde_json::from_slice(&bytes).expect("an envelope")
}

/// The template notifications renders for an event type.
fn template_for(kind: &str) -> &'static str {
    notifications::render::KINDS
        .iter()
        .find(|(event, _)| *event == kind)
        .map(|(_, template)| *template)
        .unwrap_or_else(|| panic!("notifications has no template for {kind}"))
}

/// What the notifications handler and mailer do with an event: find its customer, and render
/// its email.
fn notify(envelope: &Envelope) {
    assert!(
        envelope.data["user_id"].as_str().is_some(),
        "every event notifications consumes names its customer"
    );
    if envelope.kind == UserRegistered::TYPE {
        let user: UserRegistered = envelope.decode().expect("a user.registered payload");
        assert!(!user.email.is_empty());
    }
    let rendered = notifications::render::render(
        template_for(&envelope.kind),
        &envelope.data,
        "Ada",
        "ada@example.com",
    )
    .expect("the email renders");
    assert!(!rendered.subject.is_empty());
}

fn read_messages(builder: &PactBuilder, consume: impl Fn(&Envelope)) -> usize {
    let mut seen = 0;
    for message in builder.messages() {
        let envelope = delivered(message.contents.contents.value().map(|b| b.to_vec()));
        consume(&envelope);
        seen += 1;
    }
    seen
}

#[test]
fn notifications_reads_the_events_it_emails_about() {
    let mut users = pact("notifications", "users");
    users.message_interaction("a customer signed up", |mut i| {
        i.given("a customer signs up");
        i.json_body(envelope(
            UserRegistered::TYPE,
            "users",
            json_pattern!({
                "user_id": like!(ADA),
                "email": like!("ada@example.com"),
                "name": like!("Ada"),
            }),
        ));
        i
    });
    assert_eq!(read_messages(&users, notify), 1);

    let orders = order_messages("notifications");
    assert_eq!(read_messages(&orders, notify), 2);

    let mut shipping = pact("notifications", "shipping");
    shipping.message_interaction("a shipment was shipped", |mut i| {
        i.given("a shipment is shipped");
        i.json_body(envelope(
            ShipmentShipped::TYPE,
            "shipping",
            json_pattern!({
                "shipment_id": like!("0190b5d8-3333-7000-8000-000000000001"),
                "order_id": like!(ORDER),
                "user_id": like!(ADA),
                "carrier": like!("Royal Mail"),
                "tracking_number": like!("RM123456785GB"),
            }),
        ));
        i
    });
    assert_eq!(read_messages(&shipping, notify), 1);
}

#[test]
fn recommendations_reads_confirmed_and_cancelled_orders() {
    let orders = order_messages("recommendations");
    // The handlers decode the payloads into these types, then use every field.
    let seen = read_messages(&orders, |envelope| match envelope.kind.as_str() {
        OrderConfirmed::TYPE => {
            let order: OrderConfirmed = envelope.decode().expect("order.confirmed");
            assert!(!order.lines.is_empty());
        }
        OrderCancelled::TYPE => {
            let order: OrderCancelled = envelope.decode().expect("order.cancelled");
            assert!(!order.order_id.is_empty());
        }
        other => panic!("recommendations does not consume {other}"),
    });
    assert_eq!(seen, 2);
}

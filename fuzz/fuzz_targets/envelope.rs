//! An event envelope as a consumer receives it (JSON from the feed or NATS): parsing never
//! panics, every event type either decodes or says why not, and what parses writes back as the
//! same envelope.
#![no_main]

use contracts::events::{
    Envelope, Event, OrderCancelled, OrderConfirmed, OrderCreated, PaymentCharged,
    PaymentRefunded, ShipmentCreated, ShipmentDelivered, ShipmentShipped, StockLow,
    UserRegistered,
};
use libfuzzer_sys::fuzz_target;

fn decode<E: Event>(envelope: &Envelope) {
    match envelope.decode::<E>() {
        Ok(event) => {
            // A payload that decodes encodes again.
            serde_json::to_value(&event).expect("a decoded event encodes");
        }
        Err(error) => {
            // Every refusal can be told.
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else {
        return;
    };
    decode::<UserRegistered>(&envelope);
    decode::<OrderCreated>(&envelope);
    decode::<OrderConfirmed>(&envelope);
    decode::<OrderCancelled>(&envelope);
    decode::<PaymentCharged>(&envelope);
    decode::<PaymentRefunded>(&envelope);
    decode::<ShipmentCreated>(&envelope);
    decode::<ShipmentShipped>(&envelope);
    decode::<ShipmentDelivered>(&envelope);
    decode::<StockLow>(&envelope);
    let written = serde_json::to_vec(&envelope).expect("an envelope encodes");
    let read: Envelope = serde_json::from_slice(&written).expect("what was written reads back");
    assert_eq!(read, envelope, "an envelope changed on the way round");
});

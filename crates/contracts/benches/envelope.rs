//! An event on the wire: the envelope written by the outbox and read by every consumer, with
//! an `order.confirmed` payload of three lines. `cargo bench -p contracts --bench envelope`.

use std::hint::black_box;

use chrono::Utc;
use contracts::events::{Envelope, Event, OrderConfirmed, OrderLine};
use contracts::money::Money;
use criterion::{Criterion, criterion_group, criterion_main};

fn usd(amount_minor: i64) -> Money {
    Money {
        amount_minor,
        currency: "USD".into(),
    }
}

fn envelope() -> Envelope {
    let line = |sku: &str, quantity| OrderLine {
        sku: sku.into(),
        name: format!("Product {sku}"),
        quantity,
        unit_price: usd(1800),
    };
    let order = OrderConfirmed {
        order_id: "0190b5d8-1111-7000-8000-000000000001".into(),
        user_id: "0190b5d8-0000-7000-8000-00000000a11c".into(),
        lines: vec![
            line("MUG-STONE", 2),
            line("BOOK-RUST", 1),
            line("TEE-ORG-S", 3),
        ],
        total: usd(10_800),
    };
    Envelope {
        id: "0190b5d8-2222-7000-8000-000000000001".into(),
        kind: OrderConfirmed::TYPE.into(),
        version: OrderConfirmed::VERSION,
        occurred_at: Utc::now(),
        source: "orders".into(),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        request_id: Some("0190b5d8-3333-7000-8000-000000000001".into()),
        position: Some(42),
        data: serde_json::to_value(&order).expect("json"),
    }
}

fn codec(c: &mut Criterion) {
    let envelope = envelope();
    let bytes = serde_json::to_vec(&envelope).expect("encodes");
    c.bench_function("envelope: encode an order.confirmed", |b| {
        b.iter(|| serde_json::to_vec(black_box(&envelope)));
    });
    c.bench_function("envelope: decode it and read the order", |b| {
        b.iter(|| {
            let read: Envelope = serde_json::from_slice(black_box(&bytes)).expect("decodes");
            read.decode::<OrderConfirmed>().map(|o| o.lines.len())
        });
    });
}

criterion_group!(benches, codec);
criterion_main!(benches);

//! What the checkout saga writes: one order placed (order, lines, status, saga and its first
//! step, one transaction) and carried through reserve, charge, ship and confirm (one
//! transaction per step: the attempt's answer, the saga's next state, the next attempt
//! started; the last also moves the order to CONFIRMED and queues its event). On SQLite in a
//! temporary file, as `bazaar up` runs it. `cargo bench -p orders --bench saga`.

use std::hint::black_box;

use chassis::config::DatabaseConfig;
use chassis::db::{Db, now_millis};
use chassis::testing::TestDatabase;
use criterion::{Criterion, criterion_group, criterion_main};
use orders::domain::{Address, PricedLine};
use orders::saga::{Outcome, RetryPolicy, Saga};
use orders::store::sagas::{Finished, SagaRecord};
use orders::store::{OrderRecord, StatusChange, Store};

const OWNER: &str = "orders-bench";

fn order_and_saga(now: i64) -> (OrderRecord, SagaRecord) {
    let line = PricedLine {
        sku: "MUG-STONE".into(),
        name: "Stoneware Mug".into(),
        unit_price_minor: 1800,
        quantity: 2,
        line_total_minor: 3600,
    };
    let order = OrderRecord {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: "0190b5d8-0000-7000-8000-00000000a11c".into(),
        status: "PENDING".into(),
        currency: "USD".into(),
        total_minor: 3600,
        address: Address {
            name: "Ada".into(),
            line1: "12 Analytical St".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        },
        reservation_id: None,
        cancel_reason: None,
        created_at: now,
        updated_at: now,
        lines: vec![line],
        history: vec![StatusChange {
            status: "PENDING".into(),
            reason: "order placed; checking out".into(),
            at: now,
        }],
        customer: None,
    };
    let saga = SagaRecord {
        saga: Saga::new(
            uuid::Uuid::now_v7().to_string(),
            order.id.clone(),
            now,
            now + 60_000,
        ),
        user_id: order.user_id.clone(),
        payment_method: "pm_bench".into(),
        from_cart: false,
        version: 0,
        created_at: now,
        updated_at: now,
        finished_at: None,
        traceparent: None,
    };
    (order, saga)
}

/// Places an order and runs its saga to CONFIRMED, every step answered at once.
async fn checkout(store: &Store, policy: &RetryPolicy) {
    let now = now_millis();
    let (order, mut record) = order_and_saga(now);
    store
        .insert(&order, &record, (OWNER, now + 30_000), None, None)
        .await
        .expect("inserted");
    let mut started = None;
    while let Some(step) = record.saga.step.filter(|_| record.saga.status.is_active()) {
        let position = match started.take() {
            Some(position) => position,
            None => store
                .step_started(&record.saga.id, step, 1, now_millis())
                .await
                .expect("started"),
        };
        let now = now_millis();
        let next = record.saga.after(
            Outcome::Done(Some(format!("id-{position}"))),
            now,
            policy,
            0.5,
        );
        let detail = format!("id-{position}");
        let finished = Finished {
            position,
            outcome: "done",
            detail: Some(&detail),
        };
        started = store
            .save_saga(
                &record,
                &order,
                &next,
                Some(finished),
                Some((OWNER, now + 30_000)),
                now,
            )
            .await
            .expect("saved")
            .expect("still ours");
        record = SagaRecord {
            saga: next,
            version: record.version + 1,
            updated_at: now,
            ..record
        };
    }
    assert_eq!(record.saga.status.as_str(), "confirmed");
}

fn saga(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let database = TestDatabase::sqlite();
    let store = runtime.block_on(async {
        let db = Db::connect_with(
            &database.url(),
            &DatabaseConfig::default(),
            &[orders::migrator(), chassis::events::migrator()],
        )
        .await
        .expect("the database opens");
        Store::new(db)
    });
    let policy = RetryPolicy::default();
    c.bench_function(
        "saga: place an order and persist its checkout to CONFIRMED (SQLite)",
        |b| {
            b.iter(|| runtime.block_on(checkout(black_box(&store), &policy)));
        },
    );
}

criterion_group!(benches, saga);
criterion_main!(benches);

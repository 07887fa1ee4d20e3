//! The gateway's own work on every request, without I/O: checking an access token, finding
//! the route, taking a rate-limit token. `cargo bench -p gateway --bench hot_paths`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway::auth::Rules;
use gateway::ratelimit::{Limit, LocalStore, RateLimitConfig};
use gateway::routes::{Match, RouteTable, default_routes};
use http::Method;
use jsonwebtoken::DecodingKey;

/// A token signed as the users service signs them, and the public key to check it with.
fn signed_token() -> (String, DecodingKey) {
    let dir = tempfile::tempdir().expect("tempdir");
    let year = Duration::from_secs(365 * 24 * 3600);
    let ring = users::keys::KeyRing::open(dir.path().to_owned(), year, year).expect("keys");
    let key = ring.current().expect("a key");
    let jwks = serde_json::to_value(ring.jwks()).expect("json");
    let x = jwks[0]["x"].as_str().expect("x").to_owned();
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let token = users::tokens::sign_access_token(
        &key,
        "bazaar-users",
        "bazaar",
        uuid::Uuid::now_v7(),
        &["customer".to_owned()],
        now,
        Duration::from_secs(3600),
    )
    .expect("signed");
    let decoding = DecodingKey::from_ed_components(&x).expect("a public key");
    (token, decoding)
}

fn jwt(c: &mut Criterion) {
    let (token, key) = signed_token();
    let rules = Rules::new("bazaar-users", "bazaar");
    assert!(rules.check(&token, &key).is_ok(), "the token checks");
    c.bench_function(
        "jwt: key id, signature and claims of an access token",
        |b| {
            b.iter(|| {
                let kid = rules.key_id(black_box(&token));
                (kid, rules.check(black_box(&token), &key))
            });
        },
    );
}

fn routing(c: &mut Criterion) {
    let routes = default_routes();
    let table = RouteTable::new(&[("gateway.routes", &routes)], Duration::from_secs(10))
        .expect("the default table is valid");
    assert!(matches!(
        table.find(&Method::GET, "/api/products/MUG-STONE"),
        Match::Found(_)
    ));
    c.bench_function(
        "routing: GET /api/products/MUG-STONE in the default table",
        |b| {
            b.iter(|| {
                matches!(
                    table.find(&Method::GET, black_box("/api/products/MUG-STONE")),
                    Match::Found(_)
                )
            });
        },
    );
    c.bench_function("routing: a path no route has", |b| {
        b.iter(|| table.find(&Method::GET, black_box("/api/nowhere/at/all")) == Match::NotFound);
    });
}

fn rate_limit(c: &mut Criterion) {
    let limit = Limit::new(&RateLimitConfig {
        requests: 1_000_000,
        per: Duration::from_secs(1),
        burst: None,
    })
    .expect("a valid limit");
    let store = LocalStore::default();
    let mut now = 1_700_000_000_000_i64;
    c.bench_function(
        "rate limit: one token from a caller's bucket (in process)",
        |b| {
            b.iter(|| {
                now += 1;
                store.take(
                    black_box("0190b5d8-0000-7000-8000-00000000a11c"),
                    &limit,
                    now,
                )
            });
        },
    );
}

criterion_group!(benches, jwt, routing, rate_limit);
criterion_main!(benches);

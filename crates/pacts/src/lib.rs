//! Consumer-driven contracts between Bazaar's services, with [Pact](https://docs.pact.io).
//!
//! A consumer's test runs the consumer's real code against Pact mock servers that answer as
//! the consumer expects its providers to, and writes those expectations, request by request,
//! to `contracts/pacts/<consumer>-<provider>.json`. A provider's test starts the real provider
//! on port 0 with a temporary database, sets up each interaction's provider state through the
//! provider's own API, replays the requests and checks the answers against the file. Event
//! contracts work the same way: the consumer's handler code reads the messages of the pact, and
//! the provider's test produces each event by really doing what causes it (signing a user up,
//! confirming an order…) and hands over the envelope its outbox published.
//!
//! The pact files are committed: `.ci/run` fails when the consumers' tests change them without
//! the change being committed, and a provider whose answers no longer fit fails its test.
//!
//! | consumer | provider | what |
//! |---|---|---|
//! | orders | catalog | prices, reservations (hold, commit, release, return) |
//! | orders | payments | charges (accepted, declined), refunds |
//! | orders | shipping | shipments (create, cancel) |
//! | gateway | users | the signing keys (JWKS), the profile on the dashboard |
//! | gateway | orders | recent orders on the dashboard |
//! | gateway | recommendations | recommendations on the dashboard |
//! | notifications | users, orders, shipping | the events it turns into emails |
//! | recommendations | orders | confirmed and cancelled orders |
//!
//! orders → users is gRPC: its contract is the protobuf schema both sides compile
//! (`crates/contracts/proto`), guarded by a snapshot test of its wire shape.

use std::path::{Path, PathBuf};

/// Where the pact files live: `contracts/pacts/` at the root of the repository.
pub fn dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .join("contracts/pacts")
}

//! Integration tests of the catalog: each test starts the service on port 0 with its own
//! database (seeded with the demo catalog), without a registry, and talks to it over HTTP.

mod helpers;
mod products;
mod reservations;

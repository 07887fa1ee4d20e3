//! Integration tests of the registry: each test starts its own registry on port 0 with its own
//! database and talks to it over HTTP.

mod backends;
mod helpers;
mod instances;
mod kv;
mod self_registration;

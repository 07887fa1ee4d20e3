//! Integration tests of the users service: each test starts the service on port 0 with its own
//! database and key folder, without a registry, and talks to it over HTTP.

mod accounts;
mod grpc;
mod helpers;
mod throttling;
mod tokens;

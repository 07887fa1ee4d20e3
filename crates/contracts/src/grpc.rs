//! gRPC services, generated from `proto/` at build time.

/// `bazaar.users.v1`: the account lookup (`Users/GetUser`).
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod users {
    tonic::include_proto!("bazaar.users.v1");
}

//! The published language between Bazaar's processes.
//!
//! Everything two processes must agree on lives here, and nothing else: the problem+json error
//! body, the headers the gateway uses to pass a verified caller on, the registry's wire types, and
//! the gRPC services (generated from `proto/`). No business logic and no I/O, so every crate can
//! depend on it without pulling in a runtime.

#![forbid(unsafe_code)]

pub mod auth;
pub mod discovery;
pub mod events;
pub mod grpc;
pub mod headers;
pub mod money;
pub mod page;
pub mod problem;
pub mod release;
pub mod sku;
pub mod traces;

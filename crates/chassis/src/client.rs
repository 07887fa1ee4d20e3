//! The internal HTTP client: how one Bazaar process calls another.
//!
//! A call names a service, not an address. [`ServiceClient`] resolves it through
//! [`Discovery`](crate::discovery::Discovery), picks an instance by power of two choices, holds
//! the whole call to a deadline, retries only what is safe to repeat, and forwards
//! `x-request-id` so the callee's log lines join the caller's.
//!
//! Requests go through a [`Transport`], a `tower::Service` from `http::Request` to
//! `http::Response`. Over the network it is hyper's pooled client; a test or the single-process
//! mode can put any other service there (an axum `Router`, for one) and nothing else changes.
//!
//! # Layout
//! - [`transport`]: the `tower::Service` seam and its hyper implementation.
//! - [`call`]: building a call, the retry loop, and the response.

pub mod call;
pub mod grpc;
pub(crate) mod pool;
pub mod transport;

pub use call::{Call, CallError, CallResponse, ServiceClient};
pub use grpc::{GrpcClient, Idempotent};

/// The service a request goes to, when the caller knows it (a request extension). Client spans
/// are named after it (`POST orders`) rather than the instance's address, and over mTLS the
/// instance must prove to be that service: a certificate naming another is refused before the
/// request is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer(pub String);
pub use transport::{Transport, TransportError};

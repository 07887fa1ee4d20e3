//! Header names that carry meaning between Bazaar processes.
//!
//! The gateway verifies the caller's access token and passes the verified identity on in the
//! `x-bazaar-user-*` headers. Clients cannot forge them: the gateway strips any incoming copy
//! before it adds its own, and services are only reachable through the gateway or each other.

/// Correlates every log line and internal call that serves one external request.
pub const REQUEST_ID: &str = "x-request-id";
/// The verified user id (UUID) of the caller, set by the gateway.
pub const USER_ID: &str = "x-bazaar-user-id";
/// The verified roles of the caller, comma-separated, set by the gateway.
pub const USER_ROLES: &str = "x-bazaar-user-roles";
/// Every header whose name starts with this prefix is reserved for the gateway.
pub const IDENTITY_PREFIX: &str = "x-bazaar-user-";
/// How long the caller waits for the answer, in milliseconds. The gateway sets it on every
/// request it forwards, from the route's deadline, replacing any value a client sent; a
/// request that may wait on purpose (a long poll) answers before it runs out.
pub const TIMEOUT_MS: &str = "x-bazaar-timeout-ms";
/// Names the key of a command that is safe to repeat (see DESIGN.md, "Checkout saga").
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Media type of RFC 9457 error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

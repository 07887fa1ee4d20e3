//! Integration tests of the gateway: the gateway on port 0 with static discovery, in front of a
//! real users service, small axum upstreams that echo what they receive, and wiremock servers
//! that misbehave on purpose.

mod auth;
mod helpers;
mod resilience;
mod routing;
mod tls;

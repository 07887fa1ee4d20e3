//! What an access token says. `users` issues these claims as an EdDSA-signed JWT; the gateway
//! verifies them and passes the caller on in the `x-bazaar-user-*` headers.

use serde::{Deserialize, Serialize};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer (`users.issuer`).
    pub iss: String,
    /// Audience (`users.audience`).
    pub aud: String,
    /// The user's id (UUID).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Unique id of this token.
    pub jti: String,
    /// The user's roles (`customer`, `admin`).
    pub roles: Vec<String>,
}

/// Role of every signed-up user.
pub const ROLE_CUSTOMER: &str = "customer";
/// Role of shop administrators.
pub const ROLE_ADMIN: &str = "admin";

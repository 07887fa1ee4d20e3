//! Access tokens (EdDSA-signed JWTs) and refresh tokens (random, stored hashed).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::auth::AccessClaims;
use jsonwebtoken::{Algorithm, Header};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::keys::Key;

/// Prefix of refresh tokens, so a leaked one is recognizable (secret scanners match on it).
pub const REFRESH_PREFIX: &str = "bzr_rt_";

/// Signs an access token for `user_id` with `roles`, valid for `ttl` from `now` (Unix seconds).
pub fn sign_access_token(
    key: &Key,
    issuer: &str,
    audience: &str,
    user_id: Uuid,
    roles: &[String],
    now: u64,
    ttl: Duration,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = AccessClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        sub: user_id.to_string(),
        exp: now + ttl.as_secs(),
        iat: now,
        jti: Uuid::now_v7().to_string(),
        roles: roles.to_vec(),
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, &claims, &key.encoding)
}

/// A fresh refresh token: 256 random bits.
pub fn new_refresh_token() -> String {
    format!(
        "{REFRESH_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

/// What is stored of a refresh token: its SHA-256, hex. The token has 256 bits of entropy, so
/// a fast hash is enough (no salt or stretching needed, unlike passwords).
pub fn hash_refresh_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;
    use jsonwebtoken::{DecodingKey, Validation};

    #[test]
    fn access_tokens_verify_with_the_published_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = KeyRing::open(
            dir.path().to_path_buf(),
            Duration::from_secs(86_400),
            Duration::from_secs(960),
        )
        .expect("opens");
        let key = ring.current().expect("a key");
        let user = Uuid::now_v7();
        let now = jsonwebtoken::get_current_timestamp();
        let token = sign_access_token(
            &key,
            "bazaar-users",
            "bazaar",
            user,
            &["customer".into()],
            now,
            Duration::from_secs(900),
        )
        .expect("signs");

        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(header.alg, Algorithm::EdDSA);
        let jwk = &ring.jwks()[0];
        let x = serde_json::to_value(jwk).expect("json")["x"]
            .as_str()
            .expect("x")
            .to_owned();
        let decoding = DecodingKey::from_ed_components(&x).expect("key");
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["bazaar-users"]);
        validation.set_audience(&["bazaar"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(&token, &decoding, &validation)
            .expect("verifies")
            .claims;
        assert_eq!(claims.sub, user.to_string());
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.roles, ["customer"]);
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert!(a.starts_with(REFRESH_PREFIX) && a.len() == REFRESH_PREFIX.len() + 43);
        assert_eq!(hash_refresh_token(&a).len(), 64);
        assert_eq!(hash_refresh_token(&a), hash_refresh_token(&a));
        assert_ne!(hash_refresh_token(&a), hash_refresh_token(&b));
    }
}

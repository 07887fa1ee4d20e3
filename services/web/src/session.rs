//! The shopper's session, in cookies: the access and refresh tokens once signed in, and the
//! anonymous cart's id before. Every cookie is `HttpOnly` (no script reads a token) and
//! `SameSite=Lax` (another site's form cannot post with them), and `Secure` when the shopper
//! came over HTTPS.
//!
//! An access token close to its expiry is refreshed before the page uses it, and the new
//! pair goes back in the response's cookies.

use axum::extract::FromRequestParts;
use base64::Engine;
use contracts::auth::{AccessClaims, ROLE_ADMIN};
use http::header::{COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

use crate::shop::{Caller, Shop, Tokens};

/// The access token's cookie.
pub const ACCESS: &str = "bazaar_access";
/// The refresh token's cookie.
pub const REFRESH: &str = "bazaar_refresh";
/// The anonymous cart's cookie.
pub const CART: &str = "bazaar_cart";

/// How long before its expiry an access token is refreshed.
const REFRESH_MARGIN_SECONDS: i64 = 30;
/// How long the refresh token's cookie lives (the token itself may expire sooner).
const REFRESH_COOKIE_MAX_AGE: u64 = 30 * 24 * 3600;

/// The shopper's cookies, read from a request.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The access token.
    pub access: Option<String>,
    /// The refresh token.
    pub refresh: Option<String>,
    /// The anonymous cart.
    pub cart: Option<String>,
    /// Whether the shopper came over HTTPS (cookies are then `Secure`).
    pub secure: bool,
}

impl Session {
    /// The shopper as API calls carry them.
    pub fn caller(&self) -> Caller {
        Caller {
            token: self.access.clone(),
            cart: self.cart.clone(),
        }
    }

    /// Whether someone is signed in (with a token the page may still refresh).
    pub fn signed_in(&self) -> bool {
        self.access.is_some() || self.refresh.is_some()
    }

    /// What the access token says, read without checking its signature: the gateway checks
    /// it on every call, and the page uses it only to decide what to show.
    pub fn claims(&self) -> Option<AccessClaims> {
        let payload = self.access.as_deref()?.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Whether the signed-in shopper is an administrator.
    pub fn is_admin(&self) -> bool {
        self.claims()
            .is_some_and(|claims| claims.roles.iter().any(|r| r == ROLE_ADMIN))
    }

    /// Refreshes the access token if it expires within the margin (or is gone while a refresh
    /// token is left); returns the cookies to set when it did. A refresh the API refuses signs
    /// the shopper out.
    pub async fn refresh_if_due(&mut self, shop: &Shop, now: i64) -> Vec<HeaderValue> {
        let due = match self.claims() {
            Some(claims) => {
                i64::try_from(claims.exp).unwrap_or(i64::MAX) - REFRESH_MARGIN_SECONDS <= now
            }
            None => self.refresh.is_some(),
        };
        let Some(refresh) = self.refresh.clone().filter(|_| due) else {
            return Vec::new();
        };
        let refreshed: Result<Tokens, _> = shop
            .post(
                "/api/auth/refresh",
                &Caller::default(),
                &json!({ "refresh_token": refresh }),
            )
            .await;
        match refreshed {
            Ok(tokens) => self.sign_in(tokens),
            Err(error) if error.status().is_some() => {
                // Spent, revoked or expired: signed out.
                self.access = None;
                self.refresh = None;
                self.sign_out_cookies()
            }
            // The API is down: keep the cookies, and let the page say it cannot answer.
            Err(_) => Vec::new(),
        }
    }

    /// Holds `tokens`; the cookies that keep them.
    pub fn sign_in(&mut self, tokens: Tokens) -> Vec<HeaderValue> {
        let max_age = self
            .claims_of(&tokens.access_token)
            .and_then(|claims| i64::try_from(claims.exp).ok())
            .and_then(|exp| u64::try_from(exp - now_seconds()).ok())
            .unwrap_or(900);
        let cookies = vec![
            self.cookie(ACCESS, &tokens.access_token, max_age),
            self.cookie(REFRESH, &tokens.refresh_token, REFRESH_COOKIE_MAX_AGE),
        ];
        self.access = Some(tokens.access_token);
        self.refresh = Some(tokens.refresh_token);
        cookies.into_iter().flatten().collect()
    }

    fn claims_of(&self, token: &str) -> Option<AccessClaims> {
        Session {
            access: Some(token.to_owned()),
            ..Session::default()
        }
        .claims()
    }

    /// The cookies that forget the tokens.
    pub fn sign_out_cookies(&self) -> Vec<HeaderValue> {
        [ACCESS, REFRESH]
            .into_iter()
            .filter_map(|name| self.cookie(name, "", 0))
            .collect()
    }

    /// The cookie that keeps the anonymous cart `id` (a year), or forgets it (`None`).
    pub fn cart_cookie(&self, id: Option<&str>) -> Option<HeaderValue> {
        match id {
            Some(id) => self.cookie(CART, id, 365 * 24 * 3600),
            None => self.cookie(CART, "", 0),
        }
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .ok()
    }
}

/// The seconds since the epoch.
pub fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Adds `cookies` to `headers` as `Set-Cookie`.
pub fn set_cookies(headers: &mut HeaderMap, cookies: Vec<HeaderValue>) {
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
}

/// The value of cookie `name` in `headers`.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let secure = headers
            .get("x-forwarded-proto")
            .is_some_and(|proto| proto.as_bytes() == b"https")
            || parts.extensions.get::<chassis::tls::Secure>().is_some();
        Ok(Self {
            access: cookie_value(headers, ACCESS),
            refresh: cookie_value(headers, REFRESH),
            cart: cookie_value(headers, CART),
            secure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token with `sub`, `exp` and `roles` (and the other claims any token has).
    fn token(claims: &serde_json::Value) -> String {
        let mut full = json!({"iss": "bazaar", "aud": "bazaar", "iat": 1, "jti": "j", "roles": []});
        if let (Some(full), Some(given)) = (full.as_object_mut(), claims.as_object()) {
            full.extend(given.clone());
        }
        let claims = &full;
        let encode = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        format!(
            "{}.{}.signature",
            encode(br#"{"alg":"EdDSA"}"#),
            encode(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("other=1; bazaar_cart=abc; bazaar_access="),
        );
        assert_eq!(cookie_value(&headers, CART).as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers, ACCESS), None, "empty is absent");
        assert_eq!(cookie_value(&headers, REFRESH), None);
    }

    #[test]
    fn claims_come_from_the_token_and_name_an_admin() {
        let session = Session {
            access: Some(token(
                &json!({"sub": "u1", "exp": 100, "roles": ["customer", "admin"]}),
            )),
            ..Session::default()
        };
        let claims = session.claims().expect("claims");
        assert_eq!((claims.sub.as_str(), claims.exp), ("u1", 100));
        assert!(session.is_admin());
        let garbage = Session {
            access: Some("not-a-jwt".into()),
            ..Session::default()
        };
        assert!(garbage.claims().is_none() && !garbage.is_admin());
    }

    #[test]
    fn cookies_are_http_only_lax_and_secure_over_https() {
        let mut session = Session {
            secure: true,
            ..Session::default()
        };
        let access = token(&json!({"sub": "u1", "exp": now_seconds() + 600}));
        let cookies = session.sign_in(Tokens {
            access_token: access.clone(),
            refresh_token: "r1".into(),
        });
        let cookies: Vec<&str> = cookies.iter().filter_map(|c| c.to_str().ok()).collect();
        assert_eq!(cookies.len(), 2);
        assert!(cookies[0].starts_with(&format!("{ACCESS}={access}; Path=/; Max-Age=")));
        for cookie in &cookies {
            assert!(
                cookie.ends_with("HttpOnly; SameSite=Lax; Secure"),
                "{cookie}"
            );
        }
        assert_eq!(session.refresh.as_deref(), Some("r1"));
        let gone = session.sign_out_cookies();
        assert!(
            gone.iter()
                .all(|c| c.to_str().is_ok_and(|c| c.contains("Max-Age=0")))
        );
    }
}

//! Access token verification at the edge.
//!
//! Tokens are EdDSA JWTs signed by `users`. The algorithm is pinned (a token claiming any other,
//! `none` or HS256 keyed with a public key, is refused before a key is looked up), and `exp`,
//! `nbf`, `iss` and `aud` are checked. Public keys
//! come from the users JWKS, fetched through discovery and cached; an unknown `kid` triggers a
//! refetch (at most one at a time, and not more often than [`REFETCH_INTERVAL`]), which is how
//! a rotated key is picked up. Verified tokens are cached until they expire, since a signature
//! check costs tens of microseconds and a client sends the same token many times.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use chassis::client::ServiceClient;
use contracts::auth::AccessClaims;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Least time between a successful JWKS fetch and the next one triggered by an unknown key id.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// Most verified tokens kept.
const CACHE_CAPACITY: usize = 10_000;
/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub user_id: String,
    /// Roles.
    pub roles: Vec<String>,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not a JWT, wrong algorithm, bad signature, wrong issuer or audience, unknown key.
    #[error("the access token is invalid: {0}")]
    Invalid(String),
    /// A valid token whose time is up.
    #[error("the access token has expired")]
    Expired,
    /// The keys could not be fetched, so nothing can be verified right now.
    #[error("token keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl AuthError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Expired => "expired",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }
}

/// What a token must be, apart from whose key signed it: pure checks, no I/O (and so what the
/// token fuzz target drives).
#[derive(Debug, Clone)]
pub struct Rules {
    validation: Validation,
}

impl Rules {
    /// EdDSA only; `exp`, `nbf`, `iss` = `issuer` and `aud` = `audience` checked.
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // A token that says it is not valid yet is refused (users never sets `nbf`).
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        Self { validation }
    }

    /// The id of the key `token` claims to be signed with, once its header is read and its
    /// algorithm is EdDSA: any other (`none`, HS256…) is refused before a key is looked up.
    pub fn key_id(&self, token: &str) -> Result<String, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        header
            .kid
            .ok_or_else(|| AuthError::Invalid("no key id".into()))
    }

    /// The caller `token` names, and its expiry, if `key` signed it and its claims hold.
    pub fn check(&self, token: &str, key: &DecodingKey) -> Result<(Identity, u64), AuthError> {
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })?
            .claims;
        let identity = Identity {
            user_id: claims.sub,
            roles: claims.roles,
        };
        Ok((identity, claims.exp))
    }
}

/// Verifies access tokens.
#[derive(Debug)]
pub struct Verifier {
    client: ServiceClient,
    issuer_service: String,
    rules: Rules,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    fetching: tokio::sync::Mutex<()>,
    /// Verified tokens by their signature (short, and as unique as the token), with the whole
    /// token to compare, the identity and the expiry.
    verified: Mutex<HashMap<String, (String, Identity, u64)>>,
}

/// The signature segment of a compact JWS (what follows the last `.`): hashing it rather than
/// the whole token keeps the cache lookup cheap on every request.
fn signature(token: &str) -> &str {
    token
        .rsplit_once('.')
        .map_or(token, |(_, signature)| signature)
}

impl Verifier {
    /// A verifier fetching keys from `issuer_service` through `client`.
    pub fn new(client: ServiceClient, issuer_service: &str, issuer: &str, audience: &str) -> Self {
        Self {
            client,
            issuer_service: issuer_service.to_owned(),
            rules: Rules::new(issuer, audience),
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies `token`.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some((whole, identity, exp)) = lock(&self.verified).get(signature(token))
            && whole == token
            && *exp + LEEWAY_SECS > now
        {
            return Ok(identity.clone());
        }
        let kid = self.rules.key_id(token)?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                // Boxed: a fetch is a whole client call, and rare (cached tokens skip it).
                Box::pin(self.refetch()).await?;
                self.key(&kid)
                    .ok_or_else(|| AuthError::Invalid(format!("unknown key id {kid:?}")))?
            }
        };
        let (identity, exp) = self.rules.check(token, &key)?;
        self.remember(token, &identity, exp, now);
        Ok(identity)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    fn remember(&self, token: &str, identity: &Identity, exp: u64, now: u64) {
        let mut verified = lock(&self.verified);
        if verified.len() >= CACHE_CAPACITY {
            verified.retain(|_, (_, _, exp)| *exp > now);
            if verified.len() >= CACHE_CAPACITY {
                verified.clear();
            }
        }
        verified.insert(
            signature(token).to_owned(),
            (token.to_owned(), identity.clone(), exp),
        );
    }

    /// Fetches the JWKS, unless another task fetched it successfully moments ago. A failed
    /// fetch does not hold back the next one: the issuer may just have started.
    pub async fn refetch(&self) -> Result<(), AuthError> {
        let _single = self.fetching.lock().await;
        let recent = lock(&self.last_fetch).is_some_and(|at| at.elapsed() < REFETCH_INTERVAL);
        if recent {
            return Ok(());
        }
        self.fetch().await?;
        *lock(&self.last_fetch) = Some(Instant::now());
        Ok(())
    }

    async fn fetch(&self) -> Result<(), AuthError> {
        let set: JwkSet = self
            .client
            .get(&self.issuer_service, "/.well-known/jwks.json")
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(|e| unavailable(&e))?
            .json()
            .map_err(|e| unavailable(&e))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping an unusable JWK");
                continue;
            };
            keys.insert(kid, key);
        }
        tracing::info!(keys = keys.len(), "fetched token keys");
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(())
    }
}

fn unavailable(error: &(dyn std::error::Error + 'static)) -> AuthError {
    AuthError::KeysUnavailable(chassis::error::ErrorChain(error).to_string())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

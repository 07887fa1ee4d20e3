//! Password hashing with Argon2id (RFC 9106 defaults of the `argon2` crate: 19 MiB, 2 passes),
//! on the blocking pool so a burst of logins never stalls the request threads.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Why hashing failed (never because of the password's content).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Argon2 refused its inputs.
    #[error("hashing the password: {0}")]
    Hash(String),
    /// The blocking task died.
    #[error("the hashing task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// Hashes `password` into a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| HashError::Hash(e.to_string()))
    })
    .await?
}

/// Whether `password` matches `phc`. A malformed stored hash never matches.
pub async fn verify(password: String, phc: String) -> Result<bool, HashError> {
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery".into()).await.expect("hashes");
        let b = hash("correct horse battery".into()).await.expect("hashes");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(
            verify("correct horse battery".into(), a.clone())
                .await
                .expect("verifies")
        );
        assert!(
            !verify("wrong horse battery".into(), a)
                .await
                .expect("verifies")
        );
        assert!(
            !verify("anything".into(), "not a phc string".into())
                .await
                .expect("verifies")
        );
    }
}

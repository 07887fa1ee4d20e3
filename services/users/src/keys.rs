//! The token signing keys: Ed25519 key pairs kept as PKCS#8 PEM files under the data directory
//! (`keys/users/<kid>.pem`), so tokens stay valid across restarts and every replica of `users`
//! signs with, and publishes, the same keys.
//!
//! The key id encodes the creation time (`20261125T154300Z-1a2b`), so the newest key is the
//! last by name. The newest key signs; older ones stay in the JWKS until every token they signed
//! has expired (`retention` after their successor appeared), then their files are deleted.
//! A key older than `rotation` gets a successor. Replicas reload the folder periodically and
//! before answering the JWKS, so a key made by one replica is published by all; they change the
//! folder only while holding `keys/.lock`, so two replicas starting together make one key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime, Utc};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::EncodingKey;
use serde::Serialize;

const KID_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Why the keys could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file is not a PKCS#8 Ed25519 key.
    #[error("{path} is not an Ed25519 PKCS#8 PEM key")]
    Malformed {
        /// The file.
        path: String,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.display().to_string();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}

/// One signing key.
pub struct Key {
    /// Key id, in every token's header.
    pub kid: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// For signing.
    pub encoding: EncodingKey,
    /// The public key, base64url, as the JWK `x` member.
    pub public_x: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// A published key, as `/.well-known/jwks.json` lists it (RFC 8037).
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    kty: &'static str,
    crv: &'static str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    kid: String,
    x: String,
}

/// The set of signing keys.
#[derive(Debug)]
pub struct KeyRing {
    dir: PathBuf,
    rotation: Duration,
    retention: Duration,
    keys: RwLock<Arc<Vec<Arc<Key>>>>,
    /// When the folder was last read, so a burst of JWKS requests reads it once.
    loaded_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl KeyRing {
    /// Opens the key folder, making a first key (and the folder) if there is none.
    pub fn open(dir: PathBuf, rotation: Duration, retention: Duration) -> Result<Self, KeyError> {
        fs::create_dir_all(&dir).map_err(io_error("creating", &dir))?;
        let ring = Self {
            dir,
            rotation,
            retention,
            keys: RwLock::new(Arc::new(Vec::new())),
            loaded_at: std::sync::Mutex::new(None),
        };
        ring.maintain(Utc::now())?;
        Ok(ring)
    }

    /// Re-reads the folder, rotates if the newest key is too old, and deletes retired keys whose
    /// tokens have all expired.
    pub fn maintain(&self, now: DateTime<Utc>) -> Result<(), KeyError> {
        // Replicas share the folder: one at a time, so two starting together make one key.
        let lock_path = self.dir.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("opening", &lock_path))?;
        lock.lock().map_err(io_error("locking", &lock_path))?;
        let mut keys = self.read_dir()?;
        let newest_age = keys
            .last()
            .map(|k| (now - k.created_at).to_std().unwrap_or_default());
        if newest_age.is_none_or(|age| age >= self.rotation) {
            let key = self.generate(now)?;
            tracing::info!(kid = %key.kid, "generated a new signing key");
            keys.push(Arc::new(key));
        }
        // Key i can go once key i+1 has existed for longer than the retention.
        let mut keep = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let successor_age = keys
                .get(i + 1)
                .map(|next| (now - next.created_at).to_std().unwrap_or_default());
            if successor_age.is_some_and(|age| age > self.retention) {
                let path = self.path_of(&key.kid);
                match fs::remove_file(&path) {
                    Ok(()) => tracing::info!(kid = %key.kid, "deleted a retired signing key"),
                    // Another replica got there first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error("deleting", &path)(e)),
                }
            } else {
                keep.push(Arc::clone(key));
            }
        }
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keep);
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
        Ok(())
    }

    /// [`Self::maintain`], unless the folder was read less than `max_age` ago.
    pub fn maintain_if_older(&self, max_age: Duration, now: DateTime<Utc>) -> Result<(), KeyError> {
        let fresh = self
            .loaded_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < max_age);
        if fresh { Ok(()) } else { self.maintain(now) }
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> Option<Arc<Key>> {
        self.snapshot().last().cloned()
    }

    /// Every published key.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.snapshot()
            .iter()
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                use_: "sig",
                kid: k.kid.clone(),
                x: k.public_x.clone(),
            })
            .collect()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Key>>> {
        Arc::clone(
            &self
                .keys
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn path_of(&self, kid: &str) -> PathBuf {
        self.dir.join(format!("{kid}.pem"))
    }

    /// Loads every `*.pem` in the folder, oldest first.
    fn read_dir(&self) -> Result<Vec<Arc<Key>>, KeyError> {
        let mut keys = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error("reading", &self.dir))? {
            let path = entry.map_err(io_error("reading", &self.dir))?.path();
            let Some(kid) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pem"))
            else {
                continue;
            };
            let Some(created_at) = created_at(kid) else {
                continue;
            };
            let pem = fs::read_to_string(&path).map_err(io_error("reading", &path))?;
            let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Malformed {
                path: path.display().to_string(),
            })?;
            keys.push(Arc::new(key_from(
                kid.to_owned(),
                created_at,
                &signing,
                &path,
            )?));
        }
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(keys)
    }

    /// Makes a key and writes it atomically (temporary file, then rename), readable by the owner.
    fn generate(&self, now: DateTime<Utc>) -> Result<Key, KeyError> {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let kid = format!(
            "{}-{:04x}",
            now.format(KID_TIME_FORMAT),
            rand::random::<u16>()
        );
        let path = self.path_of(&kid);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Malformed {
                path: path.display().to_string(),
            })?;
        let temporary = self.dir.join(format!(".{kid}.pem.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error("creating", &temporary))?;
        file.write_all(pem.as_bytes())
            .map_err(io_error("writing", &temporary))?;
        file.sync_all().map_err(io_error("writing", &temporary))?;
        fs::rename(&temporary, &path).map_err(io_error("renaming", &temporary))?;
        let created = created_at(&kid).unwrap_or(now);
        key_from(kid, created, &signing, &path)
    }
}

fn created_at(kid: &str) -> Option<DateTime<Utc>> {
    let stamp = kid.split('-').next()?;
    NaiveDateTime::parse_from_str(stamp, KID_TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

fn key_from(
    kid: String,
    created_at: DateTime<Utc>,
    signing: &SigningKey,
    path: &Path,
) -> Result<Key, KeyError> {
    let der = signing.to_pkcs8_der().map_err(|_| KeyError::Malformed {
        path: path.display().to_string(),
    })?;
    Ok(Key {
        kid,
        created_at,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        public_x: URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn first_open_makes_a_key_and_reopening_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ring = KeyRing::open(dir.path().join("keys"), 30 * DAY, Duration::from_secs(960))
            .expect("opens");
        let first = ring.current().expect("a key");
        let again = KeyRing::open(dir.path().join("keys"), 30 * DAY, Duration::from_secs(960))
            .expect("opens");
        assert_eq!(
            again.current().map(|k| k.kid.clone()),
            Some(first.kid.clone())
        );
        assert_eq!(ring.jwks().len(), 1);
        let mode = fs::metadata(dir.path().join("keys").join(format!("{}.pem", first.kid)))
            .expect("file")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }

    #[test]
    fn rotation_keeps_the_old_key_published_until_its_tokens_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let retention = Duration::from_secs(960);
        let ring = KeyRing::open(dir.path().to_path_buf(), 30 * DAY, retention).expect("opens");
        let old = ring.current().expect("a key");

        let later = Utc::now() + chrono::Duration::days(31);
        ring.maintain(later).expect("rotates");
        let new = ring.current().expect("a key");
        assert_ne!(new.kid, old.kid);
        let kids: Vec<String> = ring.jwks().into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [old.kid.clone(), new.kid.clone()]);

        // Within the retention both stay; after it, the old one is gone from disk and JWKS.
        ring.maintain(later + chrono::Duration::seconds(900))
            .expect("keeps");
        assert_eq!(ring.jwks().len(), 2);
        ring.maintain(later + chrono::Duration::seconds(1000))
            .expect("prunes");
        let kids: Vec<String> = ring.jwks().into_iter().map(|k| k.kid).collect();
        assert_eq!(kids, [new.kid.as_str()]);
        assert!(!dir.path().join(format!("{}.pem", old.kid)).exists());
    }

    #[test]
    fn a_malformed_key_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("20260101T000000Z-0000.pem"), "garbage").expect("write");
        let error = KeyRing::open(dir.path().to_path_buf(), 30 * DAY, Duration::from_secs(960))
            .expect_err("malformed");
        assert!(
            error
                .to_string()
                .contains("is not an Ed25519 PKCS#8 PEM key"),
            "{error}"
        );
    }
}

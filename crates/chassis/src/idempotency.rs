//! Idempotency keys: how a command says "this is the same request as before".
//!
//! Services that take one (reservations, orders, charges, shipments) read it with
//! [`required_key`] or [`optional_key`], store it with a hash of the request, and answer a
//! repeat with the stored result, or with [`key_reused`] when the same key comes with a
//! different request. [`fingerprint`] makes that hash.

use http::{HeaderMap, StatusCode};

use contracts::headers::IDEMPOTENCY_KEY;

use crate::error::HttpError;

/// SHA-256 of `chunks` one after another, as lowercase hex: what a service stores beside an
/// idempotency key to tell a repeat from a different request under the same key. The caller
/// decides what identifies its request (and separates fields where they could run together).
pub fn fingerprint<I, T>(chunks: I) -> String
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    for chunk in chunks {
        hasher.update(chunk.as_ref());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

fn well_formed(headers: &HeaderMap) -> Option<Result<String, ()>> {
    let value = headers.get(IDEMPOTENCY_KEY)?;
    Some(
        value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
            .map(str::to_owned)
            .ok_or(()),
    )
}

/// The request's `Idempotency-Key`, which the route requires: 400 if absent or malformed.
pub fn required_key(headers: &HeaderMap) -> Result<String, HttpError> {
    match well_formed(headers) {
        Some(Ok(key)) => Ok(key),
        _ => Err(HttpError::bad_request(format!(
            "an Idempotency-Key header of 1 to {MAX_KEY_LEN} characters is required"
        ))),
    }
}

/// The request's `Idempotency-Key`, if it sent one: 400 if malformed.
pub fn optional_key(headers: &HeaderMap) -> Result<Option<String>, HttpError> {
    match well_formed(headers) {
        None => Ok(None),
        Some(Ok(key)) => Ok(Some(key)),
        Some(Err(())) => Err(HttpError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        ))),
    }
}

/// 422 for a key that was already used for a different `what` (request, order, shipment).
pub fn key_reused(what: &str) -> HttpError {
    HttpError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-key-reused",
        "Idempotency key reused",
    )
    .with_detail(format!(
        "this Idempotency-Key was used for a different {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(key) = key {
            headers.insert(IDEMPOTENCY_KEY, key.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn keys_are_trimmed_bounded_and_required_where_asked() {
        assert_eq!(
            required_key(&headers(Some(" saga-1:charge "))).expect("valid"),
            "saga-1:charge"
        );
        assert_eq!(
            required_key(&headers(None)).expect_err("missing").status(),
            StatusCode::BAD_REQUEST
        );
        assert!(required_key(&headers(Some(&"k".repeat(MAX_KEY_LEN + 1)))).is_err());
        assert_eq!(optional_key(&headers(None)).expect("fine"), None);
        assert!(optional_key(&headers(Some("  "))).is_err());
        assert_eq!(
            key_reused("order").to_problem().detail.as_deref(),
            Some("this Idempotency-Key was used for a different order")
        );
    }

    #[test]
    fn fingerprints_are_the_sha256_of_the_chunks_run_together() {
        // The digest of "abc" (FIPS 180-2): stored hashes stay valid across this helper.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(fingerprint(["abc"]), abc);
        assert_eq!(fingerprint(["a", "", "bc"]), abc);
        assert_ne!(fingerprint(["ab\0c"]), abc);
    }
}

//! An access token as the gateway checks it, whatever a client sends as a bearer token: reading
//! the header and checking the claims never panic, and nothing but a token signed by the key
//! passes.
#![no_main]

use std::sync::LazyLock;

use gateway::auth::Rules;
use jsonwebtoken::DecodingKey;
use libfuzzer_sys::fuzz_target;

/// The public key of RFC 8037's example (appendix A.2): nobody fuzzing holds its private key's
/// signatures for these claims, so no input may pass.
static KEY: LazyLock<DecodingKey> = LazyLock::new(|| {
    DecodingKey::from_ed_components("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
        .expect("a valid Ed25519 public key")
});

static RULES: LazyLock<Rules> = LazyLock::new(|| Rules::new("bazaar-users", "bazaar"));

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    if RULES.key_id(token).is_err() {
        return;
    }
    assert!(
        RULES.check(token, &KEY).is_err(),
        "a token no one signed passed: {token}"
    );
});

//! The rules of the identity context, with no I/O: what an email, a password and a name must be.

use std::fmt;

/// A syntactically valid email address, trimmed; compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Longest address (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Parses an address: one `@`, a local part of 1–64 characters without spaces, and a domain
    /// of dot-separated labels of letters, digits and inner hyphens, with at least one dot.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let email = raw.trim();
        if email.is_empty() {
            return Err("is required".into());
        }
        if email.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        let invalid = || format!("{email:?} is not an email address");
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let domain_ok = domain.contains('.') && domain.split('.').all(label_ok);
        if local_ok && domain_ok {
            Ok(Self(email.to_owned()))
        } else {
            Err(invalid())
        }
    }

    /// The address as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form uniqueness is checked on.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy. Its `Debug` hides it.
#[derive(Clone)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Passwords too common to allow, whatever their length (from public breach corpora).
const COMMON: [&str; 12] = [
    "password123",
    "password1234",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "qwerty12345",
    "iloveyou123",
    "letmein1234",
    "welcome1234",
    "administrator",
    "passw0rd123",
    "0123456789",
];

impl Password {
    /// Shortest password, in characters (NIST SP 800-63B recommends length over composition).
    pub const MIN_CHARS: usize = 10;
    /// Longest password, in characters: bounds the hashing work one request can ask for.
    pub const MAX_CHARS: usize = 128;

    /// Checks the policy: 10–128 characters, not one repeated character, not a well-known
    /// password, and not containing the account's email name.
    pub fn parse(raw: &str, email: Option<&Email>) -> Result<Self, String> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if chars > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        let mut distinct = raw.chars().collect::<Vec<_>>();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 3 {
            return Err("must not be a repetition of one or two characters".into());
        }
        let lower = raw.to_lowercase();
        if COMMON.contains(&lower.as_str()) {
            return Err("is too common; choose another".into());
        }
        let local = email.and_then(|e| e.normalized().split('@').next().map(str::to_owned));
        if local.is_some_and(|local| local.len() >= 4 && lower.contains(&local)) {
            return Err("must not contain your email name".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–100 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Longest name, in characters.
    pub const MAX_CHARS: usize = 100;

    /// Parses a name.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("is required".into());
        }
        if name.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if name.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_normalized() {
        let email = Email::parse("  Ada.Lovelace+shop@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "Ada.Lovelace+shop@Example.COM");
        assert_eq!(email.normalized(), "ada.lovelace+shop@example.com");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a@exa mple.com",
            "a@-x.com",
            "a..b@example.com",
            "a@@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn password_policy() {
        let email = Email::parse("grace@example.com").expect("valid");
        assert!(Password::parse("correct horse battery", Some(&email)).is_ok());
        assert_eq!(
            Password::parse("short", None).expect_err("short"),
            "must be at least 10 characters"
        );
        assert!(Password::parse(&"x".repeat(129), None).is_err());
        assert!(Password::parse("abababababab", None).is_err());
        assert!(Password::parse("Password123", None).is_err());
        assert!(Password::parse("my-grace-password", Some(&email)).is_err());
        assert_eq!(
            format!(
                "{:?}",
                Password::parse("correct horse battery", None).expect("valid")
            ),
            "Password(***)"
        );
    }

    #[test]
    fn names() {
        assert_eq!(
            DisplayName::parse("  Ada  ").expect("valid").as_str(),
            "Ada"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("bad\u{0007}name").is_err());
        assert!(DisplayName::parse(&"é".repeat(101)).is_err());
    }
}

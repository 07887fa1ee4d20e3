//! Stock-keeping units: the identifier of a product that every context shares (catalog sells
//! them, orders and carts refer to them), so its format is part of the published language.

use std::fmt;

/// A sku: 3 to 40 upper-case letters, digits and inner hyphens (`TEE-ORG-M`). Input is
/// upper-cased, so skus compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sku(String);

impl Sku {
    /// Parses a sku.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let sku = raw.trim().to_ascii_uppercase();
        let ok = (3..=40).contains(&sku.len())
            && sku
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
            && !sku.starts_with('-')
            && !sku.ends_with('-');
        if ok {
            Ok(Self(sku))
        } else {
            Err(format!(
                "{raw:?} is not a sku (3 to 40 letters, digits and inner hyphens)"
            ))
        }
    }

    /// The sku.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_upper_cased_and_checked() {
        assert_eq!(
            Sku::parse(" tee-org-m ").map(|s| s.to_string()),
            Ok("TEE-ORG-M".to_owned())
        );
        for bad in ["", "ab", "-ABC", "ABC-", "A B C", "ÄBC", &"X".repeat(41)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }
}

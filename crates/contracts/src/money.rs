//! Money on the wire: integer minor units and an ISO 4217 currency code, never a float.
//! `{"amount_minor": 1999, "currency": "USD"}` is 19.99 US dollars.

use serde::{Deserialize, Serialize};

/// An amount of money.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Money {
    /// Amount in the currency's minor unit (cents for USD).
    pub amount_minor: i64,
    /// ISO 4217 code, three upper-case letters.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
}

impl Money {
    /// Whether `code` looks like an ISO 4217 code (three ASCII upper-case letters).
    pub fn is_currency_code(code: &str) -> bool {
        code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_codes() {
        assert!(Money::is_currency_code("USD"));
        assert!(!Money::is_currency_code("usd"));
        assert!(!Money::is_currency_code("US"));
        assert!(!Money::is_currency_code("EURO"));
    }
}

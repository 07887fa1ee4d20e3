//! The ordering context's rules, with no I/O: what an order request must be, and how an order
//! is priced from the catalog's current prices (never from the client's).

use std::collections::BTreeSet;

use contracts::sku::Sku;

/// Most lines in one order.
pub const MAX_LINES: usize = 50;
/// Most units of one sku in one order.
pub const MAX_QUANTITY: i64 = 100;

/// Status of a new order, until the checkout saga confirms or cancels it.
pub const PENDING: &str = "PENDING";
/// Paid, stock committed, shipment created.
pub const CONFIRMED: &str = "CONFIRMED";
/// Given up, with a reason.
pub const CANCELLED: &str = "CANCELLED";

/// A requested line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// Upper-cased sku.
    pub sku: String,
    /// 1 to [`MAX_QUANTITY`].
    pub quantity: i64,
}

/// What the catalog says about a sku now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogPrice {
    /// Product name.
    pub name: String,
    /// Unit price, minor units.
    pub unit_price_minor: i64,
    /// Currency.
    pub currency: String,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    /// Sku.
    pub sku: String,
    /// Name at the time of the order.
    pub name: String,
    /// Unit price at the time of the order.
    pub unit_price_minor: i64,
    /// Units.
    pub quantity: i64,
    /// `unit_price_minor * quantity`.
    pub line_total_minor: i64,
}

/// A priced order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Priced {
    /// Lines, in request order.
    pub lines: Vec<PricedLine>,
    /// Sum of the line totals.
    pub total_minor: i64,
    /// The one currency of every line.
    pub currency: String,
}

/// Checks requested lines: 1 to [`MAX_LINES`], skus well-formed and unique, quantities 1 to
/// [`MAX_QUANTITY`]. Errors are `(field, message)`.
pub fn check_items(items: &[(String, i64)]) -> Result<Vec<Requested>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    if items.is_empty() || items.len() > MAX_LINES {
        errors.push((
            "items".to_owned(),
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut checked = Vec::new();
    for (i, (sku, quantity)) in items.iter().enumerate() {
        let sku = match Sku::parse(sku) {
            Ok(sku) => sku.as_str().to_owned(),
            Err(message) => {
                errors.push((format!("items[{i}].sku"), message));
                continue;
            }
        };
        if !seen.insert(sku.clone()) {
            errors.push((
                format!("items[{i}].sku"),
                format!("{sku} appears more than once"),
            ));
        } else if !(1..=MAX_QUANTITY).contains(quantity) {
            errors.push((
                format!("items[{i}].quantity"),
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
        } else {
            checked.push(Requested {
                sku,
                quantity: *quantity,
            });
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// Why an order cannot be priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PricingError {
    /// Line `index` names a sku the catalog does not sell.
    NotForSale { index: usize, sku: String },
    /// Lines are in different currencies.
    MixedCurrencies,
    /// The total does not fit in 64 bits.
    Overflow,
}

/// Prices `items` at the catalog's current prices, looked up by `price_of`.
pub fn price(
    items: &[Requested],
    price_of: impl Fn(&str) -> Option<CatalogPrice>,
) -> Result<Priced, PricingError> {
    let mut lines = Vec::with_capacity(items.len());
    let mut currency: Option<String> = None;
    let mut total: i64 = 0;
    for (index, item) in items.iter().enumerate() {
        let price = price_of(&item.sku).ok_or_else(|| PricingError::NotForSale {
            index,
            sku: item.sku.clone(),
        })?;
        match &currency {
            Some(c) if *c != price.currency => return Err(PricingError::MixedCurrencies),
            Some(_) => {}
            None => currency = Some(price.currency.clone()),
        }
        let line_total = price
            .unit_price_minor
            .checked_mul(item.quantity)
            .ok_or(PricingError::Overflow)?;
        total = total
            .checked_add(line_total)
            .ok_or(PricingError::Overflow)?;
        lines.push(PricedLine {
            sku: item.sku.clone(),
            name: price.name,
            unit_price_minor: price.unit_price_minor,
            quantity: item.quantity,
            line_total_minor: line_total,
        });
    }
    Ok(Priced {
        lines,
        total_minor: total,
        currency: currency.unwrap_or_else(|| "USD".to_owned()),
    })
}

/// Whether `token` looks like a payment-method token from the payments service (`pm_` and
/// 1 to 64 letters, digits or underscores). Whether it exists and is the customer's is the
/// payments service's call, at the charge.
pub fn is_payment_token(token: &str) -> bool {
    token.strip_prefix("pm_").is_some_and(|rest| {
        (1..=64).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// A shipping address, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Address {
    /// Recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// Flat, floor, company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper-case.
    pub country: String,
}

impl Address {
    /// Checks every field; errors are `(field, message)` with the `shipping_address.` prefix.
    pub fn check(mut self) -> Result<Self, Vec<(String, String)>> {
        self.line2 = self
            .line2
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty());
        let mut errors = Vec::new();
        let mut text = |field: &str, value: &mut String, max: usize| {
            *value = value.trim().to_owned();
            if value.is_empty()
                || value.chars().count() > max
                || value.chars().any(char::is_control)
            {
                errors.push((
                    format!("shipping_address.{field}"),
                    format!("must be 1 to {max} characters"),
                ));
            }
        };
        text("name", &mut self.name, 100);
        text("line1", &mut self.line1, 200);
        text("city", &mut self.city, 100);
        text("postal_code", &mut self.postal_code, 20);
        if let Some(line2) = &mut self.line2 {
            text("line2", line2, 200);
        }
        self.country = self.country.trim().to_ascii_uppercase();
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push((
                "shipping_address.country".to_owned(),
                "must be an ISO 3166-1 alpha-2 code such as GB".to_owned(),
            ));
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(sku: &str) -> Option<CatalogPrice> {
        match sku {
            "MUG-1" => Some(CatalogPrice {
                name: "Mug".into(),
                unit_price_minor: 1800,
                currency: "USD".into(),
            }),
            "TEE-1" => Some(CatalogPrice {
                name: "Tee".into(),
                unit_price_minor: 2400,
                currency: "USD".into(),
            }),
            "EURO-1" => Some(CatalogPrice {
                name: "Euro".into(),
                unit_price_minor: 100,
                currency: "EUR".into(),
            }),
            "GOLD-1" => Some(CatalogPrice {
                name: "Gold".into(),
                unit_price_minor: i64::MAX / 2,
                currency: "USD".into(),
            }),
            _ => None,
        }
    }

    #[test]
    fn totals_are_computed_from_catalog_prices() {
        let items = check_items(&[("mug-1".into(), 3), ("TEE-1".into(), 2)]).expect("valid");
        let priced = price(&items, catalog).expect("priced");
        assert_eq!(priced.lines[0].line_total_minor, 5400);
        assert_eq!(priced.lines[1].line_total_minor, 4800);
        assert_eq!(priced.total_minor, 10_200);
        assert_eq!(priced.currency, "USD");
        assert_eq!(priced.lines[0].name, "Mug");
    }

    #[test]
    fn pricing_refuses_unknown_skus_mixed_currencies_and_overflow() {
        let items = check_items(&[("MUG-1".into(), 1), ("NOPE-1".into(), 1)]).expect("valid");
        assert_eq!(
            price(&items, catalog),
            Err(PricingError::NotForSale {
                index: 1,
                sku: "NOPE-1".into()
            })
        );
        let items = check_items(&[("MUG-1".into(), 1), ("EURO-1".into(), 1)]).expect("valid");
        assert_eq!(price(&items, catalog), Err(PricingError::MixedCurrencies));
        let items = check_items(&[("GOLD-1".into(), 3)]).expect("valid");
        assert_eq!(price(&items, catalog), Err(PricingError::Overflow));
    }

    #[test]
    fn items_refuse_zero_negative_duplicate_and_too_many() {
        let errors = check_items(&[
            ("MUG-1".into(), 0),
            ("TEE-1".into(), -1),
            ("mug-1".into(), 1),
            ("?".into(), 1),
        ])
        .expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "items[0].quantity",
                "items[1].quantity",
                "items[2].sku",
                "items[3].sku"
            ]
        );
        assert!(check_items(&[]).is_err());
        assert!(check_items(&[("MUG-1".into(), MAX_QUANTITY + 1)]).is_err());
    }

    #[test]
    fn addresses_are_trimmed_and_checked() {
        let address = Address {
            name: " Ada ".into(),
            line1: "12 Analytical St".into(),
            line2: Some("  ".into()),
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "gb".into(),
        };
        let checked = address.clone().check().expect("valid");
        assert_eq!(
            (
                checked.name.as_str(),
                checked.country.as_str(),
                checked.line2
            ),
            ("Ada", "GB", None)
        );
        let bad = Address {
            country: "GBR".into(),
            city: String::new(),
            ..address
        };
        let fields: Vec<String> = bad
            .check()
            .expect_err("invalid")
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            ["shipping_address.city", "shipping_address.country"]
        );
    }
}

//! The catalog's rules, with no I/O: what a sku, a price, a product and a reservation request
//! must be, and how list pages are sorted and continued.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use contracts::money::Money;
pub use contracts::sku::Sku;
use serde::{Deserialize, Serialize};

/// Most lines one reservation may hold.
pub const MAX_LINES: usize = 100;
/// Most units of one sku per reservation line.
pub const MAX_LINE_QUANTITY: i64 = 1_000;
/// Most units one restock may add.
pub const MAX_RESTOCK: i64 = 1_000_000;
/// Highest price, in minor units.
pub const MAX_PRICE_MINOR: i64 = 100_000_000;
/// Default and largest page sizes.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u32 = 100;

/// A price: non-negative, at most [`MAX_PRICE_MINOR`], in a valid currency.
pub fn check_price(price: &Money) -> Result<(), String> {
    if !Money::is_currency_code(&price.currency) {
        return Err(format!(
            "currency {:?} is not an ISO 4217 code",
            price.currency
        ));
    }
    if !(0..=MAX_PRICE_MINOR).contains(&price.amount_minor) {
        return Err(format!(
            "amount_minor must be between 0 and {MAX_PRICE_MINOR}"
        ));
    }
    Ok(())
}

/// A category slug: lower-case letters, digits and inner hyphens.
pub fn check_slug(slug: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{slug:?} is not a category slug"))
    }
}

/// A product name: 1 to 120 characters, no control characters.
pub fn check_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        return Err("must be 1 to 120 characters without control characters".into());
    }
    Ok(())
}

/// A description: at most 4000 characters.
pub fn check_description(description: &str) -> Result<(), String> {
    if description.chars().count() > 4000 {
        Err("must be at most 4000 characters".into())
    } else {
        Ok(())
    }
}

/// An image URL: absolute http(s), or a path on this shop (`/images/tee.svg`).
pub fn check_image_url(url: &str) -> Result<(), String> {
    let ok = url.len() <= 500
        && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        && (url.starts_with("https://") || url.starts_with("http://") || url.starts_with('/'));
    if ok {
        Ok(())
    } else {
        Err(format!("{url:?} is not an http(s) URL or a /path"))
    }
}

/// One line of a reservation request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What.
    pub sku: Sku,
    /// How many, 1 to [`MAX_LINE_QUANTITY`].
    pub quantity: i64,
}

/// Checks reservation lines: 1 to [`MAX_LINES`], each sku once, each quantity positive and
/// bounded. Returns the lines sorted by sku, so every reservation locks rows in the same order.
pub fn check_lines(lines: &[(String, i64)]) -> Result<Vec<Line>, Vec<(String, String)>> {
    let mut errors = Vec::new();
    if lines.is_empty() || lines.len() > MAX_LINES {
        errors.push((
            "items".to_owned(),
            format!("must hold 1 to {MAX_LINES} lines"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut checked = Vec::with_capacity(lines.len());
    for (i, (sku, quantity)) in lines.iter().enumerate() {
        match Sku::parse(sku) {
            Ok(sku) if !seen.insert(sku.clone()) => {
                errors.push((
                    format!("items[{i}].sku"),
                    format!("{} appears more than once", sku.as_str()),
                ));
            }
            Ok(sku) if (1..=MAX_LINE_QUANTITY).contains(quantity) => checked.push(Line {
                sku,
                quantity: *quantity,
            }),
            Ok(_) => errors.push((
                format!("items[{i}].quantity"),
                format!("must be between 1 and {MAX_LINE_QUANTITY}"),
            )),
            Err(message) => errors.push((format!("items[{i}].sku"), message)),
        }
    }
    if errors.is_empty() {
        checked.sort_by(|a, b| a.sku.cmp(&b.sku));
        Ok(checked)
    } else {
        Err(errors)
    }
}

/// The order of a product list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Sort {
    /// By name, A to Z (the default).
    #[default]
    #[serde(rename = "name")]
    Name,
    /// Cheapest first.
    #[serde(rename = "price")]
    PriceAscending,
    /// Dearest first.
    #[serde(rename = "-price")]
    PriceDescending,
    /// Newest first.
    #[serde(rename = "newest")]
    Newest,
}

impl Sort {
    /// Parses `?sort=`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "name" => Ok(Self::Name),
            "price" => Ok(Self::PriceAscending),
            "-price" => Ok(Self::PriceDescending),
            "newest" => Ok(Self::Newest),
            other => Err(format!(
                "{other:?} is not one of name, price, -price, newest"
            )),
        }
    }
}

/// Where the next page starts: the sort key and id of the last item of this page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sort the cursor belongs to.
    pub sort: Sort,
    /// The last item's sort key (name, price or creation time).
    pub key: CursorKey,
    /// The last item's id, to break ties.
    pub id: String,
}

/// A sort key value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorKey {
    /// Names.
    Text(String),
    /// Prices and times.
    Number(i64),
}

impl Cursor {
    /// The opaque string clients pass back.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads a cursor for `sort`; a cursor from another sort or a forged one is refused.
    pub fn decode(raw: &str, sort: Sort) -> Result<Self, String> {
        let cursor: Self = URL_SAFE_NO_PAD
            .decode(raw)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| "is not a cursor this API gave out".to_owned())?;
        if cursor.sort != sort {
            return Err("belongs to another sort order".into());
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_bounded_and_in_a_currency() {
        assert!(
            check_price(&Money {
                amount_minor: 1999,
                currency: "USD".into()
            })
            .is_ok()
        );
        assert!(
            check_price(&Money {
                amount_minor: -1,
                currency: "USD".into()
            })
            .is_err()
        );
        assert!(
            check_price(&Money {
                amount_minor: MAX_PRICE_MINOR + 1,
                currency: "USD".into()
            })
            .is_err()
        );
        assert!(
            check_price(&Money {
                amount_minor: 100,
                currency: "usd".into()
            })
            .is_err()
        );
    }

    #[test]
    fn reservation_lines_refuse_zero_negative_duplicates_and_excess() {
        let lines = check_lines(&[("mug-1".into(), 2), ("ABC-1".into(), 1)]).expect("valid");
        assert_eq!(
            lines.iter().map(|l| l.sku.as_str()).collect::<Vec<_>>(),
            ["ABC-1", "MUG-1"],
            "sorted by sku"
        );
        let errors = check_lines(&[
            ("MUG-1".into(), 0),
            ("ABC-1".into(), -3),
            ("abc-1".into(), 1),
            ("x".into(), 1),
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
        let errors =
            check_lines(&[("ABC-1".into(), 1), ("abc-1".into(), 1)]).expect_err("duplicate");
        assert_eq!(errors[0].0, "items[1].sku");
        assert!(check_lines(&[]).is_err());
        assert!(check_lines(&[("ABC-1".into(), MAX_LINE_QUANTITY + 1)]).is_err());
    }

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let cursor = Cursor {
            sort: Sort::PriceAscending,
            key: CursorKey::Number(1999),
            id: "p-1".into(),
        };
        let encoded = cursor.encode();
        assert_eq!(Cursor::decode(&encoded, Sort::PriceAscending), Ok(cursor));
        assert!(Cursor::decode(&encoded, Sort::Name).is_err());
        assert!(Cursor::decode("not-a-cursor", Sort::Name).is_err());
    }

    #[test]
    fn sorts_parse() {
        assert_eq!(Sort::parse("-price"), Ok(Sort::PriceDescending));
        assert!(Sort::parse("random").is_err());
    }
}

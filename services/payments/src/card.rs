//! Cards and the processor that charges them.
//!
//! The processor is a trait because it is a real seam: production would talk to a payment
//! provider; Bazaar ships a simulation with test card numbers that behave like a provider's
//! (succeed, decline, decline for insufficient funds, fail transiently), plus configurable
//! latency and a random transient-failure rate for demos and chaos tests.

use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// Charges succeed.
pub const CARD_OK: &str = "4242424242424242";
/// Charges are declined.
pub const CARD_DECLINED: &str = "4000000000000002";
/// Charges are declined for insufficient funds.
pub const CARD_NO_FUNDS: &str = "4000000000009995";
/// Charges fail transiently (the processor is "down" for this card).
pub const CARD_TRANSIENT: &str = "4000000000000119";

/// A card, checked. Its `Debug` shows only the last four digits.
#[derive(Clone)]
pub struct Card {
    number: String,
    /// Expiry month, 1 to 12.
    pub exp_month: u32,
    /// Expiry year, four digits.
    pub exp_year: u32,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Card(**** {})", self.last4())
    }
}

impl Card {
    /// Checks a card: 12 to 19 digits passing the Luhn check, a 3- or 4-digit CVC, and an
    /// expiry not in the past (`today` is `(year, month)`). Errors are `(field, message)`.
    pub fn parse(
        number: &str,
        exp_month: u32,
        exp_year: u32,
        cvc: &str,
        today: (u32, u32),
    ) -> Result<Self, Vec<(&'static str, String)>> {
        let mut errors = Vec::new();
        let digits: String = number.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if !(12..=19).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !luhn(&digits)
        {
            errors.push(("card_number", "is not a valid card number".to_owned()));
        }
        if !(1..=12).contains(&exp_month) {
            errors.push(("exp_month", "must be between 1 and 12".to_owned()));
        } else if (exp_year, exp_month) < today {
            errors.push(("exp_year", "the card has expired".to_owned()));
        }
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            errors.push(("cvc", "must be 3 or 4 digits".to_owned()));
        }
        if errors.is_empty() {
            Ok(Self {
                number: digits,
                exp_month,
                exp_year,
            })
        } else {
            Err(errors)
        }
    }

    /// The last four digits, which may be stored and shown.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }

    /// The brand, from the first digit.
    pub fn brand(&self) -> &'static str {
        match self.number.as_bytes().first() {
            Some(b'4') => "visa",
            Some(b'5') => "mastercard",
            Some(b'3') => "amex",
            _ => "card",
        }
    }
}

/// The Luhn checksum every card number carries.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// What the processor says about a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The money moved.
    Approved,
    /// The issuer said no, with a reason a customer can read (`card_declined`, `insufficient_funds`).
    Declined(&'static str),
}

/// The processor could not decide; trying again later may work.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the card processor is unavailable: {0}")]
pub struct Transient(pub String);

/// Registers cards and charges them.
///
/// A real provider keeps the card in its vault and hands back a reference; only that reference
/// (and what may be shown: brand, last four digits, expiry) is stored here.
pub trait Processor: Send + Sync + fmt::Debug {
    /// Registers `card`; returns the processor's reference to it.
    fn register(&self, card: &Card) -> String;

    /// Asks to charge `amount_minor` to the card behind `reference`.
    fn charge<'a>(
        &'a self,
        reference: &'a str,
        amount_minor: i64,
    ) -> BoxFuture<'a, Result<Outcome, Transient>>;
}

/// The simulated processor. Its "vault" is the reference itself: it records how the test card
/// behaves (`sim_ok_…`, `sim_declined_…`, `sim_nofunds_…`, `sim_transient_…`), never its number.
#[derive(Debug, Clone)]
pub struct Simulated {
    /// Time every charge takes.
    pub latency: Duration,
    /// Share of charges (0.0 to 1.0) that fail transiently at random.
    pub transient_failure_rate: f64,
}

impl Processor for Simulated {
    fn register(&self, card: &Card) -> String {
        let behaviour = match card.number.as_str() {
            CARD_DECLINED => "declined",
            CARD_NO_FUNDS => "nofunds",
            CARD_TRANSIENT => "transient",
            _ => "ok",
        };
        format!("sim_{behaviour}_{}", uuid::Uuid::new_v4().simple())
    }

    fn charge<'a>(
        &'a self,
        reference: &'a str,
        _amount_minor: i64,
    ) -> BoxFuture<'a, Result<Outcome, Transient>> {
        Box::pin(async move {
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            if self.transient_failure_rate > 0.0
                && rand::random::<f64>() < self.transient_failure_rate
            {
                return Err(Transient("simulated outage".into()));
            }
            let behaviour = reference.split('_').nth(1).unwrap_or_default();
            match behaviour {
                "ok" => Ok(Outcome::Approved),
                "declined" => Ok(Outcome::Declined("card_declined")),
                "nofunds" => Ok(Outcome::Declined("insufficient_funds")),
                "transient" => Err(Transient("processing error".into())),
                // A reference this processor never gave out: the issuer would not know it.
                _ => Ok(Outcome::Declined("unknown_card")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (u32, u32) = (2026, 11);

    #[test]
    fn cards_are_checked_and_never_shown_whole() {
        let card = Card::parse("4242 4242 4242 4242", 12, 2030, "123", TODAY).expect("valid");
        assert_eq!(card.last4(), "4242");
        assert_eq!(card.brand(), "visa");
        assert_eq!(format!("{card:?}"), "Card(**** 4242)");
        let errors = Card::parse("4242424242424241", 13, 2030, "12", TODAY).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["card_number", "exp_month", "cvc"]);
        let expired = Card::parse(CARD_OK, 10, 2026, "123", TODAY).expect_err("expired");
        assert_eq!(expired[0].0, "exp_year");
        for number in [CARD_OK, CARD_DECLINED, CARD_NO_FUNDS, CARD_TRANSIENT] {
            assert!(
                Card::parse(number, 1, 2030, "123", TODAY).is_ok(),
                "{number} passes Luhn"
            );
        }
    }

    #[tokio::test]
    async fn the_simulation_follows_the_test_cards() {
        let processor = Simulated {
            latency: Duration::ZERO,
            transient_failure_rate: 0.0,
        };
        let card =
            |n: &str| processor.register(&Card::parse(n, 1, 2030, "123", TODAY).expect("valid"));
        let ok = card(CARD_OK);
        assert!(
            !ok.contains("4242"),
            "the reference never holds the number: {ok}"
        );
        assert_eq!(
            processor.charge(&ok, 100).await.expect("decides"),
            Outcome::Approved
        );
        assert_eq!(
            processor
                .charge(&card(CARD_DECLINED), 100)
                .await
                .expect("decides"),
            Outcome::Declined("card_declined")
        );
        assert_eq!(
            processor
                .charge(&card(CARD_NO_FUNDS), 100)
                .await
                .expect("decides"),
            Outcome::Declined("insufficient_funds")
        );
        assert!(processor.charge(&card(CARD_TRANSIENT), 100).await.is_err());
        assert_eq!(
            processor.charge("forged", 100).await.expect("decides"),
            Outcome::Declined("unknown_card")
        );
        let flaky = Simulated {
            latency: Duration::ZERO,
            transient_failure_rate: 1.0,
        };
        assert!(flaky.charge(&ok, 100).await.is_err());
    }
}

//! Emails from templates (`templates/*.txt`: a subject line, `---`, then the body), filled
//! with the event's facts and the customer's name.

use std::sync::LazyLock;

use contracts::events::{Event, OrderCancelled, OrderConfirmed, ShipmentShipped, UserRegistered};
use contracts::money::Money;
use minijinja::Environment;
use serde_json::{Value, json};

/// The kinds of email, by the event type that asks for each.
pub const KINDS: [(&str, &str); 4] = [
    (UserRegistered::TYPE, "welcome"),
    (OrderConfirmed::TYPE, "order_confirmed"),
    (OrderCancelled::TYPE, "order_cancelled"),
    (ShipmentShipped::TYPE, "shipment_shipped"),
];

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("welcome", include_str!("../templates/welcome.txt")),
        (
            "order_confirmed",
            include_str!("../templates/order_confirmed.txt"),
        ),
        (
            "order_cancelled",
            include_str!("../templates/order_cancelled.txt"),
        ),
        (
            "shipment_shipped",
            include_str!("../templates/shipment_shipped.txt"),
        ),
    ] {
        // The templates are part of the binary and checked by the tests below.
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(template = name, %error, "an email template does not parse");
        }
    }
    env
});

/// Why an email could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// No template of that kind.
    #[error("no email template {0:?}")]
    UnknownKind(String),
    /// The template failed on these facts.
    #[error("the {kind} template failed: {source}")]
    Template {
        /// The kind.
        kind: String,
        /// What went wrong.
        #[source]
        source: minijinja::Error,
    },
    /// The rendered text has no `---` between subject and body.
    #[error("the {0} template has no subject line")]
    NoSubject(String),
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// `12.50 USD`.
pub fn money(amount: &Money) -> String {
    let sign = if amount.amount_minor < 0 { "-" } else { "" };
    let abs = amount.amount_minor.unsigned_abs();
    format!("{sign}{}.{:02} {}", abs / 100, abs % 100, amount.currency)
}

/// The template's view of an event's payload: money formatted, line totals computed.
fn context(kind: &str, data: &Value, name: &str, email: &str) -> Value {
    let as_money = |v: &Value| -> String {
        serde_json::from_value::<Money>(v.clone())
            .map(|m| money(&m))
            .unwrap_or_default()
    };
    let mut context = data.clone();
    if let Some(object) = context.as_object_mut() {
        object.insert("name".into(), json!(name));
        object.insert("email".into(), json!(email));
        if let Some(total) = data.get("total") {
            object.insert("total".into(), json!(as_money(total)));
        }
        if kind == "order_confirmed" {
            let lines: Vec<Value> = data["lines"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|line| {
                    let unit: Option<Money> = serde_json::from_value(line["unit_price"].clone()).ok();
                    let quantity = line["quantity"].as_i64().unwrap_or(0);
                    let total = unit.map(|u| {
                        money(&Money {
                            amount_minor: u.amount_minor.saturating_mul(quantity),
                            currency: u.currency,
                        })
                    });
                    json!({"sku": line["sku"], "name": line["name"], "quantity": quantity, "total": total})
                })
                .collect();
            object.insert("lines".into(), json!(lines));
        }
    }
    context
}

/// Renders an email of `kind` for the customer `name` at `email` from the event payload `data`.
pub fn render(kind: &str, data: &Value, name: &str, email: &str) -> Result<Rendered, RenderError> {
    let template = TEMPLATES
        .get_template(kind)
        .map_err(|_| RenderError::UnknownKind(kind.to_owned()))?;
    let text = template
        .render(context(kind, data, name, email))
        .map_err(|source| RenderError::Template {
            kind: kind.to_owned(),
            source,
        })?;
    let (subject, body) = text
        .split_once("\n---\n")
        .ok_or_else(|| RenderError::NoSubject(kind.to_owned()))?;
    Ok(Rendered {
        subject: subject.trim().to_owned(),
        body: body.trim().to_owned() + "\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_renders() {
        let confirmed = json!({
            "order_id": "o-1", "user_id": "u-1",
            "lines": [{"sku": "MUG-STONE", "name": "Stoneware Mug", "quantity": 2,
                       "unit_price": {"amount_minor": 1800, "currency": "USD"}}],
            "total": {"amount_minor": 3600, "currency": "USD"}
        });
        let email =
            render("order_confirmed", &confirmed, "Ada", "ada@example.com").expect("renders");
        assert_eq!(email.subject, "Your Bazaar order is confirmed");
        assert!(email.body.starts_with("Hello Ada,"), "{}", email.body);
        assert!(
            email
                .body
                .contains("2 x Stoneware Mug (MUG-STONE)  36.00 USD"),
            "{}",
            email.body
        );
        assert!(email.body.contains("Total: 36.00 USD"), "{}", email.body);

        let cancelled = json!({"order_id": "o-2", "user_id": "u-1", "reason": "out of stock: MUG-STONE",
                               "total": {"amount_minor": 105, "currency": "EUR"}});
        let email =
            render("order_cancelled", &cancelled, "Ada", "ada@example.com").expect("renders");
        assert!(
            email
                .body
                .contains("(1.05 EUR) was cancelled: out of stock: MUG-STONE."),
            "{}",
            email.body
        );

        let shipped = json!({"shipment_id": "s-1", "order_id": "o-1", "user_id": "u-1",
                             "carrier": "Royal Mail", "tracking_number": "RM123"});
        let email =
            render("shipment_shipped", &shipped, "Ada", "ada@example.com").expect("renders");
        assert!(email.body.contains("Royal Mail") && email.body.contains("RM123"));

        let welcome = render(
            "welcome",
            &json!({"user_id": "u-1"}),
            "Ada",
            "ada@example.com",
        )
        .expect("renders");
        assert_eq!(welcome.subject, "Welcome to Bazaar, Ada!");
        assert!(welcome.body.contains("(ada@example.com)"));
        assert!(matches!(
            render("nope", &json!({}), "Ada", "a@b"),
            Err(RenderError::UnknownKind(_))
        ));
    }

    #[test]
    fn money_reads_like_money() {
        let m = |amount_minor| Money {
            amount_minor,
            currency: "USD".into(),
        };
        assert_eq!(money(&m(7500)), "75.00 USD");
        assert_eq!(money(&m(5)), "0.05 USD");
        assert_eq!(money(&m(-120)), "-1.20 USD");
    }
}

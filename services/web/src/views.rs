//! The pages' templates (`templates/*.html`, part of the binary) and how they are filled:
//! minijinja, HTML-escaped, with a `money` filter.

use std::sync::LazyLock;

use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;
use minijinja::{Environment, Value};

/// Every template, by name.
const TEMPLATES: [(&str, &str); 14] = [
    ("layout.html", include_str!("../templates/layout.html")),
    ("products.html", include_str!("../templates/products.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("listing.html", include_str!("../templates/listing.html")),
    ("product.html", include_str!("../templates/product.html")),
    ("cart.html", include_str!("../templates/cart.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("checkout.html", include_str!("../templates/checkout.html")),
    ("orders.html", include_str!("../templates/orders.html")),
    ("order.html", include_str!("../templates/order.html")),
    ("emails.html", include_str!("../templates/emails.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("console.html", include_str!("../templates/console.html")),
    ("trace.html", include_str!("../templates/trace.html")),
];

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_filter("money", money);
    for (name, source) in TEMPLATES {
        // Part of the binary, and each is rendered by the tests: a broken one fails them.
        if let Err(error) = env.add_template(name, source) {
            tracing::error!(template = name, %error, "a page template does not parse");
        }
    }
    env
});

/// `{"amount_minor": 2400, "currency": "USD"}` as `$24.00`; other currencies as `24.00 EUR`.
fn money(value: Value) -> String {
    let amount = value
        .get_attr("amount_minor")
        .ok()
        .and_then(|v| i64::try_from(v).ok())
        .unwrap_or(0);
    let currency = value
        .get_attr("currency")
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let sign = if amount < 0 { "-" } else { "" };
    let (units, cents) = (amount.unsigned_abs() / 100, amount.unsigned_abs() % 100);
    match currency.as_str() {
        "USD" => format!("{sign}${units}.{cents:02}"),
        "EUR" => format!("{sign}€{units}.{cents:02}"),
        "GBP" => format!("{sign}£{units}.{cents:02}"),
        other => format!("{sign}{units}.{cents:02} {other}"),
    }
}

/// Page `template` filled with `context`, as an HTML response with `status`.
pub fn page(status: StatusCode, template: &str, context: Value) -> Response {
    let rendered = ENVIRONMENT
        .get_template(template)
        .and_then(|template| template.render(context));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(template, error = %format!("{error:#}"), "a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<!doctype html><title>Error</title><h1>Something broke</h1><p>The page could not be drawn. Please try again.</p>"),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_reads_like_a_price_tag() {
        let money_of = |amount: i64, currency: &str| {
            money(Value::from_serialize(
                serde_json::json!({"amount_minor": amount, "currency": currency}),
            ))
        };
        assert_eq!(money_of(2400, "USD"), "$24.00");
        assert_eq!(money_of(5, "EUR"), "€0.05");
        assert_eq!(money_of(-1999, "USD"), "-$19.99");
        assert_eq!(money_of(123_456, "CHF"), "1234.56 CHF");
    }

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENVIRONMENT.get_template(name).is_ok(), "{name}");
        }
    }
}

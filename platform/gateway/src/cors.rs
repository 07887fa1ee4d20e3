//! Cross-origin requests from browsers: which web origins may call the API, configured under
//! `[gateway.cors]`. Preflight requests are answered by the gateway itself; with no origins
//! configured, no CORS headers are sent and browsers keep to same-origin calls.

use std::time::Duration;

use chassis::config::ConfigError;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The `[gateway.cors]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsSettings {
    /// Origins allowed to call the API (`https://shop.example`, `http://localhost:3000`), or
    /// `["*"]` for any. Empty: CORS is off.
    pub allowed_origins: Vec<String>,
    /// Methods a page may use.
    pub allowed_methods: Vec<String>,
    /// Request headers a page may send.
    pub allowed_headers: Vec<String>,
    /// Response headers a page may read.
    pub exposed_headers: Vec<String>,
    /// How long a browser may reuse a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsSettings {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Self {
            allowed_origins: Vec::new(),
            allowed_methods: strings(&["GET", "POST", "PUT", "PATCH", "DELETE"]),
            allowed_headers: strings(&[
                "authorization",
                "content-type",
                "idempotency-key",
                "x-request-id",
            ]),
            exposed_headers: strings(&[
                "location",
                "retry-after",
                "ratelimit-limit",
                "ratelimit-remaining",
                "ratelimit-reset",
                "x-request-id",
            ]),
            max_age: Duration::from_secs(600),
        }
    }
}

impl CorsSettings {
    /// The layer these settings describe; `None` when CORS is off.
    pub fn layer(&self) -> Result<Option<CorsLayer>, ConfigError> {
        if self.allowed_origins.is_empty() {
            return Ok(None);
        }
        let origins = if self.allowed_origins.iter().any(|o| o == "*") {
            if self.allowed_origins.len() > 1 {
                return Err(ConfigError::invalid(
                    "gateway.cors.allowed_origins",
                    format!("{:?}", self.allowed_origins),
                    "\"*\" allows every origin, so it must be the only entry",
                ));
            }
            AllowOrigin::any()
        } else {
            let origins = self
                .allowed_origins
                .iter()
                .map(|origin| origin_value(origin))
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(origins)
        };
        let methods = self
            .allowed_methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    ConfigError::invalid("gateway.cors.allowed_methods", m, "not an HTTP method")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let names = |key: &str, names: &[String]| {
            names
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| ConfigError::invalid(key, n, "not a header name"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods(methods)
                .allow_headers(names(
                    "gateway.cors.allowed_headers",
                    &self.allowed_headers,
                )?)
                .expose_headers(names(
                    "gateway.cors.exposed_headers",
                    &self.exposed_headers,
                )?)
                .max_age(self.max_age),
        ))
    }
}

/// An origin as browsers send it: a scheme and a host, perhaps a port, nothing else.
fn origin_value(origin: &str) -> Result<HeaderValue, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::invalid(
            "gateway.cors.allowed_origins",
            format!("{origin:?}"),
            why.to_owned(),
        )
    };
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| invalid("expected an origin such as https://shop.example"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if rest.is_empty() || rest.contains('/') || rest.parse::<http::uri::Authority>().is_err() {
        return Err(invalid(
            "an origin is a scheme and a host with an optional port, without a path",
        ));
    }
    HeaderValue::from_str(origin).map_err(|_| invalid("not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origins(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            ..CorsSettings::default()
        }
    }

    #[test]
    fn off_by_default_and_on_with_origins() {
        assert!(matches!(CorsSettings::default().layer(), Ok(None)));
        assert!(matches!(
            with_origins(&["http://localhost:3000", "https://shop.example"]).layer(),
            Ok(Some(_))
        ));
        assert!(matches!(with_origins(&["*"]).layer(), Ok(Some(_))));
    }

    #[test]
    fn bad_origins_methods_and_headers_are_named() {
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/path",
            "https://",
        ] {
            let error = with_origins(&[bad]).layer().expect_err(bad).to_string();
            assert!(error.contains("gateway.cors.allowed_origins"), "{error}");
            assert!(error.contains(bad), "{error}");
        }
        assert!(with_origins(&["*", "https://a.example"]).layer().is_err());
        let bad_method = CorsSettings {
            allowed_methods: vec!["GE T".into()],
            ..with_origins(&["*"])
        };
        assert!(
            bad_method
                .layer()
                .expect_err("method")
                .to_string()
                .contains("gateway.cors.allowed_methods")
        );
        let bad_header = CorsSettings {
            allowed_headers: vec!["bad header".into()],
            ..with_origins(&["*"])
        };
        assert!(bad_header.layer().is_err());
    }
}

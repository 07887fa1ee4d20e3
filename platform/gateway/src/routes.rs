//! The route table: which upstream service serves a path, and what a caller needs to reach it.
//! Pure data and matching, no I/O.

use std::sync::Arc;
use std::time::Duration;

use chassis::config::ConfigError;
use http::Method;
use serde::{Deserialize, Serialize};

use crate::ratelimit::{Limit, RateLimitConfig};

/// The default table, shipped as configuration (`platform/gateway/routes.toml`).
pub const DEFAULT_ROUTES: &str = include_str!("../routes.toml");

/// The public API's own path: no root route takes what is under it.
const API: &str = "/api";

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Public; the Authorization header is dropped unread.
    #[default]
    None,
    /// A token is optional, but must be valid if sent.
    Optional,
    /// A valid token is required.
    Required,
}

/// One entry of the table, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Path prefix, matched on a segment boundary (`/api/auth` matches `/api/auth/login`).
    pub prefix: String,
    /// Upstream service name.
    pub service: String,
    /// Replacement for the prefix upstream; default: the prefix without `/api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
    /// Authentication.
    #[serde(default)]
    pub auth: AuthMode,
    /// Roles the caller must have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// A cookie the access token may come in when there is no Authorization header, as a
    /// browser sends it to a page. A cookie whose token does not verify (expired, say) leaves
    /// the caller anonymous, for the page to refresh it or send them to sign in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_cookie: Option<String>,
    /// Allowed methods; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Upstream deadline; the gateway default when absent.
    #[serde(
        default,
        with = "humantime_serde::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Requests allowed per caller (user, or client address when anonymous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// The parsed default table.
pub fn default_routes() -> Vec<RouteConfig> {
    #[derive(Deserialize)]
    struct File {
        routes: Vec<RouteConfig>,
    }
    // The file is part of the binary and checked by a unit test, so this cannot fail at runtime.
    toml::from_str::<File>(DEFAULT_ROUTES)
        .map(|f| f.routes)
        .unwrap_or_default()
}

/// A checked route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Prefix, without a trailing `/`.
    pub prefix: String,
    /// The route's name in metrics, logs and rate-limit keys: its prefix, `/` for the root.
    /// Shared, so a response names its route without copying it.
    pub label: Arc<str>,
    /// Upstream service.
    pub service: String,
    /// Upstream replacement for the prefix.
    pub rewrite: String,
    /// Authentication.
    pub auth: AuthMode,
    /// Roles required.
    pub roles: Vec<String>,
    /// The cookie a token may come in.
    pub session_cookie: Option<String>,
    /// Allowed methods; empty means all.
    pub methods: Vec<Method>,
    /// Upstream deadline.
    pub timeout: Duration,
    /// Requests allowed per caller.
    pub rate_limit: Option<Limit>,
}

impl Route {
    /// Whether this is the root route (`prefix = "/"`): every path outside the API.
    pub fn is_root(&self) -> bool {
        self.prefix.is_empty()
    }

    /// Whether the route is part of the public API (under `/api`, or a well-known document
    /// such as the JWKS) rather than pages for people (the storefront, the console).
    pub fn is_api(&self) -> bool {
        self.prefix == API
            || self.prefix.starts_with("/api/")
            || self.prefix.starts_with("/.well-known/")
    }

    /// The route's name in metrics, logs and rate-limit keys (the `label` field).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The label of a route with `prefix` (without its trailing `/`): the prefix, `/` for the
    /// root route.
    pub fn label_for(prefix: &str) -> Arc<str> {
        Arc::from(if prefix.is_empty() { "/" } else { prefix })
    }

    fn matches_path(&self, path: &str) -> bool {
        if self.is_root() {
            // The root route takes what is outside the API: an unknown API path stays a 404.
            return !(path == API || path.starts_with("/api/"));
        }
        path.strip_prefix(&self.prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    fn allows(&self, method: &Method) -> bool {
        self.methods.is_empty() || self.methods.contains(method)
    }

    /// The upstream path and query for `path_and_query` (which matched this route).
    pub fn upstream_path(&self, path: &str, query: Option<&str>) -> String {
        let rest = path.strip_prefix(&self.prefix).unwrap_or("");
        let mut upstream = String::with_capacity(
            self.rewrite.len() + rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
        );
        upstream.push_str(&self.rewrite);
        upstream.push_str(rest);
        if upstream.is_empty() {
            upstream.push('/');
        }
        if let Some(query) = query {
            upstream.push('?');
            upstream.push_str(query);
        }
        upstream
    }
}

/// What the table says about a request.
#[derive(Debug, PartialEq)]
pub enum Match<'a> {
    /// This route serves it.
    Found(&'a Route),
    /// A route has the path, but not for this method.
    MethodNotAllowed,
    /// No route has the path.
    NotFound,
}

/// The checked table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// Longest prefix first, so the first match is the most specific.
    routes: Vec<Route>,
}

impl RouteTable {
    /// Checks every entry of every `(config key, entries)` section; an error names the entry
    /// (`gateway.extra_routes[2].prefix`).
    pub fn new(
        sections: &[(&str, &[RouteConfig])],
        default_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let mut routes = Vec::new();
        let entries = sections.iter().flat_map(|(section, configs)| {
            configs
                .iter()
                .enumerate()
                .map(move |(i, c)| (*section, i, c))
        });
        for (section, i, config) in entries {
            let key = |field: &str| format!("{section}[{i}].{field}");
            // `/` alone is the root route: every path no other route has (prefix "").
            let prefix = config.prefix.trim_end_matches('/').to_owned();
            if !config.prefix.starts_with('/')
                || (prefix.is_empty() && config.prefix != "/")
                || prefix.contains(['?', '#', ' '])
            {
                return Err(ConfigError::invalid(
                    &key("prefix"),
                    format!("{:?}", config.prefix),
                    "expected a path such as /api/orders",
                ));
            }
            let service_ok = config.service.starts_with(|c: char| c.is_ascii_lowercase())
                && config
                    .service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !service_ok {
                return Err(ConfigError::invalid(
                    &key("service"),
                    format!("{:?}", config.service),
                    "expected a service name",
                ));
            }
            let rewrite = match &config.rewrite {
                Some(rewrite) if rewrite.is_empty() || rewrite.starts_with('/') => {
                    rewrite.trim_end_matches('/').to_owned()
                }
                Some(rewrite) => {
                    return Err(ConfigError::invalid(
                        &key("rewrite"),
                        format!("{rewrite:?}"),
                        "expected a path starting with /",
                    ));
                }
                None => prefix
                    .strip_prefix("/api")
                    .map_or_else(|| prefix.clone(), str::to_owned),
            };
            if let Some(cookie) = &config.session_cookie {
                // A cookie name is an RFC 9110 token.
                let token = !cookie.is_empty()
                    && cookie
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token {
                    return Err(ConfigError::invalid(
                        &key("session_cookie"),
                        format!("{cookie:?}"),
                        "expected a cookie name such as bazaar_access",
                    ));
                }
                if config.auth == AuthMode::None && config.roles.is_empty() {
                    return Err(ConfigError::invalid(
                        &key("session_cookie"),
                        format!("{cookie:?}"),
                        "a route with auth = \"none\" reads no token; set auth to \"optional\" or \"required\"",
                    ));
                }
            }
            let mut methods = Vec::new();
            for method in &config.methods {
                let parsed =
                    Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        ConfigError::invalid(
                            &key("methods"),
                            format!("{method:?}"),
                            "expected an HTTP method",
                        )
                    })?;
                methods.push(parsed);
            }
            routes.push(Route {
                label: Route::label_for(&prefix),
                prefix,
                service: config.service.clone(),
                rewrite,
                auth: if config.roles.is_empty() {
                    config.auth
                } else {
                    AuthMode::Required
                },
                roles: config.roles.clone(),
                session_cookie: config.session_cookie.clone(),
                methods,
                timeout: config.timeout.unwrap_or(default_timeout),
                rate_limit: config
                    .rate_limit
                    .as_ref()
                    .map(Limit::new)
                    .transpose()
                    .map_err(|reason| {
                        ConfigError::invalid(
                            &key("rate_limit"),
                            format!("{:?}", config.rate_limit),
                            reason,
                        )
                    })?,
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Ok(Self { routes })
    }

    /// The route for `method` on `path`.
    pub fn find(&self, method: &Method, path: &str) -> Match<'_> {
        let mut path_known = false;
        for route in self.routes.iter().filter(|r| r.matches_path(path)) {
            if route.allows(method) {
                return Match::Found(route);
            }
            path_known = true;
        }
        if path_known {
            Match::MethodNotAllowed
        } else {
            Match::NotFound
        }
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped users routes plus two catalog routes of the test's own.
    fn table() -> RouteTable {
        let mut configs: Vec<RouteConfig> = default_routes()
            .into_iter()
            .filter(|r| r.service == "users")
            .collect();
        configs.push(RouteConfig {
            prefix: "/api/products".into(),
            service: "catalog".into(),
            rewrite: None,
            auth: AuthMode::Optional,
            roles: vec![],
            session_cookie: None,
            methods: vec!["GET".into()],
            timeout: None,
            rate_limit: None,
        });
        configs.push(RouteConfig {
            prefix: "/api/products".into(),
            service: "catalog".into(),
            rewrite: None,
            auth: AuthMode::None,
            roles: vec!["admin".into()],
            session_cookie: None,
            methods: vec!["post".into()],
            timeout: Some(Duration::from_secs(2)),
            rate_limit: None,
        });
        RouteTable::new(&[("gateway.routes", &configs)], Duration::from_secs(10)).expect("valid")
    }

    #[test]
    fn the_shipped_table_parses() {
        let routes = default_routes();
        assert!(
            routes
                .iter()
                .any(|r| r.prefix == "/api/auth" && r.service == "users")
        );
        assert!(RouteTable::new(&[("gateway.routes", &routes)], Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn the_root_route_takes_every_path_outside_the_api() {
        let table = RouteTable::new(&[("routes", &default_routes())], Duration::from_secs(5))
            .expect("the shipped table");
        for path in ["/", "/p/MUG-STONE", "/static/app.css", "/apis", "/consoles"] {
            let Match::Found(route) = table.find(&Method::GET, path) else {
                panic!("{path}: no match")
            };
            assert_eq!(
                (route.service.as_str(), route.label()),
                ("web", "/"),
                "{path}"
            );
            assert_eq!(
                route.upstream_path(path, Some("q=1")),
                format!("{path}?q=1")
            );
        }
        assert_eq!(
            table.find(&Method::GET, "/api/nothing-here"),
            Match::NotFound
        );
        assert_eq!(table.find(&Method::GET, "/api"), Match::NotFound);
        assert_eq!(table.find(&Method::DELETE, "/"), Match::MethodNotAllowed);
        let Match::Found(orders) = table.find(&Method::GET, "/api/orders") else {
            panic!("no match")
        };
        assert_eq!(orders.service, "orders", "a longer prefix wins");
    }

    #[test]
    fn the_console_reads_the_storefronts_session_cookie() {
        let table = RouteTable::new(&[("routes", &default_routes())], Duration::from_secs(5))
            .expect("the shipped table");
        let Match::Found(route) = table.find(&Method::POST, "/console/dead-letters") else {
            panic!("no match")
        };
        assert_eq!((route.service.as_str(), route.label()), ("web", "/console"));
        assert_eq!(route.session_cookie.as_deref(), Some("bazaar_access"));
        assert!(
            !route.is_api(),
            "pages, not the API: no OpenAPI document to merge"
        );
        assert_eq!(route.auth, AuthMode::Optional);
        assert_eq!(
            route.upstream_path("/console/traces/ab", None),
            "/console/traces/ab"
        );
    }

    #[test]
    fn a_session_cookie_needs_a_name_and_a_route_that_reads_tokens() {
        let mut config = RouteConfig {
            prefix: "/console".into(),
            service: "web".into(),
            rewrite: None,
            auth: AuthMode::Optional,
            roles: vec![],
            session_cookie: Some("my session".into()),
            methods: vec![],
            timeout: None,
            rate_limit: None,
        };
        let error = RouteTable::new(
            &[("gateway.routes", &[config.clone()])],
            Duration::from_secs(1),
        )
        .expect_err("a space is not allowed in a cookie name")
        .to_string();
        assert!(
            error.contains("gateway.routes[0].session_cookie"),
            "{error}"
        );
        config.session_cookie = Some("sid".into());
        config.auth = AuthMode::None;
        let error = RouteTable::new(
            &[("gateway.routes", &[config.clone()])],
            Duration::from_secs(1),
        )
        .expect_err("a public route reads no token")
        .to_string();
        assert!(error.contains("optional"), "{error}");
        config.auth = AuthMode::Required;
        assert!(RouteTable::new(&[("gateway.routes", &[config])], Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn matches_on_segment_boundaries_and_rewrites() {
        let table = table();
        let Match::Found(route) = table.find(&Method::POST, "/api/auth/login") else {
            panic!("no match")
        };
        assert_eq!(route.service, "users");
        assert_eq!(
            route.upstream_path("/api/auth/login", Some("x=1")),
            "/auth/login?x=1"
        );
        assert_eq!(table.find(&Method::GET, "/api/authorize"), Match::NotFound);
        let Match::Found(jwks) = table.find(&Method::GET, "/.well-known/jwks.json") else {
            panic!("no match")
        };
        assert_eq!(
            jwks.upstream_path("/.well-known/jwks.json", None),
            "/.well-known/jwks.json"
        );
        assert_eq!(
            table.find(&Method::POST, "/.well-known/jwks.json"),
            Match::MethodNotAllowed
        );
    }

    #[test]
    fn methods_pick_between_routes_and_roles_imply_auth() {
        let table = table();
        let Match::Found(read) = table.find(&Method::GET, "/api/products/sku-1") else {
            panic!("no match")
        };
        assert_eq!(read.auth, AuthMode::Optional);
        let Match::Found(write) = table.find(&Method::POST, "/api/products") else {
            panic!("no match")
        };
        assert_eq!(write.auth, AuthMode::Required);
        assert_eq!(write.timeout, Duration::from_secs(2));
        assert_eq!(
            table.find(&Method::DELETE, "/api/products/1"),
            Match::MethodNotAllowed
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let defaults = default_routes();
        let mut extra = default_routes();
        extra[1].prefix = "api/users".into();
        let error = RouteTable::new(
            &[
                ("gateway.routes", &defaults),
                ("gateway.extra_routes", &extra),
            ],
            Duration::from_secs(1),
        )
        .expect_err("invalid");
        assert!(
            error
                .to_string()
                .starts_with("invalid config: gateway.extra_routes[1].prefix = \"api/users\""),
            "{error}"
        );
        extra = default_routes();
        extra[0].methods = vec!["GE T".into()];
        assert!(RouteTable::new(&[("gateway.routes", &extra)], Duration::from_secs(1)).is_err());
    }
}

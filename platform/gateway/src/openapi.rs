//! `GET /api/openapi.json`: the public API as one OpenAPI document, made from the services' own.
//!
//! Every service publishes its document at `/openapi.json`, internal routes included. The
//! gateway asks each service its route table leads to, keeps the operations a client can reach
//! through it (a route's prefix and methods), rewrites their paths to the public ones
//! (`/products/{id}` → `/api/products/{id}`), and adds its own (`/api/dashboard`). Schemas are
//! merged by name. A service that cannot be asked is left out and named in `x-bazaar-missing`,
//! rather than failing the whole document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use serde_json::{Map, Value, json};

use crate::proxy::Gateway;
use crate::routes::{AuthMode, Route};

/// Longest wait for one service's document.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// HTTP methods as OpenAPI names them in a path item.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `GET /api/openapi.json`.
pub async fn document(State(gateway): State<Arc<Gateway>>) -> Response {
    // The root route leads to pages for people (the storefront), not to the API.
    let mut services: Vec<&str> = gateway
        .table
        .routes()
        .iter()
        .filter(|r| r.is_api())
        .map(|r| r.service.as_str())
        .collect();
    services.sort_unstable();
    services.dedup();
    let mut fetches = tokio::task::JoinSet::new();
    for service in services {
        let client = gateway.client.clone();
        let service = service.to_owned();
        fetches.spawn(async move {
            let answer = client
                .get(&service, "/openapi.json")
                .timeout(FETCH_TIMEOUT)
                .send()
                .await
                .and_then(chassis::client::CallResponse::json::<Value>);
            match answer {
                Ok(document) => Ok((service, document)),
                Err(error) => {
                    tracing::warn!(service, error = %chassis::error::ErrorChain(&error), "left out of the API document");
                    Err(service)
                }
            }
        });
    }
    let (mut documents, mut missing) = (Vec::new(), Vec::new());
    while let Some(fetched) = fetches.join_next().await {
        match fetched {
            Ok(Ok(document)) => documents.push(document),
            Ok(Err(service)) => missing.push(service),
            Err(error) => tracing::error!(%error, "fetching an API document failed"),
        }
    }
    // Whichever answered first, the document is the same.
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    missing.sort();
    let document = merge(gateway.table.routes(), &documents, &missing);
    ([(CONTENT_TYPE, "application/json")], document.to_string()).into_response()
}

/// The public document from the services' `documents` (`(service, document)`), through the
/// `routes`; `missing` names the services that could not be asked.
pub fn merge(routes: &[Route], documents: &[(String, Value)], missing: &[String]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for (service, document) in documents {
        let service_routes: Vec<&Route> = routes.iter().filter(|r| &r.service == service).collect();
        for (upstream_path, item) in document["paths"].as_object().into_iter().flatten() {
            for route in &service_routes {
                let Some(public) = public_path(route, upstream_path) else {
                    continue;
                };
                let entry = paths
                    .entry(public)
                    .or_insert_with(|| Value::Object(Map::new()));
                for method in METHODS {
                    let allowed = route.methods.is_empty()
                        || route
                            .methods
                            .iter()
                            .any(|m| m.as_str().eq_ignore_ascii_case(method));
                    if let (Some(operation), true) = (item.get(method), allowed)
                        && let Some(entry) = entry.as_object_mut()
                    {
                        entry
                            .entry(method)
                            .or_insert_with(|| through(route, operation.clone()));
                    }
                }
            }
        }
        for (name, schema) in document["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            schemas
                .entry(name.clone())
                .or_insert_with(|| schema.clone());
        }
    }
    // Paths no route method reached.
    paths.retain(|_, item| item.as_object().is_some_and(|o| !o.is_empty()));
    add_own(&mut paths);
    let mut document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Bazaar",
            "description": "The shop's public API, through the gateway. Errors are application/problem+json (RFC 9457).",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        },
    });
    if !missing.is_empty() {
        document["x-bazaar-missing"] = json!(missing);
    }
    document
}

/// `operation` as the gateway serves it on `route`: with the bearer token it asks for, and the
/// answers it gives itself (401 for a missing or bad token, 403 without the role, 429 over the
/// rate limit).
fn through(route: &Route, mut operation: Value) -> Value {
    if route.auth != AuthMode::None {
        operation["security"] = if route.auth == AuthMode::Required {
            json!([{"bearer": []}])
        } else {
            json!([{}, {"bearer": []}])
        };
    }
    if let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    {
        let mut add = |status: &str, description: &str| {
            responses
                .entry(status)
                .or_insert_with(|| chassis::error::documented_problem(description));
        };
        if route.auth != AuthMode::None {
            add("401", "The access token is missing, invalid or expired");
        }
        if !route.roles.is_empty() {
            add("403", "The caller lacks the role the route needs");
        }
        if route.rate_limit.is_some() {
            add(
                "429",
                "Too many requests; Retry-After says when to come back",
            );
        }
    }
    operation
}

/// The public path of `upstream_path` through `route`, if the route leads there.
fn public_path(route: &Route, upstream_path: &str) -> Option<String> {
    let rest = if route.rewrite.is_empty() {
        upstream_path
    } else {
        upstream_path.strip_prefix(&route.rewrite)?
    };
    (rest.is_empty() || rest.starts_with('/')).then(|| format!("{}{rest}", route.prefix))
}

/// The gateway's own operations.
fn add_own(paths: &mut Map<String, Value>) {
    paths.insert(
        "/api/dashboard".to_owned(),
        json!({"get": {
            "tags": ["dashboard"],
            "summary": "The caller's profile, recent orders and recommendations, gathered at once",
            "description": "A part that is slow or failing is left out, named in `missing`, and the answer says `partial: true`.",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "What could be gathered", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["partial", "missing"],
                    "properties": {
                        "profile": {},
                        "recent_orders": {},
                        "recommendations": {},
                        "partial": {"type": "boolean"},
                        "missing": {"type": "array", "items": {"type": "string"}}
                    }
                }}}},
                "401": chassis::error::documented_problem("Not signed in"),
            }
        }}),
    );
    paths.insert(
        "/api/openapi.json".to_owned(),
        json!({"get": {
            "tags": ["meta"],
            "summary": "This document",
            "responses": {"200": {"description": "The public API", "content": {"application/json": {}}}}
        }}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTable;

    fn table() -> Vec<Route> {
        RouteTable::new(
            &[("gateway.routes", &crate::routes::default_routes())],
            Duration::from_secs(10),
        )
        .expect("the default table is valid")
        .routes()
        .to_vec()
    }

    #[test]
    fn only_what_the_gateway_exposes_goes_in_under_its_public_path() {
        let catalog = json!({
            "paths": {
                "/products": {"get": {"operationId": "list"}, "post": {"operationId": "create"}},
                "/products/{id}": {"get": {"operationId": "get"}},
                "/reservations": {"post": {"operationId": "reserve"}},
            },
            "components": {"schemas": {"ProductView": {"type": "object"}}}
        });
        let payments = json!({
            "paths": {
                "/charges": {"get": {"operationId": "charges"}, "post": {"operationId": "charge"}},
            },
            "components": {"schemas": {"Charge": {"type": "object"}}}
        });
        let document = merge(
            &table(),
            &[("catalog".into(), catalog), ("payments".into(), payments)],
            &["orders".to_owned()],
        );
        let paths = &document["paths"];
        assert_eq!(paths["/api/products"]["get"]["operationId"], "list");
        assert_eq!(paths["/api/products"]["post"]["operationId"], "create");
        assert_eq!(paths["/api/products/{id}"]["get"]["operationId"], "get");
        assert!(
            paths.get("/api/reservations").is_none(),
            "internal routes stay internal"
        );
        assert!(paths.get("/reservations").is_none());
        // payments' `/charges` is public as `/api/payments`, for reading only.
        assert_eq!(paths["/api/payments"]["get"]["operationId"], "charges");
        assert!(paths["/api/payments"].get("post").is_none(), "{document:#}");
        assert!(paths.get("/api/dashboard").is_some());
        assert!(
            document["components"]["schemas"]
                .get("ProductView")
                .is_some()
        );
        assert!(document["components"]["schemas"].get("Charge").is_some());
        assert_eq!(document["x-bazaar-missing"], json!(["orders"]));
    }
}

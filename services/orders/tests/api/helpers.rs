use std::time::Duration;

use chassis::config::ChassisConfig;
use chassis::testing::TestDatabase;
use orders::{Application, Config, Settings};
use reqwest::Response;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const ALICE: &str = "0190b5d8-0000-7000-8000-00000000a11c";
pub(crate) const BOB: &str = "0190b5d8-0000-7000-8000-000000000b0b";
pub(crate) const ADMIN: &str = "0190b5d8-0000-7000-8000-0000000ad000";

/// A catalog that knows two products and answers `GET /products?sku=…` like the real one.
struct Products;

impl Respond for Products {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let known = [
            json!({"sku": "MUG-STONE", "name": "Stoneware Mug", "price": {"amount_minor": 1800, "currency": "USD"}, "active": true}),
            json!({"sku": "BOOK-RUST", "name": "The Rust Programming Language", "price": {"amount_minor": 3900, "currency": "USD"}, "active": true}),
        ];
        let wanted: Vec<String> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k == "sku")
            .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let items: Vec<Value> = known
            .into_iter()
            .filter(|p| wanted.iter().any(|w| p["sku"] == w.as_str()))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({"items": items, "next_cursor": null}))
    }
}

/// One mock server playing every neighbour of orders: catalog (products and reservations),
/// cart, payments and shipping. Each answers as the real one does when all goes well; a test
/// mounts [`Neighbours::answer`] to change one answer.
pub(crate) struct Neighbours {
    pub(crate) server: MockServer,
}

impl Neighbours {
    pub(crate) async fn start() -> Self {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/products"))
            .respond_with(Products)
            .mount(&server)
            .await;
        let ok = |body: Value| ResponseTemplate::new(200).set_body_json(body);
        let created = |body: Value| ResponseTemplate::new(201).set_body_json(body);
        for (verb, route, answer) in [
            (
                "POST",
                "^/reservations$",
                created(json!({"id": "res-1", "status": "held", "items": []})),
            ),
            (
                "DELETE",
                "^/reservations/[^/]+$",
                ok(json!({"id": "res-1", "status": "released"})),
            ),
            (
                "POST",
                "^/reservations/[^/]+/commit$",
                ok(json!({"id": "res-1", "status": "committed"})),
            ),
            (
                "POST",
                "^/reservations/[^/]+/return$",
                ok(json!({"id": "res-1", "status": "returned"})),
            ),
            (
                "POST",
                "^/charges$",
                created(json!({"id": "ch-1", "status": "succeeded"})),
            ),
            (
                "POST",
                "^/charges/[^/]+/refunds$",
                created(json!({"id": "rf-1", "charge_id": "ch-1"})),
            ),
            (
                "POST",
                "^/shipments$",
                created(json!({"id": "sh-1", "status": "label_created"})),
            ),
            (
                "POST",
                "^/shipments/[^/]+/cancel$",
                ok(json!({"id": "sh-1", "status": "cancelled"})),
            ),
        ] {
            Mock::given(method(verb))
                .and(path_regex(route))
                .respond_with(answer)
                .mount(&server)
                .await;
        }
        Self { server }
    }

    pub(crate) fn uri(&self) -> String {
        self.server.uri()
    }

    /// Answers `verb route` (a path regex) with `answer`, the first `times` times (always when
    /// `None`), instead of the default.
    pub(crate) async fn answer(
        &self,
        verb: &str,
        route: &str,
        answer: ResponseTemplate,
        times: Option<u64>,
    ) {
        let mut mock = Mock::given(method(verb))
            .and(path_regex(route))
            .respond_with(answer)
            .with_priority(1);
        if let Some(times) = times {
            mock = mock.up_to_n_times(times);
        }
        mock.mount(&self.server).await;
    }

    /// The requests received for `verb` on paths matching the regex `route`.
    pub(crate) async fn calls(&self, verb: &str, route: &str) -> Vec<Request> {
        let route = regex_lite(route);
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == verb && route(r.url.path()))
            .collect()
    }
}

impl Neighbours {
    /// Waits (5 s at most) until `verb route` has been called `n` times; returns the calls.
    pub(crate) async fn wait_for(&self, verb: &str, route: &str, n: usize) -> Vec<Request> {
        for _ in 0..100 {
            let calls = self.calls(verb, route).await;
            if calls.len() >= n {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{verb} {route} was not called {n} times");
    }
}

/// A tiny matcher for the anchored patterns the tests use: `^literal$` with `[^/]+` segments.
fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
    let parts: Vec<String> = pattern
        .trim_start_matches('^')
        .trim_end_matches('$')
        .split('/')
        .map(str::to_owned)
        .collect();
    move |path: &str| {
        let segments: Vec<&str> = path.split('/').collect();
        segments.len() == parts.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| p == "[^/]+" && !s.is_empty() || p == s)
    }
}

/// A problem+json answer.
pub(crate) fn problem_answer(status: u16, slug: &str, detail: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("content-type", "application/problem+json")
        .set_body_json(json!({
            "type": format!("urn:bazaar:problem:{slug}"), "title": slug, "status": status, "detail": detail
        }))
}

/// An orders service running for one test.
pub(crate) struct TestApp {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
    shutdown: CancellationToken,
    db: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub(crate) async fn spawn(db: TestDatabase, neighbours: &str) -> Self {
        Self::spawn_with(db, neighbours, Settings::default()).await
    }

    /// With every neighbour at `neighbours` and these settings (and no users service).
    pub(crate) async fn spawn_with(db: TestDatabase, neighbours: &str, settings: Settings) -> Self {
        Self::spawn_full(db, neighbours, settings, None).await
    }

    /// With every HTTP neighbour at `neighbours`, and the users service (gRPC) at `users`.
    pub(crate) async fn spawn_with_users(db: TestDatabase, neighbours: &str, users: &str) -> Self {
        Self::spawn_full(db, neighbours, Settings::default(), Some(users)).await
    }

    async fn spawn_full(
        db: TestDatabase,
        neighbours: &str,
        settings: Settings,
        users: Option<&str>,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut chassis = ChassisConfig::with_port(0);
        chassis.database.url = Some(db.url());
        chassis.discovery.registry = None;
        chassis.discovery.call_timeout = Duration::from_secs(2);
        for service in ["catalog", "cart", "payments", "shipping"] {
            chassis
                .discovery
                .static_instances
                .insert(service.into(), vec![neighbours.to_owned()]);
        }
        if let Some(users) = users {
            chassis
                .discovery
                .static_instances
                .insert("users".into(), vec![users.to_owned()]);
        }
        let shutdown = CancellationToken::new();
        let app = Application::build(Config { chassis, settings }, &shutdown)
            .await
            .expect("orders starts");
        let url = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(shutdown.clone()));
        chassis::testing::wait_ready(&url, Duration::from_secs(10)).await;
        Self {
            url,
            http: reqwest::Client::new(),
            shutdown,
            db,
        }
    }

    pub(crate) fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A request as the gateway sends it for `user` (admins get the admin role).
    pub(crate) fn as_user(
        &self,
        request: reqwest::RequestBuilder,
        user: &str,
    ) -> reqwest::RequestBuilder {
        let roles = if user == ADMIN {
            "customer,admin"
        } else {
            "customer"
        };
        request
            .header("x-bazaar-user-id", user)
            .header("x-bazaar-user-roles", roles)
    }

    pub(crate) async fn place(&self, user: &str, key: Option<&str>, body: &Value) -> Response {
        let mut request = self
            .as_user(self.http.post(self.at("/orders")), user)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.expect("orders answers")
    }

    /// Stops the service and hands its database back, to start another on it.
    pub(crate) async fn stop(mut self) -> TestDatabase {
        self.shutdown.cancel();
        // Let it drain and give its leases up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::mem::replace(&mut self.db, TestDatabase::sqlite())
    }

    /// The order once its checkout has settled (CONFIRMED or CANCELLED), as `user` sees it.
    pub(crate) async fn settled(&self, user: &str, id: &str) -> Value {
        for _ in 0..10 {
            let order: Value = self
                .get(user, &format!("/orders/{id}?wait=5s"))
                .await
                .json()
                .await
                .expect("json");
            if order["checkout"]["status"] != "running"
                && order["checkout"]["status"] != "compensating"
            {
                return order;
            }
        }
        panic!("order {id} did not settle");
    }

    /// Every event in the outbox: `(type, data)`, in order.
    pub(crate) async fn events(&self) -> Vec<(String, Value)> {
        let feed: Value = self
            .http
            .get(self.at("/internal/events?after=0&wait=0s&limit=500"))
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
        feed["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["data"].clone(),
                )
            })
            .collect()
    }

    /// The order's saga, as an administrator sees it.
    pub(crate) async fn saga(&self, id: &str) -> Value {
        let response = self.get(ADMIN, &format!("/orders/{id}/saga")).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub(crate) async fn get(&self, user: &str, path: &str) -> Response {
        self.as_user(self.http.get(self.at(path)), user)
            .send()
            .await
            .expect("orders answers")
    }
}

/// An order of two mugs and a book, with a price the client has no say in.
pub(crate) fn order_body() -> Value {
    json!({
        "items": [
            {"sku": "mug-stone", "quantity": 2, "price": {"amount_minor": 1, "currency": "USD"}},
            {"sku": "BOOK-RUST", "quantity": 1}
        ],
        "total": {"amount_minor": 1, "currency": "USD"},
        "payment_method": "pm_test_visa",
        "shipping_address": {"name": "Ada Lovelace", "line1": "12 Analytical St", "city": "London",
                             "postal_code": "N1 9GU", "country": "gb"}
    })
}

/// Reads a problem body and checks its content type.
pub(crate) async fn problem(response: Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.expect("problem json")
}

/// A users service that answers `users.GetUser` over gRPC (plain HTTP/2) for the accounts it
/// is given, to the user themself; its URL.
pub(crate) async fn fake_users(accounts: &[(&str, &str, &str)]) -> String {
    use contracts::grpc::users::users_server::{SERVICE_NAME, Users, UsersServer};
    use contracts::grpc::users::{GetUserRequest, User};

    struct Accounts(Vec<User>);

    #[tonic::async_trait]
    impl Users for Accounts {
        async fn get_user(
            &self,
            request: tonic::Request<GetUserRequest>,
        ) -> Result<tonic::Response<User>, tonic::Status> {
            let acting = request
                .metadata()
                .get("x-bazaar-user-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let id = &request.get_ref().id;
            if acting != id {
                return Err(tonic::Status::permission_denied("not yours"));
            }
            self.0
                .iter()
                .find(|u| &u.id == id)
                .cloned()
                .map(tonic::Response::new)
                .ok_or_else(|| tonic::Status::not_found("no such account"))
        }
    }

    let users = accounts
        .iter()
        .map(|(id, name, email)| User {
            id: (*id).to_owned(),
            email: (*email).to_owned(),
            name: (*name).to_owned(),
            roles: vec!["customer".to_owned()],
            created_at_ms: 1,
        })
        .collect();
    let app = axum::Router::new().route_service(
        &format!("/{SERVICE_NAME}/{{*method}}"),
        UsersServer::new(Accounts(users)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

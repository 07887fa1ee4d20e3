use std::time::{Duration, Instant};

use gateway::Settings;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Stack, dead_address, problem, settings_with_echo, spawn_echo, toml_routes};

#[tokio::test]
async fn rewrites_paths_and_passes_queries_and_bodies() {
    let echo = spawn_echo("echo-1").await;
    let stack = Stack::serving(&[("echo", vec![echo])], settings_with_echo()).await;
    let answer: Value = stack
        .http
        .post(stack.at("/api/echo/items/7?color=red"))
        .json(&json!({"n": 1}))
        .header("x-request-id", "trace-me-42")
        .header("x-bazaar-timeout-ms", "999999")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["uri"], "/echo/items/7?color=red");
    assert_eq!(answer["method"], "POST");
    assert_eq!(answer["body"], r#"{"n":1}"#);
    assert_eq!(
        answer["headers"]["x-request-id"], "trace-me-42",
        "the request id travels on"
    );
    assert_eq!(
        answer["headers"]["x-bazaar-timeout-ms"], "10000",
        "the upstream learns the route's deadline (the default 10 s), not the client's claim"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problems() {
    let stack = Stack::serving(&[], settings_with_echo()).await;
    let missing = stack.get("/api/nothing-here", None).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(
        problem(missing).await["type"],
        "urn:bazaar:problem:not-found"
    );
    let wrong = stack
        .http
        .delete(stack.at("/.well-known/jwks.json"))
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 405);
    problem(wrong).await;
}

#[tokio::test]
async fn fails_over_from_a_dead_instance_even_for_posts() {
    let live = spawn_echo("live").await;
    let dead = dead_address().await;
    let stack = Stack::serving(&[("echo", vec![dead, live])], settings_with_echo()).await;
    for _ in 0..20 {
        let response = stack
            .http
            .post(stack.at("/api/echo/x"))
            .body("{}")
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["name"], "live");
    }
}

#[tokio::test]
async fn no_instance_is_503_and_all_dead_is_502() {
    let dead = dead_address().await;
    let stack = Stack::serving(
        &[("echo", vec![]), ("users", vec![dead])],
        settings_with_echo(),
    )
    .await;
    let none = stack.get("/api/echo", None).await;
    assert_eq!(none.status(), 503);
    assert!(none.headers().contains_key("retry-after"));
    assert_eq!(
        problem(none).await["type"],
        "urn:bazaar:problem:no-upstream"
    );
    let down = stack.post_json("/api/auth/login", &json!({})).await;
    assert_eq!(down.status(), 502);
    let body = problem(down).await;
    assert_eq!(body["type"], "urn:bazaar:problem:bad-gateway");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "internals stay in the log: {body}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_cut_off_with_504() {
    let slow = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&slow)
        .await;
    let settings = gateway::Settings {
        extra_routes: toml_routes(
            r#"
        [[routes]]
        prefix = "/api/slow"
        service = "slow"
        timeout = "200ms"
        "#,
        ),
        ..gateway::Settings::default()
    };
    let stack = Stack::serving(&[("slow", vec![slow.uri()])], settings).await;
    let started = Instant::now();
    let response = stack.get("/api/slow/thing", None).await;
    assert_eq!(response.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        problem(response).await["type"],
        "urn:bazaar:problem:upstream-timeout"
    );
}

#[tokio::test]
async fn metrics_count_per_route_and_per_upstream() {
    let echo = spawn_echo("echo-1").await;
    let stack = Stack::serving(&[("echo", vec![echo])], settings_with_echo()).await;
    for _ in 0..3 {
        stack.get("/api/echo/a", None).await;
    }
    stack.get("/api/none", None).await;
    let metrics = stack.metrics().await;
    assert!(
        metrics.contains(
            r#"bazaar_http_server_requests_total{method="GET",route="/api/echo",status="200"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"route="unmatched",status="404""#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"bazaar_gateway_upstream_requests_total{service="echo",version="static",instance="echo-static-0",status="200"} 3"#), "{metrics}");
}

#[tokio::test]
async fn rate_limits_refuse_with_429_and_count_exactly_under_concurrency() {
    let echo = spawn_echo("echo-1").await;
    let settings = Settings {
        extra_routes: toml_routes(
            r#"
        [[routes]]
        prefix = "/api/limited"
        service = "echo"
        auth = "optional"
        rate_limit = { requests = 5, per = "1h" }
        "#,
        ),
        ..Settings::default()
    };
    let stack = Stack::serving(&[("echo", vec![echo])], settings).await;
    let first = stack.get("/api/limited/x", None).await;
    assert_eq!(first.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(&first, "ratelimit-limit").as_deref(), Some("5"));
    assert_eq!(header(&first, "ratelimit-remaining").as_deref(), Some("4"));
    assert_eq!(
        header(&first, "ratelimit-reset").as_deref(),
        Some("720"),
        "one token per 12 min"
    );

    // Twenty at once for the four left: exactly four pass.
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let request = stack.http.get(stack.at("/api/limited/x")).send();
            tokio::spawn(request)
        })
        .collect();
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("joins").expect("answers"));
    }
    let passed = statuses.iter().filter(|r| r.status() == 200).count();
    assert_eq!(passed, 4, "the limit holds under concurrency");
    let refused = statuses
        .into_iter()
        .find(|r| r.status() == 429)
        .expect("some refused");
    assert_eq!(header(&refused, "retry-after").as_deref(), Some("720"));
    assert_eq!(
        header(&refused, "ratelimit-remaining").as_deref(),
        Some("0")
    );
    assert_eq!(
        problem(refused).await["type"],
        "urn:bazaar:problem:rate-limited"
    );
}

#[tokio::test]
#[ignore = "needs Redis at 127.0.0.1:6379"]
async fn two_gateways_sharing_redis_enforce_one_limit() {
    let echo = spawn_echo("echo-1").await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let settings = Settings {
        extra_routes: toml_routes(
            r#"
        [[routes]]
        prefix = "/api/limited"
        service = "echo"
        rate_limit = { requests = 6, per = "1h" }
        "#,
        ),
        ratelimit_store: "redis://127.0.0.1:6379".into(),
        // Keys of this test only, deleted at the end.
        ratelimit_prefix: prefix.clone(),
        ..Settings::default()
    };
    let mut stacks = Vec::new();
    for _ in 0..2 {
        stacks.push(
            Stack::start(
                &[("echo", vec![echo.clone()])],
                settings.clone(),
                CancellationToken::new(),
                vec![],
            )
            .await,
        );
    }
    let racers: Vec<_> = (0..30)
        .map(|i| {
            let stack = &stacks[i % 2];
            tokio::spawn(stack.http.get(stack.at("/api/limited/x")).send())
        })
        .collect();
    let mut passed = 0;
    let mut refused = 0;
    for racer in racers {
        match racer
            .await
            .expect("joins")
            .expect("answers")
            .status()
            .as_u16()
        {
            200 => passed += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((passed, refused), (6, 24), "one limit across both gateways");
    let client = redis::Client::open("redis://127.0.0.1:6379").expect("a Redis URL");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "one bucket for the one caller: {keys:?}");
    let _: i64 = redis::cmd("DEL")
        .arg(keys)
        .query_async(&mut redis)
        .await
        .expect("deleted");
}

#[tokio::test]
async fn a_rate_limit_store_that_is_down_decides_locally_fails_open_or_closed() {
    use gateway::ratelimit::OnStoreError;
    let echo = spawn_echo("echo-1").await;
    let dead = dead_address().await.replace("http://", "redis://");
    let routes = toml_routes(
        r#"
        [[routes]]
        prefix = "/api/limited"
        service = "echo"
        rate_limit = { requests = 1, per = "1h" }
        "#,
    );
    for (policy, expected) in [
        // The gateway's own bucket of one: the first passes, the rest are limited.
        (OnStoreError::Local, [200, 429, 429]),
        (OnStoreError::Open, [200, 200, 200]),
        (OnStoreError::Closed, [503, 503, 503]),
    ] {
        let settings = Settings {
            extra_routes: routes.clone(),
            ratelimit_store: dead.clone(),
            ratelimit_on_error: policy,
            ..Settings::default()
        };
        let stack = Stack::serving(&[("echo", vec![echo.clone()])], settings).await;
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(stack.get("/api/limited/x", None).await.status().as_u16());
        }
        assert_eq!(statuses, expected, "{policy:?}");
        let metrics = stack
            .http
            .get(stack.at("/metrics"))
            .send()
            .await
            .expect("answers")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("bazaar_gateway_rate_limit_store_errors_total 3"),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn cors_answers_preflights_for_configured_origins_only() {
    let echo = spawn_echo("echo-1").await;
    let settings = Settings {
        cors: gateway::cors::CorsSettings {
            allowed_origins: vec!["http://localhost:3000".into()],
            ..gateway::cors::CorsSettings::default()
        },
        ..settings_with_echo()
    };
    let stack = Stack::serving(&[("echo", vec![echo])], settings).await;
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(reqwest::Method::OPTIONS, stack.at("/api/echo/items"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.expect("answers");
    assert_eq!(allowed.status(), 200);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        allowed.headers()["access-control-allow-methods"]
            .to_str()
            .is_ok_and(|m| m.contains("POST"))
    );
    assert_eq!(allowed.headers()["access-control-max-age"], "600");
    let stranger = preflight("https://evil.example").await.expect("answers");
    assert!(
        !stranger
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // The actual request: the page may read the request id and the rate-limit headers.
    let response = stack
        .http
        .get(stack.at("/api/echo/items"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .expect("answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        response.headers()["access-control-expose-headers"]
            .to_str()
            .is_ok_and(|h| h.contains("x-request-id") && h.contains("ratelimit-remaining"))
    );
}

#[tokio::test]
async fn too_many_headers_are_refused_before_reaching_an_upstream() {
    let upstream = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let stack = Stack::serving(&[("echo", vec![upstream.uri()])], settings_with_echo()).await;
    let mut request = stack.http.get(stack.at("/api/echo/x"));
    for i in 0..70 {
        request = request.header(format!("x-extra-{i}"), "1");
    }
    let response = request.send().await.expect("answers");
    assert_eq!(response.status(), 431);
    assert_eq!(
        problem(response).await["type"],
        "urn:bazaar:problem:headers-too-large"
    );
    assert_eq!(upstream.received_requests().await.map(|r| r.len()), Some(0));
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_without_reaching_an_upstream() {
    let upstream = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200))
        .mount(&upstream)
        .await;
    let stack = Stack::start_configured(
        &[("echo", vec![upstream.uri()])],
        settings_with_echo(),
        |config| config.http.request_timeout = Duration::from_millis(300),
        CancellationToken::new(),
        vec![],
    )
    .await;
    let address = stack.gateway.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connects");
    // Ten bytes announced, three sent, and the connection held open.
    stream
        .write_all(b"POST /api/echo/x HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .expect("writes");
    let mut answer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answers before the client gives up")
        .expect("reads");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("urn:bazaar:problem:body-timeout"),
        "{answer}"
    );
    assert_eq!(upstream.received_requests().await.map(|r| r.len()), Some(0));
}

//! The platform's scenarios: a consumer that is down (the outbox keeps its events), a replica
//! that dies (discovery), a burst (rate limits) and callers without the right certificate
//! (mTLS).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chassis::client::Transport;
use chassis::mtls::{Identity, MtlsConfig};
use contracts::discovery::HealthStatus;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use super::{Demo, Verdict, short};

/// The problem type of the gateway's 429.
const RATE_LIMITED: &str = "urn:bazaar:problem:rate-limited";
use crate::storefront::{Ask, DEMO_ADMIN};

pub(crate) async fn lost_consumer(demo: &Demo) -> Result<Verdict, String> {
    let customer = demo.customer("Eve", false).await?;
    let (sku, _) = demo.product(3).await?;
    let consumers = demo.remote.instances("notifications").await?;
    let version = consumers
        .first()
        .map(|i| i.version.clone())
        .ok_or("no notifications instance is registered")?;
    for instance in &consumers {
        demo.remote.stop(&instance.id).await?;
    }
    demo.say.step(&format!(
        "Stopped notifications ({}): nobody consumes orders' events now",
        consumers
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut orders = Vec::new();
    for _ in 0..3 {
        let id = demo.place(&customer, &sku, 1).await?;
        orders.push(demo.settle(&customer, &id).await?);
    }
    let mailbox = demo
        .shop
        .send(Ask::get("/api/emails", Some(&customer.token)))
        .await?;
    demo.say.step(&format!(
        "Three orders confirmed without it; the mailbox answers {} (no instance to ask). Each `order.confirmed` waits in orders' outbox (or the NATS stream)",
        mailbox.status
    ));
    let down_for = Instant::now();
    demo.remote.start("notifications", &version, 1).await?;
    demo.say.step(&format!(
        "Started notifications {version} again: it reads on from the last event it acknowledged"
    ));
    let mut verdict = Verdict::new();
    for order in &orders {
        let facts = demo.facts(order, 1).await?;
        verdict.check(
            facts.confirmations == 1,
            format!(
                "order {} got {} confirmation email",
                short(&facts.id),
                facts.confirmations
            ),
        );
    }
    demo.say.detail(&format!(
        "every email was in within {:.1} s of the restart",
        down_for.elapsed().as_secs_f64()
    ));
    let dead = demo
        .shop
        .read_service(
            "notifications",
            "/internal/dead-letters",
            super::READ_WITHIN,
        )
        .await?;
    let letters = dead["items"].as_array().map_or(0, |items| {
        items.iter().filter(|l| l["replayed_at"].is_null()).count()
    });
    verdict.check(
        letters == 0,
        format!("{letters} dead letters: no event was given up on"),
    );
    verdict.traces.extend(
        orders
            .iter()
            .filter_map(|o| o["checkout"]["trace_id"].as_str().map(str::to_owned))
            .take(1),
    );
    Ok(verdict)
}

/// Clients that GET a path through the gateway until stopped; requests and failures.
pub(super) struct Load {
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub(super) fn start(demo: &Demo, clients: usize, path: &'static str) -> Self {
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let gateway = demo.shop.storefront().gateway();
        let transport = demo.shop.transport().clone();
        let tasks = (0..clients)
            .map(|_| {
                let (sent, failed, stop) =
                    (Arc::clone(&sent), Arc::clone(&failed), Arc::clone(&stop));
                let storefront = crate::storefront::Storefront::at(&gateway, transport.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let answer = storefront.send(Ask::get(path, None)).await;
                        sent.fetch_add(1, Ordering::Relaxed);
                        if !answer.is_ok_and(|a| a.status.is_success()) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Self {
            sent,
            failed,
            stop,
            tasks,
        }
    }

    pub(super) async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

pub(crate) async fn discovery(demo: &Demo) -> Result<Verdict, String> {
    let catalog = demo.remote.instances("catalog").await?;
    let version = catalog
        .first()
        .map(|i| i.version.clone())
        .ok_or("no catalog instance is registered")?;
    let started = demo.remote.start("catalog", &version, 1).await?;
    let replica = started.first().ok_or("up started no instance")?.clone();
    demo.say.step(&format!(
        "Started a replica, {} ({}): it registered and passes its checks",
        replica.id, replica.url
    ));
    let load = Load::start(demo, 4, "/api/products?page_size=5");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = i32::try_from(replica.pid).map_err(|e| e.to_string())?;
    kill(Pid::from_raw(pid), Signal::SIGKILL)
        .map_err(|e| format!("killing {}: {e}", replica.id))?;
    let killed = Instant::now();
    // Told at once, so `up` does not bring it back: the registry has to find out itself.
    demo.remote.stop(&replica.id).await?;
    demo.say.step(&format!(
        "SIGKILL to {} (pid {pid}) while 4 clients read the catalog through the gateway; it deregisters nothing",
        replica.id
    ));
    let mut critical = None;
    while killed.elapsed() < Duration::from_secs(15) {
        let listed = demo
            .remote
            .registry
            .instances()
            .await
            .map_err(|e| format!("the registry: {}", chassis::error::ErrorChain(&e)))?;
        match listed.instances.iter().find(|i| i.id == replica.id) {
            Some(i) if i.status == HealthStatus::Critical => {
                critical = Some((killed.elapsed(), i.output.clone().unwrap_or_default()));
                break;
            }
            None => {
                critical = Some((killed.elapsed(), "removed".to_owned()));
                break;
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    match &critical {
        Some((after, why)) => demo.say.step(&format!(
            "The registry marked {} critical {:.1} s after the kill, at its next check: {why}",
            replica.id,
            after.as_secs_f64()
        )),
        None => demo
            .say
            .step("The registry still lists it passing after 15 s"),
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sent, failed) = load.finish().await;
    demo.say.step(&format!(
        "The clients sent {sent} requests: the gateway retried each refused connection on another instance, ejected the dead one, and dropped it when the registry said so"
    ));
    let mut verdict = Verdict::new();
    verdict.check(
        critical.is_some(),
        format!("the registry stopped listing {} as passing", replica.id),
    );
    verdict.check(
        failed == 0 && sent > 0,
        format!("{failed} of {sent} requests failed"),
    );
    Ok(verdict)
}

pub(crate) async fn rate_limit(demo: &Demo) -> Result<Verdict, String> {
    // Empty passwords: the users service turns them away (422) without counting a failed
    // log-in. A burst of wrong passwords would also trip its own guard (100 failures from
    // one address in 15 minutes), and that would lock this machine's address out of logging
    // in, the console and `bazaar load` included, for a quarter of an hour after the demo.
    let burst = 150;
    let attempts: Vec<serde_json::Value> = (0..=burst)
        .map(|i| json!({"email": format!("nobody{i}.{}@demo.example", demo.run), "password": ""}))
        .collect();
    demo.say.step(&format!(
        "{burst} log-in requests at once from one address (POST /api/auth/login: 300 a minute, bursts of 100)"
    ));
    demo.say.detail(
        "each with an empty password: the users service refuses those (422) without counting a failed log-in, so the demo leaves this address free to log in",
    );
    let store_errors_before = store_errors(demo).await;
    let asks = attempts[..burst].iter().map(|credentials| {
        demo.shop
            .send(Ask::post("/api/auth/login", None, credentials))
    });
    let answers = futures_util::future::join_all(asks).await;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    let mut limited = None;
    let mut at_the_gateway = 0;
    for answer in answers.into_iter().flatten() {
        *by_status.entry(answer.status.as_u16()).or_default() += 1;
        if answer.body["type"] == RATE_LIMITED {
            at_the_gateway += 1;
            if limited.is_none() {
                limited = Some(answer);
            }
        }
    }
    demo.say.detail(&format!(
        "answers: {}",
        by_status
            .iter()
            .map(|(status, n)| format!("{n} × {status}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    // With a shared store (Redis), a check it cannot answer in time is decided by the gateway
    // alone (gateway.ratelimit_on_error, "local" unless configured): say so, or a burst that
    // behaved differently would be a mystery.
    if let (Some(before), Some(after)) = (store_errors_before, store_errors(demo).await)
        && after > before
    {
        demo.say.step(&format!(
            "{} checks found the shared store (Redis) slow or down: the gateway decided those with its own buckets, or as gateway.ratelimit_on_error says",
            after - before
        ));
    }
    let mut verdict = Verdict::new();
    let Some(limited) = limited else {
        verdict.check(false, "no request was limited");
        return Ok(verdict);
    };
    let header = |name: &str| {
        limited
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let retry_after = header("retry-after");
    demo.say.step(&format!(
        "The first 429 ({}): Retry-After {retry_after:?}, RateLimit-Limit {:?}, RateLimit-Remaining {:?}, RateLimit-Reset {:?}; {}",
        limited.body["type"].as_str().unwrap_or("no problem type"),
        header("ratelimit-limit"),
        header("ratelimit-remaining"),
        header("ratelimit-reset"),
        limited.body["detail"].as_str().unwrap_or("")
    ));
    let wait = retry_after.parse::<u64>().unwrap_or(1);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = demo
        .shop
        .send(Ask::post("/api/auth/login", None, &attempts[burst]))
        .await?;
    let through = again.body["type"] != RATE_LIMITED;
    demo.say.step(&format!(
        "After waiting the {wait} s it asked for, the next request passes the gateway: the users service answers {}",
        again.status
    ));
    // A second later the bucket holds a few tokens again (it refills 5 a second).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let admin = demo.shop.storefront().log_in(DEMO_ADMIN).await;
    demo.say.step(&match &admin {
        Ok(_) => format!(
            "{} logs in from the same address: the burst locked nobody out",
            DEMO_ADMIN.0
        ),
        Err(error) => error.clone(),
    });
    verdict.check(
        at_the_gateway > 0 && at_the_gateway < burst,
        format!("{at_the_gateway} of {burst} were refused with 429 at the gateway"),
    );
    verdict.check(
        !retry_after.is_empty() && !header("ratelimit-limit").is_empty(),
        "each 429 says when to come back (Retry-After, RateLimit-*)",
    );
    verdict.check(
        by_status.keys().all(|s| *s < 500),
        "no server error: the users service never saw the excess",
    );
    verdict.check(
        through,
        format!(
            "after the wait, the gateway lets the caller through ({})",
            again.status
        ),
    );
    verdict.check(admin.is_ok(), "the address can still log in afterwards");
    Ok(verdict)
}

/// Rate-limit checks the gateways' shared store could not answer, summed over the gateways;
/// `None` when their metrics cannot be read.
async fn store_errors(demo: &Demo) -> Option<u64> {
    let texts = demo.remote.gateway_metrics().await.ok()?;
    let total: f64 = texts
        .iter()
        .flat_map(|text| chassis::metrics::red::samples(text))
        .filter(|s| s.name == "bazaar_gateway_rate_limit_store_errors_total")
        .map(|s| s.value)
        .sum();
    // A counter's value is a whole number.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some(total as u64)
}

/// A transport presenting `service`'s certificate from `up`'s PKI folder.
fn transport_as(demo: &Demo, service: &str) -> Result<Transport, String> {
    let pki = crate::up::pki::dir(&demo.data_dir);
    let config = MtlsConfig {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{service}.pem")),
        key: pki.join(format!("{service}.key")),
        ..MtlsConfig::default()
    };
    match Identity::load(&config) {
        Ok(Some(identity)) => Ok(Transport::with_identity(Some(identity))),
        Ok(None) => Err("mTLS is off in this system".to_owned()),
        Err(error) => Err(format!(
            "no certificate for {service} in {} (is mTLS on?): {error}",
            pki.display()
        )),
    }
}

/// Connects to `url` (https) trusting the CA in `ca`, with no client certificate, and sends
/// a request: what the server did.
fn without_certificate(url: &str, ca: &std::path::Path) -> Result<String, String> {
    use std::io::{Read, Write};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let authority = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url} is not served over TLS: mTLS is off"))?
        .trim_end_matches('/');
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(|e| e.to_string())?;
    let mut socket = std::net::TcpStream::connect(authority).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::Stream::new(&mut connection, &mut socket);
    let request =
        format!("GET /charges HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if let Err(error) = tls.write_all(request.as_bytes()) {
        return Ok(format!("the handshake failed: {error}"));
    }
    let mut answer = Vec::new();
    match tls.read_to_end(&mut answer) {
        Err(error) => Ok(format!("the server ended the connection: {error}")),
        Ok(_) => Err(format!(
            "the server answered: {}",
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or("")
        )),
    }
}

pub(crate) async fn mtls_refusal(demo: &Demo) -> Result<Verdict, String> {
    let payments = demo
        .remote
        .instances("payments")
        .await?
        .into_iter()
        .find(|i| i.status == HealthStatus::Passing)
        .ok_or("no payments instance is passing")?;
    let ca = crate::up::pki::dir(&demo.data_dir).join("ca.pem");
    let url = payments.address.clone();
    let stranger = tokio::task::spawn_blocking(move || without_certificate(&url, &ca))
        .await
        .map_err(|e| e.to_string())?;
    let mut verdict = Verdict::new();
    match &stranger {
        Ok(what) => demo.say.step(&format!(
            "A client that trusts the CA but shows no certificate, to {} ({}): {what}",
            payments.id, payments.address
        )),
        Err(what) => demo.say.step(&format!(
            "A client with no certificate reached {}: {what}",
            payments.id
        )),
    }
    verdict.check(
        stranger.is_ok(),
        "payments refused a client without a certificate, before any HTTP",
    );

    let charge = json!({"order_id": "demo", "amount": {"amount_minor": 100, "currency": "USD"}, "payment_method": "pm_demo"});
    let call = |transport: Transport, method: Method, path: &str, body: Option<String>| {
        let url = format!("{}{path}", payments.address.trim_end_matches('/'));
        async move {
            let mut request = Request::builder().method(method).uri(&url);
            if body.is_some() {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(axum::body::Body::from(body.unwrap_or_default()))
                .map_err(|e| e.to_string())?;
            let response = transport
                .send(request)
                .await
                .map_err(|e| chassis::error::ErrorChain(&e).to_string())?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, String::from_utf8_lossy(&body).into_owned()))
        }
    };
    let (status, body) = call(
        transport_as(demo, "cart")?,
        Method::POST,
        "/charges",
        Some(charge.to_string()),
    )
    .await?;
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|p| p["detail"].as_str().map(str::to_owned))
        .unwrap_or(body);
    demo.say.step(&format!(
        "The cart service, with its own valid certificate (spiffe://bazaar/cart), POSTs /charges to payments: {status}: {detail}"
    ));
    verdict.check(
        status == StatusCode::FORBIDDEN,
        format!("a service outside the route's callers is refused ({status})"),
    );
    let (allowed, _) = call(
        transport_as(demo, "orders")?,
        Method::GET,
        "/charges?order_id=demo",
        None,
    )
    .await?;
    demo.say.step(&format!(
        "The orders service, which the route names, reads /charges: {allowed}"
    ));
    verdict.check(
        allowed == StatusCode::OK,
        format!("a caller the route names gets through ({allowed})"),
    );
    Ok(verdict)
}

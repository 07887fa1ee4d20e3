//! The storefront through `up`, as a browser uses it: pages from the gateway's port, forms
//! posted, redirects followed by hand and cookies kept, from the home page to a confirmed
//! order and its email, and a declined card's cancellation with its reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::system::Running;

/// A browser: its cookies, and a client that does not follow redirects (the test does).
struct Browser<'a> {
    running: &'a Running,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(running: &'a Running) -> Self {
        Self {
            running,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client"),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the response's cookies (an emptied one is forgotten); returns where it redirects.
    fn take(&mut self, response: &reqwest::Response) -> Option<String> {
        for set in response.headers().get_all("set-cookie") {
            let Some((pair, _)) = set.to_str().ok().and_then(|s| s.split_once(';')) else {
                continue;
            };
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned)
    }

    /// GETs `path`; the status and page.
    async fn get(&mut self, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(self.running.at(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("answers");
        self.take(&response);
        let status = response.status().as_u16();
        (status, response.text().await.expect("a page"))
    }

    /// Posts `form` to `path`; where it redirects.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> String {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = self
            .http
            .post(self.running.at(path))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("answers");
        let status = response.status();
        let to = self.take(&response);
        match to {
            Some(to) => to,
            None => panic!(
                "{path} answered {status}, not a redirect: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// Checks out the cart with a new `card`; the order page's path.
    async fn checkout(&mut self, card: &str) -> String {
        let (status, form) = self.get("/checkout").await;
        assert_eq!(status, 200, "{form}");
        let key = form
            .split(r#"name="key" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("the form's idempotency key")
            .to_owned();
        self.post(
            "/checkout",
            &[
                ("name", "Grace Hopper"),
                ("line1", "1 Compiler Lane"),
                ("city", "Arlington"),
                ("postal_code", "22201"),
                ("country", "US"),
                ("payment_method", "new"),
                ("card_number", card),
                ("exp", "12/2031"),
                ("cvc", "123"),
                ("key", &key),
            ],
        )
        .await
    }

    /// The order page once its checkout settled.
    async fn settled(&mut self, order: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, page) = self.get(order).await;
            assert_eq!(status, 200, "{page}");
            if page.contains(r#"data-settled="true""#) {
                return page;
            }
            assert!(Instant::now() < deadline, "never settled: {page}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn a_shopper_buys_a_mug_from_the_home_page_and_gets_the_email() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    let mut browser = Browser::new(&running);

    let (status, home) = browser.get("/").await;
    assert_eq!(status, 200);
    assert!(
        home.contains(r#"<a href="/c/kitchen">Kitchen</a>"#),
        "{home}"
    );
    assert!(
        home.len() < 50 * 1024,
        "the home page weighs {} bytes",
        home.len()
    );
    let (_, kitchen) = browser.get("/c/kitchen").await;
    assert!(kitchen.contains(r#"<a href="/p/MUG-STONE">"#), "{kitchen}");
    let (_, mug) = browser.get("/p/MUG-STONE").await;
    assert!(
        mug.len() < 50 * 1024,
        "the product page weighs {} bytes",
        mug.len()
    );
    let (_, found) = browser.get("/search?q=mug").await;
    assert!(found.contains("/p/MUG-STONE"), "search finds it: {found}");

    // Into the cart before signing up: the anonymous cart follows the shopper in.
    let to = browser
        .post("/cart/items", &[("sku", "MUG-STONE"), ("quantity", "2")])
        .await;
    assert_eq!(to, "/cart?added=MUG-STONE");
    assert!(browser.cookies.contains_key("bazaar_cart"));
    assert_eq!(
        browser.get("/checkout").await.0,
        303,
        "checking out needs an account"
    );
    let email = format!("grace-{}@example.com", std::process::id());
    let to = browser
        .post(
            "/signup",
            &[
                ("name", "Grace"),
                ("email", &email),
                ("password", "a long enough password"),
                ("next", "/checkout"),
            ],
        )
        .await;
    assert_eq!(to, "/checkout");
    assert!(browser.cookies.contains_key("bazaar_access"));
    assert!(
        !browser.cookies.contains_key("bazaar_cart"),
        "merged, and its cookie gone"
    );

    let order = browser.checkout("4242 4242 4242 4242").await;
    assert!(order.starts_with("/orders/"), "{order}");
    let page = browser.settled(&order).await;
    assert!(
        page.contains(r#"class="status confirmed">Confirmed"#),
        "{page}"
    );
    assert!(page.contains("Stoneware Mug"));
    let (_, orders) = browser.get("/orders").await;
    assert!(orders.contains(&order), "{orders}");

    // The confirmation arrives in the shopper's mailbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, mailbox) = browser.get("/emails").await;
        if mailbox.contains("order is confirmed") {
            assert!(mailbox.contains(&email), "{mailbox}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no confirmation email: {mailbox}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A declined card: the order is cancelled, and the page says why.
    browser
        .post("/cart/items", &[("sku", "BOOK-RUST"), ("quantity", "1")])
        .await;
    let declined = browser.checkout("4000 0000 0000 0002").await;
    let page = browser.settled(&declined).await;
    assert!(
        page.contains(r#"class="status cancelled">Cancelled: "#),
        "{page}"
    );
    assert!(page.contains("declined"), "{page}");

    let to = browser.post("/logout", &[]).await;
    assert_eq!(to, "/");
    assert!(browser.cookies.is_empty(), "{:?}", browser.cookies);
    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
async fn an_administrator_sees_the_running_system_in_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);

    // A customer is told the console is not theirs.
    let mut customer = Browser::new(&running);
    let email = format!("ada-{}@example.com", std::process::id());
    customer
        .post(
            "/signup",
            &[
                ("name", "Ada"),
                ("email", &email),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(customer.get("/console").await.0, 403);

    // The administrator signs in on the way to it.
    let mut admin = Browser::new(&running);
    assert_eq!(admin.get("/console").await.0, 303);
    let to = admin
        .post(
            "/login",
            &[
                ("email", "admin@bazaar.example"),
                ("password", "keys-to-the-shop"),
                ("next", "/console"),
            ],
        )
        .await;
    assert_eq!(to, "/console");
    // Traffic to see: a few pages, each a trace through the gateway.
    for _ in 0..5 {
        admin.get("/p/MUG-STONE").await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let console = loop {
        let (status, console) = admin.get("/console").await;
        assert_eq!(status, 200, "{console}");
        if console.contains("href=\"/console/traces/") {
            break console;
        }
        assert!(
            Instant::now() < deadline,
            "no trace on the console: {console}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Every instance `up` started is on the map, and every source answered (the telemetry
    // service and each service's dead letters let the console in over mTLS).
    let state = running.run_state().expect("run.json");
    for instance in state["instances"].as_array().expect("instances") {
        let id = instance["id"].as_str().expect("id");
        assert!(console.contains(id), "{id} is not on the map:\n{console}");
    }
    assert!(!console.contains("could not be"), "{console}");
    assert!(console.contains("No dead letters"), "{console}");
    let web = console
        .split("<tr>")
        .find(|row| row.contains("<th scope=\"row\">web</th>"))
        .expect("the storefront's RED row");
    assert!(web.contains("/s</td>"), "{web}");

    let trace = console
        .split("href=\"/console/traces/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a trace id")
        .to_owned();
    let (status, waterfall) = admin.get(&format!("/console/traces/{trace}")).await;
    assert_eq!(status, 200, "{waterfall}");
    assert!(waterfall.contains("class=\"bar"), "{waterfall}");

    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

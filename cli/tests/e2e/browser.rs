//! The storefront in a real browser: Debian's chromium, headless, driven over WebDriver by
//! chromedriver (`apt install chromium chromium-driver`; `.ci/run` installs them). A shopper
//! clicks from the home page to a confirmed order and its email, a declined card shows its
//! reason, and the pages fit a phone; an administrator watches a canary in the console. Screenshots of the key pages land in
//! `$BAZAAR_SCREENSHOTS` (default: `screenshots/` in cargo's test scratch directory).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::releases::{Load, policy};
use crate::system::{BIN, Running};

/// A chromedriver process and a browser session on it; both end when this is dropped.
struct Chrome {
    client: Client,
    driver: Child,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A headless chromium of `width` × `height` CSS pixels.
async fn chrome(width: u32, height: u32) -> Chrome {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let driver =
        Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts (apt install chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            // As root in CI: no sandbox; /dev/shm may be small in containers.
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", format!("--window-size={width},{height}")],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a browser session");
    Chrome { client, driver }
}

/// Where screenshots go.
fn screenshots() -> PathBuf {
    let dir = std::env::var_os("BAZAAR_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).expect("a screenshot directory");
    dir
}

impl Chrome {
    async fn open(&self, running: &Running, path: &str) {
        self.client
            .goto(&running.at(path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    /// Clicks the element, waiting (30 s at most) for it to be there: a page that redraws
    /// itself, like the console, may be between two drawings, or drawing a section whose
    /// source was briefly unavailable. A click that failed did not happen, so it is tried again.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let error = match self.client.find(Locator::Css(css)).await {
                Ok(element) => match element.click().await {
                    Ok(_) => return,
                    Err(error) => format!("clicking {css}: {error}"),
                },
                Err(error) => format!("{css}: {error}"),
            };
            if Instant::now() >= deadline {
                self.screenshot("failed").await;
                let page = self.client.source().await.unwrap_or_default();
                panic!("{error} at {}:\n{page}", self.path().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the field, once it is there (30 s at most: the page may still be
    /// on its way).
    async fn fill(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let field = loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(field) => break field,
                Err(error) if Instant::now() >= deadline => {
                    self.screenshot("failed").await;
                    let page = self.client.source().await.unwrap_or_default();
                    panic!("{css}: {error} at {}:\n{page}", self.path().await);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clearing {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("a URL");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits (30 s at most) until the browser is at `expected`: a form's answer may still be
    /// on its way when the click returns. Fails with the page it is on, which says why (a
    /// form shown again with its error, say).
    async fn arrives_at(&self, expected: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let path = self.path().await;
            if path == expected {
                return;
            }
            if Instant::now() >= deadline {
                self.screenshot("failed").await;
                let page = self.client.source().await.unwrap_or_default();
                panic!("still at {path}, not {expected}:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// Waits (30 s at most) for an element matching `css`; its text. The page may reload
    /// meanwhile (the order page does when its checkout settles): an element that went stale
    /// is looked for again.
    async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                return text;
            }
            if Instant::now() >= deadline {
                self.screenshot("failed").await;
                let page = self.client.source().await.unwrap_or_default();
                panic!("never appeared: {css} at {}:\n{page}", self.path().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (10 s at most) until every picture on the page has loaded.
    async fn pictures_loaded(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let loaded = self
                .client
                .execute(
                    "return [...document.images].every(p => p.complete && p.naturalWidth > 0);",
                    vec![],
                )
                .await
                .expect("a script runs");
            if loaded == json!(true) {
                // Loaded is not yet painted: give the compositor a moment before a screenshot.
                tokio::time::sleep(Duration::from_millis(500)).await;
                return;
            }
            assert!(Instant::now() < deadline, "pictures did not load");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(screenshots().join(format!("{name}.png")), png).expect("saved");
    }

    /// Every visible form field is labelled, for screen readers.
    async fn fields_are_labelled(&self) {
        let unlabelled = self
            .client
            .execute(
                "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                   .filter(f => f.labels.length === 0 && !f.getAttribute('aria-label'))
                   .map(f => f.name || f.id);",
                vec![],
            )
            .await
            .expect("a script runs");
        assert_eq!(unlabelled, json!([]), "fields without a label");
    }

    /// Fills the checkout form with `card` and places the order; the order page's path.
    async fn check_out(&self, card: &str) -> String {
        self.fill("#ship-name", "Grace Hopper").await;
        self.fill("#line1", "1 Compiler Lane").await;
        self.fill("#city", "Arlington").await;
        self.fill("#postal_code", "22201").await;
        self.click("input[name=payment_method][value=new]").await;
        self.fill("#card_number", card).await;
        self.fill("#exp", "12/2031").await;
        self.fill("#cvc", "123").await;
        self.fields_are_labelled().await;
        self.click("form[action='/checkout'] button[type=submit]")
            .await;
        self.wait_for("#order-status").await;
        self.path().await
    }
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (apt install chromium chromium-driver)"]
async fn a_shopper_clicks_from_the_home_page_to_a_confirmed_order_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    let chrome = chrome(1280, 900).await;

    chrome.open(&running, "/").await;
    assert_eq!(
        chrome.client.title().await.expect("a title"),
        "Shop · Bazaar"
    );
    chrome.screenshot("home").await;
    chrome.click("nav.categories a[href='/c/kitchen']").await;
    assert_eq!(chrome.text("main h1").await, "Kitchen");
    chrome.click("a[href='/p/MUG-STONE']").await;
    assert_eq!(chrome.text("main h1").await, "Stoneware Mug");
    chrome.pictures_loaded().await;
    chrome.screenshot("product").await;
    chrome.fill("#quantity", "2").await;
    chrome.click("form.buy button").await;
    let added = chrome.wait_for("main .notice").await;
    assert!(added.contains("Added MUG-STONE"), "{added}");
    chrome.screenshot("cart").await;

    // Checking out needs an account: sign up on the way, and land back at the checkout.
    chrome.click("a.button[href='/checkout']").await;
    chrome.arrives_at("/login?next=%2Fcheckout").await;
    chrome.click("main a[href^='/signup']").await;
    chrome.fill("#name", "Grace").await;
    chrome
        .fill(
            "#email",
            &format!("grace-{}@example.com", std::process::id()),
        )
        .await;
    chrome.fill("#password", "a long enough password").await;
    chrome.fields_are_labelled().await;
    chrome.click("main form button[type=submit]").await;
    chrome.arrives_at("/checkout").await;
    assert!(chrome.text("main").await.contains("2 items, $36.00"));
    chrome.screenshot("checkout").await;

    // The order page updates itself (its script) until the saga confirms the order.
    let order = chrome.check_out("4242 4242 4242 4242").await;
    assert!(order.starts_with("/orders/"), "{order}");
    let status = chrome.wait_for("#order-status .status.confirmed").await;
    assert_eq!(status, "Confirmed");
    chrome.screenshot("order-confirmed").await;

    // The confirmation email, in the shopper's mailbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        chrome.open(&running, "/emails").await;
        if chrome.text("main").await.contains("order is confirmed") {
            break;
        }
        assert!(Instant::now() < deadline, "no confirmation email");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    chrome.screenshot("emails").await;

    // A declined card: cancelled, with the reason on the page.
    chrome.open(&running, "/p/BOOK-RUST").await;
    chrome.click("form.buy button").await;
    // Leaving before the cart has answered would cancel the adding (CI saw an empty cart).
    let added = chrome.wait_for("main .notice").await;
    assert!(added.contains("Added BOOK-RUST"), "{added}");
    chrome.open(&running, "/checkout").await;
    chrome.check_out("4000 0000 0000 0002").await;
    let status = chrome.wait_for("#order-status .status.cancelled").await;
    assert!(status.starts_with("Cancelled: "), "{status}");
    assert!(status.contains("declined"), "{status}");
    chrome.screenshot("order-cancelled").await;

    // On a phone-sized screen nothing scrolls sideways.
    let phone = self::chrome(390, 844).await;
    for path in ["/", "/p/MUG-STONE", "/login"] {
        phone.open(&running, path).await;
        let overflow = phone
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .expect("a script runs");
        assert_eq!(overflow, json!(0), "{path} scrolls sideways on a phone");
    }
    phone.open(&running, "/").await;
    phone.pictures_loaded().await;
    phone.screenshot("phone-home").await;

    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

#[tokio::test]
#[ignore = "needs chromium and chromedriver (apt install chromium chromium-driver)"]
async fn the_console_shows_a_canary_in_progress_in_chromium() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = Running::start(dir.path(), &[]);
    // Shoppers on the catalog while a new version of it takes its first step.
    let load = Load::start(&running, 2);
    let mut deploy = tokio::process::Command::new(BIN)
        .args([
            "deploy",
            "catalog",
            "--version",
            "9.7.0",
            "--steps",
            "30,100",
        ])
        .args(["--interval", "120s"])
        .arg("--data-dir")
        .arg(&running.data_dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("bazaar deploy runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while policy(&running).await.is_none_or(|p| p["weight"] != 30) {
        assert!(
            Instant::now() < deadline,
            "the canary never reached its first step"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let chrome = chrome(1280, 1600).await;
    chrome.open(&running, "/console").await;
    chrome.arrives_at("/login?next=%2Fconsole").await;
    chrome.fill("#email", "admin@bazaar.example").await;
    chrome.fill("#password", "keys-to-the-shop").await;
    chrome.click("main form button[type=submit]").await;
    chrome.arrives_at("/console").await;
    let release = chrome.wait_for("#releases article.release.canary h3").await;
    assert_eq!(release, "catalog: canary of 9.7.0 at 30 %");
    // Each version's row: version, role, instances, rate, errors, p50, p99.
    let versions = || async {
        chrome
            .client
            .execute(
                "return [...document.querySelectorAll('#releases article.release.canary tbody tr')]
                   .map(r => [...r.cells].map(c => c.textContent.trim()));",
                vec![],
            )
            .await
            .expect("a script runs")
    };
    let rows = versions().await;
    assert_eq!(
        (&rows[1][0], &rows[1][1]),
        (&json!("9.7.0"), &json!("candidate")),
        "{rows}"
    );
    assert_ne!(
        rows[1][2],
        json!("0"),
        "the candidate's instances are up: {rows}"
    );
    // The page redraws itself: the candidate's share of the load shows up as a rate.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = versions().await;
        let rate = rows[1][3].as_str().unwrap_or("").to_owned();
        if rate.ends_with("/s") && rate != "0.0/s" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no traffic on the candidate: {rows}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let map = chrome.text("#services").await;
    assert!(map.contains("catalog-9.7.0-1"), "{map}");
    chrome.screenshot("console").await;
    chrome
        .client
        .execute(
            "document.getElementById('releases').scrollIntoView();",
            vec![],
        )
        .await
        .expect("a script runs");
    chrome.screenshot("console-canary").await;

    // A trace of the load, drawn as a waterfall.
    chrome.click("#traces a[href^='/console/traces/']").await;
    chrome.wait_for("table.waterfall .bar").await;
    chrome.screenshot("trace").await;

    // Interrupted, the deploy rolls back, and the console says no release is under way.
    let pid =
        nix::unistd::Pid::from_raw(i32::try_from(deploy.id().expect("pid")).expect("pid fits"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal delivered");
    let status = deploy.wait().await.expect("deploy ends");
    assert_eq!(status.code(), Some(1), "rolled back");
    chrome.open(&running, "/console").await;
    let release = chrome.wait_for("#releases article.release h3").await;
    assert!(release.contains("no release under way"), "{release}");
    let (sent, _) = load.finish().await;
    assert!(sent > 0, "the load ran");

    let (status, output) = running.interrupt();
    assert!(status.success(), "{output}");
}

//! `users.GetUser` over gRPC, through the chassis' gRPC client: who may see which account, what
//! the errors are, and, behind mTLS, which services may call at all.

use std::collections::BTreeMap;
use std::time::Duration;

use chassis::client::{GrpcClient, Idempotent, Transport};
use chassis::config::DiscoveryConfig;
use chassis::discovery::Discovery;
use chassis::mtls::Identity;
use chassis::testing::TestDatabase;
use chassis::tls::DevCa;
use contracts::grpc::users::users_client::UsersClient;
use contracts::grpc::users::{GetUserRequest, User};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use crate::helpers::TestApp;

/// A gRPC client whose only `users` instances are `instances`, presenting `identity`.
fn client(
    instances: &[&str],
    identity: Option<Identity>,
    timeout: Duration,
) -> (GrpcClient, CancellationToken) {
    let config = DiscoveryConfig {
        registry: None,
        static_instances: BTreeMap::from([(
            "users".to_owned(),
            instances.iter().map(|i| (*i).to_owned()).collect(),
        )]),
        call_timeout: timeout,
        ..DiscoveryConfig::default()
    };
    let stop = CancellationToken::new();
    let discovery = Discovery::new(&config, Transport::http(), &stop);
    (GrpcClient::new(discovery, identity, &config), stop)
}

/// `GetUser(id)`, acting for `acting` (`(user id, roles)`) when given.
async fn get_user(
    client: &GrpcClient,
    acting: Option<(&str, &str)>,
    id: &str,
) -> Result<User, Status> {
    client
        .call("users", Idempotent::Yes, |channel| {
            let mut request = tonic::Request::new(GetUserRequest { id: id.to_owned() });
            if let Some((user, roles)) = acting {
                let metadata = request.metadata_mut();
                metadata.insert("x-bazaar-user-id", user.parse().expect("ascii"));
                metadata.insert("x-bazaar-user-roles", roles.parse().expect("ascii"));
            }
            async move { UsersClient::new(channel).get_user(request).await }
        })
        .await
}

#[tokio::test]
async fn a_user_sees_their_own_account_and_an_administrator_any() {
    let app = TestApp::spawn(TestDatabase::sqlite()).await;
    let (ada, _) = app.signed_in("ada@example.com").await;
    let (bob, _) = app.signed_in("bob@example.com").await;
    let (client, _stop) = client(&[&app.url], None, Duration::from_secs(5));

    let own = get_user(&client, Some((&ada, "customer")), &ada)
        .await
        .expect("ada sees herself");
    assert_eq!(own.id, ada);
    assert_eq!(own.email, "ada@example.com");
    assert_eq!(own.name, "Test User");
    assert_eq!(own.roles, ["customer"]);
    assert!(own.created_at_ms > 0);

    let other = get_user(&client, Some((&ada, "customer")), &bob)
        .await
        .expect_err("ada may not see bob");
    assert_eq!(other.code(), Code::PermissionDenied);
    let admin = get_user(&client, Some((&ada, "customer,admin")), &bob)
        .await
        .expect("an administrator sees anyone");
    assert_eq!(admin.email, "bob@example.com");

    let nobody = uuid::Uuid::now_v7().to_string();
    let missing = get_user(&client, Some((&nobody, "customer")), &nobody)
        .await
        .expect_err("no such account");
    assert_eq!(missing.code(), Code::NotFound);
    let bad = get_user(&client, Some((&ada, "admin")), "nope")
        .await
        .expect_err("not a uuid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("\"nope\""), "{}", bad.message());
    let anonymous = get_user(&client, None, &ada)
        .await
        .expect_err("acting for nobody");
    assert_eq!(anonymous.code(), Code::PermissionDenied);
    let forged = get_user(&client, Some(("not-a-uuid", "admin")), &ada)
        .await
        .expect_err("malformed identity");
    assert_eq!(forged.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn behind_mtls_only_orders_may_call_and_a_dead_instance_costs_a_retry() {
    let pki = tempfile::tempdir().expect("dir");
    let ca = DevCa::open(pki.path()).expect("CA");
    let issue = |service: &str| {
        ca.issue_workload(service, Duration::from_secs(3600))
            .expect("issued")
            .0
    };
    let identity = |service: &str| Identity::load(&issue(service)).expect("usable");
    let app = TestApp::spawn_with_mtls(TestDatabase::sqlite(), issue("users")).await;
    assert!(app.url.starts_with("https://"), "{}", app.url);
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("https://{}", listener.local_addr().expect("addr"))
    };
    let someone = uuid::Uuid::now_v7().to_string();

    // Orders gets through to the handler (no such account), after the dead instance.
    let (orders, _stop) = client(
        &[&dead, &app.url],
        identity("orders"),
        Duration::from_secs(5),
    );
    for _ in 0..4 {
        let answer = get_user(&orders, Some((&someone, "customer")), &someone)
            .await
            .expect_err("no such account");
        assert_eq!(answer.code(), Code::NotFound, "{answer:?}");
    }

    // Cart has a certificate from the CA, but the route does not name it.
    let (cart, _stop) = client(&[&app.url], identity("cart"), Duration::from_secs(5));
    let refused = get_user(&cart, Some((&someone, "customer")), &someone)
        .await
        .expect_err("cart may not call");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Without an identity there is no way in.
    let (anonymous, _stop) = client(&[&app.url], None, Duration::from_secs(1));
    let refused = get_user(&anonymous, Some((&someone, "customer")), &someone)
        .await
        .expect_err("no certificate");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
}

#[tokio::test]
async fn a_silent_instance_costs_the_deadline_not_more() {
    // Accepts connections and never answers, TLS handshake included.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent = format!("https://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let pki = tempfile::tempdir().expect("dir");
    let ca = DevCa::open(pki.path()).expect("CA");
    let (orders, _) = ca
        .issue_workload("orders", Duration::from_secs(3600))
        .expect("issued");
    let (client, _stop) = client(
        &[&silent],
        Identity::load(&orders).expect("usable"),
        Duration::from_millis(300),
    );
    let started = std::time::Instant::now();
    let error = get_user(&client, Some(("x", "customer")), "x")
        .await
        .expect_err("nobody answers");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

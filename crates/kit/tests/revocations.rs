//! Token revocations from a second source (`auth.revocations`) against the real NATS JetStream:
//! a dedicated tenant's process runs on a stream and namespace of its own, billing publishes
//! revocations on the platform's, and the process hears both. Never mocked, never skipped.
use std::{future::Future, sync::Arc, time::Duration};

use spharos_kit::{
    TenantId,
    auth::{AuthError, TOKEN_REVOKED_TOPIC, TokenSigner, TokenVerifier},
    bus::{Bus, Envelope},
    config::{NatsSettings, Settings},
    crypto::MasterKey,
    platform::Platform,
    testing::{nats_url, unique_bus_names},
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Fresh NATS settings: a stream and namespace no other test uses.
fn nats_settings() -> NatsSettings {
    let (namespace, stream) = unique_bus_names();
    NatsSettings {
        url: Some(nats_url()),
        stream,
        namespace,
    }
}

async fn connect(settings: &NatsSettings) -> Bus {
    Bus::connect(settings).await.unwrap_or_else(|e| {
        panic!("{e}; start `nats-server -js`, set SPHAROS_TEST_NATS_URL or run `cargo xtask test`")
    })
}

/// One process: its own bus `own`, revocations also from `revocations` (stream, namespace)
/// when given, trusting `signer`'s tokens. Its revocation listeners are running (the task
/// ends on `shutdown`).
async fn process(
    own: &NatsSettings,
    revocations: Option<&NatsSettings>,
    signer: &TokenSigner,
    shutdown: &CancellationToken,
) -> (Platform, JoinHandle<()>) {
    let mut settings = Settings::load(None).expect("built-in defaults load");
    settings.nats = own.clone();
    if let Some(r) = revocations {
        settings.auth.revocations.stream = Some(r.stream.clone());
        settings.auth.revocations.namespace = Some(r.namespace.clone());
    }
    let platform = Platform {
        bus: connect(&settings.nats).await,
        settings: Arc::new(settings),
        verifier: TokenVerifier::new([signer.public_key()]),
        signer: signer.clone(),
        master_key: Arc::new(MasterKey::generate()),
        shutdown: shutdown.clone(),
    };
    // The listener on a missing platform stream retries in the background: no error here.
    let listeners = platform
        .spawn_revocation_listeners()
        .await
        .expect("the own bus subscribes");
    (platform, listeners)
}

/// Cancels `shutdown` and waits (briefly) for every listener to stop, as `spharos serve` does.
async fn stop(shutdown: &CancellationToken, listeners: Vec<JoinHandle<()>>) {
    shutdown.cancel();
    for l in listeners {
        tokio::time::timeout(Duration::from_secs(5), l)
            .await
            .expect("the listeners stop on shutdown")
            .expect("no listener panicked");
    }
}

/// `billing.token_revoked` as billing's outbox publishes it.
fn revocation(tenant: TenantId, token_id: &str) -> Envelope {
    let (service, event) = TOKEN_REVOKED_TOPIC.split_once('.').expect("service.event");
    Envelope::new(
        service,
        event,
        tenant,
        token_id,
        &spharos_proto::billing::TokenRevoked {
            token_id: token_id.to_string(),
            tenant_id: tenant.to_string(),
            revoke_time: None,
            expire_unix: 0,
        },
    )
}

async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_revoked(verifier: &TokenVerifier, token: &str, timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        let result = verifier.verify(token);
        async move { result == Err(AuthError::Revoked) }
    })
    .await;
}

fn token_id(signer: &TokenSigner, token: &str) -> String {
    TokenVerifier::new([signer.public_key()])
        .verify(token)
        .expect("valid")
        .token_id
}

fn jetstream(bus: &Bus) -> async_nats::jetstream::Context {
    match bus {
        Bus::Nats(b) => b.jetstream().clone(),
        Bus::InProcess(_) => panic!("a NATS bus"),
    }
}

/// The dedicated tenant's case: its pods' own bus is stream A, billing (on the platform)
/// publishes revocations on stream B. With `auth.revocations` = B, a revocation published on
/// B before the process started is replayed and one published later applies within moments;
/// its own bus still works. A process on A without the setting never hears B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_hears_revocations_from_the_configured_platform_stream() {
    spharos_kit::telemetry::init_for_tests();
    let platform_nats = nats_settings();
    let dedicated_nats = nats_settings();
    // Billing's deployment: it made the platform stream B.
    let billing_bus = connect(&platform_nats).await;
    let js = jetstream(&billing_bus);
    let platform_stream_before = js
        .get_stream(&platform_nats.stream)
        .await
        .expect("platform stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();

    let signer = TokenSigner::generate();
    let tenant = TenantId::generate();
    let [early, late, own] =
        ["pos-1", "pos-2", "pos-3"].map(|subject| signer.mint(tenant, subject, &[], 600));
    billing_bus
        .publish_batch(&[revocation(tenant, &token_id(&signer, &early))])
        .await
        .expect("published on the platform stream");

    let shutdown = CancellationToken::new();
    let (dedicated, dedicated_listeners) =
        process(&dedicated_nats, Some(&platform_nats), &signer, &shutdown).await;
    let (without, without_listeners) = process(&dedicated_nats, None, &signer, &shutdown).await;
    wait_revoked(
        &dedicated.verifier,
        &early,
        Duration::from_secs(10),
        "the platform's earlier revocation replayed",
    )
    .await;
    assert!(dedicated.verifier.verify(&late).is_ok(), "only that token");

    billing_bus
        .publish_batch(&[revocation(tenant, &token_id(&signer, &late))])
        .await
        .expect("published on the platform stream");
    wait_revoked(
        &dedicated.verifier,
        &late,
        Duration::from_secs(5),
        "the platform's new revocation applied",
    )
    .await;

    // The own bus (stream A) still delivers, to both processes.
    dedicated
        .bus
        .publish_batch(&[revocation(tenant, &token_id(&signer, &own))])
        .await
        .expect("published on the own stream");
    for (p, what) in [
        (&dedicated, "own-bus revocation with the setting"),
        (&without, "own-bus revocation without the setting"),
    ] {
        wait_revoked(&p.verifier, &own, Duration::from_secs(5), what).await;
    }
    // The process without the setting is up to date on its own stream, and never heard B:
    // the platform's revocations do not reach it (the bug this setting fixes).
    assert!(without.verifier.verify(&early).is_ok());
    assert!(without.verifier.verify(&late).is_ok());

    // Reading the platform stream did not change it.
    let platform_stream_after = js
        .get_stream(&platform_nats.stream)
        .await
        .expect("platform stream")
        .info()
        .await
        .expect("info")
        .config
        .clone();
    assert_eq!(
        format!("{platform_stream_before:?}"),
        format!("{platform_stream_after:?}")
    );

    stop(&shutdown, vec![dedicated_listeners, without_listeners]).await;
    for s in [&platform_nats.stream, &dedicated_nats.stream] {
        let _ = js.delete_stream(s).await;
    }
}

/// A dedicated tenant started before the platform's stream exists: the listener neither fails
/// the start nor creates the stream; it retries until the platform makes it, then applies what
/// billing publishes there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_platform_stream_is_waited_for_and_never_created() {
    spharos_kit::telemetry::init_for_tests();
    let platform_nats = nats_settings();
    let dedicated_nats = nats_settings();
    let signer = TokenSigner::generate();
    let tenant = TenantId::generate();
    let token = signer.mint(tenant, "pos-1", &[], 600);

    let shutdown = CancellationToken::new();
    let (dedicated, listeners) =
        process(&dedicated_nats, Some(&platform_nats), &signer, &shutdown).await;
    let js = jetstream(&dedicated.bus);
    // A few retries later, still no platform stream: the listener only looks.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let missing = js.get_stream(&platform_nats.stream).await;
    assert!(
        missing.is_err(),
        "the listener created the platform stream {}",
        platform_nats.stream
    );
    assert!(dedicated.verifier.verify(&token).is_ok());

    // The platform comes up and billing revokes the token.
    let billing_bus = connect(&platform_nats).await;
    billing_bus
        .publish_batch(&[revocation(tenant, &token_id(&signer, &token))])
        .await
        .expect("published on the platform stream");
    wait_revoked(
        &dedicated.verifier,
        &token,
        Duration::from_secs(15),
        "the revocation once the platform stream exists",
    )
    .await;

    stop(&shutdown, vec![listeners]).await;
    for s in [&platform_nats.stream, &dedicated_nats.stream] {
        let _ = js.delete_stream(s).await;
    }
}

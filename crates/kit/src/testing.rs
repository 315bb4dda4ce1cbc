//! Helpers for integration tests against real backends, like zero2prod's `spawn_app`: every
//! test gets its own PostgreSQL database (or SQLite directory) and its own NATS stream and
//! subject namespace. A test that cannot reach PostgreSQL or NATS fails; it never skips.
use std::sync::Arc;

use sea_orm::{ConnectionTrait, Database};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{TokenSigner, TokenVerifier},
    bus::Bus,
    config::Settings,
    crypto::MasterKey,
    platform::Platform,
};

/// Which backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    /// PostgreSQL + NATS JetStream (production).
    Postgres,
    /// SQLite + the in-process bus (embedded default).
    Sqlite,
}

/// `SPHAROS_TEST_DATABASE_URL`, default the local superuser.
pub fn postgres_base_url() -> String {
    std::env::var("SPHAROS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `SPHAROS_TEST_NATS_URL`, default the local server.
pub fn nats_url() -> String {
    std::env::var("SPHAROS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// Creates a database with a random name and returns its URL. Panics (fails the test) with a
/// clear message when PostgreSQL cannot be reached.
pub async fn fresh_postgres_database() -> String {
    let base = postgres_base_url();
    let name = format!("spharos_test_{}", random_suffix());
    let admin = Database::connect(&base).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {base} is unreachable ({e}); run the suite with `cargo xtask test`, which starts one")
    });
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    let _ = admin.close().await;
    with_database(&base, &name)
}

/// `base` with its database name replaced by `name`.
pub fn with_database(base: &str, name: &str) -> String {
    let (url, query) = match base.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (base, None),
    };
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let root = match url[scheme_end..].find('/') {
        Some(slash) => &url[..scheme_end + slash],
        None => url,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// A unique (namespace, stream) pair so parallel tests never share subjects.
pub fn unique_bus_names() -> (String, String) {
    let s = random_suffix();
    (format!("t{s}"), format!("T{}", s.to_uppercase()))
}

/// Settings for one test: a fresh PostgreSQL database and NATS namespace, or a fresh SQLite
/// directory and the in-process bus. Keep the returned `TempDir` alive for the test.
pub async fn settings(backend: TestBackend) -> (Settings, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut s = Settings::load(None).expect("built-in defaults load");
    s.database.data_dir = dir.path().to_path_buf();
    if backend == TestBackend::Postgres {
        s.database.url = Some(SecretString::from(fresh_postgres_database().await));
        s.database.max_connections = 20;
        let (ns, stream) = unique_bus_names();
        s.nats.url = Some(nats_url());
        s.nats.namespace = ns;
        s.nats.stream = stream;
    }
    (s, dir)
}

/// A platform for tests: fresh keys, the bus the settings select, the token revocation
/// listener running. Returns the signer so tests can mint tokens.
pub async fn platform(settings: Settings) -> (Platform, TokenSigner) {
    crate::telemetry::init_for_tests();
    let signer = TokenSigner::generate();
    let bus = Bus::connect(&settings.nats).await.unwrap_or_else(|e| {
        panic!("the test bus is unreachable ({e}); run the suite with `cargo xtask test`, which starts NATS")
    });
    let platform = Platform {
        settings: Arc::new(settings),
        bus,
        verifier: TokenVerifier::new([signer.public_key()]),
        signer: signer.clone(),
        master_key: Arc::new(MasterKey::generate()),
        shutdown: CancellationToken::new(),
    };
    // As in `spharos serve`: the revocation listeners of one process.
    platform
        .spawn_revocation_listeners()
        .await
        .unwrap_or_else(|e| panic!("token revocation listener: {e}"));
    (platform, signer)
}

/// `msg` as a request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("ascii header value"),
    );
    r
}

/// Asserts `INVALID_ARGUMENT` with a `BadRequest` naming (at least) each of `fields`.
pub fn assert_invalid(status: &tonic::Status, fields: &[&str]) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest details");
    let named: Vec<&str> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    for f in fields {
        assert!(named.contains(f), "{f} not among the violations {named:?}");
    }
}

/// Asserts `code` with an `ErrorInfo` of this `reason` in the `spharos.io` domain.
pub fn assert_reason(status: &tonic::Status, code: tonic::Code, reason: &str) {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), code, "{status:?}");
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("ErrorInfo details");
    assert_eq!(info.reason, reason, "{status:?}");
    assert_eq!(info.domain, "spharos.io");
}

/// Every event received on a durable subscription of the platform's bus, acknowledged at once
/// (the in-process bus waits for a subscriber's ack before it marks the outbox row published).
/// It stops with the platform.
pub struct EventTap {
    events: Arc<std::sync::Mutex<Vec<crate::bus::Envelope>>>,
}

impl EventTap {
    /// Subscribes now as the durable consumer `name`, so it sees everything published after.
    pub async fn start(platform: &Platform, name: &str, topics: &[&str]) -> Self {
        let mut sub = platform
            .bus
            .subscribe(name, topics)
            .await
            .expect("test subscription");
        let events: Arc<std::sync::Mutex<Vec<crate::bus::Envelope>>> = Arc::default();
        let sink = events.clone();
        let shutdown = platform.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = sub.next() => n,
                };
                match next {
                    Some(Ok(d)) => {
                        sink.lock().expect("tap lock").push(d.envelope.clone());
                        let _ = d.ack().await;
                    }
                    Some(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    None => return,
                }
            }
        });
        Self { events }
    }

    /// The events on `topic` received so far.
    pub fn all(&self, topic: &str) -> Vec<crate::bus::Envelope> {
        self.events
            .lock()
            .expect("tap lock")
            .iter()
            .filter(|e| e.topic() == topic)
            .cloned()
            .collect()
    }

    /// The first event on `topic` about `subject_id`, waiting up to 10 s.
    pub async fn wait_for(&self, topic: &str, subject_id: &str) -> crate::bus::Envelope {
        self.wait_for_n(topic, subject_id, 1).await.remove(0)
    }

    /// Waits until `n` events on `topic` about `subject_id` arrived (10 s).
    pub async fn wait_for_n(
        &self,
        topic: &str,
        subject_id: &str,
        n: usize,
    ) -> Vec<crate::bus::Envelope> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let found: Vec<_> = self
                .all(topic)
                .into_iter()
                .filter(|e| e.subject_id == subject_id)
                .collect();
            if found.len() >= n {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} x {topic} for {subject_id} not seen within 10 s (saw {})",
                found.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://h:1/db?sslmode=disable", "y"),
            "postgres://h:1/y?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "z"), "postgres://h:1/z");
    }
}

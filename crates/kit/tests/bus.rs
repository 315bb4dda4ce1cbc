//! Integration tests of the event bus against a real PostgreSQL and a real NATS JetStream
//! (and SQLite with the in-process bus): the outbox publishes exactly what committed, and
//! consumers handle each event once however often it is delivered. Never mocked, never skipped.
use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use futures::StreamExt;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use secrecy::SecretString;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{self, Bus, Envelope, EventHandler, OutboxDeleteOnPublishMigration, OutboxMigration},
    config::{DatabaseSettings, NatsSettings},
    db::{Db, Tx, enable_tenant_rls},
    telemetry::{ConsumerLabels, ServiceLabels, metrics},
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Helpers

#[derive(Clone, PartialEq, prost::Message)]
struct PointsEarned {
    #[prost(string, tag = "1")]
    member_id: String,
    #[prost(int64, tag = "2")]
    points: i64,
}

fn earned(tenant: TenantId, points: i64) -> Envelope {
    let member_id = Uuid::now_v7().to_string();
    Envelope::new(
        "points",
        "earned",
        tenant,
        member_id.clone(),
        &PointsEarned { member_id, points },
    )
}

/// The kit's tables plus a tenant table the test handler writes to, proving the handler runs
/// in the tenant's transaction (RLS on PostgreSQL).
struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(OutboxMigration),
            Box::new(OutboxDeleteOnPublishMigration),
            Box::new(EffectsMigration),
        ]
    }
}

struct EffectsMigration;

impl MigrationName for EffectsMigration {
    fn name(&self) -> &str {
        "m20261203_000100_test_effects"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for EffectsMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        use sea_orm_migration::prelude::{ColumnDef, Index, Table};
        manager
            .create_table(
                Table::create()
                    .table("test_effects")
                    .col(ColumnDef::new("tenant_id").uuid().not_null())
                    .col(ColumnDef::new("event_id").uuid().not_null())
                    .primary_key(Index::create().col("tenant_id").col("event_id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "test_effects").await
    }
}

fn pg_base_url() -> String {
    std::env::var("SPHAROS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn nats_url() -> String {
    std::env::var("SPHAROS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn random_hex() -> String {
    Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (url, query) = base
        .split_once('?')
        .map_or((base, None), |(u, q)| (u, Some(q)));
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let root = url[scheme_end..]
        .find('/')
        .map_or(url, |slash| &url[..scheme_end + slash]);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Fails within seconds, not the pool's default 30 s, when PostgreSQL is down.
fn admin_options(url: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_string());
    opts.max_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    opts
}

/// One test's PostgreSQL database, dropped at the end.
struct PgDatabase {
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> Self {
        let base = pg_base_url();
        let name = format!("spharos_bus_{}", random_hex());
        let admin = Database::connect(admin_options(&base)).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base} is unreachable ({e}); set SPHAROS_TEST_DATABASE_URL or run `cargo xtask test`")
        });
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
        let _ = admin.close().await;
        let url = with_database(&base, &name);
        Self { name, url }
    }

    async fn open(&self) -> Db {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = DatabaseSettings {
            url: Some(SecretString::from(self.url.clone())),
            data_dir: dir.path().to_path_buf(),
            app_role: "spharos_app".into(),
            max_connections: 5,
            statistics_interval_seconds: 0,
        };
        Db::open::<TestMigrator>(&settings, "bustest")
            .await
            .expect("migrations run on the fresh database")
    }

    async fn drop(self) {
        if let Ok(admin) = Database::connect(admin_options(&pg_base_url())).await {
            let _ = admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                ))
                .await;
            let _ = admin.close().await;
        }
    }
}

async fn sqlite_db(dir: &tempfile::TempDir) -> Db {
    let settings = DatabaseSettings {
        url: None,
        data_dir: dir.path().to_path_buf(),
        app_role: "spharos_app".into(),
        max_connections: 5,
        statistics_interval_seconds: 0,
    };
    Db::open::<TestMigrator>(&settings, "bustest")
        .await
        .expect("SQLite migrations run")
}

/// A bus on a stream and namespace of its own, so parallel tests never see each other.
struct TestBus {
    bus: Bus,
    settings: NatsSettings,
    js: jetstream::Context,
}

impl TestBus {
    async fn connect() -> Self {
        let hex = random_hex();
        let settings = NatsSettings {
            url: Some(nats_url()),
            stream: format!("T{}", hex.to_uppercase()),
            namespace: format!("t{hex}"),
        };
        let bus = Bus::connect(&settings).await.unwrap_or_else(|e| {
            panic!(
                "{e}; start `nats-server -js`, set SPHAROS_TEST_NATS_URL or run `cargo xtask test`"
            )
        });
        let client = async_nats::connect(nats_url())
            .await
            .expect("the raw NATS client connects where the bus did");
        Self {
            bus,
            settings,
            js: jetstream::new(client),
        }
    }

    async fn stream_messages(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .expect("stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    async fn delete(self) {
        let _ = self.js.delete_stream(&self.settings.stream).await;
    }
}

/// Polls `check` every 20 ms until it holds; panics with `what` after `timeout`.
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

async fn count(db: &Db, sql: &str) -> i64 {
    let tx = db.begin_system().await.expect("system transaction");
    let row = tx
        .query_one_raw(Statement::from_string(db.db_backend(), sql.to_string()))
        .await
        .expect("count query")
        .expect("one row");
    let n: i64 = row.try_get_by_index(0).expect("a count");
    tx.commit().await.expect("commit");
    n
}

/// Rows waiting in the outbox (a published event's row is deleted).
async fn unpublished(db: &Db) -> i64 {
    count(db, "SELECT COUNT(*) FROM outbox_events").await
}

async fn count_as_owner(db: &Db) -> i64 {
    // The app role sees only the tenant's rows of test_effects, so count through each tenant in
    // processed_events (the kit tables admit the system context).
    let tx = db.begin_system().await.expect("system transaction");
    let tenants: Vec<Uuid> = tx
        .query_all_raw(Statement::from_string(
            db.db_backend(),
            "SELECT DISTINCT tenant_id FROM processed_events".to_string(),
        ))
        .await
        .expect("tenants")
        .iter()
        .map(|r| r.try_get_by_index::<Uuid>(0).expect("uuid"))
        .collect();
    tx.commit().await.expect("commit");
    let mut total = 0;
    for t in tenants {
        let tx = db.begin(TenantId(t)).await.expect("tenant transaction");
        let row = tx
            .query_one_raw(Statement::from_string(
                db.db_backend(),
                "SELECT COUNT(*) FROM test_effects".to_string(),
            ))
            .await
            .expect("count")
            .expect("row");
        total += row.try_get_by_index::<i64>(0).expect("count");
        tx.commit().await.expect("commit");
    }
    total
}

fn consumed(consumer: &str, outcome: &str) -> u64 {
    metrics()
        .events_consumed_total
        .get_or_create(&ConsumerLabels {
            consumer: consumer.into(),
            outcome: outcome.into(),
        })
        .get()
}

/// Records what it handled and writes one tenant row per event; fails the first `fail_first`
/// calls to exercise rollback and redelivery.
#[derive(Default)]
struct Recorder {
    calls: AtomicUsize,
    fail_first: AtomicUsize,
    /// Fails the first handling of this event (wherever it comes in the stream).
    poison: Mutex<Option<Uuid>>,
    seen: Mutex<Vec<Envelope>>,
    /// The PostgreSQL transaction of each successful handling.
    transactions: Mutex<Vec<i64>>,
}

impl Recorder {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Envelope> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

impl EventHandler for Recorder {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let backend = tx.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => "INSERT INTO test_effects (tenant_id, event_id) VALUES ($1, $2)",
            _ => "INSERT INTO test_effects (tenant_id, event_id) VALUES (?, ?)",
        };
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [event.tenant.as_uuid().into(), event.id.into()],
        ))
        .await?;
        let poisoned = {
            let mut poison = self.poison.lock().expect("not poisoned");
            (*poison == Some(event.id)).then(|| poison.take()).is_some()
        };
        if poisoned {
            return Err(ServiceError::Unavailable("injected failure".into()));
        }
        let failures_left = self.fail_first.load(Ordering::SeqCst);
        if failures_left > 0 {
            self.fail_first.store(failures_left - 1, Ordering::SeqCst);
            return Err(ServiceError::Unavailable("injected failure".into()));
        }
        let _: PointsEarned = event
            .decode()
            .map_err(|e| ServiceError::internal(format!("undecodable payload: {e}")))?;
        if backend == DbBackend::Postgres {
            let row = tx
                .query_one_raw(Statement::from_string(
                    backend,
                    "SELECT CAST(txid_current() AS BIGINT) AS id",
                ))
                .await?
                .ok_or_else(|| ServiceError::internal("no txid"))?;
            let id: i64 = row.try_get("", "id").map_err(ServiceError::from)?;
            self.transactions.lock().expect("not poisoned").push(id);
        }
        self.seen.lock().expect("not poisoned").push(event.clone());
        Ok(())
    }
}

async fn commit_event(db: &Db, event: &Envelope) {
    let tx = db.begin(event.tenant).await.expect("tenant transaction");
    bus::enqueue(&tx, event).await.expect("enqueue");
    tx.commit().await.expect("commit");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_event_is_published_with_cloudevents_headers_and_handled_once() {
    let tb = TestBus::connect().await;
    let pg = PgDatabase::create().await;
    let db = pg.open().await;
    let ns = tb.settings.namespace.clone();
    let shutdown = CancellationToken::new();

    // A raw consumer reads the message exactly as it sits in JetStream.
    let raw = tb
        .js
        .get_stream(&tb.settings.stream)
        .await
        .expect("stream")
        .create_consumer(pull::Config {
            durable_name: Some("raw".into()),
            filter_subject: format!("{ns}.points.earned"),
            ..Default::default()
        })
        .await
        .expect("raw consumer");

    let handler = Arc::new(Recorder::default());
    let consumer = bus::spawn_consumer(
        "analytics",
        &["points.earned", "member.joined"],
        db.clone(),
        tb.bus.clone(),
        handler.clone(),
        shutdown.clone(),
    )
    .await
    .expect("consumer subscribes");
    let (_, relay) = bus::spawn_relay("points", db.clone(), tb.bus.clone(), shutdown.clone());

    let tenant = TenantId::generate();
    let event = earned(tenant, 1200);
    // No poke: the committed transaction hands its event to the relay.
    commit_event(&db, &event).await;

    wait_until(Duration::from_secs(10), "the handler", || async {
        handler.calls() >= 1
    })
    .await;
    wait_until(
        Duration::from_secs(5),
        "the row deleted once published",
        || async { unpublished(&db).await == 0 },
    )
    .await;
    assert_eq!(
        handler.seen(),
        vec![event.clone()],
        "handled the envelope as enqueued"
    );

    let mut batch = raw.fetch().max_messages(1).messages().await.expect("fetch");
    let message = batch
        .next()
        .await
        .expect("one message in the stream")
        .expect("a message");
    assert_eq!(message.subject.as_str(), format!("{ns}.points.earned"));
    let h = message.headers.as_ref().expect("headers");
    let header = |name: &str| h.get(name).map(|v| v.as_str().to_string());
    let id = event.id.to_string();
    assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(header("ce-id").as_deref(), Some(id.as_str()));
    assert_eq!(header("Nats-Msg-Id").as_deref(), Some(id.as_str()));
    assert_eq!(header("ce-source").as_deref(), Some("/spharos/points"));
    assert_eq!(
        header("ce-type").as_deref(),
        Some("io.spharos.points.earned.v1")
    );
    assert_eq!(header("ce-subject"), Some(event.subject_id.clone()));
    assert_eq!(header("ce-tenantid"), Some(tenant.to_string()));
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/protobuf")
    );
    let ce_time = header("ce-time").expect("ce-time");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&ce_time).expect("RFC 3339 ce-time"),
        event.time
    );
    let decoded =
        <PointsEarned as prost::Message>::decode(message.payload.as_ref()).expect("protobuf");
    assert_eq!(decoded.points, 1200);
    message.ack().await.expect("ack");

    // Nothing more arrives: exactly once, one effect row, one processed row.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(handler.calls(), 1);
    assert_eq!(tb.stream_messages().await, 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM processed_events").await, 1);
    assert_eq!(count_as_owner(&db).await, 1);
    assert_eq!(consumed("analytics", "handled"), 1);
    assert_eq!(
        metrics()
            .outbox_lag_seconds
            .get_or_create(&ServiceLabels {
                service: "points".into()
            })
            .get(),
        0.0
    );

    shutdown.cancel();
    relay.await.expect("relay stops");
    consumer.await.expect("consumer stops");
    tb.delete().await;
    db.close().await.ok();
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolled_back_event_is_never_published() {
    let tb = TestBus::connect().await;
    let pg = PgDatabase::create().await;
    let db = pg.open().await;
    let shutdown = CancellationToken::new();
    let handler = Arc::new(Recorder::default());
    let consumer = bus::spawn_consumer(
        "rollback",
        &["points.earned"],
        db.clone(),
        tb.bus.clone(),
        handler.clone(),
        shutdown.clone(),
    )
    .await
    .expect("consumer subscribes");
    let (outbox, relay) = bus::spawn_relay(
        "points-rollback",
        db.clone(),
        tb.bus.clone(),
        shutdown.clone(),
    );

    let tenant = TenantId::generate();
    let discarded = earned(tenant, 1);
    let tx = db.begin(tenant).await.expect("tenant transaction");
    bus::enqueue(&tx, &discarded).await.expect("enqueue");
    tx.rollback().await.expect("rollback");
    outbox.poke();

    // A committed event afterwards proves the relay was running all along.
    let kept = earned(tenant, 2);
    commit_event(&db, &kept).await;
    wait_until(Duration::from_secs(10), "the committed event", || async {
        handler.calls() >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert_eq!(handler.seen(), vec![kept]);
    assert_eq!(
        tb.stream_messages().await,
        1,
        "only the committed event reached JetStream"
    );
    assert_eq!(
        unpublished(&db).await,
        0,
        "nothing waits: the rolled-back event never had a row"
    );

    shutdown.cancel();
    relay.await.expect("relay stops");
    consumer.await.expect("consumer stops");
    tb.delete().await;
    db.close().await.ok();
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redelivered_event_is_handled_once() {
    let tb = TestBus::connect().await;
    let pg = PgDatabase::create().await;
    let db = pg.open().await;
    let shutdown = CancellationToken::new();
    let consumer_name = format!("idem-{}", random_hex());
    let handler = Arc::new(Recorder::default());
    let consumer = bus::spawn_consumer(
        &consumer_name,
        &["points.earned"],
        db.clone(),
        tb.bus.clone(),
        handler.clone(),
        shutdown.clone(),
    )
    .await
    .expect("consumer subscribes");

    let event = earned(TenantId::generate(), 7);
    tb.bus
        .publish_batch(std::slice::from_ref(&event))
        .await
        .expect("first publish");
    // The same event again under another Nats-Msg-Id: JetStream's de-duplication cannot help
    // (as after its 2-minute window), so only processed_events stands between it and a
    // second handling.
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0".to_string()),
        ("ce-id", event.id.to_string()),
        ("ce-source", "/spharos/points".to_string()),
        ("ce-type", event.ce_type()),
        ("ce-time", event.time.to_rfc3339()),
        ("ce-subject", event.subject_id.clone()),
        ("ce-tenantid", event.tenant.to_string()),
        ("content-type", "application/protobuf".to_string()),
        ("Nats-Msg-Id", Uuid::now_v7().to_string()),
    ] {
        headers.insert(name, value.as_str());
    }
    tb.js
        .send_publish(
            format!("{}.points.earned", tb.settings.namespace),
            PublishMessage::build()
                .headers(headers)
                .payload(event.payload.clone().into()),
        )
        .await
        .expect("second publish sent")
        .await
        .expect("second publish acknowledged");
    assert_eq!(
        tb.stream_messages().await,
        2,
        "both copies are in the stream"
    );

    wait_until(
        Duration::from_secs(10),
        "the duplicate to be skipped",
        || async { consumed(&consumer_name, "duplicate") == 1 },
    )
    .await;
    assert_eq!(handler.calls(), 1);
    assert_eq!(consumed(&consumer_name, "handled"), 1);
    assert_eq!(count_as_owner(&db).await, 1);

    // A message that is no CloudEvent is acknowledged and skipped, not redelivered forever,
    // and the events behind it still flow.
    tb.js
        .publish(
            format!("{}.points.earned", tb.settings.namespace),
            "not a cloudevent".into(),
        )
        .await
        .expect("malformed publish sent")
        .await
        .expect("malformed publish acknowledged");
    let after = earned(TenantId::generate(), 8);
    tb.bus
        .publish_batch(std::slice::from_ref(&after))
        .await
        .expect("publish after the malformed one");
    wait_until(
        Duration::from_secs(10),
        "the event after the malformed one",
        || async { handler.calls() == 2 },
    )
    .await;
    let stream = tb.js.get_stream(&tb.settings.stream).await.expect("stream");
    let name = format!("{consumer_name}-points-earned");
    wait_until(
        Duration::from_secs(5),
        "every message acknowledged",
        || async {
            let info = stream.consumer_info(&name).await.expect("consumer info");
            info.num_ack_pending == 0 && info.num_pending == 0
        },
    )
    .await;

    shutdown.cancel();
    consumer.await.expect("consumer stops");
    tb.delete().await;
    db.close().await.ok();
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_events_share_transactions_and_a_failing_group_goes_one_by_one() {
    const EVENTS: usize = 300;
    let tb = TestBus::connect().await;
    let pg = PgDatabase::create().await;
    let db = pg.open().await;
    let shutdown = CancellationToken::new();
    let consumer_name = format!("group-{}", random_hex());
    // Three tenants interleaved: a group is one tenant's events.
    let tenants = [
        TenantId::generate(),
        TenantId::generate(),
        TenantId::generate(),
    ];
    let events: Vec<Envelope> = (0..EVENTS)
        .map(|i| earned(tenants[i % 3], i as i64))
        .collect();
    let handler = Arc::new(Recorder::default());
    *handler.poison.lock().expect("not poisoned") = Some(events[EVENTS - 10].id);
    let consumer = bus::spawn_consumer(
        &consumer_name,
        &["points.earned"],
        db.clone(),
        tb.bus.clone(),
        handler.clone(),
        shutdown.clone(),
    )
    .await
    .expect("consumer subscribes");
    tb.bus.publish_batch(&events).await.expect("published");

    wait_until(Duration::from_secs(20), "every event handled", || async {
        consumed(&consumer_name, "handled") == EVENTS as u64
    })
    .await;
    // Each event's effect exactly once: the rolled-back group left nothing behind.
    assert_eq!(count_as_owner(&db).await, EVENTS as i64);
    let mut seen: Vec<Uuid> = handler.seen().iter().map(|e| e.id).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), EVENTS);
    // Far fewer transactions than events: the waiting ones went together.
    let mut transactions = handler.transactions.lock().expect("not poisoned").clone();
    transactions.sort_unstable();
    transactions.dedup();
    assert!(
        transactions.len() < EVENTS / 2,
        "{} transactions for {EVENTS} events",
        transactions.len()
    );
    // The poison failed inside a group (not alone: 300 events were waiting), so no delivery
    // failed on its own: the group rolled back and its events, the poison among them (it fails
    // once only), succeeded one by one.
    assert_eq!(consumed(&consumer_name, "failed"), 0);
    assert!(handler.calls() > EVENTS, "the group was handled twice over");
    assert_eq!(consumed(&consumer_name, "duplicate"), 0);

    shutdown.cancel();
    consumer.await.expect("consumer stops");
    tb.delete().await;
    db.close().await.ok();
    pg.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_and_in_process_bus_deliver_once_and_retry_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = sqlite_db(&dir).await;
    let bus = Bus::in_process();
    let shutdown = CancellationToken::new();
    let consumer_name = format!("embedded-{}", random_hex());
    let handler = Arc::new(Recorder {
        fail_first: AtomicUsize::new(2),
        ..Default::default()
    });
    // The consumer shares the relay's SQLite database (one connection): the relay must not
    // hold it while waiting for the consumer's ack.
    let consumer = bus::spawn_consumer(
        &consumer_name,
        &["points.*"],
        db.clone(),
        bus.clone(),
        handler.clone(),
        shutdown.clone(),
    )
    .await
    .expect("in-process subscribe");
    let (outbox, relay) =
        bus::spawn_relay("points-embedded", db.clone(), bus.clone(), shutdown.clone());

    let tenant = TenantId::generate();
    let event = earned(tenant, 300);
    commit_event(&db, &event).await;
    let tx = db.begin(tenant).await.expect("transaction");
    bus::enqueue(&tx, &earned(tenant, 1))
        .await
        .expect("enqueue");
    tx.rollback().await.expect("rollback");
    outbox.poke();

    // Two injected failures roll back and are retried by the relay; then it is handled.
    wait_until(Duration::from_secs(10), "the event handled", || async {
        !handler.seen().is_empty() && unpublished(&db).await == 0
    })
    .await;
    assert_eq!(handler.seen(), vec![event.clone()]);
    assert_eq!(handler.calls(), 3, "two failed attempts, one success");
    assert_eq!(consumed(&consumer_name, "failed"), 2);
    assert_eq!(
        count_as_owner(&db).await,
        1,
        "failed attempts left no effect rows"
    );
    assert_eq!(
        unpublished(&db).await,
        0,
        "nothing waits: the rolled-back event never had a row"
    );

    // Delivered again (a relay retry after a lost ack): acknowledged as a duplicate.
    bus.publish_batch(std::slice::from_ref(&event))
        .await
        .expect("acked by the duplicate path");
    assert_eq!(handler.calls(), 3);
    assert_eq!(consumed(&consumer_name, "duplicate"), 1);

    // Events nobody subscribed to are acknowledged at once.
    let mut other = earned(tenant, 5);
    other.service = "member".into();
    other.event = "joined".into();
    bus.publish_batch(&[other])
        .await
        .expect("no subscriber, no wait");

    shutdown.cancel();
    relay.await.expect("relay stops");
    consumer.await.expect("consumer stops");
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relay_pipelines_thousands_of_events() {
    const EVENTS: usize = 5_000;
    let tb = TestBus::connect().await;
    let pg = PgDatabase::create().await;
    let db = pg.open().await;
    let shutdown = CancellationToken::new();
    let service = format!("pipeline-{}", random_hex());

    let tenant = TenantId::generate();
    for _ in 0..EVENTS / 500 {
        let tx = db.begin(tenant).await.expect("tenant transaction");
        for i in 0..500 {
            bus::enqueue(&tx, &earned(tenant, i))
                .await
                .expect("enqueue");
        }
        tx.commit().await.expect("commit");
    }
    assert_eq!(unpublished(&db).await, EVENTS as i64);

    let started = std::time::Instant::now();
    // Two relays on one schema: SKIP LOCKED splits the work without double publishing.
    let (_, relay_a) = bus::spawn_relay(&service, db.clone(), tb.bus.clone(), shutdown.clone());
    let (_, relay_b) = bus::spawn_relay(&service, db.clone(), tb.bus.clone(), shutdown.clone());
    wait_until(Duration::from_secs(15), "every row published", || async {
        unpublished(&db).await == 0
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!("relayed {EVENTS} events in {elapsed:?}");

    assert_eq!(tb.stream_messages().await, EVENTS as u64);
    assert_eq!(
        metrics()
            .outbox_published_total
            .get_or_create(&ServiceLabels {
                service: service.clone()
            })
            .get(),
        EVENTS as u64,
        "each row published by exactly one relay"
    );

    shutdown.cancel();
    relay_a.await.expect("relay stops");
    relay_b.await.expect("relay stops");
    tb.delete().await;
    db.close().await.ok();
    pg.drop().await;
}

#[tokio::test]
async fn unreachable_nats_fails_fast_with_a_clear_error() {
    let settings = NatsSettings {
        url: Some("nats://127.0.0.1:1".into()),
        stream: "UNUSED".into(),
        namespace: "unused".into(),
    };
    let started = std::time::Instant::now();
    let err = Bus::connect(&settings)
        .await
        .expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = err.to_string();
    assert!(
        message.starts_with("NATS at nats://127.0.0.1:1 unreachable: "),
        "{message}"
    );
}

/// A host holds in-process deliveries while its modules subscribe: an event published before a
/// consumer subscribed still reaches it once deliveries are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_in_process_deliveries_wait_for_late_subscribers() {
    let bus = Bus::in_process();
    bus.hold_deliveries();
    let tenant = TenantId::generate();
    let event = earned(tenant, 7);
    let publisher = {
        let bus = bus.clone();
        let event = event.clone();
        tokio::spawn(async move { bus.publish_batch(&[event]).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !publisher.is_finished(),
        "held: nothing may be delivered or acked yet"
    );
    let mut sub = bus
        .subscribe("late-subscriber", &["points.earned"])
        .await
        .expect("subscribe");
    bus.release_deliveries();
    let delivery = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("delivered after release")
        .expect("stream open")
        .expect("delivery");
    assert_eq!(delivery.envelope.id, event.id);
    delivery.ack().await.expect("ack");
    publisher
        .await
        .expect("publisher task")
        .expect("acknowledged by the late subscriber");
}

fn revocation(tenant: TenantId, token_id: &str) -> Envelope {
    Envelope::new(
        "billing",
        "token_revoked",
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

/// Revocations reach every process: a listener started after a revocation replays it from the
/// stream, and one already running applies a new one within moments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revocations_reach_every_listener_on_nats() {
    use spharos_kit::auth::{TokenSigner, TokenVerifier, spawn_revocation_listener};
    let test = TestBus::connect().await;
    let signer = TokenSigner::generate();
    let tenant = TenantId::generate();
    let early = signer.mint(tenant, "pos-1", &[], 600);
    let late = signer.mint(tenant, "pos-2", &[], 600);
    let early_id = TokenVerifier::new([signer.public_key()])
        .verify(&early)
        .expect("valid")
        .token_id;
    let late_id = TokenVerifier::new([signer.public_key()])
        .verify(&late)
        .expect("valid")
        .token_id;
    test.bus
        .publish_batch(&[revocation(tenant, &early_id)])
        .await
        .expect("published");

    // A process that starts after the revocation.
    let verifier = TokenVerifier::new([signer.public_key()]);
    let shutdown = CancellationToken::new();
    let listener = spawn_revocation_listener(test.bus.clone(), verifier.clone(), shutdown.clone())
        .await
        .expect("listening");
    wait_until(
        Duration::from_secs(10),
        "replayed revocation applied",
        || {
            let v = verifier.clone();
            let t = early.clone();
            async move { v.verify(&t).is_err() }
        },
    )
    .await;
    assert!(
        verifier.verify(&late).is_ok(),
        "only the revoked token is refused"
    );

    test.bus
        .publish_batch(&[revocation(tenant, &late_id)])
        .await
        .expect("published");
    wait_until(Duration::from_secs(5), "new revocation applied", || {
        let v = verifier.clone();
        let t = late.clone();
        async move { v.verify(&t) == Err(spharos_kit::auth::AuthError::Revoked) }
    })
    .await;
    shutdown.cancel();
    let _ = listener.await;
    test.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_revocations_apply_in_process() {
    use spharos_kit::auth::{AuthError, TokenSigner, TokenVerifier, spawn_revocation_listener};
    let bus = Bus::in_process();
    let signer = TokenSigner::generate();
    let verifier = TokenVerifier::new([signer.public_key()]);
    let tenant = TenantId::generate();
    let token = signer.mint(tenant, "pos-1", &[], 600);
    let id = verifier.verify(&token).expect("valid").token_id;
    let shutdown = CancellationToken::new();
    let listener = spawn_revocation_listener(bus.clone(), verifier.clone(), shutdown.clone())
        .await
        .expect("listening");
    bus.publish_batch(&[revocation(tenant, &id)])
        .await
        .expect("acknowledged by the listener");
    assert_eq!(verifier.verify(&token), Err(AuthError::Revoked));
    shutdown.cancel();
    let _ = listener.await;
}

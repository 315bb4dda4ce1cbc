//! The transactional outbox: events are rows written in the caller's transaction, and a relay
//! publishes them and deletes them only after the bus acknowledged them, so an event exists if
//! and only if its state change committed, and a crash loses nothing.
//!
//! The relay does not search the table for new rows: a committed [`Tx`] hands it the events
//! it wrote, and it publishes them at once. A sweep of the table (at start, then every few
//! seconds) publishes what nobody handed over: rows of a process that stopped between its
//! commit and the publish, and events whose publish failed. Searching a table whose rows come
//! and go costs more the longer it runs (dead rows wait for vacuum, and PostgreSQL's bitmap
//! scans step over every one of them), which is why it is the exception, not the path.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ConnectionTrait, DbErr, QueryResult,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query, SelectStatement},
};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Bus, Envelope};
use crate::{
    db::{Backend, Db, Tx, enable_system_rls},
    telemetry::{ServiceLabels, metrics},
    tenancy::TenantId,
};

pub(crate) const OUTBOX: &str = "outbox_events";
pub(crate) const PROCESSED: &str = "processed_events";

/// Events published per round: large enough to keep ~1,000 publishes in flight across
/// replicas, small enough to hold row locks only briefly.
const BATCH: u64 = 500;
/// Committed transactions waiting for the relay; beyond that the sweep takes their events.
const HANDOFF_QUEUE: usize = 4096;
/// How often the table is swept for rows nobody handed over.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A row younger than this is its own relay's to publish: a sweep leaves it, so relays of
/// several replicas rarely publish the same event (when they do, JetStream's de-duplication
/// and idempotent consumers absorb it).
const GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// After a failed publish of handed-over events: the next sweep, which takes them once they
/// are older than [`GRACE`].
const SWEEP_AFTER_FAILURE: Duration = Duration::from_secs(6);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Far below NATS's default 1 MiB message limit, so a row can always be published: an
/// unpublishable row would block the outbox behind it forever.
const MAX_PAYLOAD_BYTES: usize = 512 * 1024;

const COLUMNS: [&str; 8] = [
    "id",
    "tenant_id",
    "service",
    "event",
    "subject_id",
    "time",
    "payload",
    "traceparent",
];

/// Creates the kit's `outbox_events` and `processed_events` in the service's schema (or
/// SQLite file). Services list it first in their migrator.
pub struct OutboxMigration;

impl MigrationName for OutboxMigration {
    fn name(&self) -> &str {
        "m20261203_000001_kit_outbox"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::{ColumnDef, Index, Table};
        manager
            .create_table(
                Table::create()
                    .table(OUTBOX)
                    .col(ColumnDef::new("id").uuid().not_null().primary_key())
                    .col(ColumnDef::new("tenant_id").uuid().not_null())
                    .col(ColumnDef::new("service").text().not_null())
                    .col(ColumnDef::new("event").text().not_null())
                    .col(ColumnDef::new("subject_id").text().not_null())
                    .col(ColumnDef::new("time").timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new("payload").blob().not_null())
                    .col(ColumnDef::new("traceparent").text().null())
                    .col(
                        ColumnDef::new("created_time")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("published_time")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        // Serves both the relay's claim (published_time IS NULL ORDER BY id) and the
        // retention delete (published_time < cutoff).
        manager
            .create_index(
                Index::create()
                    .name("outbox_events_published_time_id")
                    .table(OUTBOX)
                    .col("published_time")
                    .col("id")
                    .to_owned(),
            )
            .await?;
        enable_system_rls(manager, OUTBOX).await?;
        manager
            .create_table(
                Table::create()
                    .table(PROCESSED)
                    .col(ColumnDef::new("consumer").text().not_null())
                    .col(ColumnDef::new("event_id").uuid().not_null())
                    .col(ColumnDef::new("tenant_id").uuid().not_null())
                    .col(
                        ColumnDef::new("processed_time")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col("consumer").col("event_id"))
                    .to_owned(),
            )
            .await?;
        enable_system_rls(manager, PROCESSED).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::Table;
        manager
            .drop_table(Table::drop().table(PROCESSED).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(OUTBOX).to_owned())
            .await
    }
}

/// Published rows are deleted (JetStream keeps the events), so the outbox holds only what
/// waits to be published: this drops its `published_time` column and the index over it. The
/// sweep reads the oldest rows by primary key. Services list it right after
/// [`OutboxMigration`].
pub struct OutboxDeleteOnPublishMigration;

impl MigrationName for OutboxDeleteOnPublishMigration {
    fn name(&self) -> &str {
        "m20261204_000001_kit_outbox_delete_on_publish"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for OutboxDeleteOnPublishMigration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::{Index, Table};
        manager
            .drop_index(
                Index::drop()
                    .name("outbox_events_published_time_id")
                    .table(OUTBOX)
                    .to_owned(),
            )
            .await?;
        // Rows published under the old scheme stayed for forensics; they are done with.
        let mut delete = Query::delete();
        delete
            .from_table(OUTBOX)
            .and_where(Expr::col("published_time").is_not_null());
        manager.get_connection().execute(&delete).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(OUTBOX)
                    .drop_column("published_time")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::{ColumnDef, Index, Table};
        manager
            .alter_table(
                Table::alter()
                    .table(OUTBOX)
                    .add_column(
                        ColumnDef::new("published_time")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_events_published_time_id")
                    .table(OUTBOX)
                    .col("published_time")
                    .col("id")
                    .to_owned(),
            )
            .await
    }
}

/// Writes `event` in the caller's transaction, so the state change and its event commit (or
/// roll back) together; once the transaction commits, the relay publishes it at once.
pub async fn enqueue(tx: &Tx, event: &Envelope) -> Result<(), DbErr> {
    enqueue_many(tx, std::slice::from_ref(event)).await
}

/// [`enqueue`] for many events in one statement (batched writes).
pub async fn enqueue_many(tx: &Tx, events: &[Envelope]) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let mut insert = Query::insert();
    insert
        .into_table(OUTBOX)
        .columns(COLUMNS.into_iter().chain(["created_time"]));
    for event in events {
        super::validate_names(&event.service, &event.event)
            .map_err(|e| DbErr::Custom(format!("event {} not enqueued: {e}", event.id)))?;
        if event.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(DbErr::Custom(format!(
                "event {} not enqueued: payload of {} bytes exceeds {MAX_PAYLOAD_BYTES}",
                event.id,
                event.payload.len()
            )));
        }
        insert
            .values([
                event.id.into(),
                event.tenant.as_uuid().into(),
                event.service.as_str().into(),
                event.event.as_str().into(),
                event.subject_id.as_str().into(),
                event.time.into(),
                event.payload.clone().into(),
                event.traceparent.clone().into(),
                now.into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    tx.execute(&insert).await?;
    tx.stage(events);
    Ok(())
}

/// Events one committed transaction handed over, and when it committed.
type Committed = (Instant, Vec<Envelope>);

/// A handle to the relay of one service's outbox. Committed transactions hand it their events
/// (see [`Tx::commit`]); [`Outbox::poke`] makes it sweep the table now.
#[derive(Clone, Debug)]
pub struct Outbox {
    notify: Arc<Notify>,
    committed: mpsc::Sender<Committed>,
}

impl Outbox {
    /// Sweeps the table for unpublished rows now rather than at the next sweep (for tools and
    /// tests; committed transactions need no poke).
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Takes the events of a committed transaction. When the relay is that far behind, they
    /// are left to the sweep, which publishes them from the table.
    pub(crate) fn committed(&self, at: Instant, events: Vec<Envelope>) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.committed.try_send((at, events)) {
            tracing::debug!("outbox relay behind; the sweep publishes these events");
        }
    }
}

/// Starts the relay of `service`'s outbox and attaches it to `db`, whose committed transactions
/// then hand it their events. It runs until `shutdown` is cancelled; several replicas may run
/// against the same PostgreSQL schema.
pub fn spawn_relay(
    service: &str,
    db: Db,
    bus: Bus,
    shutdown: CancellationToken,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let (sender, committed) = mpsc::channel(HANDOFF_QUEUE);
    let outbox = Outbox {
        notify: Arc::default(),
        committed: sender,
    };
    db.attach_relay(outbox.clone());
    let relay = Relay {
        labels: ServiceLabels {
            service: service.to_string(),
        },
        db,
        bus,
        notify: outbox.notify.clone(),
    };
    let handle = tokio::spawn(relay.run(committed, shutdown));
    (outbox, handle)
}

struct Relay {
    labels: ServiceLabels,
    db: Db,
    bus: Bus,
    notify: Arc<Notify>,
}

impl Relay {
    async fn run(self, mut committed: mpsc::Receiver<Committed>, shutdown: CancellationToken) {
        let started = Utc::now();
        // The first sweep runs at once: rows a stopped process left behind go out first.
        let mut next_sweep = Instant::now();
        let mut backoff = BACKOFF_START;
        loop {
            let mut poked = false;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                Some(first) = committed.recv() => {
                    self.publish_handed_over(first, &mut committed, &mut next_sweep).await;
                }
                _ = self.notify.notified() => {
                    poked = true;
                    next_sweep = Instant::now();
                }
                _ = tokio::time::sleep_until(next_sweep.into()) => {}
            }
            if Instant::now() >= next_sweep {
                // What was handed over goes first, so the sweep does not publish it again.
                while let Ok(first) = committed.try_recv() {
                    self.publish_handed_over(first, &mut committed, &mut next_sweep)
                        .await;
                }
                next_sweep = match self.sweep(self.sweep_cut(poked, started)).await {
                    Ok(n) => {
                        backoff = BACKOFF_START;
                        // A full batch means more rows are probably waiting.
                        Instant::now()
                            + if n as u64 == BATCH {
                                Duration::ZERO
                            } else {
                                SWEEP_EVERY
                            }
                    }
                    Err(e) => {
                        tracing::warn!(
                            service = %self.labels.service,
                            error = %e,
                            retry_in_ms = backoff.as_millis() as u64,
                            "outbox sweep failed; events stay unpublished and will be retried"
                        );
                        let wait = backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        Instant::now() + wait
                    }
                };
            }
        }
    }

    /// Rows created before this instant are the sweep's to publish. On PostgreSQL, where
    /// relays of other replicas hand over events of their own, those are the rows older than
    /// [`GRACE`] and those already there when this relay started; after a poke, and on SQLite
    /// (one process owns the file, and what this relay was handed is published before it
    /// sweeps), every committed row.
    fn sweep_cut(&self, poked: bool, started: DateTime<Utc>) -> DateTime<Utc> {
        if poked || self.db.backend() == Backend::Sqlite {
            Utc::now()
        } else {
            Ord::max(Utc::now() - GRACE, started)
        }
    }

    /// Publishes `first` and whatever else was handed over meanwhile (up to a batch). On failure
    /// the events stay in the table, and the next sweep is brought forward to publish them.
    async fn publish_handed_over(
        &self,
        first: Committed,
        committed: &mut mpsc::Receiver<Committed>,
        next_sweep: &mut Instant,
    ) {
        let (oldest, mut events) = first;
        while events.len() < BATCH as usize {
            match committed.try_recv() {
                Ok((_, more)) => events.extend(more),
                Err(_) => break,
            }
        }
        match self.publish_committed(&events).await {
            // The age of the oldest event still waiting: none, or at least this batch's.
            Ok(()) if committed.is_empty() => self.set_lag(0.0),
            Ok(()) => self.set_lag(oldest.elapsed().as_secs_f64()),
            Err(e) => {
                tracing::warn!(
                    service = %self.labels.service,
                    error = %e,
                    events = events.len(),
                    "publishing committed events failed; the outbox sweep retries them"
                );
                // On PostgreSQL the sweep takes them once they are older than the grace period.
                let retry = match self.db.backend() {
                    Backend::Postgres => SWEEP_AFTER_FAILURE,
                    Backend::Sqlite => BACKOFF_START,
                };
                *next_sweep = (*next_sweep).min(Instant::now() + retry);
            }
        }
    }

    /// Publishes events whose transaction just committed, then deletes their rows (by primary
    /// key: nothing is searched).
    async fn publish_committed(&self, events: &[Envelope]) -> Result<(), RelayError> {
        self.bus.publish_batch(events).await?;
        match self.db.backend() {
            Backend::Postgres => {
                let tx = self.db.begin_system().await?;
                delete_published(&*tx, events).await?;
                tx.commit().await?;
            }
            Backend::Sqlite => delete_published(self.db.conn(), events).await?,
        }
        self.count(events.len());
        Ok(())
    }

    /// Publishes one batch of rows created before `cut` that nobody handed over (a process
    /// stopped between its commit and the publish, the bus was down, the relay was behind);
    /// returns how many rows it published.
    async fn sweep(&self, cut: DateTime<Utc>) -> Result<usize, RelayError> {
        let select = claim_query(self.db.backend(), cut);
        let events = match self.db.backend() {
            Backend::Postgres => {
                let tx = self.db.begin_system().await?;
                let events = to_envelopes(tx.query_all(&select).await?)?;
                if !events.is_empty() {
                    self.bus.publish_batch(&events).await?;
                    delete_published(&*tx, &events).await?;
                }
                tx.commit().await?;
                events
            }
            Backend::Sqlite => {
                // No transaction across the publish: SQLite has one connection, and an
                // in-process consumer of this same database needs it to handle the events.
                // One process owns the file, so there is no other relay to race.
                let conn = self.db.conn();
                let events = to_envelopes(conn.query_all(&select).await?)?;
                if !events.is_empty() {
                    self.bus.publish_batch(&events).await?;
                    delete_published(conn, &events).await?;
                }
                events
            }
        };
        // The oldest row found tells how late the outbox is; none found means it is not.
        let lag = events
            .iter()
            .map(|e| (Utc::now() - e.time).as_seconds_f64())
            .fold(0.0, f64::max);
        self.set_lag(lag);
        if !events.is_empty() {
            self.count(events.len());
            tracing::info!(service = %self.labels.service, events = events.len(), "outbox sweep published events nobody handed over");
        }
        Ok(events.len())
    }

    fn count(&self, n: usize) {
        metrics()
            .outbox_published_total
            .get_or_create(&self.labels)
            .inc_by(n as u64);
    }

    fn set_lag(&self, seconds: f64) {
        metrics()
            .outbox_lag_seconds
            .get_or_create(&self.labels)
            .set(seconds.max(0.0));
    }
}

/// The oldest rows (all unpublished) created before `before`. On PostgreSQL they stay locked
/// until the claiming transaction ends, and concurrent relays skip them instead of publishing
/// them twice.
fn claim_query(backend: Backend, before: DateTime<Utc>) -> SelectStatement {
    let mut select = Query::select();
    select
        .columns(COLUMNS)
        .from(OUTBOX)
        .and_where(Expr::col("created_time").lt(before))
        .order_by("id", Order::Asc)
        .limit(BATCH);
    if backend == Backend::Postgres {
        select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select
}

/// Deletes the rows of published events (by primary key).
async fn delete_published<C: ConnectionTrait>(conn: &C, events: &[Envelope]) -> Result<(), DbErr> {
    let mut delete = Query::delete();
    delete
        .from_table(OUTBOX)
        .and_where(Expr::col("id").is_in(events.iter().map(|e| e.id)));
    conn.execute(&delete).await?;
    Ok(())
}

fn to_envelopes(rows: Vec<QueryResult>) -> Result<Vec<Envelope>, DbErr> {
    rows.iter()
        .map(|r| {
            Ok(Envelope {
                id: r.try_get("", "id")?,
                tenant: TenantId(r.try_get::<Uuid>("", "tenant_id")?),
                service: r.try_get("", "service")?,
                event: r.try_get("", "event")?,
                subject_id: r.try_get("", "subject_id")?,
                time: r.try_get("", "time")?,
                payload: r.try_get("", "payload")?,
                traceparent: r.try_get("", "traceparent")?,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Bus(#[from] super::BusError),
}

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{PostgresQueryBuilder, SqliteQueryBuilder};

    use super::*;

    #[test]
    fn postgres_claims_skip_locked_rows_older_than_the_cut() {
        let cut = DateTime::parse_from_rfc3339("2026-12-04T06:00:00Z")
            .expect("a time")
            .with_timezone(&Utc);
        let pg = claim_query(Backend::Postgres, cut).to_string(PostgresQueryBuilder);
        assert!(pg.ends_with("FOR UPDATE SKIP LOCKED"), "{pg}");
        assert!(
            pg.contains(r#"WHERE "created_time" < '2026-12-04 06:00:00.000000 +00:00' ORDER BY "id" ASC LIMIT 500"#),
            "{pg}"
        );
        let sqlite = claim_query(Backend::Sqlite, cut).to_string(SqliteQueryBuilder);
        assert!(!sqlite.contains("FOR UPDATE"), "{sqlite}");
    }
}

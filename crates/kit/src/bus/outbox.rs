//! The transactional outbox: events are rows written in the caller's transaction, and a relay
//! publishes them and marks them published only after the bus acknowledged them, so an event
//! exists if and only if its state change committed, and a crash loses nothing.
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
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Bus, Envelope};
use crate::{
    db::{Backend, Db, enable_system_rls},
    telemetry::{ServiceLabels, metrics},
    tenancy::TenantId,
};

pub(crate) const OUTBOX: &str = "outbox_events";
pub(crate) const PROCESSED: &str = "processed_events";

/// Rows claimed and published per round: large enough to keep ~1,000 publishes in flight
/// across replicas, small enough to hold row locks only briefly.
const BATCH: u64 = 500;
const IDLE_WAIT: Duration = Duration::from_millis(200);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Published rows are kept this long for forensics, then deleted.
const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);
const CLEANUP_EVERY: Duration = Duration::from_secs(3600);
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

/// Writes `event` in the caller's transaction, so the state change and its event commit (or
/// roll back) together. Call [`Outbox::poke`] after the commit to publish without delay.
pub async fn enqueue<C: ConnectionTrait>(tx: &C, event: &Envelope) -> Result<(), DbErr> {
    enqueue_many(tx, std::slice::from_ref(event)).await
}

/// [`enqueue`] for many events in one statement (batched writes).
pub async fn enqueue_many<C: ConnectionTrait>(tx: &C, events: &[Envelope]) -> Result<(), DbErr> {
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
    Ok(())
}

/// A handle to wake the relay right after a commit instead of at its next 200 ms poll.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    notify: Arc<Notify>,
}

impl Outbox {
    pub fn poke(&self) {
        self.notify.notify_one();
    }
}

/// Starts the relay of `service`'s outbox. It runs until `shutdown` is cancelled; several
/// replicas may run against the same PostgreSQL schema.
pub fn spawn_relay(
    service: &str,
    db: Db,
    bus: Bus,
    shutdown: CancellationToken,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let outbox = Outbox::default();
    let relay = Relay {
        labels: ServiceLabels {
            service: service.to_string(),
        },
        db,
        bus,
        notify: outbox.notify.clone(),
    };
    let handle = tokio::spawn(relay.run(shutdown));
    (outbox, handle)
}

struct Relay {
    labels: ServiceLabels,
    db: Db,
    bus: Bus,
    notify: Arc<Notify>,
}

impl Relay {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = BACKOFF_START;
        let mut next_cleanup = Instant::now();
        while !shutdown.is_cancelled() {
            // (wait, whether a poke may cut it short)
            let (wait, pokeable) = match self.relay_batch().await {
                Ok(n) => {
                    backoff = BACKOFF_START;
                    // A full batch means more rows are probably waiting.
                    if n as u64 == BATCH {
                        (Duration::ZERO, true)
                    } else {
                        (IDLE_WAIT, true)
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        service = %self.labels.service,
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "outbox relay failed; events stay unpublished and will be retried"
                    );
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    // Pokes arrive with every commit; they must not turn backoff into a spin.
                    (wait, false)
                }
            };
            self.update_lag().await;
            if Instant::now() >= next_cleanup {
                next_cleanup = Instant::now() + CLEANUP_EVERY;
                if let Err(e) = self.delete_old().await {
                    tracing::warn!(service = %self.labels.service, error = %e, "outbox cleanup failed");
                }
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.notify.notified(), if pokeable => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publishes one batch; returns how many rows it published.
    async fn relay_batch(&self) -> Result<usize, RelayError> {
        let select = claim_query(self.db.backend());
        match self.db.backend() {
            Backend::Postgres => {
                let tx = self.db.begin_system().await?;
                let events = to_envelopes(tx.query_all(&select).await?)?;
                if events.is_empty() {
                    tx.commit().await?;
                    return Ok(0);
                }
                self.bus.publish_batch(&events).await?;
                mark_published(&tx, &events).await?;
                tx.commit().await?;
                self.count(events.len());
                Ok(events.len())
            }
            Backend::Sqlite => {
                // No transaction across the publish: SQLite has one connection, and an
                // in-process consumer of this same database needs it to handle the events.
                // One process owns the file, so there is no other relay to race.
                let conn = self.db.conn();
                let events = to_envelopes(conn.query_all(&select).await?)?;
                if events.is_empty() {
                    return Ok(0);
                }
                self.bus.publish_batch(&events).await?;
                mark_published(conn, &events).await?;
                self.count(events.len());
                Ok(events.len())
            }
        }
    }

    fn count(&self, n: usize) {
        metrics()
            .outbox_published_total
            .get_or_create(&self.labels)
            .inc_by(n as u64);
    }

    /// Sets the lag gauge to the age of the oldest unpublished row (0 when there is none).
    async fn update_lag(&self) {
        let mut select = Query::select();
        select
            .column("created_time")
            .from(OUTBOX)
            .and_where(Expr::col("published_time").is_null())
            .order_by("id", Order::Asc)
            .limit(1);
        let oldest = async {
            let tx = self.db.begin_system().await?;
            let row = tx.query_one(&select).await?;
            tx.commit().await?;
            row.map(|r| r.try_get::<DateTime<Utc>>("", "created_time"))
                .transpose()
        }
        .await;
        match oldest {
            Ok(oldest) => {
                let lag = oldest
                    .map(|t| (Utc::now() - t).as_seconds_f64().max(0.0))
                    .unwrap_or(0.0);
                metrics()
                    .outbox_lag_seconds
                    .get_or_create(&self.labels)
                    .set(lag);
            }
            Err(e) => {
                tracing::debug!(service = %self.labels.service, error = %e, "outbox lag query failed");
            }
        }
    }

    async fn delete_old(&self) -> Result<(), DbErr> {
        let mut delete = Query::delete();
        delete
            .from_table(OUTBOX)
            .and_where(Expr::col("published_time").lt(Utc::now() - RETENTION));
        let tx = self.db.begin_system().await?;
        let deleted = tx.execute(&delete).await?.rows_affected();
        tx.commit().await?;
        if deleted > 0 {
            tracing::info!(service = %self.labels.service, deleted, "old published outbox events deleted");
        }
        Ok(())
    }
}

/// The oldest unpublished rows. On PostgreSQL they stay locked until the claiming transaction
/// ends, and concurrent relays skip them instead of publishing them twice.
fn claim_query(backend: Backend) -> SelectStatement {
    let mut select = Query::select();
    select
        .columns(COLUMNS)
        .from(OUTBOX)
        .and_where(Expr::col("published_time").is_null())
        .order_by("id", Order::Asc)
        .limit(BATCH);
    if backend == Backend::Postgres {
        select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    select
}

async fn mark_published<C: ConnectionTrait>(conn: &C, events: &[Envelope]) -> Result<(), DbErr> {
    let mut update = Query::update();
    update
        .table(OUTBOX)
        .value("published_time", Utc::now())
        .and_where(Expr::col("id").is_in(events.iter().map(|e| e.id)));
    conn.execute(&update).await?;
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
    fn postgres_claims_skip_locked_rows() {
        let pg = claim_query(Backend::Postgres).to_string(PostgresQueryBuilder);
        assert!(pg.ends_with("FOR UPDATE SKIP LOCKED"), "{pg}");
        assert!(
            pg.contains(r#""published_time" IS NULL ORDER BY "id" ASC LIMIT 500"#),
            "{pg}"
        );
        let sqlite = claim_query(Backend::Sqlite).to_string(SqliteQueryBuilder);
        assert!(!sqlite.contains("FOR UPDATE"), "{sqlite}");
    }
}

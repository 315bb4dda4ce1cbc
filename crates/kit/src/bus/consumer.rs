//! Idempotent consumers: every delivery is handled in a tenant transaction that also records
//! (consumer, event id) in `processed_events`, so a redelivered event (JetStream only
//! de-duplicates within a time window) is acknowledged without running the handler again.
//!
//! Deliveries already waiting when the consumer wakes are handled together, one transaction
//! per tenant (up to [`MAX_GROUP`] events): at a till rush a consumer would otherwise spend
//! most of its time opening and committing transactions. The group's event ids are recorded in
//! one statement, and a handler may do a group's work in a few statements too
//! ([`EventHandler::handle_many`]). If anything in a group fails, the group rolls back whole
//! and its events are handled one by one, each in its own transaction, so one bad event never
//! holds the others back and a failure's effect is exactly as before.
use std::{sync::Arc, time::Duration};

use chrono::Utc;
use futures::FutureExt;
use std::collections::HashSet;

use sea_orm::{
    ConnectionTrait, DbErr,
    sea_query::{OnConflict, Query},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{Bus, BusError, Delivery, Envelope, Subscription, outbox::PROCESSED};
use crate::{
    db::{Db, Tx},
    error::ServiceError,
    telemetry::{self, ConsumerLabels, metrics},
};

/// Most events handled in one transaction.
pub const MAX_GROUP: usize = 64;
const RESUBSCRIBE_START: Duration = Duration::from_millis(500);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(10);

/// Handles one event inside the consumer's transaction; its writes commit together with the
/// record that the event was processed. Events the handler enqueues are published once that
/// transaction commits.
pub trait EventHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a Tx,
        event: &'a Envelope,
    ) -> impl std::future::Future<Output = Result<(), ServiceError>> + Send + 'a;

    /// Handles several events of one tenant, in delivery order, in one transaction (none of
    /// them seen before by this consumer). The default handles them one at a time; a handler
    /// that can do a group's work in a few statements overrides it, with the same effect.
    fn handle_many<'a>(
        &'a self,
        tx: &'a Tx,
        events: &'a [&'a Envelope],
    ) -> impl std::future::Future<Output = Result<(), ServiceError>> + Send + 'a {
        async move {
            for event in events {
                self.handle(tx, event).await?;
            }
            Ok(())
        }
    }
}

/// Subscribes `consumer` (the durable name) to `topics`, then handles deliveries with
/// `handler` until `shutdown` is cancelled. The subscription exists when this returns, so no
/// event published afterwards is missed.
pub async fn spawn_consumer<H: EventHandler>(
    consumer: &str,
    topics: &[&str],
    db: Db,
    bus: Bus,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BusError> {
    let subscription = bus.subscribe(consumer, topics).await?;
    let worker = Worker {
        consumer: consumer.to_string(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        db,
        bus,
        handler,
    };
    Ok(tokio::spawn(worker.run(subscription, shutdown)))
}

enum Outcome {
    Handled,
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
enum HandleError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("{0}")]
    Handler(#[from] ServiceError),
}

struct Worker<H> {
    consumer: String,
    topics: Vec<String>,
    db: Db,
    bus: Bus,
    handler: Arc<H>,
}

impl<H: EventHandler> Worker<H> {
    async fn run(self, mut subscription: Subscription, shutdown: CancellationToken) {
        let mut retry = RESUBSCRIBE_START;
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = subscription.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    retry = RESUBSCRIBE_START;
                    let mut waiting = vec![delivery];
                    // Only what has arrived already: a consumer never waits to fill a group.
                    while waiting.len() < MAX_GROUP {
                        match subscription.next().now_or_never() {
                            Some(Some(Ok(d))) => waiting.push(d),
                            // An error or the end shows again at the next `next()`.
                            Some(Some(Err(_)) | None) | None => break,
                        }
                    }
                    self.process_all(waiting).await;
                }
                Some(Err(e)) => {
                    // Usually a server restart; the message stream recovers by itself.
                    tracing::warn!(consumer = %self.consumer, error = %e, "receiving events failed");
                    if !sleep_or_shutdown(retry, &shutdown).await {
                        return;
                    }
                    retry = (retry * 2).min(RESUBSCRIBE_MAX);
                }
                None => {
                    if matches!(self.bus, Bus::InProcess(_)) {
                        // Replaced by a newer subscriber of the same name, which now owns it.
                        tracing::warn!(consumer = %self.consumer, "subscription replaced; consumer stopped");
                        return;
                    }
                    match self.resubscribe(&shutdown).await {
                        Some(s) => subscription = s,
                        None => return,
                    }
                }
            }
        }
    }

    async fn resubscribe(&self, shutdown: &CancellationToken) -> Option<Subscription> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut retry = RESUBSCRIBE_START;
        loop {
            if !sleep_or_shutdown(retry, shutdown).await {
                return None;
            }
            match self.bus.subscribe(&self.consumer, &topics).await {
                Ok(s) => return Some(s),
                Err(e) => {
                    tracing::warn!(consumer = %self.consumer, error = %e, "resubscribing failed");
                    retry = (retry * 2).min(RESUBSCRIBE_MAX);
                }
            }
        }
    }

    /// Handles `deliveries` in one transaction per tenant; a group that fails goes one by one.
    async fn process_all(&self, deliveries: Vec<Delivery>) {
        if deliveries.len() == 1 {
            for d in deliveries {
                self.process(d).await;
            }
            return;
        }
        let mut by_tenant: Vec<Vec<Delivery>> = Vec::new();
        for d in deliveries {
            match by_tenant
                .iter_mut()
                .find(|g| g[0].envelope.tenant == d.envelope.tenant)
            {
                Some(group) => group.push(d),
                None => by_tenant.push(vec![d]),
            }
        }
        for group in by_tenant {
            if group.len() == 1 {
                for d in group {
                    self.process(d).await;
                }
                continue;
            }
            let span = tracing::info_span!(
                "consume",
                otel.name = %format!("process {} events", group.len()),
                otel.kind = "consumer",
                messaging.system = "nats",
                messaging.batch.message_count = group.len(),
                messaging.consumer.group.name = %self.consumer,
                spharos.tenant_id = %group[0].envelope.tenant,
            );
            let events: Vec<&Envelope> = group.iter().map(|d| &d.envelope).collect();
            match self.handle_group(&events).instrument(span).await {
                Ok(outcomes) => {
                    for (delivery, outcome) in group.into_iter().zip(outcomes) {
                        self.count(match outcome {
                            Outcome::Handled => "handled",
                            Outcome::Duplicate => "duplicate",
                        });
                        let event_id = delivery.envelope.id;
                        if let Err(e) = delivery.ack().await {
                            tracing::warn!(consumer = %self.consumer, %event_id, error = %e, "ack failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(consumer = %self.consumer, events = group.len(), error = %e, "event group rolled back; handling its events one by one");
                    for d in group {
                        self.process(d).await;
                    }
                }
            }
        }
    }

    fn count(&self, outcome: &str) {
        metrics()
            .events_consumed_total
            .get_or_create(&ConsumerLabels {
                consumer: self.consumer.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    async fn process(&self, delivery: Delivery) {
        let event = &delivery.envelope;
        let subject = event.subject(self.bus.namespace());
        let span = tracing::info_span!(
            "consume",
            otel.name = %format!("process {subject}"),
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.destination.name = %subject,
            messaging.message.id = %event.id,
            messaging.consumer.group.name = %self.consumer,
            spharos.tenant_id = %event.tenant,
        );
        telemetry::set_parent_from_traceparent(&span, event.traceparent.as_deref());
        let outcome = self.handle_once(event).instrument(span).await;
        self.count(match &outcome {
            Ok(Outcome::Handled) => "handled",
            Ok(Outcome::Duplicate) => "duplicate",
            Err(_) => "failed",
        });
        match outcome {
            Ok(_) => {
                let event_id = event.id;
                if let Err(e) = delivery.ack().await {
                    // Committed already: the redelivery is recognised as a duplicate.
                    tracing::warn!(consumer = %self.consumer, %event_id, error = %e, "ack failed");
                }
            }
            Err(e) => {
                // Not acked: the event comes back (JetStream after its ack wait, in-process
                // when the relay retries) and the rolled-back attempt left no trace.
                tracing::warn!(
                    consumer = %self.consumer,
                    event_id = %event.id,
                    subject = %subject,
                    tenant_id = %event.tenant,
                    error = %e,
                    "event handling failed; it will be redelivered"
                );
            }
        }
    }

    async fn handle_once(&self, event: &Envelope) -> Result<Outcome, HandleError> {
        let tx = self.db.begin(event.tenant).await?;
        if self.mark_processed(&tx, &[event]).await?.is_empty() {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        // On error `tx` is dropped, which rolls back the processed_events row too.
        self.handler.handle(&tx, event).await?;
        tx.commit().await?;
        Ok(Outcome::Handled)
    }

    /// Events of one tenant in one transaction, in order.
    async fn handle_group(&self, events: &[&Envelope]) -> Result<Vec<Outcome>, HandleError> {
        let tx = self.db.begin(events[0].tenant).await?;
        let fresh = self.mark_processed(&tx, events).await?;
        // An event delivered twice in one group counts once: its first delivery.
        let mut seen = HashSet::with_capacity(events.len());
        let outcomes: Vec<Outcome> = events
            .iter()
            .map(|e| {
                if fresh.contains(&e.id) && seen.insert(e.id) {
                    Outcome::Handled
                } else {
                    Outcome::Duplicate
                }
            })
            .collect();
        let new: Vec<&Envelope> = events
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Handled))
            .map(|(e, _)| *e)
            .collect();
        if !new.is_empty() {
            self.handler.handle_many(&tx, &new).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Records the events as processed by this consumer, in one statement; returns the ids it
    /// recorded (an event processed before is not among them).
    async fn mark_processed(
        &self,
        tx: &Tx,
        events: &[&Envelope],
    ) -> Result<HashSet<Uuid>, HandleError> {
        let now = Utc::now();
        let mut insert = Query::insert();
        insert
            .into_table(PROCESSED)
            .columns(["consumer", "event_id", "tenant_id", "processed_time"])
            .on_conflict(
                OnConflict::columns(["consumer", "event_id"])
                    .do_nothing()
                    .to_owned(),
            )
            .returning_col("event_id");
        for event in events {
            insert
                .values([
                    self.consumer.as_str().into(),
                    event.id.into(),
                    event.tenant.as_uuid().into(),
                    now.into(),
                ])
                .map_err(|e| DbErr::Custom(e.to_string()))?;
        }
        Ok(tx
            .query_all(&insert)
            .await?
            .iter()
            .map(|r| r.try_get::<Uuid>("", "event_id"))
            .collect::<Result<_, _>>()?)
    }
}

/// Sleeps `d`; false when shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

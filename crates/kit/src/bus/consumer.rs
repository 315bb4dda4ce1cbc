//! Idempotent consumers: every delivery is handled in one tenant transaction that also records
//! (consumer, event id) in `processed_events`, so a redelivered event (JetStream only
//! de-duplicates within a time window) is acknowledged without running the handler again.
use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbErr,
    sea_query::{OnConflict, Query},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Bus, BusError, Delivery, Envelope, Subscription, outbox::PROCESSED};
use crate::{
    db::Db,
    error::ServiceError,
    telemetry::{self, ConsumerLabels, metrics},
};

const RESUBSCRIBE_START: Duration = Duration::from_millis(500);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(10);

/// Handles one event inside the consumer's transaction; its writes commit together with the
/// record that the event was processed.
pub trait EventHandler: Send + Sync + 'static {
    fn handle<'a>(
        &'a self,
        tx: &'a DatabaseTransaction,
        event: &'a Envelope,
    ) -> impl std::future::Future<Output = Result<(), ServiceError>> + Send + 'a;

    /// Called after the handler's transaction committed: the place to wake the service's outbox
    /// relay when the handler enqueued events of its own.
    fn committed(&self) {}
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
                    self.process(delivery).await;
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
        let label = match &outcome {
            Ok(Outcome::Handled) => "handled",
            Ok(Outcome::Duplicate) => "duplicate",
            Err(_) => "failed",
        };
        metrics()
            .events_consumed_total
            .get_or_create(&ConsumerLabels {
                consumer: self.consumer.clone(),
                outcome: label.to_string(),
            })
            .inc();
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
        let mut insert = Query::insert();
        insert
            .into_table(PROCESSED)
            .columns(["consumer", "event_id", "tenant_id", "processed_time"])
            .values([
                self.consumer.as_str().into(),
                event.id.into(),
                event.tenant.as_uuid().into(),
                Utc::now().into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?
            .on_conflict(
                OnConflict::columns(["consumer", "event_id"])
                    .do_nothing()
                    .to_owned(),
            );
        if tx.execute(&insert).await?.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Outcome::Duplicate);
        }
        // On error `tx` is dropped, which rolls back the processed_events row too.
        self.handler.handle(&tx, event).await?;
        tx.commit().await?;
        self.handler.committed();
        Ok(Outcome::Handled)
    }
}

/// Sleeps `d`; false when shutdown came first.
async fn sleep_or_shutdown(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

//! The in-process bus of the embedded default: durable subscribers registered by name, each
//! delivery acknowledged through a oneshot so the relay marks an outbox row published only
//! after every interested subscriber handled it, the same contract as a JetStream PubAck.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

use super::{Acker, BusError, Delivery, Envelope, Subscription, SubscriptionInner, topic_matches};

/// How long a publisher waits for one subscriber's ack: JetStream's ack wait, so a stuck
/// consumer delays the relay instead of stopping it.
const ACK_WAIT: Duration = Duration::from_secs(30);

type Item = (Envelope, oneshot::Sender<()>);

/// Subscribers in this process, by durable name.
#[derive(Clone)]
pub struct InProcessBus {
    namespace: Arc<str>,
    subscribers: Arc<Mutex<HashMap<String, Subscriber>>>,
    /// Deliveries wait while this is false: a host holds them until every module of the process
    /// has subscribed, because an event with no subscriber yet would be acknowledged and lost
    /// to a consumer that subscribes a moment later.
    open: Arc<tokio::sync::watch::Sender<bool>>,
}

struct Subscriber {
    filters: Vec<String>,
    tx: mpsc::UnboundedSender<Item>,
}

impl InProcessBus {
    pub(crate) fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            subscribers: Arc::default(),
            open: Arc::new(tokio::sync::watch::Sender::new(true)),
        }
    }

    /// Holds deliveries until [`InProcessBus::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets held deliveries go.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscriber>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn publish_batch(&self, events: &[Envelope]) -> Result<(), BusError> {
        let mut open = self.open.subscribe();
        // The sender lives as long as `self`, so this only ends when released.
        let _ = open.wait_for(|o| *o).await;
        let mut pending = Vec::new();
        for event in events {
            let topic = event.topic();
            // Senders are cloned out so the lock is never held across an await.
            let targets: Vec<(String, mpsc::UnboundedSender<Item>)> = self
                .registry()
                .iter()
                .filter(|(_, s)| s.filters.iter().any(|f| topic_matches(f, &topic)))
                .map(|(name, s)| (name.clone(), s.tx.clone()))
                .collect();
            for (durable, tx) in targets {
                let (ack_tx, ack_rx) = oneshot::channel();
                // A subscriber whose subscription was dropped stays registered, like a
                // durable JetStream consumer that is offline: its events wait in the outbox.
                tx.send((event.clone(), ack_tx)).map_err(|_| {
                    not_acked(
                        event,
                        &self.namespace,
                        &durable,
                        "subscriber is not running",
                    )
                })?;
                pending.push((event, durable, ack_rx));
            }
        }
        for (event, durable, ack_rx) in pending {
            match tokio::time::timeout(ACK_WAIT, ack_rx).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(not_acked(
                        event,
                        &self.namespace,
                        &durable,
                        "delivery dropped without ack",
                    ));
                }
                Err(_) => {
                    return Err(not_acked(
                        event,
                        &self.namespace,
                        &durable,
                        "ack wait expired",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Registers `durable`, replacing an earlier subscriber of that name (whose subscription
    /// then ends).
    pub(crate) fn subscribe(&self, durable: &str, topics: &[&str]) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let filters = topics.iter().map(|t| t.to_string()).collect();
        self.registry()
            .insert(durable.to_string(), Subscriber { filters, tx });
        Subscription {
            inner: SubscriptionInner::InProcess(InProcessSubscription { rx }),
        }
    }
}

fn not_acked(event: &Envelope, namespace: &str, durable: &str, reason: &str) -> BusError {
    BusError::NotAcknowledged {
        event_id: event.id,
        subject: event.subject(namespace),
        durable: durable.to_string(),
        reason: reason.to_string(),
    }
}

pub(crate) struct InProcessSubscription {
    rx: mpsc::UnboundedReceiver<Item>,
}

impl InProcessSubscription {
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        let (envelope, ack) = self.rx.recv().await?;
        Some(Delivery {
            envelope,
            acker: Acker::InProcess(ack),
        })
    }
}

//! The event bus: CloudEvents with protobuf payloads over NATS JetStream in production, or an
//! in-process bus in the embedded default, fed by a transactional outbox so a state change and
//! its event commit together, and drained by idempotent consumers because redelivery happens.
//!
//! A service writes events with [`enqueue`] inside its own transaction, runs one relay
//! ([`spawn_relay`]) that publishes them, and handles other services' events with
//! [`spawn_consumer`]. Its migrator lists [`OutboxMigration`] first.
mod consumer;
mod envelope;
mod in_process;
mod nats;
mod outbox;

use tokio::sync::oneshot;

pub use consumer::{EventHandler, spawn_consumer};
pub use envelope::Envelope;
pub use in_process::InProcessBus;
pub use nats::NatsBus;
pub use outbox::{
    Outbox, OutboxDeleteOnPublishMigration, OutboxMigration, enqueue, enqueue_many, spawn_relay,
};

use crate::config::NatsSettings;

/// The namespace of [`Bus::in_process`], the same as the configuration default.
const DEFAULT_NAMESPACE: &str = "spharos";

/// Where events go: NATS JetStream, or subscribers in this process.
#[derive(Clone)]
pub enum Bus {
    Nats(NatsBus),
    InProcess(InProcessBus),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::Nats(b) => f.debug_tuple("Nats").field(&b.namespace()).finish(),
            Bus::InProcess(b) => f.debug_tuple("InProcess").field(&b.namespace()).finish(),
        }
    }
}

impl Bus {
    /// With `settings.url`, connects to NATS (failing fast when it is unreachable) and creates
    /// or updates the JetStream stream `settings.stream` over `<namespace>.>`; without it, a
    /// fresh in-process bus.
    pub async fn connect(settings: &NatsSettings) -> Result<Bus, BusError> {
        match &settings.url {
            Some(url) => Ok(Bus::Nats(
                NatsBus::connect(url, &settings.stream, &settings.namespace).await?,
            )),
            None => Ok(Bus::InProcess(InProcessBus::new(&settings.namespace))),
        }
    }

    /// A fresh in-process bus with the default namespace.
    pub fn in_process() -> Bus {
        Bus::InProcess(InProcessBus::new(DEFAULT_NAMESPACE))
    }

    /// Publishes every event, pipelined, and returns `Ok` only when each one is acknowledged
    /// (a JetStream PubAck, or an ack from every matching in-process subscriber).
    pub async fn publish_batch(&self, events: &[Envelope]) -> Result<(), BusError> {
        match self {
            Bus::Nats(b) => b.publish_batch(events).await,
            Bus::InProcess(b) => b.publish_batch(events).await,
        }
    }

    /// A durable subscription to `topics` (`"points.earned"`, NATS wildcards allowed) under
    /// the name `durable`: it resumes where the last one with that name stopped.
    pub async fn subscribe(
        &self,
        durable: &str,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        validate_durable(durable)?;
        if topics.is_empty() {
            return Err(BusError::InvalidTopic {
                topic: String::new(),
                reason: "a subscription needs at least one topic".into(),
            });
        }
        for t in topics {
            validate_topic(t)?;
        }
        match self {
            Bus::Nats(b) => b.subscribe(durable, topics).await,
            Bus::InProcess(b) => Ok(b.subscribe(durable, topics)),
        }
    }

    /// Every event of `topic` to this process, from the stream's start (not shared with other
    /// processes, not durable): for state every process keeps in memory, like token
    /// revocations. Acknowledging is still required in-process and a no-op on NATS.
    pub async fn subscribe_broadcast(&self, topic: &str) -> Result<Subscription, BusError> {
        validate_topic(topic)?;
        match self {
            Bus::Nats(b) => b.subscribe_broadcast(topic).await,
            Bus::InProcess(b) => Ok(b.subscribe(
                &format!("broadcast-{}", uuid::Uuid::now_v7().simple()),
                &[topic],
            )),
        }
    }

    /// Holds in-process deliveries while a host starts its modules (see
    /// [`InProcessBus::hold`]). JetStream keeps events for durable consumers that subscribe
    /// later, so for NATS this does nothing.
    pub fn hold_deliveries(&self) {
        if let Bus::InProcess(b) = self {
            b.hold();
        }
    }

    /// Ends [`Bus::hold_deliveries`].
    pub fn release_deliveries(&self) {
        if let Bus::InProcess(b) = self {
            b.release();
        }
    }

    /// The subject prefix: events go to `<namespace>.<service>.<event>`.
    pub fn namespace(&self) -> &str {
        match self {
            Bus::Nats(b) => b.namespace(),
            Bus::InProcess(b) => b.namespace(),
        }
    }
}

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("NATS at {url} unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot create or update the JetStream stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("publishing event {event_id} to {subject} failed: {reason}")]
    Publish {
        event_id: uuid::Uuid,
        subject: String,
        reason: String,
    },
    #[error("event {event_id} on {subject} was not acknowledged by subscriber {durable}: {reason}")]
    NotAcknowledged {
        event_id: uuid::Uuid,
        subject: String,
        durable: String,
        reason: String,
    },
    #[error("cannot subscribe {durable} to {subject}: {reason}")]
    Subscribe {
        durable: String,
        subject: String,
        reason: String,
    },
    #[error("receiving events for {durable} failed: {reason}")]
    Receive { durable: String, reason: String },
    #[error("acknowledging event {event_id} failed: {reason}")]
    Ack {
        event_id: uuid::Uuid,
        reason: String,
    },
    #[error("invalid topic {topic:?}: {reason} (expected <service>.<event> like points.earned)")]
    InvalidTopic { topic: String, reason: String },
    #[error("invalid durable name {durable:?}: use letters, digits, '-' and '_'")]
    InvalidDurable { durable: String },
}

/// A stream of deliveries for one durable subscriber.
pub struct Subscription {
    inner: SubscriptionInner,
}

enum SubscriptionInner {
    Nats(nats::NatsSubscription),
    InProcess(in_process::InProcessSubscription),
}

impl Subscription {
    /// The next event, or `None` when the subscription ended (an in-process subscriber was
    /// replaced by a newer one with the same durable name; the NATS message stream closed).
    pub async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        match &mut self.inner {
            SubscriptionInner::Nats(s) => s.next().await,
            SubscriptionInner::InProcess(s) => s.next().await.map(Ok),
        }
    }
}

/// One received event. Dropping it without [`Delivery::ack`] means it is delivered again later.
pub struct Delivery {
    pub envelope: Envelope,
    acker: Acker,
}

enum Acker {
    Nats(Box<async_nats::jetstream::message::Acker>),
    InProcess(oneshot::Sender<()>),
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Confirms the event was handled, so it is not delivered to this subscriber again.
    pub async fn ack(self) -> Result<(), BusError> {
        match self.acker {
            Acker::Nats(a) => a.ack().await.map_err(|e| BusError::Ack {
                event_id: self.envelope.id,
                reason: e.to_string(),
            }),
            Acker::InProcess(tx) => {
                // A publisher that stopped waiting (it timed out) sends the event again, and
                // the idempotent consumer skips it: the same outcome as a late JetStream ack.
                let _ = tx.send(());
                Ok(())
            }
        }
    }
}

/// A subject token: letters, digits, '_' and '-' (no '.', wildcards or whitespace).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `service` and `event` name a concrete subject: `member` + `joined`, or `campaign` +
/// `message.sent`.
pub(crate) fn validate_names(service: &str, event: &str) -> Result<(), String> {
    if !is_token(service) {
        return Err(format!(
            "service {service:?} must be one subject token (letters, digits, '_', '-')"
        ));
    }
    if !event.split('.').all(is_token) {
        return Err(format!(
            "event {event:?} must be dot-separated subject tokens (letters, digits, '_', '-')"
        ));
    }
    Ok(())
}

fn validate_topic(topic: &str) -> Result<(), BusError> {
    let tokens: Vec<&str> = topic.split('.').collect();
    let invalid = |reason: &str| BusError::InvalidTopic {
        topic: topic.to_string(),
        reason: reason.to_string(),
    };
    if tokens.len() < 2 {
        return Err(invalid("it needs a service and an event"));
    }
    for (i, t) in tokens.iter().enumerate() {
        let ok = is_token(t) || *t == "*" || (*t == ">" && i == tokens.len() - 1);
        if !ok {
            return Err(invalid(
                "tokens are letters, digits, '_', '-', '*' or a final '>'",
            ));
        }
    }
    Ok(())
}

fn validate_durable(durable: &str) -> Result<(), BusError> {
    if is_token(durable) {
        Ok(())
    } else {
        Err(BusError::InvalidDurable {
            durable: durable.to_string(),
        })
    }
}

/// NATS subject matching without the namespace: `*` is one token, a final `>` one or more.
fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('.');
    let mut t = topic.split('.');
    loop {
        match (f.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_match_like_nats_subjects() {
        assert!(topic_matches("points.earned", "points.earned"));
        assert!(!topic_matches("points.earned", "points.used"));
        assert!(topic_matches("points.*", "points.used"));
        assert!(!topic_matches("points.*", "campaign.message.sent"));
        assert!(topic_matches("campaign.>", "campaign.message.sent"));
        assert!(!topic_matches("campaign.>", "campaign"));
        assert!(topic_matches("*.joined", "member.joined"));
        assert!(!topic_matches("points.earned", "points.earned.extra"));
    }

    #[test]
    fn names_and_topics_are_validated() {
        assert!(validate_names("campaign", "message.sent").is_ok());
        assert!(validate_names("point s", "earned").is_err());
        assert!(validate_names("points", "earned.").is_err());
        assert!(validate_names("points", "*").is_err());
        assert!(validate_topic("points.earned").is_ok());
        assert!(validate_topic("points.>").is_ok());
        assert!(validate_topic("points").is_err());
        assert!(validate_topic(">.points").is_err());
        assert!(validate_durable("analytics-points").is_ok());
        assert!(validate_durable("a.b").is_err());
    }
}

//! NATS JetStream transport: one stream over `<namespace>.>`, pipelined publishes (every
//! message sent, then every PubAck awaited) and durable pull consumers with explicit ack.
//!
//! One pull consumer per topic (named `<durable>-<topic>`): a consumer with several filter
//! subjects needs nats-server 2.10, and the platform also runs on 2.9.
use std::{pin::Pin, sync::Arc, time::Duration};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    message::PublishMessage,
    stream::{self, StorageType},
};
use futures::{Stream, StreamExt, stream::SelectAll};

use super::{Acker, BusError, Delivery, Envelope, Subscription, SubscriptionInner};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A JetStream connection bound to one stream and subject namespace; clones share it.
#[derive(Clone)]
pub struct NatsBus {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    stream: String,
    namespace: String,
}

impl NatsBus {
    pub(crate) async fn connect(
        url: &str,
        stream: &str,
        namespace: &str,
    ) -> Result<Self, BusError> {
        // No retry on the initial connect: a wrong URL fails the start with a clear message.
        // Later disconnects are retried forever by the client (async-nats default).
        let client = async_nats::ConnectOptions::new()
            .name("spharos")
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| BusError::Unreachable {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client);
        js.create_or_update_stream(stream::Config {
            name: stream.to_string(),
            subjects: vec![format!("{namespace}.>")],
            storage: StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(|e| BusError::Stream {
            stream: stream.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                js,
                stream: stream.to_string(),
                namespace: namespace.to_string(),
            }),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// The JetStream context, for operations the bus does not wrap (tests, admin tools).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    pub(crate) async fn publish_batch(&self, events: &[Envelope]) -> Result<(), BusError> {
        let publish_err = |event: &Envelope, reason: String| BusError::Publish {
            event_id: event.id,
            subject: event.subject(&self.inner.namespace),
            reason,
        };
        // Pipelined: ~18x the throughput of awaiting each ack before the next send.
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let message = PublishMessage::build()
                .headers(event.headers())
                .payload(event.payload.clone().into());
            let ack = self
                .inner
                .js
                .send_publish(event.subject(&self.inner.namespace), message)
                .await
                .map_err(|e| publish_err(event, e.to_string()))?;
            acks.push((event, ack));
        }
        for (event, ack) in acks {
            ack.await.map_err(|e| publish_err(event, e.to_string()))?;
        }
        Ok(())
    }

    pub(crate) async fn subscribe(
        &self,
        durable: &str,
        topics: &[&str],
    ) -> Result<Subscription, BusError> {
        let stream = self
            .inner
            .js
            .get_stream(&self.inner.stream)
            .await
            .map_err(|e| BusError::Subscribe {
                durable: durable.to_string(),
                subject: format!("{}.>", self.inner.namespace),
                reason: format!("stream {}: {e}", self.inner.stream),
            })?;
        let mut topics: Vec<&str> = topics.to_vec();
        topics.sort_unstable();
        topics.dedup();
        let mut messages = SelectAll::new();
        for topic in topics {
            let subject = format!("{}.{topic}", self.inner.namespace);
            let name = consumer_name(durable, topic);
            let sub_err = |reason: String| BusError::Subscribe {
                durable: durable.to_string(),
                subject: subject.clone(),
                reason,
            };
            let consumer: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &name,
                    pull::Config {
                        durable_name: Some(name.clone()),
                        filter_subject: subject.clone(),
                        ack_policy: AckPolicy::Explicit,
                        ack_wait: ACK_WAIT,
                        deliver_policy: DeliverPolicy::All,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| sub_err(e.to_string()))?;
            let stream = consumer
                .messages()
                .await
                .map_err(|e| sub_err(e.to_string()))?;
            messages.push(Box::pin(stream) as MessageStream);
        }
        Ok(Subscription {
            inner: SubscriptionInner::Nats(NatsSubscription {
                durable: durable.to_string(),
                messages,
            }),
        })
    }
}

impl NatsBus {
    /// An ephemeral consumer of `topic` replaying the stream from its start: every process
    /// gets every event (token revocations), and the server forgets the consumer once this
    /// process stops pulling.
    pub(crate) async fn subscribe_broadcast(&self, topic: &str) -> Result<Subscription, BusError> {
        let subject = format!("{}.{topic}", self.inner.namespace);
        let sub_err = |reason: String| BusError::Subscribe {
            durable: "(broadcast)".into(),
            subject: subject.clone(),
            reason,
        };
        let stream = self
            .inner
            .js
            .get_stream(&self.inner.stream)
            .await
            .map_err(|e| sub_err(format!("stream {}: {e}", self.inner.stream)))?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: subject.clone(),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|e| sub_err(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| sub_err(e.to_string()))?;
        let mut all = SelectAll::new();
        all.push(Box::pin(messages) as MessageStream);
        Ok(Subscription {
            inner: SubscriptionInner::Nats(NatsSubscription {
                durable: "(broadcast)".to_string(),
                messages: all,
            }),
        })
    }
}

type MessageStream =
    Pin<Box<dyn Stream<Item = Result<jetstream::Message, pull::MessagesError>> + Send>>;

/// `analytics` + `points.earned` → `analytics-points-earned`; consumer names allow neither
/// dots nor wildcards.
fn consumer_name(durable: &str, topic: &str) -> String {
    let tokens: Vec<&str> = topic
        .split('.')
        .map(|t| match t {
            "*" => "any",
            ">" => "all",
            t => t,
        })
        .collect();
    format!("{durable}-{}", tokens.join("-"))
}

/// `nats://user:secret@host` → `nats://user:***@host`, so errors never print a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub(crate) struct NatsSubscription {
    durable: String,
    messages: SelectAll<MessageStream>,
}

impl NatsSubscription {
    pub(crate) async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(m) => m,
                Err(e) => {
                    return Some(Err(BusError::Receive {
                        durable: self.durable.clone(),
                        reason: e.to_string(),
                    }));
                }
            };
            let (message, acker) = message.split();
            match Envelope::from_headers(message.headers.as_ref(), &message.payload) {
                Ok(envelope) => {
                    return Some(Ok(Delivery {
                        envelope,
                        acker: Acker::Nats(Box::new(acker)),
                    }));
                }
                Err(reason) => {
                    // Acked so a message no consumer can read does not come back forever.
                    tracing::warn!(
                        durable = %self.durable,
                        subject = %message.subject,
                        %reason,
                        "malformed event skipped"
                    );
                    if let Err(e) = acker.ack().await {
                        tracing::warn!(durable = %self.durable, error = %e, "ack of malformed event failed");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_valid_nats_names() {
        assert_eq!(
            consumer_name("analytics", "points.earned"),
            "analytics-points-earned"
        );
        assert_eq!(
            consumer_name("billing", "campaign.>"),
            "billing-campaign-all"
        );
        assert_eq!(consumer_name("x", "*.joined"), "x-any-joined");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("nats://u:pw@h:4222"), "nats://u:***@h:4222");
        assert_eq!(redact("nats://h:4222"), "nats://h:4222");
    }
}

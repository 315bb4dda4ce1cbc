//! What the billing service publishes (`billing.tenant_created`, `billing.subscription_changed`,
//! `billing.plan_limit_exceeded`, and `billing.token_revoked`, which every process's revocation
//! listener applies) and consumes for metering (`campaign.message.sent`, `member.joined`,
//! `member.withdrawn`, `member.store_created`, `member.store_updated`). Payloads carry ids and
//! counts, never PII.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    auth::TOKEN_REVOKED_TOPIC,
    bus::{Envelope, EventHandler},
    grpc::timestamp,
};
use spharos_proto::{
    billing::{PlanLimitExceeded, SubscriptionChanged, TenantCreated, TokenRevoked},
    campaign::MessageSent,
    common::Channel as PbChannel,
    member::{MemberJoined, MemberWithdrawn, StoreChanged},
};
use uuid::Uuid;

use crate::{
    app::BillingApp,
    domain::{
        catalogue::{Channel, Plan},
        limits::{Compliance, LimitReason},
        subscription::{Subscription, SubscriptionStatus},
        tenant::Tenant,
        token::ApiToken,
        usage::MessageUsage,
    },
};

const SERVICE: &str = "billing";

/// The durable name of the metering consumer and the topics it reads.
pub const USAGE_CONSUMER: &str = "billing-usage";
pub const MESSAGE_SENT: &str = "campaign.message.sent";
pub const MEMBER_JOINED: &str = "member.joined";
pub const MEMBER_WITHDRAWN: &str = "member.withdrawn";
pub const STORE_CREATED: &str = "member.store_created";
pub const STORE_UPDATED: &str = "member.store_updated";
pub const USAGE_TOPICS: [&str; 5] = [
    MESSAGE_SENT,
    MEMBER_JOINED,
    MEMBER_WITHDRAWN,
    STORE_CREATED,
    STORE_UPDATED,
];

/// The topic of [`plan_limit_exceeded`], for subscribers (the operator).
pub const PLAN_LIMIT_EXCEEDED: &str = "billing.plan_limit_exceeded";

pub(crate) fn pb_plan_name(p: Plan) -> &'static str {
    match p {
        Plan::Basic => "PLAN_BASIC",
        Plan::Custom => "PLAN_CUSTOM",
    }
}

pub(crate) fn pb_status_name(s: SubscriptionStatus) -> &'static str {
    match s {
        SubscriptionStatus::Active => "SUBSCRIPTION_STATUS_ACTIVE",
        SubscriptionStatus::Suspended => "SUBSCRIPTION_STATUS_SUSPENDED",
        SubscriptionStatus::Cancelled => "SUBSCRIPTION_STATUS_CANCELLED",
    }
}

pub(crate) fn tenant_created(t: &Tenant) -> Envelope {
    let msg = TenantCreated {
        tenant_id: t.id.to_string(),
        name: t.name.clone(),
        time_zone: t.time_zone.name().to_string(),
        create_time: Some(timestamp(t.created_time)),
    };
    Envelope::new(SERVICE, "tenant_created", t.id, t.id.to_string(), &msg)
}

pub(crate) fn subscription_changed(
    tenant: TenantId,
    s: &Subscription,
    change: &str,
    plan: Plan,
    effective: NaiveDate,
    at: DateTime<Utc>,
) -> Envelope {
    let msg = SubscriptionChanged {
        tenant_id: tenant.to_string(),
        subscription_id: s.id.to_string(),
        change: change.to_string(),
        plan: pb_plan_name(plan).to_string(),
        status: pb_status_name(s.status).to_string(),
        effective_date: effective.to_string(),
        change_time: Some(timestamp(at)),
    };
    Envelope::new(
        SERVICE,
        "subscription_changed",
        tenant,
        s.id.to_string(),
        &msg,
    )
}

pub(crate) fn plan_limit_exceeded(
    tenant: TenantId,
    reason: LimitReason,
    members: i64,
    stores: i64,
    c: &Compliance,
    at: DateTime<Utc>,
) -> Envelope {
    let msg = PlanLimitExceeded {
        tenant_id: tenant.to_string(),
        reason: reason.as_str().to_string(),
        member_count: members,
        store_count: stores,
        member_limit: c.member_limit,
        store_limit: c.store_limit,
        exceed_time: Some(timestamp(at)),
    };
    Envelope::new(
        SERVICE,
        "plan_limit_exceeded",
        tenant,
        tenant.to_string(),
        &msg,
    )
}

/// `billing.token_revoked` ([`TOKEN_REVOKED_TOPIC`]): every process refuses the token.
pub(crate) fn token_revoked(tenant: TenantId, t: &ApiToken, at: DateTime<Utc>) -> Envelope {
    let msg = TokenRevoked {
        token_id: t.id.to_string(),
        tenant_id: tenant.to_string(),
        revoke_time: Some(timestamp(at)),
        expire_unix: t.expire_time.timestamp(),
    };
    let event = TOKEN_REVOKED_TOPIC
        .strip_prefix("billing.")
        .unwrap_or("token_revoked");
    Envelope::new(SERVICE, event, tenant, t.id.to_string(), &msg)
}

pub(crate) fn channel(c: PbChannel) -> Option<Channel> {
    match c {
        PbChannel::Unspecified => None,
        PbChannel::Sms => Some(Channel::Sms),
        PbChannel::Lms => Some(Channel::Lms),
        PbChannel::Mms => Some(Channel::Mms),
        PbChannel::Email => Some(Channel::Email),
        PbChannel::AppPush => Some(Channel::AppPush),
        PbChannel::KakaoAlimtalk => Some(Channel::KakaoAlimtalk),
        PbChannel::KakaoBrandMessage => Some(Channel::KakaoBrandMessage),
    }
}

pub(crate) fn pb_channel(c: Channel) -> PbChannel {
    match c {
        Channel::Sms => PbChannel::Sms,
        Channel::Lms => PbChannel::Lms,
        Channel::Mms => PbChannel::Mms,
        Channel::Email => PbChannel::Email,
        Channel::AppPush => PbChannel::AppPush,
        Channel::KakaoAlimtalk => PbChannel::KakaoAlimtalk,
        Channel::KakaoBrandMessage => PbChannel::KakaoBrandMessage,
    }
}

/// Meters usage from other services' events, inside the consumer's transaction (which also
/// records the event id, so a replayed event counts once).
pub struct UsageEvents {
    app: BillingApp,
}

impl UsageEvents {
    pub fn new(app: BillingApp) -> Self {
        Self { app }
    }

    async fn on_message_sent(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<MessageSent>(event) else {
            return Ok(());
        };
        let Some(ch) = PbChannel::try_from(msg.channel).ok().and_then(channel) else {
            tracing::warn!(event_id = %event.id, "message.sent without a known channel skipped");
            return Ok(());
        };
        if msg.message_count <= 0 {
            tracing::warn!(event_id = %event.id, "message.sent without a positive count skipped");
            return Ok(());
        }
        let sent_time = msg
            .sent_time
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or(event.time);
        let usage = MessageUsage {
            channel: ch,
            count: i64::from(msg.message_count),
            sent_time,
        };
        self.app.record_messages(tx, event.tenant, usage).await
    }

    async fn on_store(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<StoreChanged>(event) else {
            return Ok(());
        };
        let Ok(store_id) = Uuid::parse_str(&msg.store_id) else {
            tracing::warn!(event_id = %event.id, "store event without a valid store_id skipped");
            return Ok(());
        };
        self.app
            .record_store(tx, event.tenant, store_id, msg.open, event.time)
            .await
    }

    /// The member id of a `member.joined` / `member.withdrawn`, or `None` (logged) when the
    /// payload has none.
    fn member_id(event: &Envelope) -> Option<Uuid> {
        let raw = if event.topic() == MEMBER_JOINED {
            decode::<MemberJoined>(event)?.member_id
        } else {
            decode::<MemberWithdrawn>(event)?.member_id
        };
        let id = Uuid::parse_str(&raw).ok();
        if id.is_none() {
            tracing::warn!(event_id = %event.id, topic = %event.topic(), "member event without a valid member_id skipped");
        }
        id
    }
}

/// The payload, or `None` (logged) for a message no retry could ever decode: acknowledging it
/// beats blocking the consumer behind it.
fn decode<M: prost::Message + Default>(event: &Envelope) -> Option<M> {
    match event.decode::<M>() {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::warn!(event_id = %event.id, topic = %event.topic(), error = %e, "undecodable event skipped");
            None
        }
    }
}

impl EventHandler for UsageEvents {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        match event.topic().as_str() {
            MESSAGE_SENT => self.on_message_sent(tx, event).await,
            MEMBER_JOINED | MEMBER_WITHDRAWN => {
                let Some(member) = Self::member_id(event) else {
                    return Ok(());
                };
                if event.topic() == MEMBER_JOINED {
                    self.app
                        .record_member_joined(tx, event.tenant, member)
                        .await
                } else {
                    self.app
                        .record_member_withdrawn(tx, event.tenant, member)
                        .await
                }
            }
            STORE_CREATED | STORE_UPDATED => self.on_store(tx, event).await,
            other => {
                tracing::debug!(topic = %other, "event of no interest to billing-usage");
                Ok(())
            }
        }
    }
}

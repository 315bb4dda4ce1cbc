//! What the privacy service publishes (`privacy.consent.changed`,
//! `privacy.consent.reconfirmation_due`) and consumes (`member.joined` with the sign-up
//! consents, `member.withdrawn`, `member.erased`, and `privacy.pii_accessed` for the access
//! log). Payloads carry ids and codes only, never PII.
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{Envelope, EventHandler},
    grpc::timestamp,
};
use spharos_proto::{
    common::JoinChannel as PbJoinChannel,
    member::{MemberErased, MemberJoined, MemberWithdrawn},
    privacy::{
        ConsentChanged, ConsentReconfirmationDue, MarketingChannel as PbMarketingChannel,
        PiiAccessed,
    },
};
use uuid::Uuid;

use crate::{
    app::{MemberJoin, PrivacyApp},
    domain::{
        access_log::{Access, Source},
        consent::{AdRole, Answer, CollectionChannel, ConsentChange, MarketingChannel},
    },
    store::consents::NoticeRow,
};

const SERVICE: &str = "privacy";

/// The durable consumer of member events and its topics.
pub const MEMBER_CONSUMER: &str = "privacy-members";
pub const MEMBER_JOINED: &str = "member.joined";
pub const MEMBER_WITHDRAWN: &str = "member.withdrawn";
pub const MEMBER_ERASED: &str = "member.erased";
/// The durable consumer of the access-log events and its topic.
pub const ACCESS_LOG_CONSUMER: &str = "privacy-access-log";
pub const PII_ACCESSED: &str = "privacy.pii_accessed";

pub(crate) fn pb_marketing_channel(c: Option<MarketingChannel>) -> PbMarketingChannel {
    match c {
        None => PbMarketingChannel::Unspecified,
        Some(MarketingChannel::Sms) => PbMarketingChannel::Sms,
        Some(MarketingChannel::Email) => PbMarketingChannel::Email,
        Some(MarketingChannel::AppPush) => PbMarketingChannel::AppPush,
        Some(MarketingChannel::KakaoTalk) => PbMarketingChannel::Kakaotalk,
    }
}

pub(crate) fn pb_collection_channel(c: CollectionChannel) -> PbJoinChannel {
    match c {
        CollectionChannel::Unspecified => PbJoinChannel::Unspecified,
        CollectionChannel::App => PbJoinChannel::App,
        CollectionChannel::Web => PbJoinChannel::Web,
        CollectionChannel::Pos => PbJoinChannel::Pos,
        CollectionChannel::CallCenter => PbJoinChannel::CallCenter,
        CollectionChannel::Admin => PbJoinChannel::Admin,
    }
}

pub(crate) fn collection_channel(c: PbJoinChannel) -> CollectionChannel {
    match c {
        PbJoinChannel::Unspecified => CollectionChannel::Unspecified,
        PbJoinChannel::App => CollectionChannel::App,
        PbJoinChannel::Web => CollectionChannel::Web,
        PbJoinChannel::Pos => CollectionChannel::Pos,
        PbJoinChannel::CallCenter => CollectionChannel::CallCenter,
        PbJoinChannel::Admin => CollectionChannel::Admin,
    }
}

pub(crate) fn consent_changed(tenant: TenantId, c: &ConsentChange, role: AdRole) -> Envelope {
    let msg = ConsentChanged {
        member_id: c.member_id.to_string(),
        consent_type_code: c.code.clone(),
        version: c.version,
        granted: c.granted,
        collection_channel: pb_collection_channel(c.collection_channel).into(),
        actor: c.actor.clone(),
        change_time: Some(timestamp(c.change_time)),
        advertising: role.is_advertising(),
        channel: pb_marketing_channel(role.channel()).into(),
        night_time: role.is_night(),
    };
    Envelope::new(
        SERVICE,
        "consent.changed",
        tenant,
        c.member_id.to_string(),
        &msg,
    )
}

pub(crate) fn reconfirmation_due(tenant: TenantId, n: &NoticeRow, role: AdRole) -> Envelope {
    let msg = ConsentReconfirmationDue {
        notice_id: n.id.to_string(),
        member_id: n.member_id.to_string(),
        consent_type_code: n.consent_type_code.clone(),
        version: n.version,
        channel: pb_marketing_channel(role.channel()).into(),
        night_time: role.is_night(),
        cycle_start_time: Some(timestamp(n.cycle_start_time)),
        due_date: n.due_date.to_string(),
    };
    Envelope::new(
        SERVICE,
        "consent.reconfirmation_due",
        tenant,
        n.member_id.to_string(),
        &msg,
    )
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

fn member_id(event: &Envelope, raw: &str) -> Option<Uuid> {
    match Uuid::parse_str(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            tracing::warn!(event_id = %event.id, topic = %event.topic(), "event without a valid member_id skipped");
            None
        }
    }
}

fn time_or(t: Option<&prost_types::Timestamp>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or(fallback)
}

/// Member events: the sign-up consents, withdrawals (consents end, the retention clock
/// starts) and erasures. Runs in the consumer's transaction, which also records the event id.
pub struct MemberEvents {
    app: PrivacyApp,
}

impl MemberEvents {
    pub fn new(app: PrivacyApp) -> Self {
        Self { app }
    }
}

impl EventHandler for MemberEvents {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        match event.topic().as_str() {
            MEMBER_JOINED => {
                let Some(msg) = decode::<MemberJoined>(event) else {
                    return Ok(());
                };
                let Some(id) = member_id(event, &msg.member_id) else {
                    return Ok(());
                };
                let join = MemberJoin {
                    member_id: id,
                    join_time: time_or(msg.join_time.as_ref(), event.time),
                    channel: collection_channel(msg.join_channel()),
                    consents: msg
                        .consents
                        .iter()
                        .map(|c| Answer {
                            code: c.consent_type_code.clone(),
                            granted: c.granted,
                        })
                        .collect(),
                };
                self.app.record_member_joined(tx, event.tenant, &join).await
            }
            MEMBER_WITHDRAWN => {
                let Some(msg) = decode::<MemberWithdrawn>(event) else {
                    return Ok(());
                };
                let Some(id) = member_id(event, &msg.member_id) else {
                    return Ok(());
                };
                let at = time_or(msg.withdraw_time.as_ref(), event.time);
                self.app
                    .record_member_withdrawn(tx, event.tenant, id, trunc(at))
                    .await
            }
            MEMBER_ERASED => {
                let Some(msg) = decode::<MemberErased>(event) else {
                    return Ok(());
                };
                let Some(id) = member_id(event, &msg.member_id) else {
                    return Ok(());
                };
                let at = time_or(msg.erase_time.as_ref(), event.time);
                self.app
                    .record_member_erased(tx, event.tenant, id, trunc(at))
                    .await
            }
            other => {
                tracing::debug!(topic = %other, "event of no interest to privacy-members");
                Ok(())
            }
        }
    }
}

fn trunc(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(6)
}

/// `privacy.pii_accessed` (published by every service that shows PII in clear) into the
/// hash-chained access log.
pub struct AccessLogEvents {
    app: PrivacyApp,
}

impl AccessLogEvents {
    pub fn new(app: PrivacyApp) -> Self {
        Self { app }
    }
}

impl EventHandler for AccessLogEvents {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<PiiAccessed>(event) else {
            return Ok(());
        };
        let Some(id) = member_id(event, &msg.member_id) else {
            return Ok(());
        };
        let access = Access {
            member_id: id,
            actor: msg.actor,
            fields: msg.fields,
            reason: msg.reason,
            client_address: msg.client_address,
            operation: msg.operation,
            access_time: time_or(msg.access_time.as_ref(), event.time),
            source: Source::Event,
            // The event id ties the entry to the outbox row that announced it.
            recorded_by: format!("event:{}", event.id),
        };
        self.app.append_access(tx, event.tenant, access).await?;
        Ok(())
    }
}

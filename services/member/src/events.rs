//! What the member service publishes (`member.*` facts and the `privacy.pii_accessed` access
//! log) and consumes (`points.purchase_recorded`, for grade evaluation).
//! Payloads carry ids and masked values only, never PII.
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{Envelope, EventHandler},
    grpc::timestamp,
};
use spharos_proto::{
    common::JoinChannel as ProtoJoinChannel,
    member::{
        CardIssued, CardLost, MemberErased, MemberGradeChanged, MemberJoined, MemberUpdated,
        MemberWithdrawn, SignupConsent as PbSignupConsent, StoreChanged,
    },
    points::PurchaseRecorded,
    privacy::PiiAccessed,
};
use uuid::Uuid;

use crate::{
    app::{MemberApp, UnmaskAudit},
    domain::{
        card::Card,
        grade::{Grade, Purchase},
        member::{JoinChannel, MemberProfile, SignupConsent},
        store::{Store, StoreStatus},
    },
};

const SERVICE: &str = "member";

/// The durable name of the grade consumer and the topics it reads.
pub const GRADE_CONSUMER: &str = "member-grades";
pub const PURCHASE_RECORDED: &str = "points.purchase_recorded";

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

pub(crate) fn join_channel(c: JoinChannel) -> ProtoJoinChannel {
    match c {
        JoinChannel::Unspecified => ProtoJoinChannel::Unspecified,
        JoinChannel::App => ProtoJoinChannel::App,
        JoinChannel::Web => ProtoJoinChannel::Web,
        JoinChannel::Pos => ProtoJoinChannel::Pos,
        JoinChannel::CallCenter => ProtoJoinChannel::CallCenter,
        JoinChannel::Admin => ProtoJoinChannel::Admin,
    }
}

pub(crate) fn member_joined(
    tenant: TenantId,
    m: &MemberProfile,
    birth_month_day: String,
    consents: &[SignupConsent],
) -> Envelope {
    let msg = MemberJoined {
        member_id: m.id.to_string(),
        join_store_id: opt_id(m.join_store_id),
        join_channel: join_channel(m.join_channel).into(),
        grade_id: opt_id(m.grade_id),
        join_time: Some(timestamp(m.join_time)),
        birth_month_day,
        consents: consents
            .iter()
            .map(|c| PbSignupConsent {
                consent_type_code: c.code.clone(),
                granted: c.granted,
            })
            .collect(),
    };
    Envelope::new(SERVICE, "joined", tenant, m.id.to_string(), &msg)
}

pub(crate) fn member_updated(tenant: TenantId, member_id: Uuid, changed: &[&str]) -> Envelope {
    let msg = MemberUpdated {
        member_id: member_id.to_string(),
        changed_fields: changed.iter().map(|f| f.to_string()).collect(),
    };
    Envelope::new(SERVICE, "updated", tenant, member_id.to_string(), &msg)
}

pub(crate) fn member_withdrawn(
    tenant: TenantId,
    member_id: Uuid,
    reason: &str,
    at: DateTime<Utc>,
) -> Envelope {
    let msg = MemberWithdrawn {
        member_id: member_id.to_string(),
        reason: reason.to_string(),
        withdraw_time: Some(timestamp(at)),
    };
    Envelope::new(SERVICE, "withdrawn", tenant, member_id.to_string(), &msg)
}

pub(crate) fn member_erased(tenant: TenantId, member_id: Uuid, at: DateTime<Utc>) -> Envelope {
    let msg = MemberErased {
        member_id: member_id.to_string(),
        erase_time: Some(timestamp(at)),
    };
    Envelope::new(SERVICE, "erased", tenant, member_id.to_string(), &msg)
}

pub(crate) fn grade_changed(
    tenant: TenantId,
    member_id: Uuid,
    from: Option<Uuid>,
    to: &Grade,
    trailing: i64,
) -> Envelope {
    let msg = MemberGradeChanged {
        member_id: member_id.to_string(),
        from_grade_id: opt_id(from),
        to_grade_id: to.id.to_string(),
        to_grade_name: to.name.clone(),
        trailing_purchase_krw: trailing,
    };
    Envelope::new(
        SERVICE,
        "grade_changed",
        tenant,
        member_id.to_string(),
        &msg,
    )
}

pub(crate) fn card_issued(tenant: TenantId, card: &Card) -> Envelope {
    let msg = CardIssued {
        member_id: card.member_id.to_string(),
        card_id: card.id.to_string(),
        replaces_card_id: opt_id(card.replaces_card_id),
    };
    Envelope::new(
        SERVICE,
        "card_issued",
        tenant,
        card.member_id.to_string(),
        &msg,
    )
}

pub(crate) fn card_lost(tenant: TenantId, card: &Card) -> Envelope {
    let msg = CardLost {
        member_id: card.member_id.to_string(),
        card_id: card.id.to_string(),
    };
    Envelope::new(
        SERVICE,
        "card_lost",
        tenant,
        card.member_id.to_string(),
        &msg,
    )
}

fn store_changed(store: &Store) -> StoreChanged {
    StoreChanged {
        store_id: store.id.to_string(),
        code: store.code.clone(),
        open: store.status == StoreStatus::Open,
    }
}

pub(crate) fn store_created(tenant: TenantId, store: &Store) -> Envelope {
    Envelope::new(
        SERVICE,
        "store_created",
        tenant,
        store.id.to_string(),
        &store_changed(store),
    )
}

pub(crate) fn store_updated(tenant: TenantId, store: &Store) -> Envelope {
    Envelope::new(
        SERVICE,
        "store_updated",
        tenant,
        store.id.to_string(),
        &store_changed(store),
    )
}

/// The access-log record of one clear view. It belongs to the privacy service's vocabulary,
/// so it is published as `privacy.pii_accessed`, from this service's outbox.
pub(crate) fn pii_accessed(
    tenant: TenantId,
    member_id: Uuid,
    fields: &[&str],
    audit: &UnmaskAudit,
    at: DateTime<Utc>,
) -> Envelope {
    let msg = PiiAccessed {
        member_id: member_id.to_string(),
        actor: audit.actor.clone(),
        fields: fields.iter().map(|f| f.to_string()).collect(),
        reason: audit.reason.clone(),
        client_address: audit.client_address.clone(),
        operation: audit.operation.clone(),
        access_time: Some(timestamp(at)),
    };
    Envelope::new(
        "privacy",
        "pii_accessed",
        tenant,
        member_id.to_string(),
        &msg,
    )
}

/// Re-evaluates grades when the points service records a purchase. Runs inside the consumer's
/// transaction, which also records the event ids, so each event counts once. Every earn
/// announces its purchase, so `points.earned` would tell this consumer nothing more.
pub struct GradeEvents {
    app: MemberApp,
}

impl GradeEvents {
    pub fn new(app: MemberApp) -> Self {
        Self { app }
    }
}

/// The purchase a `points.purchase_recorded` event announces; `None` (logged) for another
/// topic or a payload no retry could ever use.
fn purchase_of(event: &Envelope) -> Option<Purchase> {
    if event.topic() != PURCHASE_RECORDED {
        tracing::debug!(topic = %event.topic(), "event of no interest to member-grades");
        return None;
    }
    let msg = decode::<PurchaseRecorded>(event)?;
    let member_id = member_id(event, &msg.member_id)?;
    let occurred_time = msg
        .occurred_time
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or(event.time);
    // Without a till transaction id, the event id is the only identity the purchase has.
    let pos_transaction_id = if msg.pos_transaction_id.is_empty() {
        format!("event:{}", event.id)
    } else {
        msg.pos_transaction_id
    };
    Some(Purchase {
        member_id,
        store_code: msg.store_code,
        pos_transaction_id,
        amount_krw: msg.amount_krw,
        occurred_time,
    })
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

impl EventHandler for GradeEvents {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        self.handle_many(tx, &[event]).await
    }

    /// A till rush's purchases in one go: each member is evaluated once, against all of them
    /// (a member crossing two thresholds in one group gets one `member.grade_changed`, from
    /// the grade held before to the grade reached).
    async fn handle_many(&self, tx: &Tx, events: &[&Envelope]) -> Result<(), ServiceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let purchases: Vec<Purchase> = events.iter().filter_map(|e| purchase_of(e)).collect();
        if purchases.is_empty() {
            return Ok(());
        }
        self.app.record_purchases(tx, first.tenant, purchases).await
    }
}

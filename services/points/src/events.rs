//! What the points service publishes: `points.earned`, `points.purchase_recorded` (the member
//! service's grade input; architecture calls it `purchase.recorded`), `points.used`,
//! `points.cancelled`, `points.adjusted`, `points.expired` and `points.expiry_notice`, each
//! written to the outbox in the transaction of its ledger entry. The subject of every event is
//! the member id (the ledger is the member's). Payloads carry ids and amounts, never PII.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::{TenantId, bus::Envelope, grpc::timestamp};
use spharos_proto::points as pb;
use uuid::Uuid;

use crate::{
    domain::{expiry::Horizon, forms::TxKind, policy::LineItem},
    store::{lots::LotRow, transactions::TransactionRow},
};

const SERVICE: &str = "points";

/// Topics (`<service>.<event>`), for subscribers.
pub const EARNED: &str = "points.earned";
pub const PURCHASE_RECORDED: &str = "points.purchase_recorded";
pub const USED: &str = "points.used";
pub const CANCELLED: &str = "points.cancelled";
pub const ADJUSTED: &str = "points.adjusted";
pub const EXPIRED: &str = "points.expired";
pub const EXPIRY_NOTICE: &str = "points.expiry_notice";

fn event(name: &str, tenant: TenantId, member: Uuid, msg: &impl prost::Message) -> Envelope {
    Envelope::new(SERVICE, name, tenant, member.to_string(), msg)
}

pub(crate) fn tx_type(k: TxKind) -> pb::TransactionType {
    match k {
        TxKind::Earn => pb::TransactionType::Earn,
        TxKind::Spend => pb::TransactionType::Spend,
        TxKind::CancelEarn => pb::TransactionType::CancelEarn,
        TxKind::CancelSpend => pb::TransactionType::CancelSpend,
        TxKind::Adjust => pb::TransactionType::Adjust,
        TxKind::Expire => pb::TransactionType::Expire,
    }
}

pub(crate) fn horizon(h: Horizon) -> pb::ExpiryNoticeHorizon {
    match h {
        Horizon::TwoMonths => pb::ExpiryNoticeHorizon::TwoMonths,
        Horizon::OneMonth => pb::ExpiryNoticeHorizon::OneMonth,
        Horizon::ThreeDays => pb::ExpiryNoticeHorizon::ThreeDays,
    }
}

pub(crate) fn line_items(items: &[LineItem]) -> Vec<pb::LineItem> {
    items
        .iter()
        .map(|i| pb::LineItem {
            sku: i.sku.clone(),
            category: i.category.clone(),
            amount_krw: i.amount_krw,
            quantity: i.quantity,
        })
        .collect()
}

fn text(s: &Option<String>) -> String {
    s.clone().unwrap_or_default()
}

pub(crate) fn earned(tenant: TenantId, t: &TransactionRow, items: &[LineItem]) -> Envelope {
    let msg = pb::PointsEarned {
        member_id: t.member_id.to_string(),
        transaction_id: t.id.to_string(),
        points: t.points,
        purchase_amount_krw: t.amount_krw,
        store_code: text(&t.store_code),
        pos_transaction_id: text(&t.pos_transaction_id),
        items: line_items(items),
        occurred_time: Some(timestamp(t.occurred_time)),
        policy_version: t.policy_version.unwrap_or(0),
        rate_bp: t.rate_bp.unwrap_or(0),
        expire_time: t.expire_time.map(timestamp),
        available_time: t.available_time.map(timestamp),
        debt_paid: -t.debt_delta,
        balance_after: t.balance_after,
    };
    event("earned", tenant, t.member_id, &msg)
}

pub(crate) fn purchase_recorded(
    tenant: TenantId,
    t: &TransactionRow,
    items: &[LineItem],
) -> Envelope {
    let msg = pb::PurchaseRecorded {
        member_id: t.member_id.to_string(),
        store_code: text(&t.store_code),
        pos_transaction_id: text(&t.pos_transaction_id),
        amount_krw: t.amount_krw,
        items: line_items(items),
        occurred_time: Some(timestamp(t.occurred_time)),
    };
    event("purchase_recorded", tenant, t.member_id, &msg)
}

pub(crate) fn used(tenant: TenantId, t: &TransactionRow) -> Envelope {
    let msg = pb::PointsUsed {
        member_id: t.member_id.to_string(),
        transaction_id: t.id.to_string(),
        points: -t.points,
        store_code: text(&t.store_code),
        pos_transaction_id: text(&t.pos_transaction_id),
        balance_after: t.balance_after,
        occurred_time: Some(timestamp(t.occurred_time)),
    };
    event("used", tenant, t.member_id, &msg)
}

pub(crate) fn cancelled(tenant: TenantId, t: &TransactionRow, original_kind: TxKind) -> Envelope {
    let msg = pb::PointsCancelled {
        member_id: t.member_id.to_string(),
        transaction_id: t.id.to_string(),
        original_transaction_id: t
            .original_transaction_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        original_type: tx_type(original_kind).into(),
        points: t.points,
        refund_amount_krw: t.amount_krw,
        debt_delta: t.debt_delta,
        balance_after: t.balance_after,
        store_code: text(&t.store_code),
        pos_transaction_id: text(&t.pos_transaction_id),
        occurred_time: Some(timestamp(t.occurred_time)),
    };
    event("cancelled", tenant, t.member_id, &msg)
}

pub(crate) fn adjusted(tenant: TenantId, t: &TransactionRow) -> Envelope {
    let msg = pb::PointsAdjusted {
        member_id: t.member_id.to_string(),
        transaction_id: t.id.to_string(),
        points: t.points,
        reason: text(&t.reason),
        actor: t.actor.clone(),
        balance_after: t.balance_after,
        occurred_time: Some(timestamp(t.occurred_time)),
    };
    event("adjusted", tenant, t.member_id, &msg)
}

/// `lots`: (lot id, points expired, its expiry).
pub(crate) fn expired(
    tenant: TenantId,
    t: &TransactionRow,
    lots: &[(Uuid, i64, DateTime<Utc>)],
) -> Envelope {
    let msg = pb::PointsExpired {
        member_id: t.member_id.to_string(),
        transaction_id: t.id.to_string(),
        points: -t.points,
        lots: lots
            .iter()
            .map(|(id, points, at)| pb::ExpiredLot {
                lot_id: id.to_string(),
                points: *points,
                expire_time: Some(timestamp(*at)),
            })
            .collect(),
        balance_after: t.balance_after,
        occurred_time: Some(timestamp(t.occurred_time)),
    };
    event("expired", tenant, t.member_id, &msg)
}

pub(crate) fn expiry_notice(
    tenant: TenantId,
    lot: &LotRow,
    h: Horizon,
    expire_date: NaiveDate,
) -> Envelope {
    let msg = pb::PointsExpiryNotice {
        member_id: lot.member_id.to_string(),
        lot_id: lot.id.to_string(),
        horizon: horizon(h).into(),
        points: lot.remaining,
        expire_time: Some(timestamp(lot.expire_time)),
        expire_date: expire_date.to_string(),
    };
    event("expiry_notice", tenant, lot.member_id, &msg)
}

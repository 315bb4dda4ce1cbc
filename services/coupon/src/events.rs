//! What the coupon service publishes (`coupon.issued|redeemed|redemption_cancelled|expiring|
//! expired`, `voucher.issued|used|refunded|expired`) and consumes (`member.joined`,
//! `member.withdrawn` for its member projection and welcome coupons). Payloads carry ids and
//! amounts only: never a code, which is a bearer secret.
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{Envelope, EventHandler},
    grpc::timestamp,
};
use spharos_proto::{
    coupon::{
        CouponExpired, CouponExpiring, CouponIssued, CouponRedeemed, CouponRedemptionCancelled,
        IssueMethod as PbMethod, VoucherExpired, VoucherIssued, VoucherRefunded, VoucherUsed,
    },
    member::{MemberErased, MemberJoined, MemberWithdrawn},
};
use uuid::Uuid;

use crate::{
    app::CouponApp,
    domain::{
        coupon::{Coupon, Redemption},
        template::IssueMethod,
        voucher::{Voucher, VoucherTransaction},
    },
};

const COUPON: &str = "coupon";
const VOUCHER: &str = "voucher";

/// The durable name of the member-projection consumer and the topics it reads.
pub const MEMBER_CONSUMER: &str = "coupon-members";
pub const MEMBER_JOINED: &str = "member.joined";
pub const MEMBER_WITHDRAWN: &str = "member.withdrawn";
pub const MEMBER_ERASED: &str = "member.erased";

fn opt_id(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

pub(crate) fn issue_method(m: IssueMethod) -> PbMethod {
    match m {
        IssueMethod::Admin => PbMethod::Admin,
        IssueMethod::Campaign => PbMethod::Campaign,
        IssueMethod::Claim => PbMethod::Claim,
        IssueMethod::OnJoin => PbMethod::OnJoin,
        IssueMethod::Birthday => PbMethod::Birthday,
    }
}

pub(crate) fn coupon_issued(tenant: TenantId, c: &Coupon) -> Envelope {
    let msg = CouponIssued {
        coupon_id: c.id.to_string(),
        template_id: c.template_id.to_string(),
        member_id: c.member_id.to_string(),
        issue_method: issue_method(c.issue_method).into(),
        issue_time: Some(timestamp(c.issue_time)),
        expire_time: Some(timestamp(c.expire_time)),
        bulk_issue_id: opt_id(c.bulk_issue_id),
    };
    Envelope::new(COUPON, "issued", tenant, c.id.to_string(), &msg)
}

pub(crate) fn coupon_redeemed(tenant: TenantId, r: &Redemption) -> Envelope {
    let msg = CouponRedeemed {
        coupon_id: r.coupon_id.to_string(),
        template_id: r.template_id.to_string(),
        member_id: r.member_id.to_string(),
        redemption_id: r.id.to_string(),
        pos_transaction_id: r.pos_transaction_id.clone(),
        store_code: r.store_code.clone(),
        amount_krw: r.amount_krw,
        discount_krw: r.discount_krw,
        redeem_time: Some(timestamp(r.redeem_time)),
    };
    Envelope::new(COUPON, "redeemed", tenant, r.coupon_id.to_string(), &msg)
}

pub(crate) fn redemption_cancelled(
    tenant: TenantId,
    r: &Redemption,
    restored: bool,
    at: DateTime<Utc>,
) -> Envelope {
    let msg = CouponRedemptionCancelled {
        coupon_id: r.coupon_id.to_string(),
        template_id: r.template_id.to_string(),
        member_id: r.member_id.to_string(),
        redemption_id: r.id.to_string(),
        pos_transaction_id: r.pos_transaction_id.clone(),
        discount_krw: r.discount_krw,
        restored,
        cancel_time: Some(timestamp(at)),
    };
    Envelope::new(
        COUPON,
        "redemption_cancelled",
        tenant,
        r.coupon_id.to_string(),
        &msg,
    )
}

pub(crate) fn coupon_expiring(tenant: TenantId, c: &Coupon) -> Envelope {
    let msg = CouponExpiring {
        coupon_id: c.id.to_string(),
        template_id: c.template_id.to_string(),
        member_id: c.member_id.to_string(),
        expire_time: Some(timestamp(c.expire_time)),
    };
    Envelope::new(COUPON, "expiring", tenant, c.id.to_string(), &msg)
}

pub(crate) fn coupon_expired(tenant: TenantId, c: &Coupon) -> Envelope {
    let msg = CouponExpired {
        coupon_id: c.id.to_string(),
        template_id: c.template_id.to_string(),
        member_id: c.member_id.to_string(),
        expire_time: Some(timestamp(c.expire_time)),
    };
    Envelope::new(COUPON, "expired", tenant, c.id.to_string(), &msg)
}

pub(crate) fn voucher_issued(tenant: TenantId, v: &Voucher) -> Envelope {
    let msg = VoucherIssued {
        voucher_id: v.id.to_string(),
        member_id: opt_id(v.member_id),
        face_value_krw: v.face_value_krw,
        expire_time: Some(timestamp(v.expire_time)),
    };
    Envelope::new(VOUCHER, "issued", tenant, v.id.to_string(), &msg)
}

pub(crate) fn voucher_used(tenant: TenantId, v: &Voucher, t: &VoucherTransaction) -> Envelope {
    let msg = VoucherUsed {
        voucher_id: v.id.to_string(),
        member_id: opt_id(v.member_id),
        transaction_id: t.id.to_string(),
        pos_transaction_id: t.pos_transaction_id.clone().unwrap_or_default(),
        store_code: t.store_code.clone().unwrap_or_default(),
        amount_krw: t.amount_krw,
        balance_krw: t.balance_after_krw,
        occur_time: Some(timestamp(t.occurred_time)),
    };
    Envelope::new(VOUCHER, "used", tenant, v.id.to_string(), &msg)
}

pub(crate) fn voucher_refunded(tenant: TenantId, v: &Voucher, t: &VoucherTransaction) -> Envelope {
    let msg = VoucherRefunded {
        voucher_id: v.id.to_string(),
        member_id: opt_id(v.member_id),
        transaction_id: t.id.to_string(),
        refund_of_transaction_id: opt_id(t.refund_of),
        pos_transaction_id: t.pos_transaction_id.clone().unwrap_or_default(),
        amount_krw: t.amount_krw,
        balance_krw: t.balance_after_krw,
        occur_time: Some(timestamp(t.occurred_time)),
    };
    Envelope::new(VOUCHER, "refunded", tenant, v.id.to_string(), &msg)
}

pub(crate) fn voucher_expired(tenant: TenantId, v: &Voucher) -> Envelope {
    let msg = VoucherExpired {
        voucher_id: v.id.to_string(),
        member_id: opt_id(v.member_id),
        forfeited_krw: v.balance_krw,
        expire_time: Some(timestamp(v.expire_time)),
    };
    Envelope::new(VOUCHER, "expired", tenant, v.id.to_string(), &msg)
}

/// Keeps `coupon_members` in step with the member service and issues welcome coupons. Runs
/// inside the consumer's transaction, which also records the event id, so each event counts
/// once.
pub struct MemberEvents {
    app: CouponApp,
}

impl MemberEvents {
    pub fn new(app: CouponApp) -> Self {
        Self { app }
    }

    async fn on_joined(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<MemberJoined>(event) else {
            return Ok(());
        };
        let Some(member_id) = member_id(event, &msg.member_id) else {
            return Ok(());
        };
        let join_time = msg
            .join_time
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or(event.time);
        self.app
            .member_joined(tx, event.tenant, member_id, &msg.birth_month_day, join_time)
            .await
    }

    async fn on_withdrawn(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<MemberWithdrawn>(event) else {
            return Ok(());
        };
        let Some(member_id) = member_id(event, &msg.member_id) else {
            return Ok(());
        };
        self.app.member_withdrawn(tx, event.tenant, member_id).await
    }

    async fn on_erased(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        let Some(msg) = decode::<MemberErased>(event) else {
            return Ok(());
        };
        let Some(member_id) = member_id(event, &msg.member_id) else {
            return Ok(());
        };
        self.app.member_erased(tx, event.tenant, member_id).await
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

fn member_id(event: &Envelope, raw: &str) -> Option<Uuid> {
    match Uuid::parse_str(raw) {
        Ok(id) => Some(id),
        Err(_) => {
            tracing::warn!(event_id = %event.id, topic = %event.topic(), "event without a valid member_id skipped");
            None
        }
    }
}

impl EventHandler for MemberEvents {
    async fn handle(&self, tx: &Tx, event: &Envelope) -> Result<(), ServiceError> {
        match event.topic().as_str() {
            MEMBER_JOINED => self.on_joined(tx, event).await,
            MEMBER_WITHDRAWN => self.on_withdrawn(tx, event).await,
            MEMBER_ERASED => self.on_erased(tx, event).await,
            other => {
                tracing::debug!(topic = %other, "event of no interest to coupon-members");
                Ok(())
            }
        }
    }
}

//! Gift vouchers: a face value spent in parts until the balance is gone or the voucher
//! expires; every change is a ledger row (issue, use, refund of a use, expiry).
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use spharos_kit::{
    ServiceError,
    time::{format_korean, format_krw},
};
use uuid::Uuid;

use super::reasons;

/// The largest voucher (10 million won).
pub const MAX_FACE_VALUE_KRW: i64 = 10_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoucherStatus {
    Active,
    Expired,
}

impl VoucherStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "EXPIRED" => Some(Self::Expired),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub id: Uuid,
    pub code: String,
    pub member_id: Option<Uuid>,
    pub face_value_krw: i64,
    pub balance_krw: i64,
    pub status: VoucherStatus,
    pub issue_time: DateTime<Utc>,
    pub valid_from_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
}

impl Voucher {
    /// The status a reader should see (expired by time even before the job marked it).
    pub fn effective_status(&self, now: DateTime<Utc>) -> VoucherStatus {
        if now > self.expire_time {
            VoucherStatus::Expired
        } else {
            self.status
        }
    }

    /// Why `amount_krw` cannot be paid from this voucher at `now`, if it cannot.
    pub fn check_use(
        &self,
        amount_krw: i64,
        now: DateTime<Utc>,
        zone: Tz,
    ) -> Result<(), ServiceError> {
        if self.effective_status(now) == VoucherStatus::Expired {
            return Err(ServiceError::precondition(
                reasons::VOUCHER_EXPIRED,
                format!(
                    "사용 기간이 지난 상품권입니다 (voucher expired at {})",
                    format_korean(self.expire_time, zone)
                ),
            ));
        }
        if now < self.valid_from_time {
            return Err(ServiceError::precondition(
                reasons::VOUCHER_NOT_YET_VALID,
                format!(
                    "아직 사용 기간이 아닙니다 (voucher usable from {})",
                    format_korean(self.valid_from_time, zone)
                ),
            ));
        }
        if amount_krw > self.balance_krw {
            return Err(insufficient(self.balance_krw));
        }
        Ok(())
    }
}

pub fn insufficient(balance_krw: i64) -> ServiceError {
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("balance_krw".to_string(), balance_krw.to_string());
    ServiceError::FailedPrecondition {
        reason: reasons::INSUFFICIENT_VOUCHER_BALANCE,
        message: format!(
            "상품권 잔액이 부족합니다 (insufficient voucher balance): available {}",
            format_krw(balance_krw)
        ),
        metadata,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoucherTransactionKind {
    Issue,
    Use,
    Refund,
    Expire,
}

impl VoucherTransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Issue => "ISSUE",
            Self::Use => "USE",
            Self::Refund => "REFUND",
            Self::Expire => "EXPIRE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ISSUE" => Some(Self::Issue),
            "USE" => Some(Self::Use),
            "REFUND" => Some(Self::Refund),
            "EXPIRE" => Some(Self::Expire),
            _ => None,
        }
    }
}

/// One ledger row. `amount_krw` is positive; the kind says which way it moved the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherTransaction {
    pub id: Uuid,
    pub voucher_id: Uuid,
    pub kind: VoucherTransactionKind,
    pub amount_krw: i64,
    pub balance_after_krw: i64,
    pub pos_transaction_id: Option<String>,
    pub store_code: Option<String>,
    pub refund_of: Option<Uuid>,
    pub occurred_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use spharos_kit::time::DEFAULT_TIME_ZONE as SEOUL;

    use super::*;

    fn voucher(now: DateTime<Utc>) -> Voucher {
        Voucher {
            id: Uuid::now_v7(),
            code: "00000000000000".into(),
            member_id: None,
            face_value_krw: 50_000,
            balance_krw: 20_000,
            status: VoucherStatus::Active,
            issue_time: now,
            valid_from_time: now,
            expire_time: now + Duration::days(30),
        }
    }

    fn reason(e: ServiceError) -> &'static str {
        match e {
            ServiceError::FailedPrecondition { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uses_need_balance_and_validity() {
        let now = Utc::now();
        let v = voucher(now);
        assert!(v.check_use(20_000, now, SEOUL).is_ok());
        let e = v.check_use(20_001, now, SEOUL).expect_err("too much");
        assert!(e.to_string().contains("20,000원"), "{e}");
        assert_eq!(reason(e), reasons::INSUFFICIENT_VOUCHER_BALANCE);
        assert_eq!(
            reason(
                v.check_use(1, now + Duration::days(31), SEOUL)
                    .expect_err("expired")
            ),
            reasons::VOUCHER_EXPIRED
        );
        assert_eq!(
            reason(
                v.check_use(1, now - Duration::days(1), SEOUL)
                    .expect_err("early")
            ),
            reasons::VOUCHER_NOT_YET_VALID
        );
    }
}

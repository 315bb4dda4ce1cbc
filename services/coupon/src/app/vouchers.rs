//! Gift voucher use cases: issue (idempotent), get, use part of the balance (idempotent by
//! till transaction), refund a use once, and the ledger history.
use rand::rngs::OsRng;
use serde::Serialize;
use spharos_kit::{
    ServiceError, TenantId, Violations,
    db::is_unique_violation,
    idempotency::{self, Claim, fingerprint},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{
    CouponApp, emit, from_json, json, member_withdrawn, now, parse_code, proven, violations_error,
    voucher_not_found,
};
use crate::{
    domain::{
        code::Code,
        coupon::check_pos_transaction_id,
        member::MemberState,
        validity::ValidityForm,
        voucher::{
            self, MAX_FACE_VALUE_KRW, Voucher, VoucherStatus, VoucherTransaction,
            VoucherTransactionKind,
        },
    },
    events,
    store::{members, tenants, vouchers},
};

const ISSUE_SCOPE: &str = "voucher.issue";
const MAX_CODE_ATTEMPTS: usize = 5;

/// An `IssueVoucher` request as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoucherForm {
    pub face_value_krw: i64,
    pub member_id: Option<Uuid>,
    pub validity: Option<ValidityForm>,
}

/// A use or a refund, with the voucher after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherMove {
    pub transaction: VoucherTransaction,
    pub voucher: Voucher,
    /// A retry answered with the first result.
    pub replayed: bool,
}

enum Raced {
    /// A concurrent request with the same till transaction (or refund) won.
    Duplicate,
    Service(ServiceError),
}

impl From<ServiceError> for Raced {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<sea_orm::DbErr> for Raced {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::Service(e.into())
    }
}

impl CouponApp {
    /// Issues a voucher with its full face value as balance and an ISSUE ledger row.
    pub async fn issue_voucher(
        &self,
        tenant: TenantId,
        form: VoucherForm,
        idempotency_key: &str,
    ) -> Result<Voucher, ServiceError> {
        let fp = fingerprint(&json(&form)?);
        let mut v = Violations::new();
        v.check(
            (1..=MAX_FACE_VALUE_KRW).contains(&form.face_value_krw),
            "face_value_krw",
            "액면가는 1원 이상 1천만원 이하입니다 (must be 1..=10,000,000 KRW)",
        );
        let validity = match &form.validity {
            Some(f) => f.validate("validity", self.today(), &mut v),
            None => {
                v.add(
                    "validity",
                    "유효 기간은 필수입니다 (is required: fixed dates or days_from_issue)",
                );
                None
            }
        };
        if !v.is_empty() {
            return Err(violations_error(v));
        }
        let validity = proven(validity)?;
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, ISSUE_SCOPE, idempotency_key, &fp).await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        if let Some(m) = form.member_id
            && members::state(&tx, tenant, m).await? == Some(MemberState::Withdrawn)
        {
            return Err(member_withdrawn());
        }
        let at = now();
        let (valid_from_time, expire_time) = validity.window(at, self.zone);
        let mut voucher = Voucher {
            id: Uuid::now_v7(),
            code: String::new(),
            member_id: form.member_id,
            face_value_krw: form.face_value_krw,
            balance_krw: form.face_value_krw,
            status: VoucherStatus::Active,
            issue_time: at,
            valid_from_time,
            expire_time,
        };
        let mut inserted = false;
        for attempt in 1..=MAX_CODE_ATTEMPTS {
            voucher.code = Code::generate(&mut OsRng).into_string();
            if vouchers::insert(&tx, tenant, &voucher).await? {
                inserted = true;
                break;
            }
            tracing::warn!(tenant_id = %tenant, attempt, "voucher code collision; drawing another");
        }
        if !inserted {
            return Err(ServiceError::internal("no free voucher code"));
        }
        let issue = VoucherTransaction {
            id: Uuid::now_v7(),
            voucher_id: voucher.id,
            kind: VoucherTransactionKind::Issue,
            amount_krw: voucher.face_value_krw,
            balance_after_krw: voucher.balance_krw,
            pos_transaction_id: None,
            store_code: None,
            refund_of: None,
            occurred_time: at,
        };
        vouchers::append(&tx, tenant, &issue).await?;
        tenants::register(&tx, tenant, at).await?;
        emit(&tx, events::voucher_issued(tenant, &voucher)).await?;
        idempotency::complete(&tx, tenant, ISSUE_SCOPE, idempotency_key, &json(&voucher)?).await?;
        tx.commit().await?;
        Ok(voucher)
    }

    pub async fn get_voucher(&self, tenant: TenantId, id: Uuid) -> Result<Voucher, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let v = vouchers::get(&tx, tenant, id)
            .await?
            .ok_or_else(voucher_not_found)?;
        tx.commit().await?;
        Ok(v)
    }

    pub async fn find_voucher_by_code(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<Voucher, ServiceError> {
        let code = checked_code(code)?;
        let tx = self.db.begin(tenant).await?;
        let v = vouchers::get_by_code(&tx, tenant, code.as_str())
            .await?
            .ok_or_else(voucher_not_found)?;
        tx.commit().await?;
        Ok(v)
    }

    /// Pays `amount_krw` from the voucher for till transaction `pos_transaction_id`; a retry
    /// of the same till transaction answers with the first use.
    pub async fn use_voucher(
        &self,
        tenant: TenantId,
        code: &str,
        amount_krw: i64,
        pos_transaction_id: &str,
        store_code: &str,
    ) -> Result<VoucherMove, ServiceError> {
        let mut v = Violations::new();
        let code = parse_code(&mut v, "code", code);
        v.check(
            (1..=MAX_FACE_VALUE_KRW).contains(&amount_krw),
            "amount_krw",
            "사용 금액은 1원 이상 1천만원 이하입니다 (must be 1..=10,000,000 KRW)",
        );
        let pos = check_pos_transaction_id(&mut v, "pos_transaction_id", pos_transaction_id);
        let store_code = store_code.trim().to_string();
        v.check(
            store_code.chars().count() <= 20,
            "store_code",
            "매장 코드는 20자 이하입니다 (at most 20 characters)",
        );
        if !v.is_empty() {
            return Err(violations_error(v));
        }
        let code = proven(code)?;
        match self
            .use_once(tenant, &code, amount_krw, &pos, &store_code)
            .await
        {
            Ok(m) => Ok(m),
            Err(Raced::Service(e)) => Err(e),
            Err(Raced::Duplicate) => {
                let tx = self.db.begin(tenant).await?;
                let voucher = vouchers::get_by_code(&tx, tenant, code.as_str())
                    .await?
                    .ok_or_else(voucher_not_found)?;
                let first = vouchers::find_use(&tx, tenant, voucher.id, &pos)
                    .await?
                    .ok_or_else(|| ServiceError::internal("a conflicting voucher use vanished"))?;
                tx.commit().await?;
                Ok(VoucherMove {
                    transaction: first,
                    voucher,
                    replayed: true,
                })
            }
        }
    }

    async fn use_once(
        &self,
        tenant: TenantId,
        code: &Code,
        amount: i64,
        pos: &str,
        store_code: &str,
    ) -> Result<VoucherMove, Raced> {
        let tx = self.db.begin(tenant).await?;
        let mut voucher = vouchers::get_by_code(&tx, tenant, code.as_str())
            .await?
            .ok_or_else(voucher_not_found)?;
        if let Some(first) = vouchers::find_use(&tx, tenant, voucher.id, pos).await? {
            tx.commit().await?;
            return Ok(VoucherMove {
                transaction: first,
                voucher,
                replayed: true,
            });
        }
        let at = now();
        voucher.check_use(amount, at, self.zone)?;
        if !vouchers::debit(&tx, tenant, voucher.id, amount, at).await? {
            // A concurrent use took the balance since our read: answer with what is left.
            let fresh = vouchers::get(&tx, tenant, voucher.id)
                .await?
                .ok_or_else(voucher_not_found)?;
            fresh.check_use(amount, at, self.zone)?;
            return Err(Raced::Service(voucher::insufficient(fresh.balance_krw)));
        }
        let balance = vouchers::balance(&tx, tenant, voucher.id).await?;
        let entry = VoucherTransaction {
            id: Uuid::now_v7(),
            voucher_id: voucher.id,
            kind: VoucherTransactionKind::Use,
            amount_krw: amount,
            balance_after_krw: balance,
            pos_transaction_id: Some(pos.to_string()),
            store_code: (!store_code.is_empty()).then(|| store_code.to_string()),
            refund_of: None,
            occurred_time: at,
        };
        if let Err(e) = vouchers::append(&tx, tenant, &entry).await {
            return Err(if is_unique_violation(&e) {
                Raced::Duplicate
            } else {
                e.into()
            });
        }
        emit(&tx, events::voucher_used(tenant, &voucher, &entry)).await?;
        tx.commit().await?;
        voucher.balance_krw = balance;
        Ok(VoucherMove {
            transaction: entry,
            voucher,
            replayed: false,
        })
    }

    /// Gives back the use of till transaction `pos_transaction_id`, once: a second refund
    /// answers with the first.
    pub async fn refund_voucher_use(
        &self,
        tenant: TenantId,
        code: &str,
        pos_transaction_id: &str,
    ) -> Result<VoucherMove, ServiceError> {
        let mut v = Violations::new();
        let code = parse_code(&mut v, "code", code);
        let pos = check_pos_transaction_id(&mut v, "pos_transaction_id", pos_transaction_id);
        if !v.is_empty() {
            return Err(violations_error(v));
        }
        let code = proven(code)?;
        match self.refund_once(tenant, &code, &pos).await {
            Ok(m) => Ok(m),
            Err(Raced::Service(e)) => Err(e),
            Err(Raced::Duplicate) => {
                let tx = self.db.begin(tenant).await?;
                let voucher = vouchers::get_by_code(&tx, tenant, code.as_str())
                    .await?
                    .ok_or_else(voucher_not_found)?;
                let used = vouchers::find_use(&tx, tenant, voucher.id, &pos)
                    .await?
                    .ok_or_else(use_not_found)?;
                let first = vouchers::find_refund(&tx, tenant, used.id)
                    .await?
                    .ok_or_else(|| {
                        ServiceError::internal("a conflicting voucher refund vanished")
                    })?;
                tx.commit().await?;
                Ok(VoucherMove {
                    transaction: first,
                    voucher,
                    replayed: true,
                })
            }
        }
    }

    async fn refund_once(
        &self,
        tenant: TenantId,
        code: &Code,
        pos: &str,
    ) -> Result<VoucherMove, Raced> {
        let tx = self.db.begin(tenant).await?;
        let mut voucher = vouchers::get_by_code(&tx, tenant, code.as_str())
            .await?
            .ok_or_else(voucher_not_found)?;
        let used = vouchers::find_use(&tx, tenant, voucher.id, pos)
            .await?
            .ok_or_else(use_not_found)?;
        if let Some(first) = vouchers::find_refund(&tx, tenant, used.id).await? {
            tx.commit().await?;
            return Ok(VoucherMove {
                transaction: first,
                voucher,
                replayed: true,
            });
        }
        let at = now();
        vouchers::credit(&tx, tenant, voucher.id, used.amount_krw, at).await?;
        let balance = vouchers::balance(&tx, tenant, voucher.id).await?;
        let entry = VoucherTransaction {
            id: Uuid::now_v7(),
            voucher_id: voucher.id,
            kind: VoucherTransactionKind::Refund,
            amount_krw: used.amount_krw,
            balance_after_krw: balance,
            pos_transaction_id: Some(pos.to_string()),
            store_code: used.store_code.clone(),
            refund_of: Some(used.id),
            occurred_time: at,
        };
        if let Err(e) = vouchers::append(&tx, tenant, &entry).await {
            return Err(if is_unique_violation(&e) {
                Raced::Duplicate
            } else {
                e.into()
            });
        }
        emit(&tx, events::voucher_refunded(tenant, &voucher, &entry)).await?;
        tx.commit().await?;
        voucher.balance_krw = balance;
        Ok(VoucherMove {
            transaction: entry,
            voucher,
            replayed: false,
        })
    }

    /// One page of the voucher's ledger, oldest first.
    pub async fn voucher_history(
        &self,
        tenant: TenantId,
        code: &str,
        page: PageRequest,
    ) -> Result<(Vec<VoucherTransaction>, String), ServiceError> {
        let code = checked_code(code)?;
        let tx = self.db.begin(tenant).await?;
        let voucher = vouchers::get_by_code(&tx, tenant, code.as_str())
            .await?
            .ok_or_else(voucher_not_found)?;
        let rows = vouchers::history(&tx, tenant, voucher.id, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |t| t.id))
    }
}

fn checked_code(code: &str) -> Result<Code, ServiceError> {
    let mut v = Violations::new();
    let code = parse_code(&mut v, "code", code);
    if !v.is_empty() {
        return Err(violations_error(v));
    }
    proven(code)
}

fn use_not_found() -> ServiceError {
    ServiceError::not_found(
        "이 거래의 상품권 사용 내역이 없습니다 (no voucher use for this POS transaction)",
    )
}

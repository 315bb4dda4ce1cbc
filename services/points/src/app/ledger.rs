//! Ledger writes: earn, spend, cancel (of an earn or a spend) and staff adjustments. Each is
//! idempotent by its key, serialised per member by the account lock, and writes its ledger
//! row, lot changes, movements, account sums, events and stored response in one transaction.
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    idempotency::{self, Claim},
    time::{end_of_day, local_date},
};
use uuid::Uuid;

use super::{
    Earned, Lots, PointsApp, Posted, QuoteView, SCOPE, Session,
    batch::{Op, Reply},
    duplicate_pos, emit, from_json, insufficient, json, member_withdrawn, now,
    transaction_not_found, view,
};
use crate::{
    domain::{
        expiry::{next_notice_date, start_of_day},
        format_points,
        forms::{AdjustForm, CancelForm, CancelTarget, EarnForm, SpendForm, TxKind, fingerprint},
        ledger::{self, MovementKind, RefundError, Taken},
        policy::{Policy, Purchase, Quote, ShortfallRule, VersionedPolicy},
    },
    events,
    members::{Caller, MemberFacts},
    store::{
        lots::{self, LotRow},
        movements,
        transactions::{self, TransactionRow, pos_key},
    },
};

/// A new lot's dates: expiry at the end of its last valid day and, with a pending period, the
/// start of the day it becomes usable (tenant zone).
pub(super) struct LotDates {
    pub expire_time: DateTime<Utc>,
    pub available_time: DateTime<Utc>,
    pending: bool,
    next_notice_time: Option<DateTime<Utc>>,
}

fn lot_dates(
    policy: &Policy,
    occurred: DateTime<Utc>,
    at: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> LotDates {
    let date = local_date(occurred, zone);
    let expire_date = policy.expire_date(date);
    let available_time = policy
        .available_date(date)
        .map(|d| start_of_day(d, zone))
        .unwrap_or(at);
    LotDates {
        expire_time: end_of_day(expire_date, zone),
        pending: available_time > at,
        available_time,
        next_notice_time: next_notice_date(expire_date, None).map(|d| start_of_day(d, zone)),
    }
}

fn new_lot(
    tenant: TenantId,
    member: Uuid,
    transaction: Uuid,
    points: i64,
    dates: &LotDates,
) -> LotRow {
    let t = now();
    LotRow {
        tenant_id: tenant.as_uuid(),
        id: Uuid::now_v7(),
        member_id: member,
        transaction_id: transaction,
        points,
        remaining: 0,
        expired: 0,
        pending: dates.pending,
        available_time: dates.available_time,
        expire_time: dates.expire_time,
        notice_stage: None,
        next_notice_time: dates.next_notice_time,
        created_time: t,
        updated_time: t,
    }
}

/// A new lot of `points` for ledger entry `transaction`, credited to `balance` (debt is paid
/// first): the lot as it is to be written and the posting.
pub(super) fn credit_lot(
    tenant: TenantId,
    member: Uuid,
    transaction: Uuid,
    points: i64,
    dates: &LotDates,
    balance: &mut ledger::Balance,
) -> (LotRow, ledger::Posting) {
    let mut lot_row = new_lot(tenant, member, transaction, points, dates);
    let mut lot = super::lot_of(&lot_row);
    let posting = ledger::credit(balance, &mut lot, points);
    lot_row.remaining = lot.remaining;
    (lot_row, posting)
}

/// What an earn credits, decided from the policy before anything is written.
pub(super) struct EarnPlan {
    pub occurred: DateTime<Utc>,
    pub dates: LotDates,
    pub rate: i32,
    pub quote: Quote,
}

/// The earn of `form` under `policy` at `at`; `INVALID_ARGUMENT` for a purchase so old its
/// points would already have expired.
pub(super) fn plan_earn(
    policy: &VersionedPolicy,
    member: &MemberFacts,
    grade_rate: Option<i32>,
    form: &EarnForm,
    at: DateTime<Utc>,
    zone: chrono_tz::Tz,
) -> Result<EarnPlan, ServiceError> {
    let occurred = form.occurred_time.map(|t| t.min(at)).unwrap_or(at);
    let dates = lot_dates(&policy.policy, occurred, at, zone);
    if dates.expire_time < at {
        return Err(ServiceError::invalid(
            "occurred_time",
            "유효기간이 이미 지난 구매입니다 (the points of a purchase this old would already have expired)",
        ));
    }
    let rate = policy.policy.rate_for(member.grade_id, grade_rate);
    let quote = policy.policy.quote(
        rate,
        &Purchase {
            store_code: &form.store_code,
            amount_krw: form.amount_krw,
            items: &form.items,
            date: local_date(occurred, zone),
        },
    );
    Ok(EarnPlan {
        occurred,
        dates,
        rate,
        quote,
    })
}

/// The EARN ledger row of `form` (points and balance are filled in when it is posted).
pub(super) fn earn_row(
    mut row: TransactionRow,
    form: &EarnForm,
    plan: &EarnPlan,
    policy_version: i32,
    pos: String,
) -> TransactionRow {
    row.store_code = Some(form.store_code.clone());
    row.pos_transaction_id = Some(form.pos_transaction_id.clone());
    row.pos_key = Some(pos);
    row.amount_krw = form.amount_krw;
    row.policy_version = Some(policy_version);
    row.rate_bp = Some(plan.rate);
    row.idempotency_key = key_column(&form.idempotency_key);
    row.occurred_time = plan.occurred;
    if plan.quote.points > 0 {
        row.expire_time = Some(plan.dates.expire_time);
        row.available_time = Some(plan.dates.available_time);
    }
    row
}

pub(super) fn quote_view(plan: EarnPlan, policy_version: i32) -> QuoteView {
    QuoteView {
        quote: plan.quote,
        policy_version,
        expire_time: plan.dates.expire_time,
        available_time: plan.dates.available_time,
    }
}

fn require_active(m: &MemberFacts) -> Result<(), ServiceError> {
    if m.active {
        Ok(())
    } else {
        Err(member_withdrawn())
    }
}

/// Claims the key; `Some(stored response)` for a replay.
async fn claim(
    tx: &Tx,
    tenant: TenantId,
    key: &str,
    fp: &str,
) -> Result<Option<Vec<u8>>, ServiceError> {
    Ok(
        match idempotency::claim(tx, tenant, SCOPE, key, fp).await? {
            Claim::Fresh => None,
            Claim::Replay(stored) => Some(stored),
        },
    )
}

pub(super) fn key_column(key: &str) -> Option<String> {
    (!key.is_empty()).then(|| key.to_string())
}

impl PointsApp {
    /// Credits points for a purchase: the member's grade rate and the tenant policy's
    /// multipliers, promotions, minimum and cap; a new lot expiring at the end of the
    /// purchase date + validity (tenant zone), paying any debt first. Emits `points.earned`
    /// (when points > 0) and `points.purchase_recorded` (always: the purchase counts for
    /// grades even below the minimum).
    pub async fn earn(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: EarnForm,
    ) -> Result<Earned, ServiceError> {
        let key = form.validate(now())?;
        let member = self.members.resolve(tenant, &key, caller).await?;
        require_active(&member)?;
        let grade_rate = match member.grade_id {
            Some(g) => self.members.grade_rate(tenant, g, caller).await?,
            None => None,
        };
        let op = Op::Earn {
            form,
            member,
            grade_rate,
        };
        match self.batches.submit(tenant, caller, op).await? {
            Reply::Earned(earned) => Ok(*earned),
            Reply::Single(op) => match *op {
                Op::Earn {
                    form,
                    member,
                    grade_rate,
                } => {
                    self.earn_alone(tenant, caller, form, &member, grade_rate)
                        .await
                }
                _ => Err(came_back_as_another("an earn")),
            },
            Reply::Posted(_) => Err(came_back_as_another("an earn")),
        }
    }

    /// An earn in a transaction of its own: what a batch leaves to the one-by-one path
    /// (replays, receipts seen before, members with lots to settle, a batch that failed).
    async fn earn_alone(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: EarnForm,
        member: &MemberFacts,
        grade_rate: Option<i32>,
    ) -> Result<Earned, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        if let Some(stored) = claim(
            &tx,
            tenant,
            &form.idempotency_key,
            &fingerprint("earn", &form),
        )
        .await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let policy = self.policy(&tx, tenant).await?;
        let plan = plan_earn(&policy, member, grade_rate, &form, at, self.zone)?;
        let pos = pos_key(TxKind::Earn, &form.store_code, &form.pos_transaction_id);
        if let Some(existing) = transactions::find_by_pos_key(&tx, tenant, &pos).await? {
            return Err(duplicate_pos(TxKind::Earn, Some(existing.id)));
        }

        let mut s = Session::open(&tx, tenant, self.zone, member.id, at, &caller.actor).await?;
        s.settle().await?;
        let mut row = earn_row(s.draft(TxKind::Earn), &form, &plan, policy.version, pos);
        let posting = if plan.quote.points > 0 {
            let (lot_row, posting) = credit_lot(
                tenant,
                member.id,
                row.id,
                plan.quote.points,
                &plan.dates,
                &mut s.balance,
            );
            lots::insert(&tx, &lot_row).await?;
            row.lot_id = Some(lot_row.id);
            posting
        } else {
            ledger::Posting::default()
        };
        let row = s.record(row, &posting).await?;
        s.lifetime_earned += plan.quote.points;
        let account = s.finish().await?;
        if plan.quote.points > 0 {
            emit(&tx, events::earned(tenant, &row, &form.items)).await?;
        }
        emit(&tx, events::purchase_recorded(tenant, &row, &form.items)).await?;
        let result = Earned {
            transaction: view(&row)?,
            balance: self.balance_view(&tx, tenant, &account, at).await?,
            quote: quote_view(plan, policy.version),
        };
        idempotency::complete(&tx, tenant, SCOPE, &form.idempotency_key, &json(&result)?).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %member.id, transaction_id = %row.id, points = row.points, "points earned");
        Ok(result)
    }

    /// Spends points as payment: the tenant's spend unit and minimum balance apply, and the
    /// soonest-expiring usable lots go first. Not enough points: `FAILED_PRECONDITION`
    /// (`INSUFFICIENT_POINTS`) naming the available balance. Emits `points.used`.
    pub async fn spend(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: SpendForm,
    ) -> Result<Posted, ServiceError> {
        let key = form.validate()?;
        let member = self.members.resolve(tenant, &key, caller).await?;
        require_active(&member)?;
        match self
            .batches
            .submit(tenant, caller, Op::Spend { form, member })
            .await?
        {
            Reply::Posted(posted) => Ok(*posted),
            Reply::Single(op) => match *op {
                Op::Spend { form, member } => self.spend_alone(tenant, caller, form, &member).await,
                _ => Err(came_back_as_another("a spend")),
            },
            Reply::Earned(_) => Err(came_back_as_another("a spend")),
        }
    }

    /// A spend in a transaction of its own: what a batch leaves to the one-by-one path
    /// (replays, receipts seen before, members with lots to settle, spends it cannot make,
    /// a batch that failed).
    async fn spend_alone(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: SpendForm,
        member: &MemberFacts,
    ) -> Result<Posted, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        if let Some(stored) = claim(
            &tx,
            tenant,
            &form.idempotency_key,
            &fingerprint("spend", &form),
        )
        .await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let policy = self.policy(&tx, tenant).await?.policy;
        if form.points % policy.spend_unit != 0 {
            return Err(ServiceError::invalid(
                "points",
                format!(
                    "{} 단위로 사용할 수 있습니다 (must be a multiple of {})",
                    format_points(policy.spend_unit),
                    policy.spend_unit
                ),
            ));
        }
        let pos = pos_key(TxKind::Spend, &form.store_code, &form.pos_transaction_id);
        if let Some(existing) = transactions::find_by_pos_key(&tx, tenant, &pos).await? {
            return Err(duplicate_pos(TxKind::Spend, Some(existing.id)));
        }
        let mut s = Session::open(&tx, tenant, self.zone, member.id, at, &caller.actor).await?;
        s.settle().await?;
        if s.balance.available < policy.min_balance_to_spend {
            let mut e = ServiceError::precondition(
                "BALANCE_BELOW_MINIMUM",
                format!(
                    "{} 이상 보유 시 사용할 수 있습니다 (points can be spent from a balance of {}): available {}",
                    format_points(policy.min_balance_to_spend),
                    format_points(policy.min_balance_to_spend),
                    format_points(s.balance.available)
                ),
            );
            if let ServiceError::FailedPrecondition { metadata, .. } = &mut e {
                metadata.insert("available".into(), s.balance.available.to_string());
            }
            return Err(e);
        }
        let mut set = Lots::new(lots::open_of_member(&tx, tenant, member.id, &[]).await?);
        let posting = match ledger::consume(
            &mut s.balance,
            &mut set.lots,
            form.points,
            MovementKind::Spend,
            false,
            at,
        ) {
            Ok(p) => p,
            Err(short) => {
                if short.usable != s.balance.available {
                    return Err(ServiceError::internal(format!(
                        "member {}: usable lots hold {} but the account says {}",
                        member.id, short.usable, s.balance.available
                    )));
                }
                return Err(insufficient(short.usable, form.points));
            }
        };
        lots::save(&tx, &set.changed(now())).await?;
        let mut row = s.draft(TxKind::Spend);
        row.store_code = Some(form.store_code.clone());
        row.pos_transaction_id = Some(form.pos_transaction_id.clone());
        row.pos_key = Some(pos);
        row.idempotency_key = key_column(&form.idempotency_key);
        row.occurred_time = at;
        let row = s.record(row, &posting).await?;
        s.lifetime_spent += form.points;
        let account = s.finish().await?;
        emit(&tx, events::used(tenant, &row)).await?;
        let result = Posted {
            transaction: view(&row)?,
            balance: self.balance_view(&tx, tenant, &account, at).await?,
        };
        idempotency::complete(&tx, tenant, SCOPE, &form.idempotency_key, &json(&result)?).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %member.id, transaction_id = %row.id, points = form.points, "points spent");
        Ok(result)
    }

    /// Cancels an earn (in full, or in proportion to a partial refund) or a spend (its lots
    /// restored with their original expiry). Never reverses more than was earned or spent;
    /// a repeated cancel of what is already cancelled is `FAILED_PRECONDITION`
    /// (`ALREADY_CANCELLED`), a retried one (same key) returns the first result. Emits
    /// `points.cancelled`.
    pub async fn cancel(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: CancelForm,
    ) -> Result<Posted, ServiceError> {
        let target = form.validate()?;
        match self
            .batches
            .submit(tenant, caller, Op::Cancel { form, target })
            .await?
        {
            Reply::Posted(posted) => Ok(*posted),
            Reply::Single(op) => match *op {
                Op::Cancel { form, target } => {
                    self.cancel_alone(tenant, caller, form, target).await
                }
                _ => Err(came_back_as_another("a cancel")),
            },
            Reply::Earned(_) => Err(came_back_as_another("a cancel")),
        }
    }

    /// A cancel in a transaction of its own: what a batch leaves to the one-by-one path
    /// (cancels of spends, replays, cancels it cannot make, members with lots to settle, a
    /// batch that failed).
    async fn cancel_alone(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: CancelForm,
        target: CancelTarget,
    ) -> Result<Posted, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        if let Some(stored) = claim(
            &tx,
            tenant,
            &form.idempotency_key,
            &fingerprint("cancel", &form),
        )
        .await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let found = match &target {
            CancelTarget::Transaction(id) => transactions::get(&tx, tenant, *id).await?,
            CancelTarget::Pos {
                store_code,
                pos_transaction_id,
                kind,
            } => {
                transactions::find_by_pos_key(
                    &tx,
                    tenant,
                    &pos_key(*kind, store_code, pos_transaction_id),
                )
                .await?
            }
        };
        let found = found.ok_or_else(transaction_not_found)?;
        let mut s =
            Session::open(&tx, tenant, self.zone, found.member_id, at, &caller.actor).await?;
        // Re-read under the member's lock: a concurrent cancel may have committed meanwhile.
        let original = transactions::get(&tx, tenant, found.id)
            .await?
            .ok_or_else(transaction_not_found)?;
        let kind = TxKind::parse(&original.kind).ok_or_else(|| {
            ServiceError::from(crate::store::corrupt(
                "point_transactions",
                "kind",
                &original.kind,
            ))
        })?;
        s.settle().await?;
        let policy = self.policy(&tx, tenant).await?.policy;
        let mut row = s.draft(if kind == TxKind::Earn {
            TxKind::CancelEarn
        } else {
            TxKind::CancelSpend
        });
        row.original_transaction_id = Some(original.id);
        row.store_code = key_column(&form.store_code);
        row.pos_transaction_id = key_column(&form.pos_transaction_id);
        row.reason = key_column(form.reason.trim());
        row.idempotency_key = key_column(&form.idempotency_key);
        row.occurred_time = at;
        let row = match kind {
            TxKind::Earn => {
                self.cancel_earn(&mut s, &original, &form, &policy, row)
                    .await?
            }
            TxKind::Spend => self.cancel_spend(&mut s, &original, &form, row).await?,
            other => {
                return Err(ServiceError::precondition(
                    "NOT_CANCELLABLE",
                    format!(
                        "적립과 사용만 취소할 수 있습니다 (only EARN and SPEND can be cancelled; this is {})",
                        other.as_str()
                    ),
                ));
            }
        };
        // A spend cancel may restore into a lot already past its expiry: it expires now.
        s.settle().await?;
        let account = s.finish().await?;
        emit(&tx, events::cancelled(tenant, &row, kind)).await?;
        let result = Posted {
            transaction: view(&row)?,
            balance: self.balance_view(&tx, tenant, &account, at).await?,
        };
        idempotency::complete(&tx, tenant, SCOPE, &form.idempotency_key, &json(&result)?).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %row.member_id, transaction_id = %row.id, original = %original.id, points = row.points, "points cancelled");
        Ok(result)
    }

    async fn cancel_earn(
        &self,
        s: &mut Session<'_>,
        original: &TransactionRow,
        form: &CancelForm,
        policy: &Policy,
        mut row: TransactionRow,
    ) -> Result<TransactionRow, ServiceError> {
        if form.points > 0 {
            return Err(ServiceError::invalid(
                "points",
                "적립 취소는 refund_amount_krw로 지정합니다 (an earn is cancelled by refund_amount_krw; points is for spend cancels)",
            ));
        }
        let refund = (form.refund_amount_krw > 0).then_some(form.refund_amount_krw);
        let r = ledger::earn_reversal(
            original.points,
            original.amount_krw,
            original.refunded_amount_krw,
            original.reversed_points,
            refund,
        )
        .map_err(|e| match e {
            RefundError::AlreadyCancelled => already_cancelled(original.id),
            RefundError::ExceedsPurchase { refundable_krw } => {
                let mut e = ServiceError::precondition(
                    "REFUND_EXCEEDS_PURCHASE",
                    format!(
                        "환불 금액이 남은 결제 금액을 넘습니다 (refund_amount_krw exceeds what is left to refund): refundable {}",
                        spharos_kit::time::format_krw(refundable_krw)
                    ),
                );
                if let ServiceError::FailedPrecondition { metadata, .. } = &mut e {
                    metadata.insert("refundable_krw".into(), refundable_krw.to_string());
                }
                e
            }
        })?;
        let also: Vec<Uuid> = original.lot_id.into_iter().collect();
        let mut set = Lots::new(lots::open_of_member(s.tx, s.tenant, s.member(), &also).await?);
        let allow_debt = policy.earn_cancel_shortfall == ShortfallRule::Debt;
        let posting = ledger::reverse_earn(&mut s.balance, &mut set.lots, original.lot_id, r.points, allow_debt, s.at)
            .map_err(|e| {
                let mut err = ServiceError::precondition(
                    "POINTS_ALREADY_SPENT",
                    format!(
                        "적립된 포인트가 이미 사용되어 취소할 수 없습니다 (the earned points were already spent and this tenant does not allow a negative balance): short {}",
                        format_points(e.shortfall)
                    ),
                );
                if let ServiceError::FailedPrecondition { metadata, .. } = &mut err {
                    metadata.insert("shortfall".into(), e.shortfall.to_string());
                }
                err
            })?;
        lots::save(s.tx, &set.changed(now())).await?;
        row.amount_krw = r.refund_krw;
        let row = s.record(row, &posting).await?;
        transactions::set_cancelled(
            s.tx,
            s.tenant,
            original.id,
            original.refunded_amount_krw + r.refund_krw,
            original.reversed_points + r.points,
            now(),
        )
        .await?;
        s.lifetime_earned -= r.points;
        Ok(row)
    }

    async fn cancel_spend(
        &self,
        s: &mut Session<'_>,
        original: &TransactionRow,
        form: &CancelForm,
        row: TransactionRow,
    ) -> Result<TransactionRow, ServiceError> {
        if form.refund_amount_krw > 0 {
            return Err(ServiceError::invalid(
                "refund_amount_krw",
                "사용 취소는 points로 지정합니다 (a spend is cancelled by points; refund_amount_krw is for earn cancels)",
            ));
        }
        let spent = -original.points;
        let left = spent - original.reversed_points;
        if left <= 0 {
            return Err(already_cancelled(original.id));
        }
        let n = if form.points == 0 { left } else { form.points };
        if n > left {
            let mut e = ServiceError::precondition(
                "RESTORE_EXCEEDS_SPEND",
                format!(
                    "복원할 포인트가 남은 사용 포인트를 넘습니다 (points exceed what is left to restore): restorable {}",
                    format_points(left)
                ),
            );
            if let ServiceError::FailedPrecondition { metadata, .. } = &mut e {
                metadata.insert("restorable".into(), left.to_string());
            }
            return Err(e);
        }
        let cancels = transactions::cancels_of(s.tx, s.tenant, original.id).await?;
        let restored =
            movements::sum_per_lot(s.tx, s.tenant, &cancels, MovementKind::Restore).await?;
        let taken: Vec<Taken> = movements::of_transaction(s.tx, s.tenant, original.id)
            .await?
            .into_iter()
            .filter(|m| m.kind == MovementKind::Spend.as_str())
            .map(|m| Taken {
                lot_id: m.lot_id,
                taken: -m.points,
                restored: restored.get(&m.lot_id).copied().unwrap_or(0),
            })
            .collect();
        let plan = ledger::plan_restore(&taken, n);
        if plan.iter().map(|(_, p)| p).sum::<i64>() != n {
            return Err(ServiceError::internal(format!(
                "spend {}: its lot movements do not cover the {n} points left to restore",
                original.id
            )));
        }
        let ids: Vec<Uuid> = plan.iter().map(|(id, _)| *id).collect();
        let mut set = Lots::new(lots::open_of_member(s.tx, s.tenant, s.member(), &ids).await?);
        let posting = ledger::restore(&mut s.balance, &mut set.lots, &plan);
        lots::save(s.tx, &set.changed(now())).await?;
        let row = s.record(row, &posting).await?;
        transactions::set_cancelled(
            s.tx,
            s.tenant,
            original.id,
            0,
            original.reversed_points + n,
            now(),
        )
        .await?;
        s.lifetime_spent -= n;
        Ok(row)
    }

    /// A staff grant (a new lot with the policy's validity from today) or deduction (usable
    /// lots soonest-expiring first, then pending ones), with a reason; the ledger row and
    /// `points.adjusted` record who did it.
    pub async fn adjust(
        &self,
        tenant: TenantId,
        caller: &Caller,
        form: AdjustForm,
    ) -> Result<Posted, ServiceError> {
        let key = form.validate()?;
        let member = self.members.resolve(tenant, &key, caller).await?;
        require_active(&member)?;
        let at = now();
        let tx = self.db.begin(tenant).await?;
        if let Some(stored) = claim(
            &tx,
            tenant,
            &form.idempotency_key,
            &fingerprint("adjust", &form),
        )
        .await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let policy = self.policy(&tx, tenant).await?.policy;
        let mut s = Session::open(&tx, tenant, self.zone, member.id, at, &caller.actor).await?;
        s.settle().await?;
        let mut row = s.draft(TxKind::Adjust);
        row.reason = Some(form.reason.trim().to_string());
        row.idempotency_key = key_column(&form.idempotency_key);
        row.occurred_time = at;
        let posting = if form.points > 0 {
            // A grant is a fresh credit: no pending period, the policy's validity from today.
            let mut immediate = policy.clone();
            immediate.pending_days = 0;
            let dates = lot_dates(&immediate, at, at, s.zone());
            let (lot_row, posting) = credit_lot(
                tenant,
                member.id,
                row.id,
                form.points,
                &dates,
                &mut s.balance,
            );
            lots::insert(&tx, &lot_row).await?;
            row.lot_id = Some(lot_row.id);
            row.expire_time = Some(dates.expire_time);
            row.available_time = Some(dates.available_time);
            posting
        } else {
            let mut set = Lots::new(lots::open_of_member(&tx, tenant, member.id, &[]).await?);
            let posting = ledger::consume(
                &mut s.balance,
                &mut set.lots,
                -form.points,
                MovementKind::Deduct,
                true,
                at,
            )
            .map_err(|short| insufficient(short.usable, -form.points))?;
            lots::save(&tx, &set.changed(now())).await?;
            posting
        };
        let row = s.record(row, &posting).await?;
        let account = s.finish().await?;
        emit(&tx, events::adjusted(tenant, &row)).await?;
        let result = Posted {
            transaction: view(&row)?,
            balance: self.balance_view(&tx, tenant, &account, at).await?,
        };
        idempotency::complete(&tx, tenant, SCOPE, &form.idempotency_key, &json(&result)?).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %member.id, transaction_id = %row.id, points = row.points, actor = %caller.actor, "points adjusted");
        Ok(result)
    }
}

fn came_back_as_another(what: &str) -> ServiceError {
    ServiceError::internal(format!("{what} came back from its batch as another write"))
}

fn already_cancelled(id: Uuid) -> ServiceError {
    ServiceError::precondition(
        "ALREADY_CANCELLED",
        format!("이미 전액 취소된 거래입니다 (transaction {id} is already fully cancelled)"),
    )
}

//! Queries on `issued_coupons`: insert with its code and claim slot, lookups, the conditional
//! redeem / restore updates, the wallet pages and the expiry batches.
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, LockBehavior, LockType, OnConflict},
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::issued_coupons::{Column, Entity, Model},
    raw,
};
use crate::domain::{
    coupon::{Coupon, CouponStatus, WalletView},
    template::IssueMethod,
};

const T: &str = "issued_coupons";

fn to_domain(m: Model) -> Result<Coupon, DbErr> {
    Ok(Coupon {
        status: CouponStatus::parse(&m.status).ok_or_else(|| corrupt(T, "status", &m.status))?,
        issue_method: IssueMethod::parse(&m.issue_method)
            .ok_or_else(|| corrupt(T, "issue_method", &m.issue_method))?,
        id: m.id,
        template_id: m.template_id,
        member_id: m.member_id,
        code: m.code,
        issue_time: m.issue_time,
        valid_from_time: m.valid_from_time,
        expire_time: m.expire_time,
        redeem_time: m.redeem_time,
        bulk_issue_id: m.bulk_issue_id,
    })
}

fn model(tenant: TenantId, coupon: &Coupon, claim_slot: Option<i32>) -> Model {
    Model {
        tenant_id: tenant.as_uuid(),
        id: coupon.id,
        template_id: coupon.template_id,
        member_id: coupon.member_id,
        code: coupon.code.clone(),
        claim_slot,
        issue_method: coupon.issue_method.as_str().into(),
        status: coupon.status.as_str().into(),
        issue_time: coupon.issue_time,
        valid_from_time: coupon.valid_from_time,
        expire_time: coupon.expire_time,
        redeem_time: coupon.redeem_time,
        expiry_notice_time: None,
        bulk_issue_id: coupon.bulk_issue_id,
        created_time: coupon.issue_time,
        updated_time: coupon.issue_time,
    }
}

/// Inserts `coupon` in `claim_slot`. `Ok(false)` when its code is already taken in the tenant
/// (the caller draws another); a unique violation error means the claim slot is taken (the
/// member reached the template's limit concurrently) and the transaction must roll back.
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    coupon: &Coupon,
    claim_slot: Option<i32>,
) -> Result<bool, DbErr> {
    let model = model(tenant, coupon, claim_slot);
    // Only the code's constraint is absorbed; the claim slot's must raise (and on
    // PostgreSQL a raised error aborts the transaction, which is what a lost race should do).
    let rows = Entity::insert(model.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::Code])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

/// Inserts a batch's coupons, each in its claim slot, skipping any that would break a unique
/// index (its code taken, or its claim slot taken by a claim that committed since the batch
/// read the member's holding). Returns the ids inserted; the caller rolls back and leaves the
/// others to the one-by-one path.
pub async fn insert_new_many(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    coupons: &[(Coupon, Option<i32>)],
) -> Result<HashSet<Uuid>, DbErr> {
    if coupons.is_empty() {
        return Ok(HashSet::new());
    }
    let models = coupons
        .iter()
        .map(|(c, slot)| model(tenant, c, *slot).into_active_model());
    let mut insert = Entity::insert_many(models)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    insert.returning_col(Column::Id);
    tx.query_all(&insert)
        .await?
        .iter()
        .map(|r| r.try_get::<Uuid>("", "id"))
        .collect()
}

/// How many coupons of each (template, member) pair its member holds, any status (one query;
/// pairs holding none are absent). One index lookup per pair, written so on purpose: with a
/// list of members (`member_id IN (...)`) PostgreSQL without fresh statistics (a new
/// database, autovacuum off) reads every coupon of the template and filters them.
pub async fn held_counts(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    pairs: &[(Uuid, Uuid)],
) -> Result<HashMap<(Uuid, Uuid), i64>, DbErr> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let mut values: Vec<sea_orm::Value> = vec![tenant.as_uuid().into()];
    let mut rows = Vec::with_capacity(pairs.len());
    for (template, member) in pairs {
        let n = values.len();
        rows.push(format!("(${}, ${})", n + 1, n + 2));
        values.push((*template).into());
        values.push((*member).into());
    }
    let sql = format!(
        "SELECT v.column1 AS template_id, v.column2 AS member_id,
           (SELECT COUNT(*) FROM issued_coupons c
             WHERE c.tenant_id = $1 AND c.template_id = v.column1 AND c.member_id = v.column2)
             AS held
         FROM (VALUES {}) AS v",
        rows.join(", ")
    );
    let found = tx
        .query_all_raw(raw(tx.get_database_backend(), &sql, values))
        .await?;
    let mut held = HashMap::new();
    for row in found {
        let n: i64 = row.try_get("", "held")?;
        if n > 0 {
            held.insert(
                (
                    row.try_get("", "template_id")?,
                    row.try_get("", "member_id")?,
                ),
                n,
            );
        }
    }
    Ok(held)
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Coupon>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

pub async fn get_by_code(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
) -> Result<Option<Coupon>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Code.eq(code))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// ISSUED → REDEEMED, only if it is still ISSUED and within its window at `now`: `true` for
/// the one request that wins, `false` for every concurrent other (on PostgreSQL they wait for
/// the winner's row lock, then find the row no longer ISSUED).
pub async fn mark_redeemed(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, CouponStatus::Redeemed.as_str().into())
        .col_expr(Column::RedeemTime, Some(now).into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(CouponStatus::Issued.as_str()))
        .filter(Column::ValidFromTime.lte(now))
        .filter(Column::ExpireTime.gte(now))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// REDEEMED → `to` (ISSUED again, or EXPIRED when past its window) after a cancelled
/// redemption; `false` if it was not REDEEMED.
pub async fn restore(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    to: CouponStatus,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, to.as_str().into())
        .col_expr(Column::RedeemTime, Option::<DateTime<Utc>>::None.into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .filter(Column::Status.eq(CouponStatus::Redeemed.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// One page of a member's wallet in id order (UUIDv7: issue order).
pub async fn list_for_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    view: WalletView,
    now: DateTime<Utc>,
    page: &PageRequest,
) -> Result<Vec<Coupon>, DbErr> {
    let issued = CouponStatus::Issued.as_str();
    let mut q = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id));
    q = match view {
        WalletView::All => q,
        WalletView::Usable => q
            .filter(Column::Status.eq(issued))
            .filter(Column::ExpireTime.gte(now)),
        WalletView::Used => q.filter(Column::Status.eq(CouponStatus::Redeemed.as_str())),
        WalletView::Expired => q.filter(
            Condition::any()
                .add(Column::Status.eq(CouponStatus::Expired.as_str()))
                .add(
                    Condition::all()
                        .add(Column::Status.eq(issued))
                        .add(Column::ExpireTime.lt(now)),
                ),
        ),
    };
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    q.order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Locks (PostgreSQL: skipping rows another expiry run holds) up to `limit` ISSUED coupons
/// matching `extra`, oldest expiry first.
async fn due(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    extra: Condition,
    limit: u64,
) -> Result<Vec<Coupon>, DbErr> {
    let mut q = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        // A constant, not a parameter: the partial index `issued_coupons_issued_expiry_idx`
        // serves only queries that name its status.
        .filter(Expr::cust("status = 'ISSUED'"))
        .filter(extra)
        .order_by_asc(Column::ExpireTime)
        .limit(limit);
    if tx.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    q.all(tx).await?.into_iter().map(to_domain).collect()
}

/// ISSUED coupons whose validity ended before `now`.
pub async fn due_for_expiry(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Coupon>, DbErr> {
    due(
        tx,
        tenant,
        Condition::all().add(Column::ExpireTime.lt(now)),
        limit,
    )
    .await
}

/// ISSUED coupons expiring between `now` and `until` whose holder was not told yet.
pub async fn due_for_notice(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Coupon>, DbErr> {
    due(
        tx,
        tenant,
        Condition::all()
            .add(Column::ExpiryNoticeTime.is_null())
            .add(Column::ExpireTime.gte(now))
            .add(Column::ExpireTime.lt(until)),
        limit,
    )
    .await
}

/// ISSUED → EXPIRED for `ids` (locked by [`due_for_expiry`]); returns how many changed.
pub async fn mark_expired(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let res = Entity::update_many()
        .col_expr(Column::Status, CouponStatus::Expired.as_str().into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(Column::Status.eq(CouponStatus::Issued.as_str()))
        .exec(tx)
        .await?;
    Ok(res.rows_affected)
}

pub async fn mark_noticed(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::ExpiryNoticeTime, Some(now).into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .exec(tx)
        .await?;
    Ok(())
}

/// How many coupons of `template_id` exist (for reports and the rush test's cross-check).
pub async fn count_for_template(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    template_id: Uuid,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::TemplateId.eq(template_id))
        .count(tx)
        .await
}

/// The most coupons of `template_id` any one member holds (0 when none was issued).
pub async fn max_held_by_a_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    template_id: Uuid,
) -> Result<i64, DbErr> {
    let stmt = super::raw(
        tx.get_database_backend(),
        "SELECT COALESCE(MAX(n), 0) AS most FROM (
           SELECT COUNT(*) AS n FROM issued_coupons
           WHERE tenant_id = $1 AND template_id = $2 GROUP BY member_id) AS per_member",
        vec![tenant.as_uuid().into(), template_id.into()],
    );
    match tx.query_one_raw(stmt).await? {
        Some(row) => row.try_get("", "most"),
        None => Ok(0),
    }
}

/// Every coupon a member holds or held, in issue order (data-subject access).
pub async fn all_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<Coupon>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.eq(member_id))
        .order_by_asc(Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

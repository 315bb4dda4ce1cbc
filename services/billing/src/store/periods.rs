//! Queries on `plan_periods`. Edits only touch *live* periods (not ended before today): the
//! application layer loads them, the pure timeline computes the new set, and [`replace`]
//! writes the difference.
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::{
    corrupt,
    entity::plan_periods::{ActiveModel, Column, Entity, Model},
};
use crate::domain::{
    catalogue::{Module, ModuleFee, Plan},
    timeline::PlanPeriod,
};

#[derive(Serialize, Deserialize)]
struct StoredFee {
    module: String,
    monthly_fee_krw: i64,
}

fn fees_json(fees: &[ModuleFee]) -> Result<String, DbErr> {
    let stored: Vec<StoredFee> = fees
        .iter()
        .map(|f| StoredFee {
            module: f.module.as_str().to_string(),
            monthly_fee_krw: f.monthly_fee_krw,
        })
        .collect();
    serde_json::to_string(&stored).map_err(|e| DbErr::Custom(format!("module fees: {e}")))
}

fn to_domain(m: Model) -> Result<PlanPeriod, DbErr> {
    let stored: Vec<StoredFee> = serde_json::from_str(&m.module_fees)
        .map_err(|_| corrupt("plan_periods", "module_fees", &m.module_fees))?;
    let module_fees = stored
        .into_iter()
        .map(|f| {
            Module::parse(&f.module)
                .map(|module| ModuleFee {
                    module,
                    monthly_fee_krw: f.monthly_fee_krw,
                })
                .ok_or_else(|| corrupt("plan_periods", "module_fees", &f.module))
        })
        .collect::<Result<_, _>>()?;
    Ok(PlanPeriod {
        id: m.id,
        plan: Plan::parse(&m.plan).ok_or_else(|| corrupt("plan_periods", "plan", &m.plan))?,
        base_fee_krw: m.base_fee_krw,
        module_fees,
        start: m.start_date,
        end: m.end_date,
        limit_exceeded_time: m.limit_exceeded_time,
    })
}

fn by_tenant(tenant: TenantId) -> sea_orm::Select<Entity> {
    Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()))
}

fn collect(rows: Vec<Model>) -> Result<Vec<PlanPeriod>, DbErr> {
    rows.into_iter().map(to_domain).collect()
}

/// Periods not ended before `today` (the current one and scheduled ones), by start.
pub async fn live(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    today: NaiveDate,
) -> Result<Vec<PlanPeriod>, DbErr> {
    collect(
        by_tenant(tenant)
            .filter(
                Condition::any()
                    .add(Column::EndDate.is_null())
                    .add(Column::EndDate.gt(today)),
            )
            .order_by_asc(Column::StartDate)
            .all(tx)
            .await?,
    )
}

/// Periods overlapping the days `[first, end_exclusive)`, by start.
pub async fn overlapping(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    first: NaiveDate,
    end_exclusive: NaiveDate,
) -> Result<Vec<PlanPeriod>, DbErr> {
    collect(
        by_tenant(tenant)
            .filter(Column::StartDate.lt(end_exclusive))
            .filter(
                Condition::any()
                    .add(Column::EndDate.is_null())
                    .add(Column::EndDate.gt(first)),
            )
            .order_by_asc(Column::StartDate)
            .all(tx)
            .await?,
    )
}

/// The period that started last (the plan of a cancelled subscription).
pub async fn latest(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<PlanPeriod>, DbErr> {
    by_tenant(tenant)
        .order_by_desc(Column::StartDate)
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// The first day the tenant ever had a plan.
pub async fn first_start(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<NaiveDate>, DbErr> {
    by_tenant(tenant)
        .select_only()
        .column(Column::StartDate)
        .order_by_asc(Column::StartDate)
        .into_tuple()
        .one(tx)
        .await
}

/// Replaces the live periods `old` by `new`: deletes those that vanished, updates those kept
/// (same id), inserts the rest.
pub async fn replace(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    old: &[PlanPeriod],
    new: &[PlanPeriod],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let gone: Vec<Uuid> = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.id == o.id))
        .map(|o| o.id)
        .collect();
    if !gone.is_empty() {
        Entity::delete_many()
            .filter(Column::TenantId.eq(tenant.as_uuid()))
            .filter(Column::Id.is_in(gone))
            .exec(tx)
            .await?;
    }
    for p in new {
        match old.iter().find(|o| o.id == p.id) {
            Some(o) if o == p => {}
            Some(_) => {
                let am = ActiveModel {
                    tenant_id: sea_orm::Unchanged(tenant.as_uuid()),
                    id: sea_orm::Unchanged(p.id),
                    plan: Set(p.plan.as_str().to_string()),
                    base_fee_krw: Set(p.base_fee_krw),
                    module_fees: Set(fees_json(&p.module_fees)?),
                    start_date: Set(p.start),
                    end_date: Set(p.end),
                    limit_exceeded_time: Set(p.limit_exceeded_time),
                    updated_time: Set(now),
                    ..Default::default()
                };
                am.update(tx).await?;
            }
            None => {
                let row = Model {
                    tenant_id: tenant.as_uuid(),
                    id: p.id,
                    plan: p.plan.as_str().to_string(),
                    base_fee_krw: p.base_fee_krw,
                    module_fees: fees_json(&p.module_fees)?,
                    start_date: p.start,
                    end_date: p.end,
                    limit_exceeded_time: p.limit_exceeded_time,
                    created_time: now,
                    updated_time: now,
                };
                Entity::insert(row.into_active_model())
                    .exec_without_returning(tx)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Records that the limit signal went out for this period; `false` when it already had (the
/// conditional update makes "once" hold under concurrent consumers).
pub async fn mark_limit_exceeded(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let r = Entity::update_many()
        .col_expr(Column::LimitExceededTime, Some(at).into())
        .col_expr(Column::UpdatedTime, at.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .filter(Column::LimitExceededTime.is_null())
        .exec(tx)
        .await?;
    Ok(r.rows_affected == 1)
}

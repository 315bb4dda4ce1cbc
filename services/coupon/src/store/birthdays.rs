//! Queries on `birthday_issues`: the once-a-year record of each birthday coupon.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    sea_query::OnConflict,
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::entity::birthday_issues::{Column, Entity, Model};

/// Claims (template, member, year): `false` when this year's birthday coupon was already
/// handled. The primary key decides, so concurrent schedule runs cannot both issue.
pub async fn claim(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    template_id: Uuid,
    member_id: Uuid,
    year: i32,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        template_id,
        member_id,
        year,
        coupon_id: None,
        failure_reason: None,
        created_time: now,
    };
    let rows = Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([
                Column::TenantId,
                Column::TemplateId,
                Column::MemberId,
                Column::Year,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

/// Records the outcome of a claimed birthday issue.
pub async fn settle(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    key: (Uuid, Uuid, i32),
    coupon_id: Option<Uuid>,
    failure_reason: Option<&str>,
) -> Result<(), DbErr> {
    let (template_id, member_id, year) = key;
    Entity::update_many()
        .col_expr(Column::CouponId, coupon_id.into())
        .col_expr(
            Column::FailureReason,
            failure_reason.map(str::to_string).into(),
        )
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::TemplateId.eq(template_id))
        .filter(Column::MemberId.eq(member_id))
        .filter(Column::Year.eq(year))
        .exec(tx)
        .await?;
    Ok(())
}

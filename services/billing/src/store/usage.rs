//! Queries on `usage_daily`: messages per business day and channel, added to by conditional
//! increments (the consumer's processed-event record makes each event count once).
use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use spharos_kit::TenantId;

use super::{
    corrupt,
    entity::usage_daily::{Column, Entity, Model},
};
use crate::domain::{
    catalogue::Channel,
    usage::{self, DailyUsage},
};

/// Adds `count` messages of `channel` on `date`.
pub async fn add(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    date: NaiveDate,
    channel: Channel,
    count: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = Model {
        tenant_id: tenant.as_uuid(),
        usage_date: date,
        channel: channel.as_str().to_string(),
        message_count: 0,
        created_time: now,
        updated_time: now,
    };
    Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::UsageDate, Column::Channel])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Entity::update_many()
        .col_expr(
            Column::MessageCount,
            Expr::col(Column::MessageCount).add(count),
        )
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::UsageDate.eq(date))
        .filter(Column::Channel.eq(channel.as_str()))
        .exec(tx)
        .await?;
    Ok(())
}

/// Daily rows of `[from, to]` (inclusive), by date then channel.
pub async fn daily(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<DailyUsage>, DbErr> {
    let rows = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::UsageDate.gte(from))
        .filter(Column::UsageDate.lte(to))
        .order_by_asc(Column::UsageDate)
        .order_by_asc(Column::Channel)
        .all(tx)
        .await?;
    rows.into_iter()
        .map(|m| {
            Ok(DailyUsage {
                channel: Channel::parse(&m.channel)
                    .ok_or_else(|| corrupt("usage_daily", "channel", &m.channel))?,
                date: m.usage_date,
                count: m.message_count,
            })
        })
        .collect()
}

/// Messages per channel over `[from, to]` (at most 366 × 7 rows, summed in code).
pub async fn totals(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(Channel, i64)>, DbErr> {
    Ok(usage::totals(&daily(tx, tenant, from, to).await?))
}

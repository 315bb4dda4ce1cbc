//! Queries on `cards`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::TenantId;
use uuid::Uuid;

use super::{
    corrupt,
    entity::cards::{Column, Entity, Model},
};
use crate::domain::card::{Card, CardStatus, CardType};

fn to_domain(m: Model) -> Result<Card, DbErr> {
    Ok(Card {
        card_type: CardType::parse(&m.card_type)
            .ok_or_else(|| corrupt("cards", "card_type", &m.card_type))?,
        status: CardStatus::parse(&m.status)
            .ok_or_else(|| corrupt("cards", "status", &m.status))?,
        id: m.id,
        member_id: m.member_id,
        number: m.card_number,
        replaces_card_id: m.replaces_card_id,
        issue_time: m.issue_time,
    })
}

/// Inserts `card`; `false` when its number is already used in the tenant (the caller draws
/// another number).
pub async fn insert(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    card: &Card,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let model = Model {
        tenant_id: tenant.as_uuid(),
        id: card.id,
        member_id: card.member_id,
        card_number: card.number.clone(),
        card_type: card.card_type.as_str().to_string(),
        status: card.status.as_str().to_string(),
        replaces_card_id: card.replaces_card_id,
        issue_time: card.issue_time,
        created_time: now,
        updated_time: now,
    };
    let rows = Entity::insert(model.into_active_model())
        .on_conflict(
            OnConflict::columns([Column::TenantId, Column::CardNumber])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Card>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// The card with this number, whatever its status, locked until the transaction ends.
pub async fn get_by_number_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    number: &str,
) -> Result<Option<Card>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::CardNumber.eq(number))
        .lock_exclusive()
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// The ACTIVE card with this number.
pub async fn get_active_by_number(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    number: &str,
) -> Result<Option<Card>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::CardNumber.eq(number))
        .filter(Column::Status.eq(CardStatus::Active.as_str()))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// Every card of a member, oldest first.
pub async fn list_for_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<Card>, DbErr> {
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

/// The ACTIVE cards of several members (one query for a page of members), oldest first.
pub async fn active_for_members(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    members: &[Uuid],
) -> Result<Vec<Card>, DbErr> {
    if members.is_empty() {
        return Ok(Vec::new());
    }
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::MemberId.is_in(members.iter().copied()))
        .filter(Column::Status.eq(CardStatus::Active.as_str()))
        .order_by_asc(Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

pub async fn set_status(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    status: CardStatus,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Status, status.as_str().into())
        .col_expr(Column::UpdatedTime, now.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

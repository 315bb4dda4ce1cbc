//! Queries on `consent_types` and `consent_type_versions`.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::TenantId;

use super::{
    corrupt,
    entity::{consent_type_versions as versions, consent_types as types},
};
use crate::domain::consent::{
    AdRole, ConsentGroup, ConsentTypeVersion, MarketingChannel, NewConsentType, Wording,
};

fn role_of(t: &types::Model) -> Result<AdRole, DbErr> {
    let channel = t
        .channel
        .as_deref()
        .map(|c| MarketingChannel::parse(c).ok_or_else(|| corrupt("consent_types", "channel", c)))
        .transpose()?;
    AdRole::from_parts(t.advertising, channel, t.night_time)
        .ok_or_else(|| corrupt("consent_types", "advertising", &t.code))
}

fn to_domain(v: versions::Model, role: AdRole) -> Result<ConsentTypeVersion, DbErr> {
    Ok(ConsentTypeVersion {
        group: ConsentGroup::parse(&v.consent_group)
            .ok_or_else(|| corrupt("consent_type_versions", "consent_group", &v.consent_group))?,
        code: v.code,
        version: v.version,
        title: v.title,
        purpose: v.purpose,
        required: v.required,
        effective_date: v.effective_date,
        role,
        created_time: v.created_time,
    })
}

/// Inserts a new consent type; `false` when the code already exists. A second type for the
/// same advertising slot fails with a unique violation (the caller maps it).
pub async fn insert_type(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    new: &NewConsentType,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let row = types::Model {
        tenant_id: tenant.as_uuid(),
        code: new.code.clone(),
        advertising: new.role.is_advertising(),
        channel: new.role.channel().map(|c| c.as_str().to_string()),
        night_time: new.role.is_night(),
        ad_slot: new.role.slot(),
        created_time: now,
        updated_time: now,
    };
    let rows = types::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([types::Column::TenantId, types::Column::Code])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

/// Inserts a version; a duplicate effective date is a unique violation.
pub async fn insert_version(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
    version: i32,
    w: &Wording,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = versions::Model {
        tenant_id: tenant.as_uuid(),
        code: code.to_string(),
        version,
        title: w.title.clone(),
        purpose: w.purpose.clone(),
        required: w.required,
        consent_group: w.group.as_str().to_string(),
        effective_date: w.effective_date,
        created_time: now,
        updated_time: now,
    };
    versions::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// The type's role, locked until the transaction ends (so revisions of one type serialise).
pub async fn role_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
) -> Result<Option<AdRole>, DbErr> {
    types::Entity::find()
        .filter(types::Column::TenantId.eq(tenant.as_uuid()))
        .filter(types::Column::Code.eq(code))
        .lock_exclusive()
        .one(tx)
        .await?
        .as_ref()
        .map(role_of)
        .transpose()
}

/// Every version of one type, oldest first (empty when the code is unknown).
pub async fn versions_of(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    code: &str,
) -> Result<Vec<ConsentTypeVersion>, DbErr> {
    let Some(t) = types::Entity::find()
        .filter(types::Column::TenantId.eq(tenant.as_uuid()))
        .filter(types::Column::Code.eq(code))
        .one(tx)
        .await?
    else {
        return Ok(Vec::new());
    };
    let role = role_of(&t)?;
    versions::Entity::find()
        .filter(versions::Column::TenantId.eq(tenant.as_uuid()))
        .filter(versions::Column::Code.eq(code))
        .order_by_asc(versions::Column::Version)
        .all(tx)
        .await?
        .into_iter()
        .map(|v| to_domain(v, role))
        .collect()
}

/// Every version of every type of the tenant, by code then version.
pub async fn all_versions(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Vec<ConsentTypeVersion>, DbErr> {
    let roles = roles(tx, tenant).await?;
    versions::Entity::find()
        .filter(versions::Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(versions::Column::Code)
        .order_by_asc(versions::Column::Version)
        .all(tx)
        .await?
        .into_iter()
        .map(|v| {
            let role = roles
                .iter()
                .find(|(c, _)| *c == v.code)
                .map(|(_, r)| *r)
                .ok_or_else(|| corrupt("consent_type_versions", "code", &v.code))?;
            to_domain(v, role)
        })
        .collect()
}

/// (code, role) of every type of the tenant.
pub async fn roles(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Vec<(String, AdRole)>, DbErr> {
    types::Entity::find()
        .filter(types::Column::TenantId.eq(tenant.as_uuid()))
        .order_by_asc(types::Column::Code)
        .all(tx)
        .await?
        .iter()
        .map(|t| Ok((t.code.clone(), role_of(t)?)))
        .collect()
}

//! Queries on `tenants`, the registry: a tenant transaction sees its own row, a system
//! transaction sees all of them.
use chrono_tz::Tz;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::tenants::{Column, Entity, Model},
};
use crate::domain::{brn::BusinessNumber, tenant::Tenant};

fn to_domain(m: Model) -> Result<Tenant, DbErr> {
    Ok(Tenant {
        id: TenantId(m.tenant_id),
        business_number: BusinessNumber::parse(&m.business_number)
            .map_err(|_| corrupt("tenants", "business_number", &m.business_number))?,
        time_zone: m
            .time_zone
            .parse::<Tz>()
            .map_err(|_| corrupt("tenants", "time_zone", &m.time_zone))?,
        name: m.name,
        contact_name: m.contact_name,
        contact_email: m.contact_email,
        contact_phone: m.contact_phone,
        created_time: m.created_time,
        updated_time: m.updated_time,
    })
}

/// Inserts `t`; `false` when a tenant with its id exists (the primary key decides).
pub async fn insert(tx: &DatabaseTransaction, t: &Tenant) -> Result<bool, DbErr> {
    let row = Model {
        tenant_id: t.id.as_uuid(),
        name: t.name.clone(),
        business_number: t.business_number.digits(),
        contact_name: t.contact_name.clone(),
        contact_email: t.contact_email.clone(),
        contact_phone: t.contact_phone.clone(),
        time_zone: t.time_zone.name().to_string(),
        created_time: t.created_time,
        updated_time: t.updated_time,
    };
    let n = Entity::insert(row.into_active_model())
        .on_conflict(OnConflict::column(Column::TenantId).do_nothing().to_owned())
        .exec_without_returning(tx)
        .await?;
    Ok(n == 1)
}

pub async fn get(tx: &DatabaseTransaction, tenant: TenantId) -> Result<Option<Tenant>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .one(tx)
        .await?
        .map(to_domain)
        .transpose()
}

/// The tenant's zone, or `None` for a tenant billing does not know (yet).
pub async fn zone(tx: &DatabaseTransaction, tenant: TenantId) -> Result<Option<Tz>, DbErr> {
    let z: Option<String> = Entity::find()
        .select_only()
        .column(Column::TimeZone)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .into_tuple()
        .one(tx)
        .await?;
    z.map(|z| {
        z.parse::<Tz>()
            .map_err(|_| corrupt("tenants", "time_zone", &z))
    })
    .transpose()
}

/// One page of tenants in id order. Needs a `begin_system` transaction.
pub async fn page(
    system_tx: &DatabaseTransaction,
    page: &PageRequest,
) -> Result<Vec<Tenant>, DbErr> {
    let mut q = Entity::find();
    if let Some(after) = page.after {
        q = q.filter(Column::TenantId.gt(after));
    }
    q.order_by_asc(Column::TenantId)
        .limit(page.fetch_limit())
        .all(system_tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Every tenant with its zone (the month-close job). Needs a `begin_system` transaction.
pub async fn all(system_tx: &DatabaseTransaction) -> Result<Vec<(TenantId, Tz)>, DbErr> {
    let rows: Vec<(Uuid, String)> = Entity::find()
        .select_only()
        .column(Column::TenantId)
        .column(Column::TimeZone)
        .order_by_asc(Column::TenantId)
        .into_tuple()
        .all(system_tx)
        .await?;
    rows.into_iter()
        .map(|(id, z)| {
            z.parse::<Tz>()
                .map(|zone| (TenantId(id), zone))
                .map_err(|_| corrupt("tenants", "time_zone", &z))
        })
        .collect()
}

//! Queries on `access_log` and `access_log_heads`. An append locks the tenant's head row,
//! inserts the entry sealed after it and moves the head, all in the caller's transaction, so
//! concurrent appends of one tenant form one line.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{access_log as log, access_log_heads as heads},
};
use crate::domain::access_log::{Access, Entry, GENESIS_HASH, Source};

fn to_domain(r: log::Model) -> Result<Entry, DbErr> {
    Ok(Entry {
        seq: r.seq,
        id: r.id,
        access: Access {
            member_id: r.member_id,
            actor: r.actor,
            fields: serde_json::from_str(&r.fields)
                .map_err(|_| corrupt("access_log", "fields", &r.fields))?,
            reason: r.reason,
            client_address: r.client_address,
            operation: r.operation,
            access_time: r.access_time,
            source: Source::parse(&r.source)
                .ok_or_else(|| corrupt("access_log", "source", &r.source))?,
            recorded_by: r.recorded_by,
        },
        prev_hash: r.prev_hash,
        entry_hash: r.entry_hash,
    })
}

/// The tenant's chain head (last sequence, last hash), created at the genesis when missing
/// and locked until the transaction ends.
pub async fn head_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<(i64, String), DbErr> {
    let genesis = heads::Model {
        tenant_id: tenant.as_uuid(),
        last_seq: 0,
        last_hash: GENESIS_HASH.to_string(),
        created_time: now,
        updated_time: now,
    };
    heads::Entity::insert(genesis.into_active_model())
        .on_conflict(
            OnConflict::column(heads::Column::TenantId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    let head = heads::Entity::find()
        .filter(heads::Column::TenantId.eq(tenant.as_uuid()))
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or_else(|| DbErr::Custom("access_log_heads row vanished".into()))?;
    Ok((head.last_seq, head.last_hash))
}

/// The head as it stands, without locking (for verification).
pub async fn head(
    tx: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<(i64, String)>, DbErr> {
    Ok(heads::Entity::find()
        .filter(heads::Column::TenantId.eq(tenant.as_uuid()))
        .one(tx)
        .await?
        .map(|h| (h.last_seq, h.last_hash)))
}

/// Inserts an entry sealed after the locked head and moves the head to it.
pub async fn append(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    e: &Entry,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let a = &e.access;
    let row = log::Model {
        tenant_id: tenant.as_uuid(),
        seq: e.seq,
        id: e.id,
        member_id: a.member_id,
        actor: a.actor.clone(),
        fields: serde_json::to_string(&a.fields).map_err(|err| DbErr::Custom(err.to_string()))?,
        reason: a.reason.clone(),
        client_address: a.client_address.clone(),
        operation: a.operation.clone(),
        access_time: a.access_time,
        source: a.source.as_str().to_string(),
        recorded_by: a.recorded_by.clone(),
        prev_hash: e.prev_hash.clone(),
        entry_hash: e.entry_hash.clone(),
        created_time: now,
        updated_time: now,
    };
    log::Entity::insert(row.into_active_model())
        .exec_without_returning(tx)
        .await?;
    heads::Entity::update_many()
        .col_expr(heads::Column::LastSeq, e.seq.into())
        .col_expr(heads::Column::LastHash, e.entry_hash.clone().into())
        .col_expr(heads::Column::UpdatedTime, now.into())
        .filter(heads::Column::TenantId.eq(tenant.as_uuid()))
        .exec(tx)
        .await?;
    Ok(())
}

/// Entries after `after_seq` in chain order, at most `limit` (verification pages).
pub async fn chain_page(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    log::Entity::find()
        .filter(log::Column::TenantId.eq(tenant.as_uuid()))
        .filter(log::Column::Seq.gt(after_seq))
        .order_by_asc(log::Column::Seq)
        .limit(limit)
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// `ListPiiAccesses` filters.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    pub member_id: Option<Uuid>,
    pub actor: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// One page in entry-id order.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    f: &AccessFilter,
    page: &PageRequest,
) -> Result<Vec<Entry>, DbErr> {
    let mut q = log::Entity::find().filter(log::Column::TenantId.eq(tenant.as_uuid()));
    if let Some(m) = f.member_id {
        q = q.filter(log::Column::MemberId.eq(m));
    }
    if let Some(a) = &f.actor {
        q = q.filter(log::Column::Actor.eq(a.as_str()));
    }
    if let Some(t) = f.from {
        q = q.filter(log::Column::AccessTime.gte(t));
    }
    if let Some(t) = f.to {
        q = q.filter(log::Column::AccessTime.lt(t));
    }
    if let Some(after) = page.after {
        q = q.filter(log::Column::Id.gt(after));
    }
    q.order_by_asc(log::Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

//! `access_log`: the PII access log, hash-chained per tenant, append-only.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "access_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub id: Uuid,
    pub member_id: Uuid,
    pub actor: String,
    pub fields: String,
    pub reason: String,
    pub client_address: String,
    pub operation: String,
    pub access_time: DateTimeUtc,
    pub source: String,
    pub recorded_by: String,
    pub prev_hash: String,
    pub entry_hash: String,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

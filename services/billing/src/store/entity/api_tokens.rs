//! `api_tokens`: records of issued API tokens (never the token itself).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subject: String,
    #[sea_orm(column_type = "Text")]
    pub permissions: String,
    pub issue_time: DateTimeUtc,
    pub expire_time: DateTimeUtc,
    pub revoke_time: Option<DateTimeUtc>,
    pub replaced_by: Option<Uuid>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `dsr_requests`: data-subject requests; the access document is stored encrypted.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dsr_requests")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub member_id: Uuid,
    pub kind: String,
    pub status: String,
    pub collection_channel: String,
    pub note: String,
    pub actor: String,
    pub receive_time: DateTimeUtc,
    pub due_date: Date,
    pub complete_time: Option<DateTimeUtc>,
    pub reject_reason: Option<String>,
    pub last_error: Option<String>,
    pub services: String,
    pub document_enc: Option<Vec<u8>>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

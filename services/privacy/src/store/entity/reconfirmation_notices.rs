//! `reconfirmation_notices`: the biennial notices owed and sent, one per consent and cycle.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "reconfirmation_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub member_id: Uuid,
    pub consent_type_code: String,
    pub version: i32,
    pub cycle_start_time: DateTimeUtc,
    pub due_date: Date,
    pub emit_time: DateTimeUtc,
    pub sent_time: Option<DateTimeUtc>,
    pub sent_channel: Option<String>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `point_lots`: the points of one credit (earn or grant) with their own expiry.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "point_lots")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub member_id: Uuid,
    pub transaction_id: Uuid,
    pub points: i64,
    pub remaining: i64,
    pub expired: i64,
    pub pending: bool,
    pub available_time: DateTimeUtc,
    pub expire_time: DateTimeUtc,
    pub notice_stage: Option<String>,
    pub next_notice_time: Option<DateTimeUtc>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

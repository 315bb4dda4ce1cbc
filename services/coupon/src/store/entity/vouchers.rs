//! `vouchers`: stored-value gift vouchers; `balance_krw` moves only by conditional updates.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "vouchers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub code: String,
    pub member_id: Option<Uuid>,
    pub face_value_krw: i64,
    pub balance_krw: i64,
    pub status: String,
    pub issue_time: DateTimeUtc,
    pub valid_from_time: DateTimeUtc,
    pub expire_time: DateTimeUtc,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

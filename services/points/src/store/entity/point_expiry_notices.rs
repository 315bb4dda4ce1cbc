//! `point_expiry_notices`: the expiry notices sent, one per lot and horizon.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "point_expiry_notices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub lot_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub horizon: String,
    pub member_id: Uuid,
    pub points: i64,
    pub expire_time: DateTimeUtc,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

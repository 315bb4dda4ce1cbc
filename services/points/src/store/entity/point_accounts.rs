//! `point_accounts`: one row per member, the sums of their lots and debt. Every write of a
//! member's ledger locks this row first, which serialises that member's operations.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "point_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub member_id: Uuid,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    pub lifetime_earned: i64,
    pub lifetime_spent: i64,
    pub version: i64,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `plan_periods`: half-open day ranges of one plan and its fees, contiguous per tenant.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "plan_periods")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub plan: String,
    pub base_fee_krw: i64,
    #[sea_orm(column_type = "Text")]
    pub module_fees: String,
    pub start_date: Date,
    pub end_date: Option<Date>,
    pub limit_exceeded_time: Option<DateTimeUtc>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

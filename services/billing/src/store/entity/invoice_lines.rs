//! `invoice_lines`: the lines of an invoice, numbered from 1.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoice_lines")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub invoice_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub line_no: i32,
    pub kind: String,
    pub code: String,
    #[sea_orm(column_type = "Text")]
    pub description: String,
    pub quantity: i64,
    pub unit_price_krw: i64,
    pub days_active: Option<i32>,
    pub days_in_month: Option<i32>,
    pub amount_krw: i64,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! `invoices`: one invoice per tenant and month (a unique constraint).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "invoices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub year_month: String,
    pub status: String,
    pub period_start: Date,
    pub period_end: Date,
    pub subtotal_krw: i64,
    pub vat_krw: i64,
    pub total_krw: i64,
    pub issue_time: Option<DateTimeUtc>,
    pub paid_time: Option<DateTimeUtc>,
    pub void_time: Option<DateTimeUtc>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

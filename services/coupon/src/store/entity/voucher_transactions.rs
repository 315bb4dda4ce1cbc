//! `voucher_transactions`: the voucher ledger (issue, use, refund, expire).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "voucher_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub voucher_id: Uuid,
    pub kind: String,
    pub amount_krw: i64,
    pub balance_after_krw: i64,
    pub pos_transaction_id: Option<String>,
    pub use_key: Option<String>,
    pub store_code: Option<String>,
    pub refund_of: Option<Uuid>,
    pub occurred_time: DateTimeUtc,
    pub created_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

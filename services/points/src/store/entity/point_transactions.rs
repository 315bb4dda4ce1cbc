//! `point_transactions`: the ledger, one row per operation with its signed points and the
//! balance after it.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "point_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub member_id: Uuid,
    pub kind: String,
    pub points: i64,
    pub balance_after: i64,
    pub debt_delta: i64,
    pub store_code: Option<String>,
    pub pos_transaction_id: Option<String>,
    pub pos_key: Option<String>,
    pub amount_krw: i64,
    pub original_transaction_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub rate_bp: Option<i32>,
    pub lot_id: Option<Uuid>,
    pub reason: Option<String>,
    pub actor: String,
    pub idempotency_key: Option<String>,
    pub refunded_amount_krw: i64,
    pub reversed_points: i64,
    pub expire_time: Option<DateTimeUtc>,
    pub available_time: Option<DateTimeUtc>,
    pub occurred_time: DateTimeUtc,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

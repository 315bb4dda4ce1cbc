//! `coupon_redemptions`: uses of coupons at the till, unique per (till transaction, coupon).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coupon_redemptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub coupon_id: Uuid,
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub pos_transaction_id: String,
    pub store_code: String,
    pub amount_krw: i64,
    pub discount_krw: i64,
    pub stackable: bool,
    pub status: String,
    pub redeem_time: DateTimeUtc,
    pub cancel_time: Option<DateTimeUtc>,
    pub cancel_reason: Option<String>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

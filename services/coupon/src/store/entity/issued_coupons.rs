//! `issued_coupons`: one row per coupon a member holds; `code` unique per tenant, `claim_slot`
//! unique per (template, member).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "issued_coupons")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub template_id: Uuid,
    pub member_id: Uuid,
    pub code: String,
    pub claim_slot: Option<i32>,
    pub issue_method: String,
    pub status: String,
    pub issue_time: DateTimeUtc,
    pub valid_from_time: DateTimeUtc,
    pub expire_time: DateTimeUtc,
    pub redeem_time: Option<DateTimeUtc>,
    pub expiry_notice_time: Option<DateTimeUtc>,
    pub bulk_issue_id: Option<Uuid>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

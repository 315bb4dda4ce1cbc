//! `coupon_templates`: what a coupon gives and how many may exist (the counters are in
//! `template_shards`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "coupon_templates")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub discount_kind: String,
    pub discount_amount_krw: Option<i64>,
    pub discount_rate_bp: Option<i32>,
    pub max_discount_krw: Option<i64>,
    pub min_purchase_krw: i64,
    pub store_codes: String,
    pub categories: String,
    pub issue_methods: String,
    pub validity_kind: String,
    pub valid_start_date: Option<String>,
    pub valid_end_date: Option<String>,
    pub valid_days: Option<i32>,
    pub total_quantity: Option<i64>,
    pub shard_count: i32,
    pub per_member_limit: Option<i32>,
    pub stackable: bool,
    pub status: String,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

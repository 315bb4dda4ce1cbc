//! `bulk_issues`: a job issuing one template to a list of members, with its progress.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bulk_issues")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub template_id: Uuid,
    pub issue_method: String,
    pub status: String,
    pub total: i64,
    pub processed: i64,
    pub issued: i64,
    pub failed: i64,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
    pub complete_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

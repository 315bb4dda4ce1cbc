//! `members`: PII only as ciphertext (`*_enc`) plus the phone's blind index; everything a
//! query filters on (status, grade, join store, join time) stays in clear.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub status: String,
    pub name_enc: Vec<u8>,
    pub phone_enc: Vec<u8>,
    pub email_enc: Option<Vec<u8>>,
    pub birth_date_enc: Option<Vec<u8>>,
    pub phone_index: String,
    pub active_phone_index: Option<String>,
    pub gender: String,
    pub join_store_id: Option<Uuid>,
    pub join_channel: String,
    pub grade_id: Option<Uuid>,
    pub join_time: DateTimeUtc,
    pub withdraw_time: Option<DateTimeUtc>,
    pub withdraw_reason: Option<String>,
    pub anonymised_time: Option<DateTimeUtc>,
    pub created_time: DateTimeUtc,
    pub updated_time: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

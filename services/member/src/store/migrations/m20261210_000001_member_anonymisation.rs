//! Erasure of members' PII (data-subject requests and the end of the retention period):
//! `members.anonymised_time` marks a member whose PII ciphertexts and blind index were
//! overwritten, so reads show nothing instead of failing to decrypt.
use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261210_000001_member_anonymisation"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("members")
                    .add_column(timestamp_with_time_zone_null("anonymised_time"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("members")
                    .drop_column("anonymised_time")
                    .to_owned(),
            )
            .await
    }
}

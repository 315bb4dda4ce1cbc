//! The member service's tables: stores, grades, members (PII as ciphertext plus a blind index),
//! cards, recorded purchases for grade evaluation, and the registry of tenants the grade
//! schedule visits. Business uniqueness lives in constraints here, not in code.
use sea_orm_migration::{prelude::*, schema::*};
use spharos_kit::db::{enable_system_rls, enable_tenant_rls};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000001_member_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("stores")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("code"))
                    .col(string("name"))
                    .col(string("region"))
                    .col(string("trade_area"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "stores").await?;
        unique(
            manager,
            "stores_tenant_code_key",
            "stores",
            &["tenant_id", "code"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("grades")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("name"))
                    .col(big_integer("min_purchase_krw"))
                    .col(integer("points_rate_bp"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "grades").await?;
        unique(
            manager,
            "grades_tenant_name_key",
            "grades",
            &["tenant_id", "name"],
        )
        .await?;
        unique(
            manager,
            "grades_tenant_min_purchase_key",
            "grades",
            &["tenant_id", "min_purchase_krw"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("members")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("status"))
                    // PII: AES-256-GCM ciphertexts bound to "member.<field>:<id>".
                    .col(blob("name_enc"))
                    .col(blob("phone_enc"))
                    .col(blob_null("email_enc"))
                    .col(blob_null("birth_date_enc"))
                    // Keyed HMAC of the normalised phone: lookups without decrypting.
                    .col(string("phone_index"))
                    // The same index while ACTIVE, NULL after withdrawal: the unique
                    // constraint below allows one active member per phone, and NULLs never
                    // collide, so a withdrawn member's phone can join again.
                    .col(string_null("active_phone_index"))
                    .col(string("gender"))
                    .col(uuid_null("join_store_id"))
                    .col(string("join_channel"))
                    .col(uuid_null("grade_id"))
                    .col(timestamp_with_time_zone("join_time"))
                    .col(timestamp_with_time_zone_null("withdraw_time"))
                    .col(string_null("withdraw_reason"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("members_join_store_fkey")
                            .from("members", ("tenant_id", "join_store_id"))
                            .to("stores", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "members").await?;
        unique(
            manager,
            "members_tenant_active_phone_key",
            "members",
            &["tenant_id", "active_phone_index"],
        )
        .await?;
        index(
            manager,
            "members_tenant_phone_idx",
            "members",
            &["tenant_id", "phone_index"],
        )
        .await?;
        index(
            manager,
            "members_tenant_grade_idx",
            "members",
            &["tenant_id", "grade_id"],
        )
        .await?;
        index(
            manager,
            "members_tenant_store_idx",
            "members",
            &["tenant_id", "join_store_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("cards")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("member_id"))
                    .col(string("card_number"))
                    .col(string("card_type"))
                    .col(string("status"))
                    .col(uuid_null("replaces_card_id"))
                    .col(timestamp_with_time_zone("issue_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("cards_member_fkey")
                            .from("cards", ("tenant_id", "member_id"))
                            .to("members", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "cards").await?;
        unique(
            manager,
            "cards_tenant_number_key",
            "cards",
            &["tenant_id", "card_number"],
        )
        .await?;
        index(
            manager,
            "cards_tenant_member_idx",
            "cards",
            &["tenant_id", "member_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("member_purchases")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("member_id"))
                    .col(string("store_code"))
                    .col(string("pos_transaction_id"))
                    .col(big_integer("amount_krw"))
                    .col(timestamp_with_time_zone("occurred_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("member_purchases_member_fkey")
                            .from("member_purchases", ("tenant_id", "member_id"))
                            .to("members", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "member_purchases").await?;
        // One row per till transaction, whatever envelope delivered it.
        unique(
            manager,
            "member_purchases_tenant_pos_key",
            "member_purchases",
            &["tenant_id", "store_code", "pos_transaction_id"],
        )
        .await?;
        index(
            manager,
            "member_purchases_tenant_member_time_idx",
            "member_purchases",
            &["tenant_id", "member_id", "occurred_time"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("member_tenants")
                    .col(uuid("tenant_id").primary_key())
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .to_owned(),
            )
            .await?;
        // The grade schedule lists every tenant under `begin_system`; tenants see their own row.
        enable_system_rls(manager, "member_tenants").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "member_tenants",
            "member_purchases",
            "cards",
            "members",
            "grades",
            "stores",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn unique(
    manager: &SchemaManager<'_>,
    name: &'static str,
    table: &'static str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table).unique();
    for c in cols {
        idx.col(*c);
    }
    manager.create_index(idx).await
}

async fn index(
    manager: &SchemaManager<'_>,
    name: &'static str,
    table: &'static str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    let mut idx = Index::create();
    idx.name(name).table(table);
    for c in cols {
        idx.col(*c);
    }
    manager.create_index(idx).await
}

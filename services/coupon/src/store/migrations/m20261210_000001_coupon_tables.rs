//! The coupon service's tables: templates, issued coupons, redemptions, the member projection,
//! birthday records, bulk-issue jobs, vouchers with their ledger, and the tenant registry the
//! schedules walk. Every rule the business relies on (one code per tenant, the per-member
//! claim slots, one redemption per till transaction and coupon, one refund per voucher use,
//! one birthday coupon per member and year) is a constraint here, not a check in code.
use sea_orm_migration::{prelude::*, schema::*};
use spharos_kit::db::{enable_system_rls, enable_tenant_rls};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261210_000001_coupon_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("coupon_templates")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("name"))
                    .col(text("description"))
                    .col(string("discount_kind"))
                    .col(big_integer_null("discount_amount_krw"))
                    .col(integer_null("discount_rate_bp"))
                    .col(big_integer_null("max_discount_krw"))
                    .col(big_integer("min_purchase_krw"))
                    // JSON arrays of strings (portable across PostgreSQL and SQLite).
                    .col(text("store_codes"))
                    .col(text("categories"))
                    .col(text("issue_methods"))
                    .col(string("validity_kind"))
                    .col(string_null("valid_start_date"))
                    .col(string_null("valid_end_date"))
                    .col(integer_null("valid_days"))
                    .col(big_integer_null("total_quantity"))
                    // How many rows of template_shards hold its quantity (fixed at creation).
                    .col(integer("shard_count"))
                    .col(integer_null("per_member_limit"))
                    .col(boolean("stackable"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "coupon_templates").await?;
        index(
            manager,
            "coupon_templates_tenant_status_idx",
            "coupon_templates",
            &["tenant_id", "status"],
        )
        .await?;

        // The first-come counters: a template's quantity split over shards, each changed only
        // by the conditional `issued < quota` update in the same transaction as the coupon row,
        // so the shards never issue more than their quotas, which sum to the total.
        manager
            .create_table(
                Table::create()
                    .table("template_shards")
                    .col(uuid("tenant_id"))
                    .col(uuid("template_id"))
                    .col(integer("shard"))
                    // NULL for an unlimited template.
                    .col(big_integer_null("quota"))
                    .col(big_integer("issued"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("template_id")
                            .col("shard"),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "template_shards").await?;

        // No foreign key to coupon_templates on purpose: on PostgreSQL every insert would take
        // a KEY SHARE lock on the template row, read by every claim of a rush. Coupons are
        // only ever inserted after reading their template in the same transaction, and
        // templates are never deleted.
        manager
            .create_table(
                Table::create()
                    .table("issued_coupons")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("template_id"))
                    .col(uuid("member_id"))
                    .col(string("code"))
                    // 1..=per_member_limit, NULL for unlimited templates (NULLs never collide).
                    .col(integer_null("claim_slot"))
                    .col(string("issue_method"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("issue_time"))
                    .col(timestamp_with_time_zone("valid_from_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone_null("redeem_time"))
                    .col(timestamp_with_time_zone_null("expiry_notice_time"))
                    .col(uuid_null("bulk_issue_id"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "issued_coupons").await?;
        unique(
            manager,
            "issued_coupons_tenant_code_key",
            "issued_coupons",
            &["tenant_id", "code"],
        )
        .await?;
        // The per-member limit: a member's n-th coupon of a template takes slot n, so two
        // concurrent issues that computed the same slot cannot both commit.
        unique(
            manager,
            "issued_coupons_member_slot_key",
            "issued_coupons",
            &["tenant_id", "template_id", "member_id", "claim_slot"],
        )
        .await?;
        index(
            manager,
            "issued_coupons_tenant_member_idx",
            "issued_coupons",
            &["tenant_id", "member_id", "id"],
        )
        .await?;
        index(
            manager,
            "issued_coupons_tenant_status_expire_idx",
            "issued_coupons",
            &["tenant_id", "status", "expire_time"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("coupon_redemptions")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("coupon_id"))
                    .col(uuid("template_id"))
                    .col(uuid("member_id"))
                    .col(string("pos_transaction_id"))
                    .col(string("store_code"))
                    .col(big_integer("amount_krw"))
                    .col(big_integer("discount_krw"))
                    // The template's stackability, for checks within the same till transaction.
                    .col(boolean("stackable"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("redeem_time"))
                    .col(timestamp_with_time_zone_null("cancel_time"))
                    .col(string_null("cancel_reason"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("coupon_redemptions_coupon_fkey")
                            .from("coupon_redemptions", ("tenant_id", "coupon_id"))
                            .to("issued_coupons", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "coupon_redemptions").await?;
        // Idempotency of RedeemCoupon: a till retry of the same transaction and coupon finds
        // the first redemption. A till transaction may redeem several (stackable) coupons.
        unique(
            manager,
            "coupon_redemptions_pos_coupon_key",
            "coupon_redemptions",
            &["tenant_id", "pos_transaction_id", "coupon_id"],
        )
        .await?;
        index(
            manager,
            "coupon_redemptions_tenant_coupon_idx",
            "coupon_redemptions",
            &["tenant_id", "coupon_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("coupon_members")
                    .col(uuid("tenant_id"))
                    .col(uuid("member_id"))
                    .col(string("status"))
                    .col(string_null("birth_month_day"))
                    .col(timestamp_with_time_zone_null("join_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("member_id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "coupon_members").await?;
        index(
            manager,
            "coupon_members_tenant_birthday_idx",
            "coupon_members",
            &["tenant_id", "birth_month_day", "member_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("birthday_issues")
                    .col(uuid("tenant_id"))
                    .col(uuid("template_id"))
                    .col(uuid("member_id"))
                    .col(integer("year"))
                    // NULL when the issue failed for a business reason (sold out, limit): the
                    // member is not retried that year.
                    .col(uuid_null("coupon_id"))
                    .col(string_null("failure_reason"))
                    .col(timestamp_with_time_zone("created_time"))
                    // Once per member, template and year.
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("template_id")
                            .col("member_id")
                            .col("year"),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "birthday_issues").await?;

        manager
            .create_table(
                Table::create()
                    .table("bulk_issues")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("template_id"))
                    .col(string("issue_method"))
                    .col(string("status"))
                    .col(big_integer("total"))
                    .col(big_integer("processed"))
                    .col(big_integer("issued"))
                    .col(big_integer("failed"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .col(timestamp_with_time_zone_null("complete_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        // The worker finds RUNNING jobs of every tenant under `begin_system`.
        enable_system_rls(manager, "bulk_issues").await?;
        index(
            manager,
            "bulk_issues_status_idx",
            "bulk_issues",
            &["status", "id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("bulk_issue_items")
                    .col(uuid("tenant_id"))
                    .col(uuid("bulk_issue_id"))
                    .col(big_integer("position"))
                    .col(uuid("member_id"))
                    .col(string("status"))
                    .col(uuid_null("coupon_id"))
                    .col(string_null("failure_reason"))
                    .col(text_null("failure_message"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("bulk_issue_id")
                            .col("position"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("bulk_issue_items_job_fkey")
                            .from("bulk_issue_items", ("tenant_id", "bulk_issue_id"))
                            .to("bulk_issues", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "bulk_issue_items").await?;
        index(
            manager,
            "bulk_issue_items_pending_idx",
            "bulk_issue_items",
            &["tenant_id", "bulk_issue_id", "status", "position"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("vouchers")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("code"))
                    .col(uuid_null("member_id"))
                    .col(big_integer("face_value_krw"))
                    // Only ever changed by conditional updates in the same transaction as
                    // the ledger row (`balance_krw >= amount` for a use).
                    .col(big_integer("balance_krw"))
                    .col(string("status"))
                    .col(timestamp_with_time_zone("issue_time"))
                    .col(timestamp_with_time_zone("valid_from_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "vouchers").await?;
        unique(
            manager,
            "vouchers_tenant_code_key",
            "vouchers",
            &["tenant_id", "code"],
        )
        .await?;
        index(
            manager,
            "vouchers_tenant_status_expire_idx",
            "vouchers",
            &["tenant_id", "status", "expire_time"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("voucher_transactions")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("voucher_id"))
                    .col(string("kind"))
                    .col(big_integer("amount_krw"))
                    .col(big_integer("balance_after_krw"))
                    .col(string_null("pos_transaction_id"))
                    // The till transaction id on USE rows only: one use per voucher and till
                    // transaction (UseVoucher's idempotency).
                    .col(string_null("use_key"))
                    .col(string_null("store_code"))
                    // On REFUND rows: the USE it gives back (unique: refunded once).
                    .col(uuid_null("refund_of"))
                    .col(timestamp_with_time_zone("occurred_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("voucher_transactions_voucher_fkey")
                            .from("voucher_transactions", ("tenant_id", "voucher_id"))
                            .to("vouchers", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "voucher_transactions").await?;
        unique(
            manager,
            "voucher_transactions_use_key",
            "voucher_transactions",
            &["tenant_id", "voucher_id", "use_key"],
        )
        .await?;
        unique(
            manager,
            "voucher_transactions_refund_key",
            "voucher_transactions",
            &["tenant_id", "refund_of"],
        )
        .await?;
        index(
            manager,
            "voucher_transactions_tenant_voucher_idx",
            "voucher_transactions",
            &["tenant_id", "voucher_id", "id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("coupon_tenants")
                    .col(uuid("tenant_id").primary_key())
                    .col(timestamp_with_time_zone("created_time"))
                    .to_owned(),
            )
            .await?;
        // The schedules list every tenant under `begin_system`; tenants see their own row.
        enable_system_rls(manager, "coupon_tenants").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "coupon_tenants",
            "voucher_transactions",
            "vouchers",
            "bulk_issue_items",
            "bulk_issues",
            "birthday_issues",
            "coupon_members",
            "coupon_redemptions",
            "issued_coupons",
            "template_shards",
            "coupon_templates",
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

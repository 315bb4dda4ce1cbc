//! The points ledger's tables: versioned policies, one account row per member (the lock every
//! operation of that member takes), lots, the ledger of transactions, the lot movements of each
//! transaction, sent expiry notices, and the registry of tenants the expiry job visits.
//! Uniqueness the ledger relies on (one earn / spend per till receipt, one entry per
//! idempotency key, one notice per lot and horizon) and non-negative balances are constraints.
use sea_orm_migration::{prelude::*, schema::*};
use spharos_kit::db::{enable_system_rls, enable_tenant_rls};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000001_points_tables"
    }
}

fn non_negative(col: &'static str) -> ColumnDef {
    big_integer(col).check(Expr::col(col).gte(0)).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("point_policies")
                    .col(uuid("tenant_id"))
                    .col(integer("version"))
                    // The validated domain policy as JSON: new fields come with serde defaults.
                    .col(text("body"))
                    .col(string("updated_by"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("version"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_policies").await?;

        manager
            .create_table(
                Table::create()
                    .table("point_accounts")
                    .col(uuid("tenant_id"))
                    .col(uuid("member_id"))
                    .col(non_negative("available"))
                    .col(non_negative("pending"))
                    .col(non_negative("debt"))
                    .col(big_integer("lifetime_earned"))
                    .col(big_integer("lifetime_spent"))
                    // Bumped by every write; writes are conditional on it (belt and braces on
                    // top of the row lock).
                    .col(big_integer("version"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("member_id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_accounts").await?;

        manager
            .create_table(
                Table::create()
                    .table("point_transactions")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("member_id"))
                    .col(string("kind"))
                    .col(big_integer("points"))
                    .col(big_integer("balance_after"))
                    .col(big_integer("debt_delta"))
                    .col(string_null("store_code"))
                    .col(string_null("pos_transaction_id"))
                    // "EARN|<store>|<pos id>" / "SPEND|...": one earn and one spend per till
                    // receipt. NULL for other kinds (NULLs never collide).
                    .col(string_null("pos_key"))
                    .col(big_integer("amount_krw"))
                    .col(uuid_null("original_transaction_id"))
                    .col(integer_null("policy_version"))
                    .col(integer_null("rate_bp"))
                    .col(uuid_null("lot_id"))
                    .col(string_null("reason"))
                    .col(string("actor"))
                    .col(string_null("idempotency_key"))
                    // Earns: purchase amount refunded and points reversed so far. Spends:
                    // points restored so far. Changed only under the account lock.
                    .col(non_negative("refunded_amount_krw"))
                    .col(non_negative("reversed_points"))
                    .col(timestamp_with_time_zone_null("expire_time"))
                    .col(timestamp_with_time_zone_null("available_time"))
                    .col(timestamp_with_time_zone("occurred_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_transactions").await?;
        unique(
            manager,
            "point_transactions_tenant_pos_key",
            "point_transactions",
            &["tenant_id", "pos_key"],
        )
        .await?;
        unique(
            manager,
            "point_transactions_tenant_idempotency_key",
            "point_transactions",
            &["tenant_id", "idempotency_key"],
        )
        .await?;
        index(
            manager,
            "point_transactions_tenant_member_idx",
            "point_transactions",
            &["tenant_id", "member_id", "id"],
        )
        .await?;
        index(
            manager,
            "point_transactions_tenant_original_idx",
            "point_transactions",
            &["tenant_id", "original_transaction_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("point_lots")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("member_id"))
                    .col(uuid("transaction_id"))
                    .col(big_integer("points"))
                    .col(non_negative("remaining"))
                    .col(non_negative("expired"))
                    .col(boolean("pending"))
                    .col(timestamp_with_time_zone("available_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    // The last notice horizon handled, and when the next one is due (NULL:
                    // none left).
                    .col(string_null("notice_stage"))
                    .col(timestamp_with_time_zone_null("next_notice_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_lots").await?;
        // A member's lots by expiry: spends, settling and the expiring-soon sum.
        index(
            manager,
            "point_lots_tenant_member_expire_idx",
            "point_lots",
            &["tenant_id", "member_id", "expire_time"],
        )
        .await?;
        // The expiry job: due lots of a tenant.
        index(
            manager,
            "point_lots_tenant_expire_idx",
            "point_lots",
            &["tenant_id", "expire_time"],
        )
        .await?;
        index(
            manager,
            "point_lots_tenant_available_idx",
            "point_lots",
            &["tenant_id", "pending", "available_time"],
        )
        .await?;
        index(
            manager,
            "point_lots_tenant_notice_idx",
            "point_lots",
            &["tenant_id", "next_notice_time"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("point_lot_movements")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(uuid("transaction_id"))
                    .col(uuid("lot_id"))
                    .col(uuid("member_id"))
                    .col(string("kind"))
                    .col(big_integer("points"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_lot_movements").await?;
        index(
            manager,
            "point_lot_movements_tenant_tx_idx",
            "point_lot_movements",
            &["tenant_id", "transaction_id"],
        )
        .await?;
        index(
            manager,
            "point_lot_movements_tenant_lot_idx",
            "point_lot_movements",
            &["tenant_id", "lot_id"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("point_expiry_notices")
                    .col(uuid("tenant_id"))
                    .col(uuid("lot_id"))
                    .col(string("horizon"))
                    .col(uuid("member_id"))
                    .col(big_integer("points"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    // Once per lot and horizon, even with two jobs running.
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("lot_id")
                            .col("horizon"),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "point_expiry_notices").await?;

        manager
            .create_table(
                Table::create()
                    .table("point_tenants")
                    .col(uuid("tenant_id").primary_key())
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .to_owned(),
            )
            .await?;
        // The expiry job lists every tenant under `begin_system`; tenants see their own row.
        enable_system_rls(manager, "point_tenants").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "point_tenants",
            "point_expiry_notices",
            "point_lot_movements",
            "point_lots",
            "point_transactions",
            "point_accounts",
            "point_policies",
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

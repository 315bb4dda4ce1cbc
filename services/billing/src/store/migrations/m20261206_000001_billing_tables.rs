//! The billing service's tables: the cross-tenant tenant registry, and per tenant its
//! subscription, plan periods, members, stores and counters learnt from member events, daily usage, invoices with
//! their lines, and API token records. Business uniqueness (one invoice per tenant and month)
//! lives in constraints here, not in code.
use sea_orm_migration::{prelude::*, schema::*};
use spharos_kit::db::{enable_system_rls, enable_tenant_rls};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000001_billing_tables"
    }
}

/// A `bigint` that a CHECK keeps at zero or above (money, counts).
fn non_negative(col: &'static str) -> ColumnDef {
    big_integer(col).check(Expr::col(col).gte(0)).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The registry platform admins list across tenants (`begin_system`); a tenant
        // transaction sees only its own row.
        manager
            .create_table(
                Table::create()
                    .table("tenants")
                    .col(uuid("tenant_id").primary_key())
                    .col(string("name"))
                    .col(string("business_number"))
                    .col(string("contact_name"))
                    .col(string("contact_email"))
                    .col(string("contact_phone"))
                    .col(string("time_zone"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .to_owned(),
            )
            .await?;
        enable_system_rls(manager, "tenants").await?;

        // One row per tenant: the subscription's lifecycle. Plans live in plan_periods.
        manager
            .create_table(
                Table::create()
                    .table("subscriptions")
                    .col(uuid("tenant_id").primary_key())
                    .col(uuid("id"))
                    .col(string("status"))
                    .col(date("start_date"))
                    .col(date_null("end_date"))
                    .col(string_null("suspend_reason"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "subscriptions").await?;

        manager
            .create_table(
                Table::create()
                    .table("plan_periods")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("plan"))
                    .col(non_negative("base_fee_krw"))
                    // JSON [{"module":"MEMBERSHIP","monthly_fee_krw":500000}], Custom only.
                    .col(text("module_fees"))
                    .col(date("start_date"))
                    // Exclusive; NULL while open-ended.
                    .col(date_null("end_date"))
                    .col(timestamp_with_time_zone_null("limit_exceeded_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "plan_periods").await?;
        index(
            manager,
            "plan_periods_tenant_start_idx",
            "plan_periods",
            &["tenant_id", "start_date"],
        )
        .await?;

        manager
            .create_table(
                Table::create()
                    .table("tenant_counters")
                    .col(uuid("tenant_id").primary_key())
                    .col(non_negative("member_count"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "tenant_counters").await?;

        // Members as member events describe them. Events of different topics may arrive in
        // any order (one JetStream consumer per topic), so a withdrawal seen before its join
        // leaves a row that the join then finds, and the count never drifts.
        manager
            .create_table(
                Table::create()
                    .table("tenant_members")
                    .col(uuid("tenant_id"))
                    .col(uuid("member_id"))
                    .col(boolean("joined"))
                    .col(boolean("withdrawn"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("member_id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "tenant_members").await?;

        // Stores as member events describe them; the open ones count against Basic's limit.
        // `event_time` is the time of the newest event applied, so an older event arriving
        // late never overwrites a newer state.
        manager
            .create_table(
                Table::create()
                    .table("tenant_stores")
                    .col(uuid("tenant_id"))
                    .col(uuid("store_id"))
                    .col(boolean("open"))
                    .col(timestamp_with_time_zone("event_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("store_id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "tenant_stores").await?;

        manager
            .create_table(
                Table::create()
                    .table("usage_daily")
                    .col(uuid("tenant_id"))
                    .col(date("usage_date"))
                    .col(string("channel"))
                    .col(non_negative("message_count"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("usage_date")
                            .col("channel"),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "usage_daily").await?;

        manager
            .create_table(
                Table::create()
                    .table("invoices")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("year_month"))
                    .col(string("status"))
                    .col(date("period_start"))
                    .col(date("period_end"))
                    .col(non_negative("subtotal_krw"))
                    .col(non_negative("vat_krw"))
                    .col(non_negative("total_krw"))
                    .col(timestamp_with_time_zone_null("issue_time"))
                    .col(timestamp_with_time_zone_null("paid_time"))
                    .col(timestamp_with_time_zone_null("void_time"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "invoices").await?;
        // Closing a month twice never makes a second invoice: the constraint decides.
        manager
            .create_index(
                Index::create()
                    .name("invoices_tenant_month_key")
                    .table("invoices")
                    .col("tenant_id")
                    .col("year_month")
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("invoice_lines")
                    .col(uuid("tenant_id"))
                    .col(uuid("invoice_id"))
                    .col(integer("line_no"))
                    .col(string("kind"))
                    .col(string("code"))
                    .col(text("description"))
                    .col(big_integer("quantity"))
                    .col(big_integer("unit_price_krw"))
                    .col(integer_null("days_active"))
                    .col(integer_null("days_in_month"))
                    .col(non_negative("amount_krw"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("invoice_id")
                            .col("line_no"),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("invoice_lines_invoice_fkey")
                            .from("invoice_lines", ("tenant_id", "invoice_id"))
                            .to("invoices", ("tenant_id", "id")),
                    )
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "invoice_lines").await?;

        manager
            .create_table(
                Table::create()
                    .table("api_tokens")
                    .col(uuid("tenant_id"))
                    .col(uuid("id"))
                    .col(string("subject"))
                    // JSON array of permission names.
                    .col(text("permissions"))
                    .col(timestamp_with_time_zone("issue_time"))
                    .col(timestamp_with_time_zone("expire_time"))
                    .col(timestamp_with_time_zone_null("revoke_time"))
                    .col(uuid_null("replaced_by"))
                    .col(timestamp_with_time_zone("created_time"))
                    .col(timestamp_with_time_zone("updated_time"))
                    .primary_key(Index::create().col("tenant_id").col("id"))
                    .to_owned(),
            )
            .await?;
        enable_tenant_rls(manager, "api_tokens").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "api_tokens",
            "invoice_lines",
            "invoices",
            "usage_daily",
            "tenant_stores",
            "tenant_members",
            "tenant_counters",
            "plan_periods",
            "subscriptions",
            "tenants",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
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

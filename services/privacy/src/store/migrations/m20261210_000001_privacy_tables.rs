//! The privacy service's tables: consent types and their versions, members known from member
//! events, consent states (the bulk advertising query's table) and their history,
//! re-confirmation notices, notices, policy versions, data-subject requests, the hash-chained
//! access log with its per-tenant head, settings and the tenant registry. Business uniqueness
//! lives in constraints here, not in code.
use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};
use spharos_kit::db::{enable_system_rls, enable_tenant_rls};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261210_000001_privacy_tables"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        consents(manager).await?;
        content(manager).await?;
        requests_and_log(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "privacy_tenants",
            "privacy_settings",
            "access_log_heads",
            "access_log",
            "dsr_requests",
            "policy_versions",
            "notices",
            "reconfirmation_notices",
            "consent_changes",
            "consent_states",
            "privacy_members",
            "consent_type_versions",
            "consent_types",
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

async fn consents(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    // What a consent type is for (advertising role) never changes; its wording does, in
    // versions.
    manager
        .create_table(
            Table::create()
                .table("consent_types")
                .col(uuid("tenant_id"))
                .col(string("code"))
                .col(boolean("advertising"))
                .col(string_null("channel"))
                .col(boolean("night_time"))
                // "SMS", "NIGHT:SMS", "NIGHT:ALL", ...: one consent type per advertising slot.
                .col(string_null("ad_slot"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("code"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "consent_types").await?;
    // NULLs never collide: any number of non-advertising types.
    unique(
        manager,
        "consent_types_tenant_ad_slot_key",
        "consent_types",
        &["tenant_id", "ad_slot"],
    )
    .await?;

    manager
        .create_table(
            Table::create()
                .table("consent_type_versions")
                .col(uuid("tenant_id"))
                .col(string("code"))
                .col(integer("version"))
                .col(string("title"))
                .col(text("purpose"))
                .col(boolean("required"))
                .col(string("consent_group"))
                .col(date("effective_date"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("code").col("version"))
                .foreign_key(
                    ForeignKey::create()
                        .name("consent_type_versions_type_fkey")
                        .from("consent_type_versions", ("tenant_id", "code"))
                        .to("consent_types", ("tenant_id", "code")),
                )
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "consent_type_versions").await?;
    unique(
        manager,
        "consent_type_versions_tenant_code_date_key",
        "consent_type_versions",
        &["tenant_id", "code", "effective_date"],
    )
    .await?;

    // Members as the member events told us: a consent needs a known member, and the
    // retention job finds the withdrawn ones here.
    manager
        .create_table(
            Table::create()
                .table("privacy_members")
                .col(uuid("tenant_id"))
                .col(uuid("member_id"))
                .col(string("status"))
                .col(timestamp_with_time_zone("join_time"))
                .col(timestamp_with_time_zone_null("withdraw_time"))
                .col(timestamp_with_time_zone_null("erase_time"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("member_id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "privacy_members").await?;
    index(
        manager,
        "privacy_members_tenant_status_withdraw_idx",
        "privacy_members",
        &["tenant_id", "status", "withdraw_time"],
    )
    .await?;

    // The current answer per member and item: the bulk advertising query joins the candidate
    // ids against this table's primary key.
    manager
        .create_table(
            Table::create()
                .table("consent_states")
                .col(uuid("tenant_id"))
                .col(uuid("member_id"))
                .col(string("consent_type_code"))
                .col(boolean("granted"))
                .col(integer("version"))
                .col(string("collection_channel"))
                .col(string("actor"))
                .col(boolean("advertising"))
                // When the current biennial cycle started: the grant, or the last notice sent.
                .col(timestamp_with_time_zone("cycle_start_time"))
                .col(timestamp_with_time_zone("change_time"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(
                    Index::create()
                        .col("tenant_id")
                        .col("member_id")
                        .col("consent_type_code"),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("consent_states_type_fkey")
                        .from("consent_states", ("tenant_id", "consent_type_code"))
                        .to("consent_types", ("tenant_id", "code")),
                )
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "consent_states").await?;
    // Partial indexes (both backends support them): the granted rows of one item, for a hash
    // join when the candidate list is most of the tenant; and the advertising consents by
    // cycle start, for the re-confirmation scan.
    manager
        .get_connection()
        .execute_unprepared(
            "CREATE INDEX consent_states_granted_idx ON consent_states \
             (tenant_id, consent_type_code, member_id) WHERE granted",
        )
        .await?;
    manager
        .get_connection()
        .execute_unprepared(
            "CREATE INDEX consent_states_reconfirmation_idx ON consent_states \
             (tenant_id, cycle_start_time) WHERE granted AND advertising",
        )
        .await?;

    manager
        .create_table(
            Table::create()
                .table("consent_changes")
                .col(uuid("tenant_id"))
                .col(uuid("id"))
                .col(uuid("member_id"))
                .col(string("consent_type_code"))
                .col(integer("version"))
                .col(boolean("granted"))
                .col(string("collection_channel"))
                .col(string("actor"))
                .col(string("source"))
                .col(timestamp_with_time_zone("change_time"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "consent_changes").await?;
    index(
        manager,
        "consent_changes_tenant_member_idx",
        "consent_changes",
        &["tenant_id", "member_id", "id"],
    )
    .await?;

    manager
        .create_table(
            Table::create()
                .table("reconfirmation_notices")
                .col(uuid("tenant_id"))
                .col(uuid("id"))
                .col(uuid("member_id"))
                .col(string("consent_type_code"))
                .col(integer("version"))
                .col(timestamp_with_time_zone("cycle_start_time"))
                .col(date("due_date"))
                .col(timestamp_with_time_zone("emit_time"))
                .col(timestamp_with_time_zone_null("sent_time"))
                .col(string_null("sent_channel"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "reconfirmation_notices").await?;
    // Once per consent and cycle, whoever runs the scan and however often.
    unique(
        manager,
        "reconfirmation_notices_cycle_key",
        "reconfirmation_notices",
        &[
            "tenant_id",
            "member_id",
            "consent_type_code",
            "cycle_start_time",
        ],
    )
    .await
}

async fn content(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("notices")
                .col(uuid("tenant_id"))
                .col(uuid("id"))
                .col(string("title"))
                .col(text("body"))
                .col(boolean("pinned"))
                .col(integer("sort_order"))
                .col(boolean("published"))
                .col(timestamp_with_time_zone_null("publish_time"))
                .col(timestamp_with_time_zone_null("delete_time"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "notices").await?;
    index(
        manager,
        "notices_tenant_order_idx",
        "notices",
        &["tenant_id", "pinned", "sort_order", "id"],
    )
    .await?;

    manager
        .create_table(
            Table::create()
                .table("policy_versions")
                .col(uuid("tenant_id"))
                .col(uuid("id"))
                .col(string("kind"))
                .col(string("version"))
                .col(string("title"))
                .col(text("body"))
                .col(date("effective_date"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "policy_versions").await?;
    unique(
        manager,
        "policy_versions_tenant_kind_date_key",
        "policy_versions",
        &["tenant_id", "kind", "effective_date"],
    )
    .await?;
    unique(
        manager,
        "policy_versions_tenant_kind_version_key",
        "policy_versions",
        &["tenant_id", "kind", "version"],
    )
    .await
}

async fn requests_and_log(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table("dsr_requests")
                .col(uuid("tenant_id"))
                .col(uuid("id"))
                .col(uuid("member_id"))
                .col(string("kind"))
                .col(string("status"))
                .col(string("collection_channel"))
                .col(text("note"))
                .col(string("actor"))
                .col(timestamp_with_time_zone("receive_time"))
                .col(date("due_date"))
                .col(timestamp_with_time_zone_null("complete_time"))
                .col(text_null("reject_reason"))
                .col(text_null("last_error"))
                // JSON array of the services that answered.
                .col(text("services"))
                // The access document, encrypted with the tenant's data key (it is PII).
                .col(blob_null("document_enc"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("id"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "dsr_requests").await?;
    index(
        manager,
        "dsr_requests_tenant_member_idx",
        "dsr_requests",
        &["tenant_id", "member_id"],
    )
    .await?;
    index(
        manager,
        "dsr_requests_tenant_status_idx",
        "dsr_requests",
        &["tenant_id", "status", "id"],
    )
    .await?;

    manager
        .create_table(
            Table::create()
                .table("access_log")
                .col(uuid("tenant_id"))
                .col(big_integer("seq"))
                .col(uuid("id"))
                .col(uuid("member_id"))
                .col(string("actor"))
                // JSON array of field names.
                .col(text("fields"))
                .col(text("reason"))
                .col(string("client_address"))
                .col(string("operation"))
                .col(timestamp_with_time_zone("access_time"))
                .col(string("source"))
                .col(string("recorded_by"))
                .col(string("prev_hash"))
                .col(string("entry_hash"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .primary_key(Index::create().col("tenant_id").col("seq"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "access_log").await?;
    unique(
        manager,
        "access_log_tenant_id_key",
        "access_log",
        &["tenant_id", "id"],
    )
    .await?;
    index(
        manager,
        "access_log_tenant_member_time_idx",
        "access_log",
        &["tenant_id", "member_id", "access_time"],
    )
    .await?;
    index(
        manager,
        "access_log_tenant_actor_time_idx",
        "access_log",
        &["tenant_id", "actor", "access_time"],
    )
    .await?;
    append_only(manager).await?;

    // The chain's head per tenant: appends lock it, so concurrent appends stay one line.
    manager
        .create_table(
            Table::create()
                .table("access_log_heads")
                .col(uuid("tenant_id").primary_key())
                .col(big_integer("last_seq"))
                .col(string("last_hash"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "access_log_heads").await?;

    manager
        .create_table(
            Table::create()
                .table("privacy_settings")
                .col(uuid("tenant_id").primary_key())
                .col(integer("retention_days"))
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .to_owned(),
        )
        .await?;
    enable_tenant_rls(manager, "privacy_settings").await?;

    manager
        .create_table(
            Table::create()
                .table("privacy_tenants")
                .col(uuid("tenant_id").primary_key())
                .col(timestamp_with_time_zone("created_time"))
                .col(timestamp_with_time_zone("updated_time"))
                .to_owned(),
        )
        .await?;
    // The schedules list every tenant under `begin_system`; tenants see their own row.
    enable_system_rls(manager, "privacy_tenants").await
}

/// The access log is append-only for the application: a trigger refuses UPDATE and DELETE
/// (and TRUNCATE on PostgreSQL). The owner can still drop the trigger, which is why the hash
/// chain exists: it shows what was changed even then.
async fn append_only(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    match manager.get_database_backend() {
        DatabaseBackend::Postgres => {
            conn.execute_unprepared(
                "CREATE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                   RAISE EXCEPTION 'access_log is append-only';
                 END $$;
                 CREATE TRIGGER access_log_no_change BEFORE UPDATE OR DELETE ON access_log
                   FOR EACH ROW EXECUTE FUNCTION access_log_append_only();
                 CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
                   FOR EACH STATEMENT EXECUTE FUNCTION access_log_append_only();",
            )
            .await?;
        }
        _ => {
            conn.execute_unprepared(
                "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
                 BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;",
            )
            .await?;
            conn.execute_unprepared(
                "CREATE TRIGGER access_log_no_delete BEFORE DELETE ON access_log
                 BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END;",
            )
            .await?;
        }
    }
    Ok(())
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

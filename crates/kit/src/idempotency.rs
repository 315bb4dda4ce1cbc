//! Idempotency keys (AIP-155 request ids under the name POS integrators know): the first
//! request with a key does the work and stores its result in the same transaction; a retry with
//! the same key and body gets that result back; the same key with another body is
//! `ALREADY_EXISTS`. Uniqueness is the table's primary key, so concurrent retries serialise on it.
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};
use sha2::{Digest, Sha256};

use crate::{error::ServiceError, tenancy::TenantId};

/// What [`claim`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First use of the key: do the work, then [`complete`] in the same transaction.
    Fresh,
    /// The key was used before with the same body: return this stored response.
    Replay(Vec<u8>),
}

/// A stable fingerprint of a request body.
pub fn fingerprint(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn sql(backend: DatabaseBackend, pg: &'static str, lite: &'static str) -> &'static str {
    if backend == DatabaseBackend::Postgres {
        pg
    } else {
        lite
    }
}

/// Claims `key` within `scope` (e.g. "member.join") for this tenant, inside the caller's
/// transaction.
pub async fn claim<C: ConnectionTrait>(
    tx: &C,
    tenant: TenantId,
    scope: &str,
    key: &str,
    request_fingerprint: &str,
) -> Result<Claim, ServiceError> {
    if key.is_empty() {
        return Ok(Claim::Fresh);
    }
    if key.len() > 200 {
        return Err(ServiceError::invalid(
            "idempotency_key",
            "must be at most 200 characters",
        ));
    }
    let b = tx.get_database_backend();
    let inserted = tx
        .execute_raw(Statement::from_sql_and_values(
            b,
            sql(
                b,
                "INSERT INTO idempotency_keys (tenant_id, scope, idem_key, request_hash, created_time) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                "INSERT INTO idempotency_keys (tenant_id, scope, idem_key, request_hash, created_time) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ),
            [
                tenant.as_uuid().into(),
                scope.into(),
                key.into(),
                request_fingerprint.into(),
                chrono::Utc::now().into(),
            ],
        ))
        .await?;
    if inserted.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            b,
            sql(
                b,
                "SELECT request_hash, response FROM idempotency_keys WHERE tenant_id = $1 AND scope = $2 AND idem_key = $3",
                "SELECT request_hash, response FROM idempotency_keys WHERE tenant_id = ? AND scope = ? AND idem_key = ?",
            ),
            [tenant.as_uuid().into(), scope.into(), key.into()],
        ))
        .await?
        .ok_or_else(|| ServiceError::internal("idempotency key vanished after a conflict"))?;
    let hash: String = row
        .try_get("", "request_hash")
        .map_err(ServiceError::from)?;
    if hash != request_fingerprint {
        return Err(ServiceError::already_exists(
            "IDEMPOTENCY_KEY_REUSED",
            format!(
                "idempotency_key {key:?} was already used for a different request; use a new key for a new request"
            ),
        ));
    }
    let response: Option<Vec<u8>> = row.try_get("", "response").map_err(ServiceError::from)?;
    response.map(Claim::Replay).ok_or_else(|| {
        ServiceError::Unavailable(
            "the first request with this idempotency_key is still running; retry".into(),
        )
    })
}

/// Stores the response of a [`Claim::Fresh`] request, in the same transaction as its work.
pub async fn complete<C: ConnectionTrait>(
    tx: &C,
    tenant: TenantId,
    scope: &str,
    key: &str,
    response: &[u8],
) -> Result<(), DbErr> {
    if key.is_empty() {
        return Ok(());
    }
    let b = tx.get_database_backend();
    tx.execute_raw(Statement::from_sql_and_values(
        b,
        sql(
            b,
            "UPDATE idempotency_keys SET response = $1 WHERE tenant_id = $2 AND scope = $3 AND idem_key = $4",
            "UPDATE idempotency_keys SET response = ? WHERE tenant_id = ? AND scope = ? AND idem_key = ?",
        ),
        [response.to_vec().into(), tenant.as_uuid().into(), scope.into(), key.into()],
    ))
    .await?;
    Ok(())
}

/// Records, in one statement, keys with the responses of requests a batch did in the caller's
/// transaction, none of them claimed with [`claim`]. Returns the keys that were new; a key
/// missing from the answer was used before (or by a concurrent request, whose commit this
/// waited for), and the caller must roll the batch back and leave that request to the
/// one-by-one path, whose [`claim`] tells a replay from a reuse.
pub async fn record_many<C: ConnectionTrait>(
    tx: &C,
    tenant: TenantId,
    scope: &str,
    entries: &[(&str, &str, &[u8])],
) -> Result<std::collections::HashSet<String>, DbErr> {
    use sea_orm::sea_query::{Alias, OnConflict, Query};
    if entries.is_empty() {
        return Ok(Default::default());
    }
    let now = chrono::Utc::now();
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("idempotency_keys"))
        .columns(
            [
                "tenant_id",
                "scope",
                "idem_key",
                "request_hash",
                "response",
                "created_time",
            ]
            .map(Alias::new),
        )
        .on_conflict(
            OnConflict::columns(["tenant_id", "scope", "idem_key"].map(Alias::new))
                .do_nothing()
                .to_owned(),
        )
        .returning_col(Alias::new("idem_key"));
    for (key, hash, response) in entries {
        insert
            .values([
                tenant.as_uuid().into(),
                scope.into(),
                (*key).into(),
                (*hash).into(),
                response.to_vec().into(),
                now.into(),
            ])
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    tx.query_all(&insert)
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "idem_key"))
        .collect()
}

/// Creates `idempotency_keys` with the tenant RLS policy. Services whose writes take an
/// idempotency key include it in their migrator.
pub struct IdempotencyMigration;

impl sea_orm_migration::MigrationName for IdempotencyMigration {
    fn name(&self) -> &str {
        "m20261203_000003_kit_idempotency_keys"
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for IdempotencyMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::{prelude::*, schema::*};
        manager
            .create_table(
                Table::create()
                    .table("idempotency_keys")
                    .if_not_exists()
                    .col(uuid("tenant_id"))
                    .col(string("scope"))
                    .col(string("idem_key"))
                    .col(string("request_hash"))
                    .col(blob_null("response"))
                    .col(timestamp_with_time_zone("created_time"))
                    .primary_key(
                        Index::create()
                            .col("tenant_id")
                            .col("scope")
                            .col("idem_key"),
                    )
                    .to_owned(),
            )
            .await?;
        crate::db::enable_tenant_rls(manager, "idempotency_keys").await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .drop_table(Table::drop().table("idempotency_keys").to_owned())
            .await
    }
}

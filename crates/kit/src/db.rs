//! Database access: PostgreSQL in production (one schema per service, row-level security as the
//! second wall), SQLite files as the embedded default (one file per service).
//!
//! **Invariant:** tenant data is only touched inside a transaction from [`Db::begin`], which on
//! PostgreSQL sets `spharos.tenant_id` for the RLS policies. The application pool connects with
//! the role `database.app_role`, which does not own the tables, so RLS applies to it.
//! **Invariant:** never acquire a second connection while holding a transaction (the SQLite pool
//! has a single connection; a nested acquire would wait forever).
//!
//! Transactions are [`Tx`]: a sea-orm transaction that also remembers the events enqueued in it
//! ([`crate::bus::enqueue`]) and hands them to the service's outbox relay once it committed, so
//! the relay publishes them without looking for them in the table.
use std::{
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, ExecResult, QueryResult, Statement, TransactionTrait,
};
use sea_orm_migration::{MigratorTrait, SchemaManager};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    bus::{Envelope, Outbox},
    config::DatabaseSettings,
    tenancy::TenantId,
};

/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const IDLE_PING_AFTER: Duration = Duration::from_secs(30);

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A service's database: its own PostgreSQL schema, or its own SQLite file.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
    backend: Backend,
    schema: String,
    /// The relay of this database's outbox, once one runs ([`crate::bus::spawn_relay`]):
    /// committed transactions hand it their events. Shared by every clone.
    relay: Arc<OnceLock<Outbox>>,
    /// PostgreSQL: the configured (owner) URL, for maintenance only the tables' owner may do
    /// ([`crate::statistics`]). The application pool never uses it.
    owner_url: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database for schema {schema}: {source}")]
    Connect { schema: String, source: DbErr },
    #[error("migrations of schema {schema} failed: {source}")]
    Migrate { schema: String, source: DbErr },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

impl Db {
    /// Connects the service owning `schema`, creates the schema (PostgreSQL) or file (SQLite),
    /// runs the service's migrations `M`, then opens the application pool.
    pub async fn open<M: MigratorTrait>(
        settings: &DatabaseSettings,
        schema: &str,
    ) -> Result<Self, DbError> {
        match &settings.url {
            Some(url) => Self::open_postgres::<M>(url.expose_secret(), settings, schema).await,
            None => Self::open_sqlite::<M>(settings, schema).await,
        }
    }

    async fn open_postgres<M: MigratorTrait>(
        url: &str,
        settings: &DatabaseSettings,
        schema: &str,
    ) -> Result<Self, DbError> {
        let connect_err = |source| DbError::Connect {
            schema: schema.to_string(),
            source,
        };
        let migrate_err = |source| DbError::Migrate {
            schema: schema.to_string(),
            source,
        };
        let role = settings.app_role.clone();
        // 1. As the configured (owner) user: schema, app role, migrations, grants.
        {
            let owner = Database::connect(owner_options(url, schema))
                .await
                .map_err(connect_err)?;
            let q = |s: &str| quote_ident(s);
            owner
                .execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS {}", q(schema)))
                .await
                .map_err(migrate_err)?;
            // Roles are cluster-wide: many test databases create it at once, so tolerate races.
            owner
                .execute_unprepared(&format!(
                    "DO $$ BEGIN
                       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN
                         CREATE ROLE {id} NOLOGIN NOBYPASSRLS;
                       END IF;
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                     END $$;",
                    lit = quote_literal(&role),
                    id = q(&role)
                ))
                .await
                .map_err(migrate_err)?;
            owner
                .execute_unprepared(&format!(
                    "DO $$ BEGIN
                       IF NOT pg_has_role(current_user, {lit}, 'MEMBER') THEN
                         EXECUTE 'GRANT {role} TO ' || quote_ident(current_user);
                       END IF;
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
                     END $$;",
                    lit = quote_literal(&role),
                    role = q(&role)
                ))
                .await
                .map_err(migrate_err)?;
            M::up(&owner, None).await.map_err(migrate_err)?;
            owner
                .execute_unprepared(&format!(
                    "GRANT USAGE ON SCHEMA {s} TO {r};
                     GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r};
                     GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {r};",
                    s = q(schema),
                    r = q(&role)
                ))
                .await
                .map_err(migrate_err)?;
            owner.close().await.map_err(connect_err)?;
        }
        // 2. The application pool runs as the app role: RLS applies to every query.
        let mut opts = ConnectOptions::new(url.to_string());
        let search_path = schema.to_string();
        opts.max_connections(settings.max_connections)
            .min_connections(1)
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(10))
            // A connection in steady use is handed out as is; one idle for a while (the
            // server, a proxy or a firewall may have dropped it) is pinged first. Pinging on
            // every checkout cost each transaction a round trip.
            .test_before_acquire_if_idle_for(IDLE_PING_AFTER)
            .map_sqlx_postgres_opts(move |o| {
                o.options([
                    ("search_path", search_path.as_str()),
                    ("role", role.as_str()),
                ])
            });
        let conn = Database::connect(opts).await.map_err(connect_err)?;
        Ok(Self {
            conn,
            backend: Backend::Postgres,
            schema: schema.to_string(),
            relay: Arc::default(),
            owner_url: Some(SecretString::from(url)),
        })
    }

    async fn open_sqlite<M: MigratorTrait>(
        settings: &DatabaseSettings,
        schema: &str,
    ) -> Result<Self, DbError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| DbError::DataDir {
            path: settings.data_dir.display().to_string(),
            source,
        })?;
        let path = settings.data_dir.join(format!("{schema}.db"));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut opts = ConnectOptions::new(url);
        // One connection: SQLite has one writer, and a single connection makes every
        // transaction serial instead of failing with SQLITE_BUSY.
        opts.max_connections(1)
            .min_connections(1)
            .sqlx_logging(false)
            .acquire_timeout(Duration::from_secs(30))
            .map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        let conn = Database::connect(opts)
            .await
            .map_err(|source| DbError::Connect {
                schema: schema.to_string(),
                source,
            })?;
        M::up(&conn, None)
            .await
            .map_err(|source| DbError::Migrate {
                schema: schema.to_string(),
                source,
            })?;
        Ok(Self {
            conn,
            backend: Backend::Sqlite,
            schema: schema.to_string(),
            relay: Arc::default(),
            owner_url: None,
        })
    }

    /// The pool, for statements that need no tenant (health checks). Tenant data goes through
    /// [`Db::begin`].
    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// PostgreSQL: a new single-connection pool as the tables' owner (the configured user),
    /// with this service's schema as its search path. `None` on SQLite. For maintenance
    /// ([`crate::statistics`]); tenant data never goes through it.
    pub(crate) async fn connect_owner(&self) -> Option<Result<DatabaseConnection, DbErr>> {
        let url = self.owner_url.as_ref()?;
        Some(Database::connect(owner_options(url.expose_secret(), &self.schema)).await)
    }

    pub fn db_backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// A transaction scoped to `tenant`: on PostgreSQL, `SET LOCAL spharos.tenant_id`, so the
    /// row-level-security policies see only this tenant's rows whatever the query says.
    pub async fn begin(&self, tenant: TenantId) -> Result<Tx, DbErr> {
        let tx = self.conn.begin().await?;
        if self.backend == Backend::Postgres {
            tx.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT set_config('spharos.tenant_id', $1, true)",
                [tenant.to_string().into()],
            ))
            .await?;
        }
        Ok(self.wrap(tx))
    }

    /// A transaction for platform machinery that spans tenants (the outbox relay, consumers'
    /// bookkeeping). Only the internal tables' policies admit it; tenant tables stay closed.
    pub async fn begin_system(&self) -> Result<Tx, DbErr> {
        let tx = self.conn.begin().await?;
        if self.backend == Backend::Postgres {
            tx.execute_unprepared("SELECT set_config('spharos.system', 'on', true)")
                .await?;
        }
        Ok(self.wrap(tx))
    }

    fn wrap(&self, inner: DatabaseTransaction) -> Tx {
        Tx {
            inner,
            staged: Arc::default(),
            after_commit: match self.relay.get() {
                Some(relay) => AfterCommit::Relay(relay.clone()),
                None => AfterCommit::Nothing,
            },
        }
    }

    /// Makes `outbox` the relay committed transactions hand their events to (the first one
    /// attached stays).
    pub(crate) fn attach_relay(&self, outbox: Outbox) {
        let _ = self.relay.set(outbox);
    }

    /// Cheap liveness probe.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }
}

/// A transaction of a [`Db`]. It is a sea-orm transaction (it derefs to one and is a
/// [`ConnectionTrait`]) that also carries the events [`crate::bus::enqueue`] wrote in it: when it
/// commits, they go to the outbox relay, which publishes them at once. Dropping it without a
/// commit rolls back, and its events are forgotten with their rows.
pub struct Tx {
    inner: DatabaseTransaction,
    staged: Staged,
    after_commit: AfterCommit,
}

type Staged = Arc<Mutex<Vec<Envelope>>>;

/// Where a [`Tx`]'s events go when it commits.
enum AfterCommit {
    /// To the relay: the transaction is the outermost one.
    Relay(Outbox),
    /// To the enclosing transaction: this one is a savepoint of it.
    Enclosing(Staged),
    /// Nowhere: no relay runs for this database (the rows wait for one).
    Nothing,
}

fn take(staged: &Staged) -> Vec<Envelope> {
    std::mem::take(&mut *staged.lock().unwrap_or_else(|p| p.into_inner()))
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl std::ops::Deref for Tx {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.inner
    }
}

impl Tx {
    /// Commits, then hands the transaction's events to the relay (the rows are the record: if
    /// the hand-off is lost, the relay's sweep publishes them from the table). A savepoint's
    /// commit (a release) passes its events to the enclosing transaction.
    pub async fn commit(self) -> Result<(), DbErr> {
        let committed_at = Instant::now();
        self.inner.commit().await?;
        let events = take(&self.staged);
        if events.is_empty() {
            return Ok(());
        }
        match &self.after_commit {
            AfterCommit::Relay(relay) => relay.committed(committed_at, events),
            AfterCommit::Enclosing(outer) => outer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(events),
            AfterCommit::Nothing => {}
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbErr> {
        self.inner.rollback().await
    }

    /// A savepoint in this transaction: its writes and events join this transaction's when it
    /// commits, and vanish when it rolls back.
    pub async fn savepoint(&self) -> Result<Tx, DbErr> {
        Ok(Tx {
            inner: self.inner.begin().await?,
            staged: Arc::default(),
            after_commit: AfterCommit::Enclosing(self.staged.clone()),
        })
    }

    /// Remembers events written to the outbox in this transaction.
    pub(crate) fn stage(&self, events: &[Envelope]) {
        self.staged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(events);
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DatabaseBackend {
        self.inner.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.inner.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.inner.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.inner.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.inner.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.inner.support_returning()
    }
}

/// Adds the tenant row-level-security policy to `table` (no-op on SQLite, which has no RLS;
/// there every query already filters by tenant). Call from a migration after creating a tenant
/// table.
pub async fn enable_tenant_rls(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let t = quote_ident(table);
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON {t}
               USING (tenant_id = NULLIF(current_setting('spharos.tenant_id', true), '')::uuid)
               WITH CHECK (tenant_id = NULLIF(current_setting('spharos.tenant_id', true), '')::uuid);"
        ))
        .await?;
    Ok(())
}

/// Like [`enable_tenant_rls`] for the kit's internal tables (outbox, processed events): the
/// tenant sees and writes its own rows, and [`Db::begin_system`] sees all of them.
pub async fn enable_system_rls(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    let t = quote_ident(table);
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_or_system ON {t}
               USING (current_setting('spharos.system', true) = 'on'
                      OR tenant_id = NULLIF(current_setting('spharos.tenant_id', true), '')::uuid)
               WITH CHECK (current_setting('spharos.system', true) = 'on'
                      OR tenant_id = NULLIF(current_setting('spharos.tenant_id', true), '')::uuid);"
        ))
        .await?;
    Ok(())
}

/// Is this error a violation of a unique constraint (PostgreSQL 23505, SQLite 2067/1555)?
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// One connection as the configured (owner) user, opened only while needed.
fn owner_options(url: &str, schema: &str) -> ConnectOptions {
    let mut opts = ConnectOptions::new(url.to_string());
    let search_path = schema.to_string();
    opts.max_connections(1)
        .min_connections(0)
        .sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .map_sqlx_postgres_opts(move |o| o.options([("search_path", search_path.as_str())]));
    opts
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

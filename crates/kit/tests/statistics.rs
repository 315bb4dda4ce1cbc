//! The statistics keeper against a real PostgreSQL: a table filled through the application
//! pool (which may not analyze it) gets its planner statistics from the keeper, once; SQLite
//! has no keeper. Never mocked, never skipped.
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::{MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use spharos_kit::{
    db::Db,
    statistics::{self, StatisticsKeeper},
    testing::{self, TestBackend},
};
use tokio_util::sync::CancellationToken;

struct TestMigrator;

impl MigratorTrait for TestMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Tables)]
    }
}

struct Tables;

impl MigrationName for Tables {
    fn name(&self) -> &str {
        "m20261204_000100_statistics_test"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        for table in ["probe", "looped"] {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "CREATE TABLE {table} (id bigint PRIMARY KEY, tenant_id uuid NOT NULL)"
                ))
                .await?;
        }
        Ok(())
    }
}

async fn open(backend: TestBackend) -> (Db, tempfile::TempDir) {
    let (settings, dir) = testing::settings(backend).await;
    let db = Db::open::<TestMigrator>(&settings.database, "statstest")
        .await
        .expect("migrations run");
    (db, dir)
}

/// Inserts `n` rows into `table` through the application pool.
async fn fill(db: &Db, table: &str, n: i64) {
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO {table} (id, tenant_id) \
             SELECT g, '00000000-0000-0000-0000-000000000001' FROM generate_series(1, {n}) g"
        ))
        .await
        .expect("rows inserted");
}

/// The planner's row estimate of `table` (-1 before any ANALYZE or VACUUM).
async fn planner_rows(db: &Db, table: &str) -> f64 {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT reltuples::float8 AS n FROM pg_class WHERE oid = 'statstest.{table}'::regclass"),
        ))
        .await
        .expect("pg_class is readable")
        .expect("the table exists");
    row.try_get("", "n").expect("a number")
}

#[tokio::test]
async fn a_filled_table_is_analyzed_once_by_a_pass() {
    let (db, _dir) = open(TestBackend::Postgres).await;
    assert_eq!(planner_rows(&db, "probe").await, -1.0, "never analyzed yet");
    // The application role does not own the table: its own ANALYZE is skipped with a warning.
    db.conn()
        .execute_unprepared("ANALYZE probe")
        .await
        .expect("a non-owner's ANALYZE is a warning, not an error");
    fill(&db, "probe", 2_000).await;
    assert_eq!(planner_rows(&db, "probe").await, -1.0);

    let keeper = StatisticsKeeper::new(db.clone());
    // The inserting backend reports its counts within PostgreSQL's stats flush interval.
    let deadline = Instant::now() + Duration::from_secs(20);
    let analyzed = loop {
        let analyzed = keeper.pass().await.expect("a pass runs");
        if !analyzed.is_empty() || Instant::now() > deadline {
            break analyzed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(analyzed, vec!["probe".to_string()]);
    assert_eq!(planner_rows(&db, "probe").await, 2_000.0);
    // Nothing changed since: the next pass leaves every table alone.
    assert_eq!(
        keeper.pass().await.expect("a pass runs"),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn the_spawned_keeper_analyzes_until_shutdown() {
    let (db, _dir) = open(TestBackend::Postgres).await;
    let shutdown = CancellationToken::new();
    let task = statistics::spawn(&db, Duration::from_millis(100), shutdown.clone())
        .expect("PostgreSQL has a keeper");
    fill(&db, "looped", 3_000).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while planner_rows(&db, "looped").await != 3_000.0 {
        assert!(
            Instant::now() < deadline,
            "the keeper analyzed the table within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the keeper stops on shutdown")
        .expect("and does not panic");
}

#[tokio::test]
async fn sqlite_and_a_zero_interval_have_no_keeper() {
    let (db, _dir) = open(TestBackend::Sqlite).await;
    assert!(statistics::spawn(&db, Duration::from_secs(5), CancellationToken::new()).is_none());
    assert!(
        StatisticsKeeper::new(db)
            .pass()
            .await
            .expect("a pass is a no-op")
            .is_empty()
    );
    let (pg, _pg_dir) = open(TestBackend::Postgres).await;
    assert!(statistics::spawn(&pg, Duration::ZERO, CancellationToken::new()).is_none());
}

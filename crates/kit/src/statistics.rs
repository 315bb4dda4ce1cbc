//! The statistics keeper: keeps PostgreSQL's planner statistics of a service's own tables fresh
//! where autovacuum does not.
//!
//! Without statistics the planner guesses. On a new or fast-growing table it takes a prefix
//! like `tenant_id = $1 AND template_id = $2` for one row, picks an index for its order instead
//! of its selectivity, and reads every row of the prefix (measured in `docs/benchmarks.md`:
//! claim and redeem statements going from under a millisecond to 5–12 ms as a table grows).
//! Autovacuum's analyze normally prevents that, but it may be off (some managed and CI
//! databases run with `autovacuum = off`), and even when on it looks only once a minute
//! (`autovacuum_naptime`), so a table created and filled by a rush plans blind until then.
//!
//! Every `database.statistics_interval_seconds` the keeper reads `pg_stat_user_tables` for its
//! schema through the application pool and runs `ANALYZE` on each table that needs it, over
//! a connection as the tables' owner (only the owner may analyze), opened for the pass and
//! closed after it. A table needs it when more rows changed since its last analyze than
//! autovacuum's own rule allows (`autovacuum_analyze_threshold` 50 +
//! `autovacuum_analyze_scale_factor` 0.1 × rows, PostgreSQL's defaults), and either
//! autovacuum is off or the table was never analyzed. `ANALYZE` takes a lock that does not
//! block reads or writes and samples at most 30,000 rows, so a pass costs milliseconds.
//!
//! SQLite keeps no keeper: its planner without `sqlite_stat1` assumes an index is selective,
//! which is right for every index the services define.
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement};
use tokio_util::sync::CancellationToken;

use crate::db::{Backend, Db, quote_ident};

/// PostgreSQL's default `autovacuum_analyze_threshold`.
const BASE_THRESHOLD: f64 = 50.0;
/// PostgreSQL's default `autovacuum_analyze_scale_factor`.
const SCALE_FACTOR: f64 = 0.1;

/// One table's activity, as `pg_stat_user_tables` counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableActivity {
    pub table: String,
    /// Estimated live rows (`n_live_tup`).
    pub live_rows: i64,
    /// Rows inserted, updated or deleted since the last analyze (`n_mod_since_analyze`).
    pub modified_since_analyze: i64,
    /// Whether an `ANALYZE` (manual or autovacuum's) ever ran on it.
    pub ever_analyzed: bool,
}

/// Does `table` need an `ANALYZE` from the keeper? Autovacuum's threshold, applied only where
/// autovacuum will not act: everywhere when it is off, else to tables it has not reached yet.
pub fn needs_analyze(table: &TableActivity, autovacuum_on: bool) -> bool {
    if autovacuum_on && table.ever_analyzed {
        return false;
    }
    let threshold = BASE_THRESHOLD + SCALE_FACTOR * table.live_rows.max(0) as f64;
    table.modified_since_analyze as f64 > threshold
}

/// Keeps one service's statistics: [`StatisticsKeeper::pass`] once, or [`spawn`] for a loop.
#[derive(Debug, Clone)]
pub struct StatisticsKeeper {
    db: Db,
}

impl StatisticsKeeper {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One look: analyzes every table of the schema that [`needs_analyze`] and returns their
    /// names (none on SQLite).
    pub async fn pass(&self) -> Result<Vec<String>, DbErr> {
        if self.db.backend() != Backend::Postgres {
            return Ok(Vec::new());
        }
        let rows = self
            .db
            .conn()
            .query_all_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT relname::text AS table, n_live_tup AS live, \
                        n_mod_since_analyze AS modified, \
                        (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL) AS analyzed, \
                        current_setting('autovacuum') = 'on' AS autovacuum \
                 FROM pg_stat_user_tables WHERE schemaname = $1 ORDER BY relname",
                [self.db.schema().into()],
            ))
            .await?;
        let mut stale = Vec::new();
        for row in rows {
            let table = TableActivity {
                table: row.try_get("", "table")?,
                live_rows: row.try_get("", "live")?,
                modified_since_analyze: row.try_get("", "modified")?,
                ever_analyzed: row.try_get("", "analyzed")?,
            };
            if needs_analyze(&table, row.try_get("", "autovacuum")?) {
                stale.push(table);
            }
        }
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        let Some(owner) = self.db.connect_owner().await else {
            return Ok(Vec::new());
        };
        let owner = owner?;
        let analyzed = self.analyze(&owner, &stale).await;
        let _ = owner.close().await;
        analyzed
    }

    async fn analyze(
        &self,
        owner: &DatabaseConnection,
        stale: &[TableActivity],
    ) -> Result<Vec<String>, DbErr> {
        let schema = quote_ident(self.db.schema());
        let mut done = Vec::with_capacity(stale.len());
        for table in stale {
            let started = Instant::now();
            owner
                .execute_unprepared(&format!("ANALYZE {schema}.{}", quote_ident(&table.table)))
                .await?;
            tracing::debug!(
                schema = self.db.schema(),
                table = %table.table,
                rows = table.live_rows,
                changed = table.modified_since_analyze,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "table statistics refreshed"
            );
            done.push(table.table.clone());
        }
        Ok(done)
    }
}

/// Starts the keeper of `db` (PostgreSQL, `interval` above zero; else `None`). It looks every
/// `interval` until `shutdown` is cancelled; a failed pass is logged and retried next time.
pub fn spawn(
    db: &Db,
    interval: Duration,
    shutdown: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    if db.backend() != Backend::Postgres || interval.is_zero() {
        return None;
    }
    let keeper = StatisticsKeeper::new(db.clone());
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if let Err(e) = keeper.pass().await {
                tracing::warn!(
                    schema = keeper.db.schema(),
                    error = %e,
                    "refreshing table statistics failed; trying again next interval"
                );
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(live_rows: i64, modified: i64, ever_analyzed: bool) -> TableActivity {
        TableActivity {
            table: "t".into(),
            live_rows,
            modified_since_analyze: modified,
            ever_analyzed,
        }
    }

    #[test]
    fn with_autovacuum_off_every_table_follows_autovacuums_threshold() {
        // 50 + 10 % of the rows must have changed.
        assert!(!needs_analyze(&table(0, 50, false), false));
        assert!(needs_analyze(&table(0, 51, false), false));
        assert!(!needs_analyze(&table(10_000, 1_050, true), false));
        assert!(needs_analyze(&table(10_000, 1_051, true), false));
    }

    #[test]
    fn with_autovacuum_on_only_never_analyzed_tables_are_taken() {
        assert!(needs_analyze(&table(1_000, 200, false), true));
        assert!(!needs_analyze(&table(1_000, 200_000, true), true));
        assert!(!needs_analyze(&table(1_000, 10, false), true));
    }

    #[test]
    fn a_negative_estimate_counts_as_empty() {
        assert!(needs_analyze(&table(-1, 51, false), false));
    }
}

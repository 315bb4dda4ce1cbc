//! Persistence of the coupon service: sea-orm entities, migrations and the queries the
//! application layer runs. **Invariant:** every function takes the caller's transaction and
//! the `TenantId`, and every query filters by `tenant_id` (PostgreSQL RLS is the second wall,
//! not the first). Hot paths (claim, redeem, voucher use) are single conditional statements.
pub mod birthdays;
pub mod bulk;
pub mod coupons;
pub mod entity;
pub mod members;
pub mod migrations;
pub mod redemptions;
pub mod templates;
pub mod tenants;
pub mod vouchers;

use sea_orm::{DatabaseBackend, DbErr, Statement, Value};

/// A stored value that does not parse back (a bug or a hand-edited row, never user input).
pub(crate) fn corrupt(table: &str, column: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("{table}.{column} holds an unknown value {value:?}"))
}

/// A raw statement written with PostgreSQL's `$n` placeholders, rewritten to SQLite's
/// equivalent `?n` there. Only for the few statements the query builder cannot express in one
/// round trip; they never contain a literal `$`.
pub(crate) fn raw(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => sql.to_string(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Serialises a list column (JSON text, portable across both backends).
pub(crate) fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn parse_list(table: &str, column: &str, text: &str) -> Result<Vec<String>, DbErr> {
    serde_json::from_str(text).map_err(|_| corrupt(table, column, text))
}

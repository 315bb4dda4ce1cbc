//! Persistence of the points service: sea-orm entities, migrations and the queries the
//! application layer runs. **Invariant:** every function takes the caller's transaction and
//! the `TenantId`, and every query filters by `tenant_id` (PostgreSQL RLS is the second wall,
//! not the first).
pub mod accounts;
pub mod entity;
pub mod lots;
pub mod migrations;
pub mod movements;
pub mod notices;
pub mod policies;
pub mod tenants;
pub mod transactions;

use sea_orm::DbErr;

/// A stored value that does not parse back (a bug or a hand-edited row, never user input).
pub(crate) fn corrupt(table: &str, column: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("{table}.{column} holds an unknown value {value:?}"))
}

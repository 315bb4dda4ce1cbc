//! Persistence of the member service: sea-orm entities, migrations and the queries the
//! application layer runs. **Invariant:** every function takes the caller's tenant
//! transaction and the `TenantId`, and every query filters by `tenant_id` (PostgreSQL RLS is
//! the second wall, not the first).
pub mod cards;
pub mod entity;
pub mod grades;
pub mod members;
pub mod migrations;
pub mod purchases;
pub mod stores;
pub mod tenants;

use sea_orm::DbErr;

/// A stored value that does not parse back (a bug or a hand-edited row, never user input).
pub(crate) fn corrupt(table: &str, column: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("{table}.{column} holds an unknown value {value:?}"))
}

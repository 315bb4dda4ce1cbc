//! Persistence of the privacy service: sea-orm entities, migrations and the queries the
//! application layer runs. **Invariant:** every function takes the caller's tenant
//! transaction and the `TenantId`, and every query filters by `tenant_id` (PostgreSQL RLS is
//! the second wall, not the first).
pub mod access_log;
pub mod consent_types;
pub mod consents;
pub mod content;
pub mod dsr;
pub mod entity;
pub mod members;
pub mod migrations;
pub mod settings;

use sea_orm::DbErr;

/// A stored value that does not parse back (a bug or a hand-edited row, never user input).
pub(crate) fn corrupt(table: &str, column: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("{table}.{column} holds an unknown value {value:?}"))
}

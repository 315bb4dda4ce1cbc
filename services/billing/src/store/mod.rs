//! Persistence of the billing service: sea-orm entities, migrations and the queries the
//! application layer runs. **Invariant:** every tenant-table function takes the caller's tenant
//! transaction and the `TenantId`, and every query filters by `tenant_id` (PostgreSQL RLS is
//! the second wall, not the first); only `tenants::page` and `tenants::all` read across
//! tenants, under `Db::begin_system`.
pub mod counters;
pub mod entity;
pub mod invoices;
pub mod migrations;
pub mod periods;
pub mod subscriptions;
pub mod tenants;
pub mod tokens;
pub mod usage;

use sea_orm::DbErr;

/// A stored value that does not parse back (a bug or a hand-edited row, never user input).
pub(crate) fn corrupt(table: &str, column: &str, value: &str) -> DbErr {
    DbErr::Custom(format!("{table}.{column} holds an unknown value {value:?}"))
}

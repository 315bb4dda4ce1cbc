//! sea-orm entities of the member schema, one per table. No `schema_name`: the connection's
//! `search_path` selects the service's schema on PostgreSQL, and SQLite has one file per service.
pub mod cards;
pub mod grades;
pub mod member_purchases;
pub mod member_tenants;
pub mod members;
pub mod stores;

//! sea-orm entities of the billing schema, one per table. No `schema_name`: the connection's
//! `search_path` selects the service's schema on PostgreSQL, and SQLite has one file per service.
pub mod api_tokens;
pub mod invoice_lines;
pub mod invoices;
pub mod plan_periods;
pub mod subscriptions;
pub mod tenant_counters;
pub mod tenant_members;
pub mod tenant_stores;
pub mod tenants;
pub mod usage_daily;

//! sea-orm entities of the coupon schema, one per table. No `schema_name`: the connection's
//! `search_path` selects the service's schema on PostgreSQL, and SQLite has one file per service.
pub mod birthday_issues;
pub mod bulk_issue_items;
pub mod bulk_issues;
pub mod coupon_members;
pub mod coupon_redemptions;
pub mod coupon_templates;
pub mod coupon_tenants;
pub mod issued_coupons;
pub mod template_shards;
pub mod voucher_transactions;
pub mod vouchers;

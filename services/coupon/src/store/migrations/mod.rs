//! The coupon schema's migrations: the kit's shared tables first (outbox, idempotency keys),
//! then the service's own tables in file-name order.
use sea_orm_migration::{MigrationTrait, MigratorTrait};

mod m20261210_000001_coupon_tables;
mod m20261212_000001_issued_expiry_index;

/// Runs by `Db::open::<Migrator>(.., "coupon")`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(spharos_kit::bus::OutboxMigration),
            Box::new(spharos_kit::bus::OutboxDeleteOnPublishMigration),
            Box::new(spharos_kit::idempotency::IdempotencyMigration),
            Box::new(m20261210_000001_coupon_tables::Migration),
            Box::new(m20261212_000001_issued_expiry_index::Migration),
        ]
    }
}

//! The expiry runs' index holds only ISSUED coupons, by expiry. It used to lead with the
//! status of every coupon: a till's redeem (`tenant_id = ? AND id = ? AND status = ? AND
//! expire_time >= ?`) matched three of its columns against the primary key's two, and
//! PostgreSQL's generic plan for it, without statistics, read every ISSUED coupon of the
//! tenant instead of looking one up. A partial index with a constant status cannot be picked
//! for a status given as a parameter; the expiry queries name the status as a constant.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261212_000001_issued_expiry_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("issued_coupons_tenant_status_expire_idx")
                    .table("issued_coupons")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("issued_coupons_issued_expiry_idx")
                    .table("issued_coupons")
                    .col("tenant_id")
                    .col("expire_time")
                    .and_where(Expr::col("status").eq("ISSUED"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("issued_coupons_issued_expiry_idx")
                    .table("issued_coupons")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("issued_coupons_tenant_status_expire_idx")
                    .table("issued_coupons")
                    .col("tenant_id")
                    .col("status")
                    .col("expire_time")
                    .to_owned(),
            )
            .await
    }
}

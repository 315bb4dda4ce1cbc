//! Indexes that only the rows they serve are in. A ledger entry carries an original
//! transaction only when it is a cancel, and a lot is pending only during a tenant's pending
//! period: every earn used to add an entry to both indexes anyway. The pending lots' index
//! also leads with the member, so a batch asks "does this member have lots to mature?" with an
//! index lookup however many lots the member holds.
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000001_partial_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("point_transactions_tenant_original_idx")
                    .table("point_transactions")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("point_transactions_cancels_idx")
                    .table("point_transactions")
                    .col("tenant_id")
                    .col("original_transaction_id")
                    .and_where(Expr::col("original_transaction_id").is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("point_lots_tenant_available_idx")
                    .table("point_lots")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("point_lots_pending_idx")
                    .table("point_lots")
                    .col("tenant_id")
                    .col("member_id")
                    .col("available_time")
                    .and_where(Expr::col("pending").eq(true))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("point_lots_pending_idx")
                    .table("point_lots")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("point_lots_tenant_available_idx")
                    .table("point_lots")
                    .col("tenant_id")
                    .col("pending")
                    .col("available_time")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("point_transactions_cancels_idx")
                    .table("point_transactions")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("point_transactions_tenant_original_idx")
                    .table("point_transactions")
                    .col("tenant_id")
                    .col("original_transaction_id")
                    .to_owned(),
            )
            .await
    }
}

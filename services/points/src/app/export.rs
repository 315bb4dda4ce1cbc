//! The member's points data for a data-subject access request (개인정보 열람): the balance, every
//! ledger entry and every lot, as one JSON document the privacy service merges with the
//! other services' documents.
use serde_json::json;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{PointsApp, Session, now, view};
use crate::store::{lots, transactions};

impl PointsApp {
    /// Everything the ledger holds about `member`. A member the points service never saw
    /// (or another tenant's) gets an empty document: the ledger has nothing on them.
    pub async fn export_member_data(
        &self,
        tenant: TenantId,
        member: Uuid,
    ) -> Result<serde_json::Value, ServiceError> {
        let at = now();
        let tx = self.db.begin(tenant).await?;
        let balance = match Session::open_existing(&tx, tenant, self.zone, member, at).await? {
            Some(mut s) => {
                s.settle().await?;
                let account = s.finish().await?;
                self.balance_view(&tx, tenant, &account, at).await?
            }
            None => self.empty_balance(member, at),
        };
        let entries = transactions::all_of_member(&tx, tenant, member)
            .await?
            .iter()
            .map(view)
            .collect::<Result<Vec<_>, _>>()?;
        let lots: Vec<_> = lots::all_of_member(&tx, tenant, member)
            .await?
            .into_iter()
            .map(|l| {
                json!({
                    "lot_id": l.id,
                    "transaction_id": l.transaction_id,
                    "points": l.points,
                    "remaining": l.remaining,
                    "expired": l.expired,
                    "pending": l.pending,
                    "available_time": l.available_time,
                    "expire_time": l.expire_time,
                    "created_time": l.created_time,
                })
            })
            .collect();
        tx.commit().await?;
        Ok(json!({
            "service": "points",
            "member_id": member,
            "export_time": at,
            "balance": balance,
            "transactions": entries,
            "lots": lots,
        }))
    }
}

//! The member's coupon data for a data-subject access request (개인정보 열람): what the
//! projection knows of them, every coupon with its redemptions, and every voucher with its
//! ledger, as one JSON document the privacy service merges with the other services'.
use serde_json::json;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{CouponApp, now};
use crate::store::{members, redemptions, vouchers};

impl CouponApp {
    /// Everything the coupon service holds about `member`. A member it never saw (or another
    /// tenant's) gets an empty document.
    pub async fn export_member_data(
        &self,
        tenant: TenantId,
        member: Uuid,
    ) -> Result<serde_json::Value, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let projection = members::get(&tx, tenant, member).await?.map(|m| {
            json!({
                "status": m.status,
                "birth_month_day": m.birth_month_day,
                "join_time": m.join_time,
            })
        });
        let coupons = self
            .views(
                &tx,
                tenant,
                crate::store::coupons::all_of_member(&tx, tenant, member).await?,
            )
            .await?;
        let redemptions = redemptions::of_member(&tx, tenant, member).await?;
        let mut wallet = Vec::with_capacity(coupons.len());
        for c in coupons {
            let used: Vec<_> = redemptions
                .iter()
                .filter(|r| r.coupon_id == c.coupon.id)
                .map(|r| {
                    json!({
                        "pos_transaction_id": r.pos_transaction_id,
                        "store_code": r.store_code,
                        "amount_krw": r.amount_krw,
                        "discount_krw": r.discount_krw,
                        "status": r.status,
                        "redeem_time": r.redeem_time,
                        "cancel_time": r.cancel_time,
                    })
                })
                .collect();
            wallet.push(json!({
                "coupon": c.coupon,
                "template_name": c.template_name,
                "redemptions": used,
            }));
        }
        let mut held = Vec::new();
        for v in vouchers::of_member(&tx, tenant, member).await? {
            let moves = vouchers::all_moves(&tx, tenant, v.id).await?;
            held.push(json!({ "voucher": v, "transactions": moves }));
        }
        tx.commit().await?;
        Ok(json!({
            "service": "coupon",
            "member_id": member,
            "export_time": now(),
            "member": projection,
            "coupons": wallet,
            "vouchers": held,
        }))
    }
}

//! Data-subject requests served by the member service: the export of everything it holds
//! about a member (PII in clear, logged as an access), and the erasure of a member's PII,
//! which keeps the member id and cards as the pseudonymous reference ledgers point at.
use serde_json::json;
use spharos_kit::{ServiceError, TenantId};
use uuid::Uuid;

use super::{
    MemberApp, UnmaskAudit, emit, member_not_found,
    members::{open, profile},
    now,
};
use crate::{
    domain::member::{MemberPii, MemberStatus, MemberView},
    events,
    store::{cards, grades, members, purchases},
};

impl MemberApp {
    /// Everything this service holds about a member, as one JSON object with the PII in
    /// clear (what a data-subject access request is for). The access is written to the
    /// access log (`privacy.pii_accessed`) in the same transaction as the read.
    pub async fn export_member_data(
        &self,
        tenant: TenantId,
        id: Uuid,
        audit: &UnmaskAudit,
    ) -> Result<serde_json::Value, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let row = members::get(&tx, tenant, id)
            .await?
            .ok_or_else(member_not_found)?;
        let dk = self.data_key(&tx, tenant).await?;
        let pii = open(&dk, &row)?;
        let grade_table = grades::list(&tx, tenant).await?;
        let p = profile(&row, &grade_table)?;
        let all_cards = cards::list_for_member(&tx, tenant, id).await?;
        let bought = purchases::for_member(&tx, tenant, id).await?;
        let clear = pii.clear();
        let document = json!({
            "member_id": p.id,
            "status": p.status.as_str(),
            "name": clear.name,
            "phone": clear.phone,
            "email": clear.email,
            "birth_date": clear.birth_date,
            "gender": p.gender.as_str(),
            "join_store_id": p.join_store_id,
            "join_channel": p.join_channel.as_str(),
            "grade": p.grade_name,
            "join_time": p.join_time,
            "withdraw_time": p.withdraw_time,
            "anonymised_time": p.anonymised_time,
            "cards": all_cards.iter().map(|c| json!({
                "card_number": c.number,
                "card_type": c.card_type.as_str(),
                "status": c.status.as_str(),
                "issue_time": c.issue_time,
            })).collect::<Vec<_>>(),
            "purchases": bought.iter().map(|b| json!({
                "store_code": b.store_code,
                "pos_transaction_id": b.pos_transaction_id,
                "amount_krw": b.amount_krw,
                "occurred_time": b.occurred_time,
            })).collect::<Vec<_>>(),
        });
        emit(
            &tx,
            events::pii_accessed(tenant, id, &pii.present_fields(), audit, now()),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %id, actor = %audit.actor, "member data exported for a data-subject request");
        Ok(document)
    }

    /// Erases a member's PII for good: an ACTIVE member is withdrawn first
    /// (`member.withdrawn`); name, phone, e-mail, birth date and the withdrawal reason are
    /// overwritten, the phone's blind index cleared, `anonymised_time` set, and
    /// `member.erased` emitted. The id, cards and purchases stay: they hold no PII and other
    /// services' ledgers refer to them. Erasing an erased member changes nothing.
    pub async fn erase_member(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<MemberView, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let mut row = members::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(member_not_found)?;
        if row.anonymised_time.is_none() {
            let t = now();
            if row.status == MemberStatus::Active.as_str() {
                row.status = MemberStatus::Withdrawn.as_str().to_string();
                row.withdraw_time = Some(t);
                emit(&tx, events::member_withdrawn(tenant, id, "", t)).await?;
            }
            // Overwritten, not just hidden: nothing decryptable is left behind, and an empty
            // index matches no phone.
            row.name_enc = Vec::new();
            row.phone_enc = Vec::new();
            row.email_enc = None;
            row.birth_date_enc = None;
            row.phone_index = String::new();
            row.active_phone_index = None;
            row.withdraw_reason = None;
            row.anonymised_time = Some(t);
            row.updated_time = t;
            members::update(&tx, &row).await?;
            emit(&tx, events::member_erased(tenant, id, t)).await?;
            tracing::info!(tenant_id = %tenant, member_id = %id, "member PII erased");
        }
        let result = self
            .view_with(&tx, tenant, &row, &MemberPii::erased(), false)
            .await?;
        tx.commit().await?;
        Ok(result)
    }
}

//! Card use cases: issue, report lost, replace, list. Card numbers are random with a Luhn
//! check digit; the unique constraint catches the rare collision and another number is drawn.
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    idempotency::{self, Claim, fingerprint},
};
use uuid::Uuid;

use super::{MemberApp, emit, from_json, json, member_not_found, member_withdrawn, now};
use crate::{
    domain::{
        card::{self, Card, CardStatus, CardType},
        member::MemberStatus,
    },
    events,
    store::{cards, members},
};

const ISSUE_SCOPE: &str = "member.issue_card";
const REPLACE_SCOPE: &str = "member.replace_card";
/// With 10^15 numbers per tenant a second collision in a row is already absurdly unlikely;
/// the bound only keeps a bug from looping forever.
const MAX_NUMBER_ATTEMPTS: usize = 10;

fn card_not_found() -> ServiceError {
    ServiceError::not_found("카드를 찾을 수 없습니다 (card not found)")
}

fn checked_number(input: &str) -> Result<String, ServiceError> {
    let n = card::normalize_number(input);
    if card::is_valid_number(&n) {
        Ok(n)
    } else {
        Err(ServiceError::invalid(
            "card_number",
            "카드 번호는 검증 숫자를 포함한 16자리입니다 (must be 16 digits with a valid check digit)",
        ))
    }
}

/// The canonical request of an idempotent card write, for its fingerprint.
#[derive(Serialize)]
struct CardRequest<'a> {
    subject: &'a str,
    card_type: Option<CardType>,
}

/// What `replace_card` returns (and stores for a replay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replaced {
    pub old_card: Card,
    pub new_card: Card,
}

impl MemberApp {
    /// Issues another card to an ACTIVE member and emits `member.card_issued`.
    pub async fn issue_card(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        card_type: CardType,
        idempotency_key: &str,
    ) -> Result<Card, ServiceError> {
        let request = CardRequest {
            subject: &member_id.to_string(),
            card_type: Some(card_type),
        };
        let fp = fingerprint(&json(&request)?);
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, ISSUE_SCOPE, idempotency_key, &fp).await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let member = members::get(&tx, tenant, member_id)
            .await?
            .ok_or_else(member_not_found)?;
        if member.status != MemberStatus::Active.as_str() {
            return Err(member_withdrawn());
        }
        let card = self
            .issue_card_in(&tx, tenant, member_id, card_type, None, now())
            .await?;
        idempotency::complete(&tx, tenant, ISSUE_SCOPE, idempotency_key, &json(&card)?).await?;
        tx.commit().await?;
        Ok(card)
    }

    /// Marks an ACTIVE card LOST (it stops finding its member) and emits `member.card_lost`.
    /// Reporting a lost card again answers with it unchanged.
    pub async fn report_card_lost(
        &self,
        tenant: TenantId,
        card_number: &str,
    ) -> Result<Card, ServiceError> {
        let number = checked_number(card_number)?;
        let tx = self.db.begin(tenant).await?;
        let mut card = cards::get_by_number_for_update(&tx, tenant, &number)
            .await?
            .ok_or_else(card_not_found)?;
        match card.status {
            CardStatus::Lost => {}
            CardStatus::Replaced => {
                return Err(ServiceError::precondition(
                    "CARD_REPLACED",
                    "이미 재발급된 카드입니다 (the card was already replaced)",
                ));
            }
            CardStatus::Active => {
                cards::set_status(&tx, tenant, card.id, CardStatus::Lost, now()).await?;
                card.status = CardStatus::Lost;
                emit(&tx, events::card_lost(tenant, &card)).await?;
            }
        }
        tx.commit().await?;
        Ok(card)
    }

    /// Issues a new card in place of an ACTIVE or LOST one: the old card becomes REPLACED
    /// (or stays LOST), the new one carries `replaces_card_id`.
    pub async fn replace_card(
        &self,
        tenant: TenantId,
        card_number: &str,
        card_type: Option<CardType>,
        idempotency_key: &str,
    ) -> Result<Replaced, ServiceError> {
        let number = checked_number(card_number)?;
        let request = CardRequest {
            subject: &number,
            card_type,
        };
        let fp = fingerprint(&json(&request)?);
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, REPLACE_SCOPE, idempotency_key, &fp).await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        let mut old = cards::get_by_number_for_update(&tx, tenant, &number)
            .await?
            .ok_or_else(card_not_found)?;
        if old.status == CardStatus::Replaced {
            return Err(ServiceError::precondition(
                "CARD_REPLACED",
                "이미 재발급된 카드입니다 (the card was already replaced)",
            ));
        }
        let member = members::get(&tx, tenant, old.member_id)
            .await?
            .ok_or_else(member_not_found)?;
        if member.status != MemberStatus::Active.as_str() {
            return Err(member_withdrawn());
        }
        let t = now();
        let after = old.status.after_replacement();
        if after != old.status {
            cards::set_status(&tx, tenant, old.id, after, t).await?;
            old.status = after;
        }
        let new_card = self
            .issue_card_in(
                &tx,
                tenant,
                old.member_id,
                card_type.unwrap_or(old.card_type),
                Some(old.id),
                t,
            )
            .await?;
        let result = Replaced {
            old_card: old,
            new_card,
        };
        idempotency::complete(&tx, tenant, REPLACE_SCOPE, idempotency_key, &json(&result)?).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Every card of a member, any status, oldest first.
    pub async fn list_cards(
        &self,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<Vec<Card>, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if !members::exists(&tx, tenant, member_id).await? {
            return Err(member_not_found());
        }
        let list = cards::list_for_member(&tx, tenant, member_id).await?;
        tx.commit().await?;
        Ok(list)
    }

    /// Draws numbers until one is free, stores the card and emits `member.card_issued`.
    pub(super) async fn issue_card_in(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
        card_type: CardType,
        replaces: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<Card, ServiceError> {
        for attempt in 1..=MAX_NUMBER_ATTEMPTS {
            let number = card::generate_number(&mut rand::thread_rng());
            let card = Card {
                id: Uuid::now_v7(),
                member_id,
                number,
                card_type,
                status: CardStatus::Active,
                replaces_card_id: replaces,
                issue_time: at,
            };
            // ON CONFLICT DO NOTHING rather than catching the error: on PostgreSQL a failed
            // statement would abort the whole transaction.
            if cards::insert(tx, tenant, &card, at).await? {
                emit(tx, events::card_issued(tenant, &card)).await?;
                return Ok(card);
            }
            tracing::warn!(tenant_id = %tenant, attempt, "card number collision; drawing another");
        }
        Err(ServiceError::internal(format!(
            "no free card number after {MAX_NUMBER_ATTEMPTS} attempts"
        )))
    }
}

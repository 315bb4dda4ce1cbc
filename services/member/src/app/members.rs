//! Member use cases: join, get, find, update, withdraw, list. PII is encrypted here with the
//! tenant's data key (bound to field and member id) and decrypted only to mask or to show in
//! clear after an audited unmask.
use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    crypto::DataKey,
    db::is_unique_violation,
    idempotency::{self, Claim},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{
    Access, MemberApp, emit, from_json, json, member_not_found, member_withdrawn, now,
    violations_error,
};
use crate::{
    domain::{
        card::{self, Card, CardStatus},
        grade::{self, Grade},
        member::{
            Gender, JoinChannel, JoinForm, MemberFilter, MemberLookup, MemberPatchForm, MemberPii,
            MemberProfile, MemberStatus, MemberView, SignupConsent, check_signup_consents,
        },
        phone,
    },
    events,
    store::{
        cards,
        grades::{self as grade_rows},
        members::{self, MemberRow},
        stores,
    },
};

const JOIN_SCOPE: &str = "member.join";
const MAX_WITHDRAW_REASON_CHARS: usize = 200;

/// What `join` returns: the member (masked) and the card issued with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub member: MemberView,
    pub card: Card,
}

/// What an idempotent join stores for its replay: ids and the card, never PII (the stored
/// response is not encrypted).
#[derive(Serialize, Deserialize)]
struct JoinRecord {
    member_id: Uuid,
    card: Card,
}

fn phone_taken() -> ServiceError {
    ServiceError::already_exists(
        "PHONE_ALREADY_REGISTERED",
        "이미 가입된 휴대폰 번호입니다 (phone already registered)",
    )
}

fn context(field: &str, id: Uuid) -> String {
    format!("member.{field}:{id}")
}

/// Encrypts every PII field of `pii` into `row`, each bound to its field and member id.
fn seal(dk: &DataKey, row: &mut MemberRow, pii: &MemberPii) {
    let id = row.id;
    row.name_enc = dk.encrypt(&pii.name, &context("name", id));
    row.phone_enc = dk.encrypt(&pii.phone, &context("phone", id));
    row.email_enc = pii
        .email
        .as_ref()
        .map(|e| dk.encrypt(e, &context("email", id)));
    row.birth_date_enc = pii
        .birth_date
        .map(|d| dk.encrypt(&d.to_string(), &context("birth_date", id)));
}

pub(super) fn open(dk: &DataKey, row: &MemberRow) -> Result<MemberPii, ServiceError> {
    if row.anonymised_time.is_some() {
        // Erased: the ciphertexts were overwritten and there is nothing left to decrypt.
        return Ok(MemberPii::erased());
    }
    let id = row.id;
    let fail =
        |field: &str| ServiceError::internal(format!("member {id}: {field} does not decrypt"));
    let name = dk
        .decrypt(&row.name_enc, &context("name", id))
        .map_err(|_| fail("name"))?;
    let phone = dk
        .decrypt(&row.phone_enc, &context("phone", id))
        .map_err(|_| fail("phone"))?;
    let email = row
        .email_enc
        .as_ref()
        .map(|c| dk.decrypt(c, &context("email", id)))
        .transpose()
        .map_err(|_| fail("email"))?;
    let birth_date = row
        .birth_date_enc
        .as_ref()
        .map(|c| {
            dk.decrypt(c, &context("birth_date", id))
                .ok()
                .and_then(|s| NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok())
        })
        .map(|d| d.ok_or_else(|| fail("birth_date")))
        .transpose()?;
    Ok(MemberPii {
        name,
        phone,
        email,
        birth_date,
    })
}

pub(super) fn profile(row: &MemberRow, grades: &[Grade]) -> Result<MemberProfile, ServiceError> {
    Ok(MemberProfile {
        id: row.id,
        status: MemberStatus::parse(&row.status).ok_or_else(|| {
            ServiceError::internal(format!(
                "member {}: unknown status {:?}",
                row.id, row.status
            ))
        })?,
        gender: Gender::parse(&row.gender),
        join_store_id: row.join_store_id,
        join_channel: JoinChannel::parse(&row.join_channel),
        grade_id: row.grade_id,
        grade_name: row
            .grade_id
            .and_then(|g| grades.iter().find(|x| x.id == g))
            .map(|g| g.name.clone()),
        join_time: row.join_time,
        update_time: row.updated_time,
        withdraw_time: row.withdraw_time,
        anonymised_time: row.anonymised_time,
    })
}

pub(super) fn view(
    row: &MemberRow,
    pii: &MemberPii,
    grades: &[Grade],
    cards: Vec<Card>,
    clear: bool,
) -> Result<MemberView, ServiceError> {
    Ok(MemberView {
        profile: profile(row, grades)?,
        pii: if clear { pii.clear() } else { pii.masked() },
        unmasked: clear,
        cards,
    })
}

impl MemberApp {
    /// Signs a member up: validates every field, checks the join store, encrypts the PII,
    /// stores the member with the tenant's base grade, issues one card, and emits
    /// `member.joined` and `member.card_issued`. A retry with the same idempotency key and
    /// body returns the first result; the same key with another body is `AlreadyExists`.
    pub async fn join(&self, tenant: TenantId, form: JoinForm) -> Result<Joined, ServiceError> {
        self.join_with_consents(tenant, form, &[], None).await
    }

    /// [`MemberApp::join`] with the consent items answered on the sign-up form. When the
    /// privacy module is deployed, the answers are checked with it before anything is
    /// created (a required item not granted fails with `CONSENT_REQUIRED`), and they travel in
    /// `member.joined` for the privacy service to record. `authorization` is the caller's
    /// header, forwarded to the privacy service.
    pub async fn join_with_consents(
        &self,
        tenant: TenantId,
        form: JoinForm,
        consents: &[SignupConsent],
        authorization: Option<&str>,
    ) -> Result<Joined, ServiceError> {
        let mut validated = form.validate(self.today());
        let consents = match &mut validated {
            Ok(_) => {
                let mut v = spharos_kit::Violations::new();
                let consents = check_signup_consents(consents, &mut v);
                if !v.is_empty() {
                    return Err(violations_error(v));
                }
                consents
            }
            Err(v) => check_signup_consents(consents, v),
        };
        if validated.is_ok()
            && let Some(check) = &self.consent_check
        {
            // Before the transaction: no connection is held while another service answers.
            check.check(tenant, &consents, authorization).await?;
        }
        let tx = self.db.begin(tenant).await?;
        // The store check needs the database; it joins the other violations so the caller
        // hears about every bad field at once.
        let store_missing = match Uuid::parse_str(&form.join_store_id) {
            Ok(id) => !stores::exists(&tx, tenant, id).await?,
            Err(_) => false,
        };
        let join = match validated {
            Ok(_) if store_missing => {
                return Err(ServiceError::invalid(
                    "join_store_id",
                    "매장을 찾을 수 없습니다 (store not found)",
                ));
            }
            Ok(join) => join,
            Err(mut v) => {
                if store_missing {
                    v.add("join_store_id", "매장을 찾을 수 없습니다 (store not found)");
                }
                return Err(violations_error(v));
            }
        };
        let dk = self.data_key(&tx, tenant).await?;
        // Keyed with the tenant's index key: the request holds PII, and a plain hash of a
        // phone number is easy to reverse by brute force.
        let mut canonical = format!("{JOIN_SCOPE}\n{}", join.canonical());
        if !consents.is_empty() {
            // Another set of answers is another request (and a join without any keeps the
            // fingerprint it always had).
            canonical.push('\n');
            canonical.push_str(&serde_json::to_string(&consents).map_err(ServiceError::internal)?);
        }
        let fingerprint = dk.blind_index(&canonical);
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, JOIN_SCOPE, &form.idempotency_key, &fingerprint).await?
        {
            let record: JoinRecord = from_json(&stored)?;
            let row = members::get(&tx, tenant, record.member_id)
                .await?
                .ok_or_else(|| ServiceError::internal("the member of a stored join is gone"))?;
            let member = self.view_of(&tx, tenant, &dk, &row, false).await?;
            tx.commit().await?;
            return Ok(Joined {
                member,
                card: record.card,
            });
        }

        let t = now();
        let id = Uuid::now_v7();
        let grades = grade_rows::list(&tx, tenant).await?;
        let phone_index = dk.blind_index(&join.pii.phone);
        let mut row = MemberRow {
            tenant_id: tenant.as_uuid(),
            id,
            status: MemberStatus::Active.as_str().to_string(),
            name_enc: Vec::new(),
            phone_enc: Vec::new(),
            email_enc: None,
            birth_date_enc: None,
            active_phone_index: Some(phone_index.clone()),
            phone_index,
            gender: join.gender.as_str().to_string(),
            join_store_id: join.join_store_id,
            join_channel: join.join_channel.as_str().to_string(),
            grade_id: grade::base(&grades).map(|g| g.id),
            join_time: t,
            withdraw_time: None,
            withdraw_reason: None,
            anonymised_time: None,
            created_time: t,
            updated_time: t,
        };
        seal(&dk, &mut row, &join.pii);
        if !members::insert(&tx, &row).await? {
            return Err(phone_taken());
        }
        let card = self
            .issue_card_in(&tx, tenant, id, join.card_type, None, t)
            .await?;
        let member = view(&row, &join.pii, &grades, vec![card.clone()], false)?;
        emit(
            &tx,
            events::member_joined(
                tenant,
                &member.profile,
                join.pii.birth_month_day(),
                &consents,
            ),
        )
        .await?;
        let record = JoinRecord {
            member_id: id,
            card: card.clone(),
        };
        idempotency::complete(
            &tx,
            tenant,
            JOIN_SCOPE,
            &form.idempotency_key,
            &json(&record)?,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %id, card_id = %card.id, "member joined");
        Ok(Joined { member, card })
    }

    /// A member by id, whatever their status.
    pub async fn get_member(
        &self,
        tenant: TenantId,
        id: Uuid,
        access: &Access,
    ) -> Result<MemberView, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let row = members::get(&tx, tenant, id)
            .await?
            .ok_or_else(member_not_found)?;
        self.show(tx, tenant, row, access).await
    }

    /// The ACTIVE member holding this ACTIVE card, or the ACTIVE member with this phone.
    pub async fn find_member(
        &self,
        tenant: TenantId,
        key: MemberLookup,
        access: &Access,
    ) -> Result<MemberView, ServiceError> {
        let key = match key {
            MemberLookup::CardNumber(n) => {
                let n = card::normalize_number(&n);
                if !card::is_valid_number(&n) {
                    return Err(ServiceError::invalid(
                        "card_number",
                        "카드 번호는 검증 숫자를 포함한 16자리입니다 (must be 16 digits with a valid check digit)",
                    ));
                }
                MemberLookup::CardNumber(n)
            }
            MemberLookup::Phone(p) => MemberLookup::Phone(
                phone::normalize(&p)
                    .ok_or_else(|| ServiceError::invalid("phone", phone::INVALID_PHONE))?,
            ),
        };
        let tx = self.db.begin(tenant).await?;
        let row = match &key {
            MemberLookup::CardNumber(n) => match cards::get_active_by_number(&tx, tenant, n).await?
            {
                Some(card) => members::get(&tx, tenant, card.member_id)
                    .await?
                    .filter(|m| m.status == MemberStatus::Active.as_str()),
                None => None,
            },
            MemberLookup::Phone(p) => {
                let dk = self.data_key(&tx, tenant).await?;
                members::find_active_by_phone_index(&tx, tenant, &dk.blind_index(p)).await?
            }
        };
        let row = row.ok_or_else(member_not_found)?;
        self.show(tx, tenant, row, access).await
    }

    /// Changes the fields the mask named; emits `member.updated` with the names of the
    /// fields that actually changed (none: no event).
    pub async fn update_member(
        &self,
        tenant: TenantId,
        id: Uuid,
        form: MemberPatchForm,
    ) -> Result<MemberView, ServiceError> {
        let patch = form.validate(self.today())?;
        let tx = self.db.begin(tenant).await?;
        let mut row = members::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(member_not_found)?;
        if row.status != MemberStatus::Active.as_str() {
            return Err(member_withdrawn());
        }
        let dk = self.data_key(&tx, tenant).await?;
        let mut pii = open(&dk, &row)?;
        let mut gender = Gender::parse(&row.gender);
        let changed = patch.apply(&mut pii, &mut gender);
        if !changed.is_empty() {
            if changed.contains(&"phone") {
                let index = dk.blind_index(&pii.phone);
                if let Some(other) =
                    members::find_active_by_phone_index(&tx, tenant, &index).await?
                    && other.id != id
                {
                    return Err(phone_taken());
                }
                row.phone_index = index.clone();
                row.active_phone_index = Some(index);
            }
            seal(&dk, &mut row, &pii);
            row.gender = gender.as_str().to_string();
            row.updated_time = now();
            // The pre-check above gives the usual answer; the constraint settles a race.
            members::update(&tx, &row).await.map_err(|e| {
                if is_unique_violation(&e) {
                    phone_taken()
                } else {
                    e.into()
                }
            })?;
            emit(&tx, events::member_updated(tenant, id, &changed)).await?;
        }
        let result = self.view_with(&tx, tenant, &row, &pii, false).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// Withdraws a member: status WITHDRAWN, the phone freed for a new sign-up, and
    /// `member.withdrawn` emitted. PII stays (encrypted) until the privacy service erases it.
    pub async fn withdraw(
        &self,
        tenant: TenantId,
        id: Uuid,
        reason: &str,
    ) -> Result<MemberView, ServiceError> {
        let reason = reason.trim();
        if reason.chars().count() > MAX_WITHDRAW_REASON_CHARS {
            return Err(ServiceError::invalid(
                "reason",
                "탈퇴 사유는 200자 이하입니다 (at most 200 characters)",
            ));
        }
        let tx = self.db.begin(tenant).await?;
        let mut row = members::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(member_not_found)?;
        if row.status != MemberStatus::Active.as_str() {
            return Err(member_withdrawn());
        }
        let t = now();
        row.status = MemberStatus::Withdrawn.as_str().to_string();
        row.active_phone_index = None;
        row.withdraw_time = Some(t);
        row.withdraw_reason = (!reason.is_empty()).then(|| reason.to_string());
        row.updated_time = t;
        members::update(&tx, &row).await?;
        emit(&tx, events::member_withdrawn(tenant, id, reason, t)).await?;
        let dk = self.data_key(&tx, tenant).await?;
        let pii = open(&dk, &row)?;
        let result = self.view_with(&tx, tenant, &row, &pii, false).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %id, "member withdrawn");
        Ok(result)
    }

    /// One page of members (masked) and the next page token ("" at the end).
    pub async fn list_members(
        &self,
        tenant: TenantId,
        filter: MemberFilter,
        page: PageRequest,
    ) -> Result<(Vec<MemberView>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = members::list(&tx, tenant, &filter, &page).await?;
        let (rows, next) = page.finish(rows, |r| r.id);
        let dk = self.data_key(&tx, tenant).await?;
        let grades = grade_rows::list(&tx, tenant).await?;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut cards_by_member: HashMap<Uuid, Vec<Card>> = HashMap::new();
        for c in cards::active_for_members(&tx, tenant, &ids).await? {
            cards_by_member.entry(c.member_id).or_default().push(c);
        }
        let views = rows
            .iter()
            .map(|r| {
                let pii = open(&dk, r)?;
                view(
                    r,
                    &pii,
                    &grades,
                    cards_by_member.remove(&r.id).unwrap_or_default(),
                    false,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok((views, next))
    }

    /// Builds the response for a read and, for a clear view, writes the access-log event in
    /// the same transaction, committed before the answer is returned: no PII leaves unlogged.
    async fn show(
        &self,
        tx: Tx,
        tenant: TenantId,
        row: MemberRow,
        access: &Access,
    ) -> Result<MemberView, ServiceError> {
        let dk = self.data_key(&tx, tenant).await?;
        let pii = open(&dk, &row)?;
        let clear = matches!(access, Access::Clear(_));
        let result = self.view_with(&tx, tenant, &row, &pii, clear).await?;
        if let Access::Clear(audit) = access {
            emit(
                &tx,
                events::pii_accessed(tenant, row.id, &pii.present_fields(), audit, now()),
            )
            .await?;
            tx.commit().await?;
            tracing::info!(
                tenant_id = %tenant,
                member_id = %row.id,
                actor = %audit.actor,
                operation = %audit.operation,
                "member PII shown in clear"
            );
        } else {
            tx.commit().await?;
        }
        Ok(result)
    }

    async fn view_of(
        &self,
        tx: &Tx,
        tenant: TenantId,
        dk: &DataKey,
        row: &MemberRow,
        clear: bool,
    ) -> Result<MemberView, ServiceError> {
        let pii = open(dk, row)?;
        self.view_with(tx, tenant, row, &pii, clear).await
    }

    pub(super) async fn view_with(
        &self,
        tx: &Tx,
        tenant: TenantId,
        row: &MemberRow,
        pii: &MemberPii,
        clear: bool,
    ) -> Result<MemberView, ServiceError> {
        let grades = grade_rows::list(tx, tenant).await?;
        let active = cards::active_for_members(tx, tenant, &[row.id]).await?;
        debug_assert!(active.iter().all(|c| c.status == CardStatus::Active));
        view(row, pii, &grades, active, clear)
    }
}

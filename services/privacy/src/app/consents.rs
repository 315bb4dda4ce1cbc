//! Members' consents: grant and withdraw (each with its version, collection channel, actor and
//! time, the history kept forever), the current state, the campaign service's bulk question,
//! and what the member events mean here (sign-up answers, withdrawal, erasure).
use chrono::{DateTime, Utc};
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{PrivacyApp, emit, member_not_found, now};
use crate::{
    domain::consent::{
        self, AdRole, Answer, ChangeSource, CollectionChannel, ConsentChange, ConsentTypeVersion,
        MemberConsent, SendChannel,
    },
    events,
    store::{
        consent_types,
        consents::{self, StateChange},
        dsr, members, settings,
    },
};

/// Candidates per bulk question (the API's documented limit).
pub const MAX_CANDIDATES: usize = 1_000_000;

/// The answer to "who may receive this advertisement".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisingAnswer {
    /// Bit i set when candidate i may receive it.
    pub bitmap: Vec<u8>,
    pub allowed: i64,
    /// The send time fell in the night-time window.
    pub night_time: bool,
}

/// A sign-up as `member.joined` tells it.
#[derive(Debug, Clone)]
pub struct MemberJoin {
    pub member_id: Uuid,
    pub join_time: DateTime<Utc>,
    pub channel: CollectionChannel,
    pub consents: Vec<Answer>,
}

fn consent_type_not_found() -> ServiceError {
    ServiceError::not_found("동의 항목을 찾을 수 없습니다 (consent type not found)")
}

impl PrivacyApp {
    /// The type's version in force today, or why there is none.
    async fn version_in_force(
        &self,
        tx: &Tx,
        tenant: TenantId,
        code: &str,
    ) -> Result<ConsentTypeVersion, ServiceError> {
        let versions = consent_types::versions_of(tx, tenant, code).await?;
        if versions.is_empty() {
            return Err(consent_type_not_found());
        }
        consent::in_force(&versions, self.today())
            .cloned()
            .ok_or_else(|| {
                ServiceError::precondition(
                    "CONSENT_TYPE_NOT_IN_FORCE",
                    "아직 시행되지 않은 동의 항목입니다 (the consent type's first version is not in force yet)",
                )
            })
    }

    /// Records that the member grants `code` (the version in force today). Granting what is
    /// already granted in that version changes nothing.
    pub async fn grant_consent(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        code: &str,
        channel: CollectionChannel,
        actor: &str,
    ) -> Result<MemberConsent, ServiceError> {
        self.answer(tenant, member_id, code, true, channel, actor)
            .await
    }

    /// Records that the member withdraws (or declines) `code`. Withdrawing what is not
    /// granted changes nothing; the bulk advertising query sees it at once.
    pub async fn withdraw_consent(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        code: &str,
        channel: CollectionChannel,
        actor: &str,
    ) -> Result<MemberConsent, ServiceError> {
        self.answer(tenant, member_id, code, false, channel, actor)
            .await
    }

    async fn answer(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        code: &str,
        granted: bool,
        channel: CollectionChannel,
        actor: &str,
    ) -> Result<MemberConsent, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let member = members::get_for_update(&tx, tenant, member_id)
            .await?
            .ok_or_else(member_not_found)?;
        if granted && member.status != members::ACTIVE {
            return Err(ServiceError::precondition(
                "MEMBER_WITHDRAWN",
                "탈퇴한 회원은 동의할 수 없습니다 (the member has withdrawn)",
            ));
        }
        let version = self.version_in_force(&tx, tenant, code).await?;
        let current = consents::get(&tx, tenant, member_id, code).await?;
        let unchanged = match &current {
            Some(c) if granted => c.granted && c.version == version.version,
            Some(c) => !c.granted,
            None => false,
        };
        if let (true, Some(c)) = (unchanged, current) {
            tx.commit().await?;
            return Ok(c);
        }
        let change = consents::record(
            &tx,
            tenant,
            &StateChange {
                member_id,
                code: &version.code,
                granted,
                version: version.version,
                collection_channel: channel,
                actor,
                advertising: version.role.is_advertising(),
                source: ChangeSource::Request,
                at: now(),
            },
        )
        .await?;
        emit(&tx, events::consent_changed(tenant, &change, version.role)).await?;
        let state = consents::get(&tx, tenant, member_id, code)
            .await?
            .ok_or_else(|| ServiceError::internal("a consent state just written is missing"))?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %member_id, code = %code, granted, "consent recorded");
        Ok(state)
    }

    /// Every item the member answered (current state), in code order.
    pub async fn member_consents(
        &self,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<Vec<MemberConsent>, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if members::get(&tx, tenant, member_id).await?.is_none() {
            return Err(member_not_found());
        }
        let states = consents::of_member(&tx, tenant, member_id).await?;
        tx.commit().await?;
        Ok(states)
    }

    /// One page of the member's history, oldest first.
    pub async fn consent_history(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        page: PageRequest,
    ) -> Result<(Vec<ConsentChange>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if members::get(&tx, tenant, member_id).await?.is_none() {
            return Err(member_not_found());
        }
        let rows = consents::history(&tx, tenant, member_id, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |c| c.id))
    }

    /// Which candidates may receive an advertisement on `channel` at `at`: the channel's
    /// consent granted, and between 21:00 and 08:00 tenant time a night-time consent too.
    pub async fn filter_advertising_recipients(
        &self,
        tenant: TenantId,
        channel: SendChannel,
        at: DateTime<Utc>,
        packed_ids: &[u8],
    ) -> Result<AdvertisingAnswer, ServiceError> {
        let marketing = channel.marketing_channel()?;
        let candidates = consent::unpack_member_ids(packed_ids, MAX_CANDIDATES)?;
        let night = consent::is_night(at, self.zone);
        let tx = self.db.begin(tenant).await?;
        let roles = consent_types::roles(&tx, tenant).await?;
        let requirement = consent::advertising_requirement(&roles, marketing, night);
        let positions =
            consents::advertising_allowed(&tx, tenant, &candidates, &requirement).await?;
        tx.commit().await?;
        Ok(AdvertisingAnswer {
            allowed: positions.len() as i64,
            bitmap: consent::bitmap(candidates.len(), positions),
            night_time: night,
        })
    }

    /// The campaign service sent a re-confirmation notice: it is recorded and the consent's
    /// next two-year cycle starts at `sent`.
    pub async fn record_reconfirmation_sent(
        &self,
        tenant: TenantId,
        notice_id: Uuid,
        sent: DateTime<Utc>,
        channel: &str,
    ) -> Result<consents::NoticeRow, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let notice = consents::notice_for_update(&tx, tenant, notice_id)
            .await?
            .ok_or_else(|| {
                ServiceError::not_found("재동의 안내를 찾을 수 없습니다 (notice not found)")
            })?;
        if notice.sent_time.is_some() {
            return Err(ServiceError::precondition(
                "NOTICE_ALREADY_SENT",
                "이미 발송이 기록된 안내입니다 (this notice was already reported sent)",
            ));
        }
        if sent < notice.emit_time - chrono::Duration::minutes(5) {
            return Err(ServiceError::invalid(
                "sent_time",
                "안내 발생 이전일 수 없습니다 (must not be before the notice was due)",
            ));
        }
        consents::mark_notice_sent(&tx, &notice, sent, channel).await?;
        let updated = consents::notice_for_update(&tx, tenant, notice_id)
            .await?
            .ok_or_else(|| ServiceError::internal("a notice just updated is missing"))?;
        tx.commit().await?;
        Ok(updated)
    }

    /// `member.joined`: the member becomes known and the consents answered at sign-up are
    /// recorded with the version in force at the join time (in the consumer's transaction).
    pub(crate) async fn record_member_joined(
        &self,
        tx: &Tx,
        tenant: TenantId,
        join: &MemberJoin,
    ) -> Result<(), ServiceError> {
        let t = now();
        settings::register_tenant(tx, tenant, t).await?;
        if !members::insert_joined(tx, tenant, join.member_id, join.join_time, t).await? {
            // Known already (its withdrawal arrived first): its consents are moot.
            return Ok(());
        }
        let date = spharos_kit::time::local_date(join.join_time, self.zone);
        let actor = format!("member:{}", join.member_id);
        for answer in &join.consents {
            let versions = consent_types::versions_of(tx, tenant, &answer.code).await?;
            let Some(version) = consent::in_force(&versions, date) else {
                tracing::warn!(tenant_id = %tenant, member_id = %join.member_id, "sign-up consent of a type not in force skipped");
                continue;
            };
            let change = consents::record(
                tx,
                tenant,
                &StateChange {
                    member_id: join.member_id,
                    code: &version.code,
                    granted: answer.granted,
                    version: version.version,
                    collection_channel: join.channel,
                    actor: &actor,
                    advertising: version.role.is_advertising(),
                    source: ChangeSource::Signup,
                    at: join.join_time,
                },
            )
            .await?;
            emit(tx, events::consent_changed(tenant, &change, version.role)).await?;
        }
        Ok(())
    }

    /// `member.withdrawn`: the member is marked withdrawn (the retention clock starts) and
    /// every consent they granted ends.
    pub(crate) async fn record_member_withdrawn(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let t = now();
        settings::register_tenant(tx, tenant, t).await?;
        let known = members::get(tx, tenant, member_id).await?;
        // An erasure may have overtaken the withdrawal event: the member stays erased.
        if known.is_none_or(|m| m.status != members::ERASED) {
            members::mark_withdrawn(tx, tenant, member_id, at, t).await?;
        }
        self.end_consents(tx, tenant, member_id, at).await
    }

    /// Withdraws every consent the member still grants (the member left or was erased), each
    /// with its history entry and `consent.changed`.
    pub(crate) async fn end_consents(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let granted = consents::granted_of_member(tx, tenant, member_id).await?;
        if granted.is_empty() {
            return Ok(());
        }
        let roles = consent_types::roles(tx, tenant).await?;
        for state in granted {
            let role = roles
                .iter()
                .find(|(c, _)| *c == state.consent_type_code)
                .map(|(_, r)| *r)
                .unwrap_or(AdRole::None);
            let change = consents::record(
                tx,
                tenant,
                &StateChange {
                    member_id,
                    code: &state.consent_type_code,
                    granted: false,
                    version: state.version,
                    collection_channel: CollectionChannel::parse(&state.collection_channel),
                    actor: "member-service",
                    advertising: state.advertising,
                    source: ChangeSource::MemberWithdrawn,
                    at,
                },
            )
            .await?;
            emit(tx, events::consent_changed(tenant, &change, role)).await?;
        }
        Ok(())
    }

    /// `member.erased`: the member's PII is gone everywhere; the access documents this
    /// service stored for them go too.
    pub(crate) async fn record_member_erased(
        &self,
        tx: &Tx,
        tenant: TenantId,
        member_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        members::mark_erased(tx, tenant, member_id, at).await?;
        dsr::drop_documents_of(tx, tenant, member_id, at).await?;
        self.end_consents(tx, tenant, member_id, at).await
    }
}

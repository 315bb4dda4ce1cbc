//! Consent type use cases: create, revise (a new version from its effective date), get, list
//! the versions in force, and check a sign-up's answers against them.
use chrono::NaiveDate;
use spharos_kit::{ServiceError, TenantId, db::is_unique_violation};

use super::{PrivacyApp, now};
use crate::{
    domain::consent::{
        self, Answer, ConsentGroup, ConsentTypeForm, ConsentTypeVersion, RevisionForm, SignupCheck,
    },
    store::{consent_types, settings},
};

fn consent_type_not_found() -> ServiceError {
    ServiceError::not_found("동의 항목을 찾을 수 없습니다 (consent type not found)")
}

impl PrivacyApp {
    /// Creates a consent type with its first version. The code is unique in the tenant, and
    /// each advertising slot (a channel's consent, a night-time consent) has one type.
    pub async fn create_consent_type(
        &self,
        tenant: TenantId,
        form: ConsentTypeForm,
    ) -> Result<ConsentTypeVersion, ServiceError> {
        let new = form.validate(self.today())?;
        let tx = self.db.begin(tenant).await?;
        let t = now();
        let inserted = consent_types::insert_type(&tx, tenant, &new, t)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    ServiceError::already_exists(
                        "AD_CONSENT_TYPE_EXISTS",
                        "이 채널(또는 야간)의 광고성 동의 항목이 이미 있습니다 (an advertising consent type for this channel / night-time slot already exists)",
                    )
                } else {
                    e.into()
                }
            })?;
        if !inserted {
            return Err(ServiceError::already_exists(
                "CONSENT_TYPE_EXISTS",
                format!(
                    "이미 있는 동의 항목 코드입니다 (consent type {:?} already exists; revise it instead)",
                    new.code
                ),
            ));
        }
        consent_types::insert_version(&tx, tenant, &new.code, 1, &new.wording, t).await?;
        settings::register_tenant(&tx, tenant, t).await?;
        let created = consent_types::versions_of(&tx, tenant, &new.code)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::internal("a consent type just created is missing"))?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, code = %created.code, "consent type created");
        Ok(created)
    }

    /// Adds a version to a consent type, in force from its effective date (today or later,
    /// after the latest version's).
    pub async fn revise_consent_type(
        &self,
        tenant: TenantId,
        code: &str,
        form: RevisionForm,
    ) -> Result<ConsentTypeVersion, ServiceError> {
        let code = code.trim();
        if !consent::is_valid_code(code) {
            return Err(ServiceError::invalid("code", "is not a consent type code"));
        }
        let tx = self.db.begin(tenant).await?;
        let role = consent_types::role_for_update(&tx, tenant, code)
            .await?
            .ok_or_else(consent_type_not_found)?;
        let versions = consent_types::versions_of(&tx, tenant, code).await?;
        let last = versions
            .last()
            .ok_or_else(|| ServiceError::internal("a consent type without versions"))?;
        let wording = form.validate(role, last.effective_date, self.today())?;
        let version = last.version + 1;
        consent_types::insert_version(&tx, tenant, code, version, &wording, now()).await?;
        let revised = consent_types::versions_of(&tx, tenant, code)
            .await?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| ServiceError::internal("a revision just written is missing"))?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, code = %code, version, "consent type revised");
        Ok(revised)
    }

    /// The version in force today (if any) and every version, oldest first.
    pub async fn get_consent_type(
        &self,
        tenant: TenantId,
        code: &str,
    ) -> Result<(Option<ConsentTypeVersion>, Vec<ConsentTypeVersion>), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let versions = consent_types::versions_of(&tx, tenant, code.trim()).await?;
        tx.commit().await?;
        if versions.is_empty() {
            return Err(consent_type_not_found());
        }
        let current = consent::in_force(&versions, self.today()).cloned();
        Ok((current, versions))
    }

    /// The version of every type in force on `at` (default today), optionally of one group.
    pub async fn list_consent_types(
        &self,
        tenant: TenantId,
        group: Option<ConsentGroup>,
        at: Option<NaiveDate>,
    ) -> Result<Vec<ConsentTypeVersion>, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let all = consent_types::all_versions(&tx, tenant).await?;
        tx.commit().await?;
        Ok(in_force_by_code(&all, at.unwrap_or_else(|| self.today()))
            .into_iter()
            .filter(|v| group.is_none_or(|g| v.group == g))
            .collect())
    }

    /// Checks a sign-up's answers against the types in force today: which required items are
    /// missing, which codes are unknown or answered twice.
    pub async fn validate_signup_consents(
        &self,
        tenant: TenantId,
        answers: &[Answer],
    ) -> Result<SignupCheck, ServiceError> {
        let types = self.list_consent_types(tenant, None, None).await?;
        Ok(consent::check_signup(answers, &types))
    }
}

/// One version per code: the one in force on `date`.
pub(super) fn in_force_by_code(
    all: &[ConsentTypeVersion],
    date: NaiveDate,
) -> Vec<ConsentTypeVersion> {
    let mut out: Vec<ConsentTypeVersion> = Vec::new();
    for chunk in all.chunk_by(|a, b| a.code == b.code) {
        if let Some(v) = consent::in_force(chunk, date) {
            out.push(v.clone());
        }
    }
    out
}

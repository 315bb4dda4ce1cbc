//! The application layer: one method per use case, each one tenant transaction that checks
//! the rules, writes the rows and their events together, then wakes the outbox relay. Used by
//! `grpc.rs`, the event consumer, the grade schedule and the binary's `--demo` seeding.
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId, Violations,
    bus::{self, Envelope},
    crypto::{DataKey, KeyRing},
    db::Db,
};

use crate::consent_check::SignupConsentCheck;

mod cards;
mod erasure;
mod grades;
mod members;
mod stores;

pub use cards::Replaced;
pub use grades::Evaluation;
pub use members::Joined;

/// How a read shows PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Masked,
    /// In clear; the access is logged as `privacy.pii_accessed` before the answer leaves.
    Clear(UnmaskAudit),
}

/// Who unmasked, why, from where and through which operation (the access log's record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmaskAudit {
    pub actor: String,
    pub reason: String,
    pub client_address: String,
    pub operation: String,
}

/// The member service's use cases. Cheap to clone (handles only).
#[derive(Clone)]
pub struct MemberApp {
    db: Db,
    keyring: KeyRing,
    zone: Tz,
    /// Set when the privacy module is deployed: joins then need the consents it requires.
    consent_check: Option<SignupConsentCheck>,
}

impl std::fmt::Debug for MemberApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberApp")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl MemberApp {
    /// `zone` is the tenants' business time zone (`tenant.default_time_zone`).
    pub fn new(db: Db, keyring: KeyRing, zone: Tz) -> Self {
        Self {
            db,
            keyring,
            zone,
            consent_check: None,
        }
    }

    /// Joins check their consent answers with the privacy service from now on (without it, a
    /// deployment without the privacy module, joins need no consents).
    pub fn with_signup_consent_check(mut self, check: SignupConsentCheck) -> Self {
        self.consent_check = Some(check);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Today's business date in the tenant zone (what "not in the future" means for a birth
    /// date typed at a Korean counter just after midnight).
    pub(crate) fn today(&self) -> NaiveDate {
        spharos_kit::time::local_date(Utc::now(), self.zone)
    }

    /// The tenant's data key, read through the caller's transaction (never a second
    /// connection: the SQLite pool has only one).
    async fn data_key(&self, tx: &Tx, tenant: TenantId) -> Result<Arc<DataKey>, ServiceError> {
        self.keyring
            .data_key(tx, tenant)
            .await
            .map_err(|e| match e {
                spharos_kit::crypto::CryptoError::Store(db) => ServiceError::from(db),
                other => ServiceError::internal(format!("data key of tenant {tenant}: {other}")),
            })
    }
}

/// Now, at the microsecond precision PostgreSQL stores, so a value returned at creation
/// equals the one read back later.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn emit(tx: &Tx, event: Envelope) -> Result<(), ServiceError> {
    bus::enqueue(tx, &event).await?;
    Ok(())
}

/// The error of a non-empty [`Violations`].
fn violations_error(v: Violations) -> ServiceError {
    match v.finish() {
        Err(e) => e,
        Ok(()) => ServiceError::internal("validation failed without naming a field"),
    }
}

fn member_not_found() -> ServiceError {
    ServiceError::not_found("회원을 찾을 수 없습니다 (member not found)")
}

fn member_withdrawn() -> ServiceError {
    ServiceError::precondition(
        "MEMBER_WITHDRAWN",
        "탈퇴한 회원입니다 (the member has withdrawn)",
    )
}

fn json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(value).map_err(ServiceError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::internal(format!("stored idempotent response: {e}")))
}

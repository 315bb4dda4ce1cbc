//! The application layer: one method per use case, each one tenant transaction that checks
//! the rules, writes the rows and their events together, then wakes the outbox relay. Used by
//! `grpc.rs`, the event consumers and the schedules (re-confirmation scan, retention erasure).
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    auth::TokenSigner,
    bus::{self, Envelope},
    crypto::{DataKey, KeyRing},
    db::Db,
};

use crate::clients::Registry;

mod access_log;
mod consent_types;
mod consents;
mod content;
mod dsr;
mod lifecycle;

pub use access_log::Verification;
pub use consents::{AdvertisingAnswer, MemberJoin};
pub use dsr::Caller;
pub use lifecycle::JobReport;

/// The privacy service's use cases. Cheap to clone (handles only).
#[derive(Clone)]
pub struct PrivacyApp {
    db: Db,
    keyring: KeyRing,
    zone: Tz,
    services: Arc<Registry>,
    signer: TokenSigner,
}

impl std::fmt::Debug for PrivacyApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyApp")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl PrivacyApp {
    /// `zone` is the tenants' business time zone; `services` the services that hold member
    /// data; `signer` mints the tokens of automatic erasures (no caller to forward).
    pub fn new(
        db: Db,
        keyring: KeyRing,
        zone: Tz,
        services: Registry,
        signer: TokenSigner,
    ) -> Self {
        Self {
            db,
            keyring,
            zone,
            services: Arc::new(services),
            signer,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Today's business date in the tenant zone.
    pub fn today(&self) -> NaiveDate {
        spharos_kit::time::local_date(Utc::now(), self.zone)
    }

    /// The tenant's data key, read through the caller's transaction.
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
/// equals the one read back later (and SQLite compares the same text).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn emit(tx: &Tx, event: Envelope) -> Result<(), ServiceError> {
    bus::enqueue(tx, &event).await?;
    Ok(())
}

fn member_not_found() -> ServiceError {
    ServiceError::not_found(
        "회원을 찾을 수 없습니다 (member not found; a member is known here once member.joined arrived)",
    )
}

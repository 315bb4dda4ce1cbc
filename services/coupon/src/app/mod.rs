//! The application layer: one method per use case, each one tenant transaction that checks
//! the rules, writes the rows and their events together, then wakes the outbox relay. Used by
//! `grpc.rs`, the member-event consumer, the schedules, the binary's `--demo` and load tests.
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, Violations,
    bus::{self, Envelope},
    db::Db,
};
use tokio::sync::Notify;

use crate::domain::{code::Code, reasons};

mod bulk;
mod claims;
mod export;
mod issue;
mod jobs;
mod members;
mod templates;
mod till;
mod vouchers;

pub use bulk::BulkPage;
pub use claims::{ClaimBatchStats, MAX_BATCH as MAX_CLAIM_BATCH};
pub use issue::CouponView;
pub use jobs::{BirthdayRun, ScheduleRun};
pub use till::{Cancelled, Redeemed, TillRequest, Validation};
pub use vouchers::{VoucherForm, VoucherMove};

/// The coupon service's use cases. Cheap to clone (handles only).
#[derive(Clone)]
pub struct CouponApp {
    db: Db,
    zone: Tz,
    /// Wakes the bulk-issue worker when a job starts.
    bulk_wake: Arc<Notify>,
    /// The group commit of first-come claims.
    claims: claims::ClaimBatcher,
}

impl std::fmt::Debug for CouponApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouponApp")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl CouponApp {
    /// `zone` is the tenants' business time zone (`tenant.default_time_zone`). Starts the
    /// claim batch workers: call inside a Tokio runtime.
    pub fn new(db: Db, zone: Tz) -> Self {
        Self {
            claims: claims::ClaimBatcher::spawn(db.clone(), zone),
            db,
            zone,
            bulk_wake: Arc::new(Notify::new()),
        }
    }

    /// What the claim batches did since this app started.
    pub fn claim_batches(&self) -> ClaimBatchStats {
        self.claims.stats()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    pub(crate) fn bulk_wake(&self) -> Arc<Notify> {
        self.bulk_wake.clone()
    }

    /// Today's business date in the tenant zone.
    pub(crate) fn today(&self) -> NaiveDate {
        spharos_kit::time::local_date(Utc::now(), self.zone)
    }
}

/// Now, at the microsecond precision PostgreSQL stores, so a value returned at creation
/// equals the one read back later.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn emit(tx: &Tx, event: Envelope) -> Result<(), ServiceError> {
    bus::enqueue(tx, &event).await?;
    Ok(())
}

/// A failure that belongs to the request (a rule, a missing row), as opposed to an outage or
/// a bug: bulk jobs and automatic issues record it and go on; the others stop the run.
pub(crate) fn is_business(e: &ServiceError) -> bool {
    !matches!(e, ServiceError::Internal(_) | ServiceError::Unavailable(_))
}

/// The stable reason and message of a business failure, for per-member results.
pub(crate) fn reason_of(e: &ServiceError) -> (String, String) {
    let reason = match e {
        ServiceError::AlreadyExists { reason, .. }
        | ServiceError::FailedPrecondition { reason, .. }
        | ServiceError::ResourceExhausted { reason, .. } => reason.to_string(),
        ServiceError::NotFound(_) => "NOT_FOUND".into(),
        ServiceError::InvalidArgument(_) => "INVALID_ARGUMENT".into(),
        _ => "FAILED".into(),
    };
    (reason, e.to_string())
}

/// Reads a typed code, recording a violation of `field` when it is not one.
pub(crate) fn parse_code(v: &mut Violations, field: &str, input: &str) -> Option<Code> {
    if input.trim().is_empty() {
        v.add(field, "필수 항목입니다 (is required)");
        return None;
    }
    match Code::parse(input) {
        Ok(c) => Some(c),
        Err(e) => {
            v.add(field, e.to_string());
            None
        }
    }
}

/// The error of a non-empty [`Violations`].
pub(crate) fn violations_error(v: Violations) -> ServiceError {
    match v.finish() {
        Err(e) => e,
        Ok(()) => ServiceError::internal("validation failed without naming a field"),
    }
}

/// A value that a finished, empty [`Violations`] proved present.
pub(crate) fn proven<T>(v: Option<T>) -> Result<T, ServiceError> {
    v.ok_or_else(|| ServiceError::internal("a checked field went missing"))
}

pub(crate) fn template_not_found() -> ServiceError {
    ServiceError::not_found("쿠폰 템플릿을 찾을 수 없습니다 (coupon template not found)")
}

pub(crate) fn coupon_not_found() -> ServiceError {
    ServiceError::not_found("쿠폰을 찾을 수 없습니다 (coupon not found)")
}

pub(crate) fn voucher_not_found() -> ServiceError {
    ServiceError::not_found("상품권을 찾을 수 없습니다 (voucher not found)")
}

pub(crate) fn member_withdrawn() -> ServiceError {
    ServiceError::precondition(
        reasons::MEMBER_WITHDRAWN,
        "탈퇴한 회원입니다 (the member has withdrawn)",
    )
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(value).map_err(ServiceError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::internal(format!("stored idempotent response: {e}")))
}

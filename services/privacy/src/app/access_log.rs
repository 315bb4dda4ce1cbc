//! The PII access log: appends (from `privacy.pii_accessed` events, direct writes and this
//! service's own disclosures) chained under the tenant's head lock, queries by member, actor
//! and time, and verification of the whole chain.
use chrono::SubsecRound;
use spharos_kit::db::Tx;
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{PrivacyApp, now};
use crate::{
    domain::access_log::{self, Access, AccessForm, ChainCheck, Entry},
    store::{access_log as log, access_log::AccessFilter, settings},
};

/// Entries read per verification round trip.
const VERIFY_PAGE: u64 = 1000;

/// The result of `VerifyAccessLog`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub intact: bool,
    pub checked: i64,
    /// 0 when intact.
    pub first_broken_seq: i64,
    pub problem: String,
}

impl PrivacyApp {
    /// Appends `access` to the tenant's chain in the caller's transaction: the head row is
    /// locked, the entry sealed after it and the head moved, so concurrent appends serialise.
    pub(crate) async fn append_access(
        &self,
        tx: &Tx,
        tenant: TenantId,
        mut access: Access,
    ) -> Result<Entry, ServiceError> {
        // PostgreSQL keeps microseconds: the hash must cover what is read back.
        access.access_time = access.access_time.trunc_subsecs(6);
        let t = now();
        let (last_seq, last_hash) = log::head_for_update(tx, tenant, t).await?;
        let entry = access_log::seal(tenant, last_seq, &last_hash, Uuid::now_v7(), access);
        log::append(tx, tenant, &entry, t).await?;
        settings::register_tenant(tx, tenant, t).await?;
        Ok(entry)
    }

    /// A direct write: someone reports an access to a member's PII. `caller` is the token's
    /// subject (the recorder, and the actor unless the request names one).
    pub async fn record_pii_access(
        &self,
        tenant: TenantId,
        form: AccessForm,
        caller: &str,
    ) -> Result<Entry, ServiceError> {
        let access = form.validate(caller, now())?;
        let tx = self.db.begin(tenant).await?;
        let entry = self.append_access(&tx, tenant, access).await?;
        tx.commit().await?;
        Ok(entry)
    }

    pub async fn list_pii_accesses(
        &self,
        tenant: TenantId,
        filter: AccessFilter,
        page: PageRequest,
    ) -> Result<(Vec<Entry>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = log::list(&tx, tenant, &filter, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |e| e.id))
    }

    /// Recomputes the tenant's chain from the first entry and reports the first entry that
    /// was edited, removed or reordered (or a head that does not match the last entry).
    pub async fn verify_access_log(&self, tenant: TenantId) -> Result<Verification, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let mut check = ChainCheck::new(tenant);
        let mut after = 0;
        let outcome = loop {
            let page = log::chain_page(&tx, tenant, after, VERIFY_PAGE).await?;
            let Some(last) = page.last() else {
                let head = log::head(&tx, tenant).await?;
                break check.finish(head.as_ref().map(|(s, h)| (*s, h.as_str())));
            };
            after = last.seq;
            if let Err(b) = page.iter().try_for_each(|e| check.next(e)) {
                break Err(b);
            }
        };
        tx.commit().await?;
        Ok(match outcome {
            Ok(()) => Verification {
                intact: true,
                checked: check.checked(),
                first_broken_seq: 0,
                problem: String::new(),
            },
            Err(b) => {
                tracing::warn!(tenant_id = %tenant, seq = b.seq, "access log chain broken");
                Verification {
                    intact: false,
                    checked: check.checked(),
                    first_broken_seq: b.seq,
                    problem: b.problem,
                }
            }
        })
    }
}

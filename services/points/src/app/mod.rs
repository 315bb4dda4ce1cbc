//! The application layer: one method per use case. A ledger write is one tenant transaction
//! that claims the idempotency key, locks the member's account row, settles due lots (lazy
//! expiry and maturation, so no answer ever shows points that should be gone), applies the
//! domain arithmetic, writes the ledger row, lot changes, movements, account sums and events
//! together, stores the response for replays, commits, then wakes the outbox relay.
//!
//! **Invariant:** member lookups (a gRPC call to the member service) happen before the
//! transaction opens: no transaction waits on the network, and none holds the SQLite pool's
//! only connection while another is needed.
use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use spharos_kit::db::Tx;
use spharos_kit::{
    ServiceError, TenantId,
    bus::{self, Envelope},
    db::Db,
};
use uuid::Uuid;

use crate::{
    domain::{
        format_points,
        forms::TxKind,
        ledger::{Balance, Lot, Posting},
        policy::{Policy, Quote, VersionedPolicy},
    },
    events,
    members::MemberDirectory,
    store::{
        accounts::{self, AccountRow},
        lots::{self, LotRow},
        movements::{self, MovementRow},
        policies, tenants,
        transactions::{self, TransactionRow},
    },
};

mod batch;
mod expiry;
mod export;
mod ledger;
mod queries;

pub use batch::BatchStats;
pub use expiry::ExpiryRun;

/// The one idempotency scope of the ledger's writes: a key names one request of any kind.
const SCOPE: &str = "points";
/// The actor of EXPIRE entries.
const EXPIRY_ACTOR: &str = "system:expiry";
/// "Expiring soon" in balances: lots expiring by the end of today + 30 days (tenant zone).
const EXPIRING_WINDOW_DAYS: u64 = 30;

/// One ledger entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionView {
    pub id: Uuid,
    pub member_id: Uuid,
    pub kind: TxKind,
    pub points: i64,
    pub balance_after: i64,
    pub debt_delta: i64,
    pub store_code: Option<String>,
    pub pos_transaction_id: Option<String>,
    pub amount_krw: i64,
    pub original_transaction_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub rate_bp: Option<i32>,
    pub reason: Option<String>,
    pub actor: String,
    pub expire_time: Option<DateTime<Utc>>,
    pub available_time: Option<DateTime<Utc>>,
    pub occurred_time: DateTime<Utc>,
    pub created_time: DateTime<Utc>,
}

/// A member's balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceView {
    pub member_id: Uuid,
    pub available: i64,
    pub pending: i64,
    pub debt: i64,
    pub expiring_within_30_days: i64,
    pub expiring_until_date: NaiveDate,
    pub lifetime_earned: i64,
    pub lifetime_spent: i64,
}

impl BalanceView {
    /// available + pending − debt.
    pub fn balance(&self) -> i64 {
        self.available + self.pending - self.debt
    }
}

/// What an earn computed (or would compute).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteView {
    pub quote: Quote,
    pub policy_version: i32,
    pub expire_time: DateTime<Utc>,
    pub available_time: DateTime<Utc>,
}

/// The result of an earn (stored for replays of its idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Earned {
    pub transaction: TransactionView,
    pub quote: QuoteView,
    pub balance: BalanceView,
}

/// The result of a spend, cancel or adjustment (stored for replays).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub transaction: TransactionView,
    pub balance: BalanceView,
}

/// The points service's use cases. Cheap to clone (handles only).
#[derive(Clone)]
pub struct PointsApp {
    db: Db,
    zone: Tz,
    members: MemberDirectory,
    batches: batch::LedgerBatcher,
}

impl std::fmt::Debug for PointsApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PointsApp")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl PointsApp {
    /// `zone` is the tenants' business time zone (`tenant.default_time_zone`).
    /// The use cases on `db`. Earns are group-committed by background workers (see
    /// [`batch`]), so this must be called within a Tokio runtime.
    pub fn new(db: Db, zone: Tz, members: MemberDirectory) -> Self {
        let batches = batch::LedgerBatcher::spawn(db.clone(), zone);
        Self {
            db,
            zone,
            members,
            batches,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// What the ledger batches did so far (group commit; see the `batch` module).
    pub fn ledger_batches(&self) -> BatchStats {
        self.batches.stats()
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }

    async fn policy(&self, tx: &Tx, tenant: TenantId) -> Result<VersionedPolicy, ServiceError> {
        load_policy(tx, tenant).await
    }

    /// The balance view of an account, with the points expiring in the next 30 days.
    async fn balance_view(
        &self,
        tx: &Tx,
        tenant: TenantId,
        account: &AccountRow,
        now: DateTime<Utc>,
    ) -> Result<BalanceView, ServiceError> {
        let (until_date, until) = expiring_window(now, self.zone);
        let expiring = lots::expiring_sum(tx, tenant, account.member_id, until).await?;
        Ok(balance_of(account, expiring, until_date))
    }

    fn empty_balance(&self, member: Uuid, now: DateTime<Utc>) -> BalanceView {
        BalanceView {
            member_id: member,
            available: 0,
            pending: 0,
            debt: 0,
            expiring_within_30_days: 0,
            expiring_until_date: expiring_window(now, self.zone).0,
            lifetime_earned: 0,
            lifetime_spent: 0,
        }
    }
}

/// The tenant's points policy in force (the built-in default when none is stored).
async fn load_policy(tx: &Tx, tenant: TenantId) -> Result<VersionedPolicy, ServiceError> {
    match policies::current(tx, tenant).await? {
        None => Ok(VersionedPolicy::builtin()),
        Some(row) => {
            let policy: Policy = serde_json::from_str(&row.body).map_err(|e| {
                ServiceError::internal(format!("stored policy v{}: {e}", row.version))
            })?;
            Ok(VersionedPolicy {
                version: row.version,
                policy,
                updated_time: Some(row.updated_time),
                updated_by: row.updated_by,
            })
        }
    }
}

/// "Expiring soon" at `now`: the last day of the window and its last instant (tenant zone).
fn expiring_window(now: DateTime<Utc>, zone: Tz) -> (NaiveDate, DateTime<Utc>) {
    let today = spharos_kit::time::local_date(now, zone);
    let until_date = today
        .checked_add_days(chrono::Days::new(EXPIRING_WINDOW_DAYS))
        .unwrap_or(today);
    (until_date, spharos_kit::time::end_of_day(until_date, zone))
}

fn balance_of(account: &AccountRow, expiring: i64, until_date: NaiveDate) -> BalanceView {
    BalanceView {
        member_id: account.member_id,
        available: account.available,
        pending: account.pending,
        debt: account.debt,
        expiring_within_30_days: expiring,
        expiring_until_date: until_date,
        lifetime_earned: account.lifetime_earned,
        lifetime_spent: account.lifetime_spent,
    }
}

/// A ledger row of `member` with every optional column empty.
fn draft(tenant: TenantId, member: Uuid, actor: &str, kind: TxKind) -> TransactionRow {
    let t = now();
    TransactionRow {
        tenant_id: tenant.as_uuid(),
        id: Uuid::now_v7(),
        member_id: member,
        kind: kind.as_str().to_string(),
        points: 0,
        balance_after: 0,
        debt_delta: 0,
        store_code: None,
        pos_transaction_id: None,
        pos_key: None,
        amount_krw: 0,
        original_transaction_id: None,
        policy_version: None,
        rate_bp: None,
        lot_id: None,
        reason: None,
        actor: actor.to_string(),
        idempotency_key: None,
        refunded_amount_krw: 0,
        reversed_points: 0,
        expire_time: None,
        available_time: None,
        occurred_time: t,
        created_time: t,
        updated_time: t,
    }
}

/// The ledger row of `posting` (points, debt change and the balance after it filled in) and
/// its movements, as they are to be written. `balance` already has the posting applied.
fn posted(
    tenant: TenantId,
    mut row: TransactionRow,
    posting: &Posting,
    balance: &Balance,
) -> (TransactionRow, Vec<MovementRow>) {
    row.points = posting.points();
    row.debt_delta = posting.debt_delta;
    row.balance_after = balance.net();
    let t = now();
    let moves = posting
        .movements
        .iter()
        .map(|m| MovementRow {
            tenant_id: tenant.as_uuid(),
            id: Uuid::now_v7(),
            transaction_id: row.id,
            lot_id: m.lot_id,
            member_id: row.member_id,
            kind: m.kind.as_str().to_string(),
            points: m.points,
            created_time: t,
            updated_time: t,
        })
        .collect();
    (row, moves)
}

/// Now, at the microsecond precision PostgreSQL stores, so a value returned at creation
/// equals the one read back later.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(value).map_err(ServiceError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ServiceError::internal(format!("stored idempotent response: {e}")))
}

fn member_withdrawn() -> ServiceError {
    ServiceError::precondition(
        "MEMBER_WITHDRAWN",
        "탈퇴한 회원입니다 (the member has withdrawn)",
    )
}

fn transaction_not_found() -> ServiceError {
    ServiceError::not_found("거래를 찾을 수 없습니다 (transaction not found)")
}

/// `INSUFFICIENT_POINTS`, with the available balance in the message and the metadata.
fn insufficient(available: i64, wanted: i64) -> ServiceError {
    let mut e = ServiceError::precondition(
        "INSUFFICIENT_POINTS",
        format!(
            "포인트가 부족합니다 (insufficient points): available {}, requested {}",
            format_points(available),
            format_points(wanted)
        ),
    );
    if let ServiceError::FailedPrecondition { metadata, .. } = &mut e {
        metadata.insert("available".into(), available.to_string());
        metadata.insert("requested".into(), wanted.to_string());
    }
    e
}

fn duplicate_pos(kind: TxKind, existing: Option<Uuid>) -> ServiceError {
    let what = if kind == TxKind::Earn {
        "적립"
    } else {
        "사용"
    };
    let existing = existing
        .map(|id| format!(" as transaction {id}"))
        .unwrap_or_default();
    ServiceError::already_exists(
        "DUPLICATE_POS_TRANSACTION",
        format!(
            "이미 {what} 처리된 POS 거래입니다 (this store_code and pos_transaction_id was already used for {}{existing}); use Cancel to reverse it",
            kind.as_str()
        ),
    )
}

pub(crate) fn view(t: &TransactionRow) -> Result<TransactionView, ServiceError> {
    Ok(TransactionView {
        id: t.id,
        member_id: t.member_id,
        kind: TxKind::parse(&t.kind).ok_or_else(|| {
            ServiceError::from(crate::store::corrupt("point_transactions", "kind", &t.kind))
        })?,
        points: t.points,
        balance_after: t.balance_after,
        debt_delta: t.debt_delta,
        store_code: t.store_code.clone(),
        pos_transaction_id: t.pos_transaction_id.clone(),
        amount_krw: t.amount_krw,
        original_transaction_id: t.original_transaction_id,
        policy_version: t.policy_version,
        rate_bp: t.rate_bp,
        reason: t.reason.clone(),
        actor: t.actor.clone(),
        expire_time: t.expire_time,
        available_time: t.available_time,
        occurred_time: t.occurred_time,
        created_time: t.created_time,
    })
}

fn lot_of(r: &LotRow) -> Lot {
    Lot {
        id: r.id,
        remaining: r.remaining,
        expired: r.expired,
        pending: r.pending,
        available_time: r.available_time,
        expire_time: r.expire_time,
    }
}

/// A member's lots during one operation: the stored rows and their domain view.
struct Lots {
    rows: Vec<LotRow>,
    lots: Vec<Lot>,
}

impl Lots {
    fn new(rows: Vec<LotRow>) -> Self {
        let lots = rows.iter().map(lot_of).collect();
        Self { rows, lots }
    }

    /// The rows whose ledger columns the domain changed, updated.
    fn changed(&self, now: DateTime<Utc>) -> Vec<LotRow> {
        self.rows
            .iter()
            .zip(&self.lots)
            .filter(|(r, l)| {
                r.remaining != l.remaining || r.expired != l.expired || r.pending != l.pending
            })
            .map(|(r, l)| LotRow {
                remaining: l.remaining,
                expired: l.expired,
                pending: l.pending,
                updated_time: now,
                ..r.clone()
            })
            .collect()
    }
}

/// One member's ledger inside one transaction: the locked account, the working balance and
/// the events to enqueue with it.
struct Session<'t> {
    tx: &'t Tx,
    tenant: TenantId,
    zone: Tz,
    account: AccountRow,
    balance: Balance,
    lifetime_earned: i64,
    lifetime_spent: i64,
    /// When the operation happens (and what settling is measured against).
    at: DateTime<Utc>,
    actor: String,
}

impl<'t> Session<'t> {
    /// Locks the member's account, creating it (and registering the tenant with the expiry
    /// job) on the member's first operation.
    async fn open(
        tx: &'t Tx,
        tenant: TenantId,
        zone: Tz,
        member: Uuid,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Result<Session<'t>, ServiceError> {
        let account = match accounts::lock(tx, tenant, member).await? {
            Some(a) => a,
            None => {
                if accounts::create(tx, tenant, member, now()).await? {
                    tenants::register(tx, tenant, now()).await?;
                }
                accounts::lock(tx, tenant, member).await?.ok_or_else(|| {
                    ServiceError::internal("a point account vanished after its creation")
                })?
            }
        };
        Ok(Self::with_account(tx, tenant, zone, account, at, actor))
    }

    /// Locks the member's account if it exists.
    async fn open_existing(
        tx: &'t Tx,
        tenant: TenantId,
        zone: Tz,
        member: Uuid,
        at: DateTime<Utc>,
    ) -> Result<Option<Session<'t>>, ServiceError> {
        Ok(accounts::lock(tx, tenant, member)
            .await?
            .map(|a| Self::with_account(tx, tenant, zone, a, at, "")))
    }

    fn with_account(
        tx: &'t Tx,
        tenant: TenantId,
        zone: Tz,
        account: AccountRow,
        at: DateTime<Utc>,
        actor: &str,
    ) -> Self {
        Self {
            tx,
            tenant,
            zone,
            balance: Balance {
                available: account.available,
                pending: account.pending,
                debt: account.debt,
            },
            lifetime_earned: account.lifetime_earned,
            lifetime_spent: account.lifetime_spent,
            account,
            at,
            actor: actor.to_string(),
        }
    }

    fn member(&self) -> Uuid {
        self.account.member_id
    }

    /// Matures pending lots whose time came and expires lots whose day ended, recording an
    /// EXPIRE entry (and `points.expired`) when points expired. Returns the points expired.
    async fn settle(&mut self) -> Result<i64, ServiceError> {
        let rows = lots::due_of_member(self.tx, self.tenant, self.member(), self.at).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut set = Lots::new(rows);
        let s = crate::domain::ledger::settle(&mut self.balance, &mut set.lots, self.at);
        let expired = -s.expired.points();
        if !s.expired.movements.is_empty() {
            let detail: Vec<(Uuid, i64, DateTime<Utc>)> = s
                .expired
                .movements
                .iter()
                .filter_map(|m| {
                    set.lots
                        .iter()
                        .find(|l| l.id == m.lot_id)
                        .map(|l| (l.id, -m.points, l.expire_time))
                })
                .collect();
            let mut row = self.draft(TxKind::Expire);
            // Expiry is the system's act, whichever operation's settling recorded it.
            row.actor = EXPIRY_ACTOR.to_string();
            row.occurred_time = self.at.min(now());
            let row = self.record(row, &s.expired).await?;
            bus::enqueue(self.tx, &events::expired(self.tenant, &row, &detail)).await?;
            tracing::info!(tenant_id = %self.tenant, member_id = %self.member(), points = expired, "points expired");
        }
        lots::save(self.tx, &set.changed(now())).await?;
        Ok(expired)
    }

    /// A ledger row of this member with every optional column empty.
    fn draft(&self, kind: TxKind) -> TransactionRow {
        draft(self.tenant, self.member(), &self.actor, kind)
    }

    /// Writes the ledger row of `posting` (points and balance after filled in) and its
    /// movements. The caller has already applied the posting to `self.balance`.
    async fn record(
        &mut self,
        row: TransactionRow,
        posting: &Posting,
    ) -> Result<TransactionRow, ServiceError> {
        let (row, moves) = posted(self.tenant, row, posting, &self.balance);
        transactions::insert(self.tx, &row).await.map_err(|e| {
            if spharos_kit::db::is_unique_violation(&e) {
                // The pre-check found nothing; a concurrent request with the same receipt won.
                match TxKind::parse(&row.kind) {
                    Some(k @ (TxKind::Earn | TxKind::Spend)) => duplicate_pos(k, None),
                    _ => ServiceError::from(e),
                }
            } else {
                ServiceError::from(e)
            }
        })?;
        movements::insert_many(self.tx, moves).await?;
        Ok(row)
    }

    /// Writes the account's new sums (only when something changed) and returns the row as
    /// stored.
    async fn finish(self) -> Result<AccountRow, ServiceError> {
        let mut row = self.account.clone();
        row.available = self.balance.available;
        row.pending = self.balance.pending;
        row.debt = self.balance.debt;
        row.lifetime_earned = self.lifetime_earned;
        row.lifetime_spent = self.lifetime_spent;
        if row == self.account {
            return Ok(row);
        }
        row.updated_time = now();
        accounts::save(self.tx, &row).await?;
        row.version += 1;
        Ok(row)
    }

    fn zone(&self) -> Tz {
        self.zone
    }
}

async fn emit(tx: &Tx, event: Envelope) -> Result<(), ServiceError> {
    bus::enqueue(tx, &event).await?;
    Ok(())
}

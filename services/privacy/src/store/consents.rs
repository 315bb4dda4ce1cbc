//! Queries on `consent_states`, `consent_changes` and `reconfirmation_notices`, including the
//! bulk advertising query: on PostgreSQL one indexed join of the candidate ids (`unnest` of a
//! `uuid[]` parameter) against `consent_states`, or for large lists a read of the granted ids
//! judged in memory; on SQLite chunked `IN` lists.
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseTransaction, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement, Value, sea_query::OnConflict,
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{consent_changes as changes, consent_states as states, reconfirmation_notices as rn},
};
use crate::domain::consent::{
    ChangeSource, CollectionChannel, ConsentChange, MemberConsent, Requirement,
};

/// Candidate ids per SQLite statement (its limit on bound parameters is 32,766).
const SQLITE_CHUNK: usize = 5_000;

/// From this many candidates on (PostgreSQL), reading the tenant's granted ids of the codes
/// involved (a range of `consent_states_granted_idx`, returned as one array) and judging in
/// memory beats joining the candidates: a join of a million `unnest`ed ids hashes both sides and
/// spills to disk (measured 2 to 3 s for 1,000,000 members), while the range read and a hash
/// set are linear and stay in memory.
const PG_SCAN_FROM: usize = 20_000;

pub use states::Model as StateRow;

fn state_to_domain(s: StateRow) -> MemberConsent {
    MemberConsent {
        collection_channel: CollectionChannel::parse(&s.collection_channel),
        code: s.consent_type_code,
        granted: s.granted,
        version: s.version,
        actor: s.actor,
        change_time: s.change_time,
    }
}

/// A consent's new state, written with its history entry.
#[derive(Debug, Clone)]
pub struct StateChange<'a> {
    pub member_id: Uuid,
    pub code: &'a str,
    pub granted: bool,
    pub version: i32,
    pub collection_channel: CollectionChannel,
    pub actor: &'a str,
    pub advertising: bool,
    pub source: ChangeSource,
    pub at: DateTime<Utc>,
}

/// Writes the current state (insert or overwrite) and appends the history entry, in the
/// caller's transaction. A grant starts a new biennial cycle.
pub async fn record(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    c: &StateChange<'_>,
) -> Result<ConsentChange, DbErr> {
    let row = StateRow {
        tenant_id: tenant.as_uuid(),
        member_id: c.member_id,
        consent_type_code: c.code.to_string(),
        granted: c.granted,
        version: c.version,
        collection_channel: c.collection_channel.as_str().to_string(),
        actor: c.actor.to_string(),
        advertising: c.advertising,
        cycle_start_time: c.at,
        change_time: c.at,
        created_time: c.at,
        updated_time: c.at,
    };
    states::Entity::insert(row.into_active_model())
        .on_conflict(
            OnConflict::columns([
                states::Column::TenantId,
                states::Column::MemberId,
                states::Column::ConsentTypeCode,
            ])
            .update_columns([
                states::Column::Granted,
                states::Column::Version,
                states::Column::CollectionChannel,
                states::Column::Actor,
                states::Column::Advertising,
                states::Column::CycleStartTime,
                states::Column::ChangeTime,
                states::Column::UpdatedTime,
            ])
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    let change = ConsentChange {
        id: Uuid::now_v7(),
        member_id: c.member_id,
        code: c.code.to_string(),
        version: c.version,
        granted: c.granted,
        collection_channel: c.collection_channel,
        actor: c.actor.to_string(),
        source: c.source,
        change_time: c.at,
    };
    let history = changes::Model {
        tenant_id: tenant.as_uuid(),
        id: change.id,
        member_id: change.member_id,
        consent_type_code: change.code.clone(),
        version: change.version,
        granted: change.granted,
        collection_channel: change.collection_channel.as_str().to_string(),
        actor: change.actor.clone(),
        source: change.source.as_str().to_string(),
        change_time: change.change_time,
        created_time: c.at,
        updated_time: c.at,
    };
    changes::Entity::insert(history.into_active_model())
        .exec_without_returning(tx)
        .await?;
    Ok(change)
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    code: &str,
) -> Result<Option<MemberConsent>, DbErr> {
    Ok(states::Entity::find()
        .filter(states::Column::TenantId.eq(tenant.as_uuid()))
        .filter(states::Column::MemberId.eq(member_id))
        .filter(states::Column::ConsentTypeCode.eq(code))
        .one(tx)
        .await?
        .map(state_to_domain))
}

/// Every item the member answered, in code order.
pub async fn of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<MemberConsent>, DbErr> {
    Ok(states::Entity::find()
        .filter(states::Column::TenantId.eq(tenant.as_uuid()))
        .filter(states::Column::MemberId.eq(member_id))
        .order_by_asc(states::Column::ConsentTypeCode)
        .all(tx)
        .await?
        .into_iter()
        .map(state_to_domain)
        .collect())
}

/// The member's granted items, as rows (for withdrawing them all).
pub async fn granted_of_member(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<StateRow>, DbErr> {
    states::Entity::find()
        .filter(states::Column::TenantId.eq(tenant.as_uuid()))
        .filter(states::Column::MemberId.eq(member_id))
        .filter(states::Column::Granted.eq(true))
        .order_by_asc(states::Column::ConsentTypeCode)
        .all(tx)
        .await
}

fn change_to_domain(c: changes::Model) -> Result<ConsentChange, DbErr> {
    Ok(ConsentChange {
        source: ChangeSource::parse(&c.source)
            .ok_or_else(|| corrupt("consent_changes", "source", &c.source))?,
        collection_channel: CollectionChannel::parse(&c.collection_channel),
        id: c.id,
        member_id: c.member_id,
        code: c.consent_type_code,
        version: c.version,
        granted: c.granted,
        actor: c.actor,
        change_time: c.change_time,
    })
}

/// One page of a member's history, oldest first.
pub async fn history(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
    page: &PageRequest,
) -> Result<Vec<ConsentChange>, DbErr> {
    let mut q = changes::Entity::find()
        .filter(changes::Column::TenantId.eq(tenant.as_uuid()))
        .filter(changes::Column::MemberId.eq(member_id));
    if let Some(after) = page.after {
        q = q.filter(changes::Column::Id.gt(after));
    }
    q.order_by_asc(changes::Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?
        .into_iter()
        .map(change_to_domain)
        .collect()
}

/// The whole history of a member (for data-subject access), oldest first.
pub async fn full_history(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    member_id: Uuid,
) -> Result<Vec<ConsentChange>, DbErr> {
    changes::Entity::find()
        .filter(changes::Column::TenantId.eq(tenant.as_uuid()))
        .filter(changes::Column::MemberId.eq(member_id))
        .order_by_asc(changes::Column::Id)
        .all(tx)
        .await?
        .into_iter()
        .map(change_to_domain)
        .collect()
}

/// The positions (0-based) in `candidates` of the members who meet `req`.
pub async fn advertising_allowed(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    candidates: &[Uuid],
    req: &Requirement,
) -> Result<Vec<usize>, DbErr> {
    let Requirement::Codes {
        channel_code,
        night_codes,
    } = req
    else {
        return Ok(Vec::new());
    };
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    match tx.get_database_backend() {
        DatabaseBackend::Postgres if candidates.len() >= PG_SCAN_FROM => {
            allowed_postgres_scan(tx, tenant, candidates, channel_code, night_codes.as_deref())
                .await
        }
        DatabaseBackend::Postgres => {
            allowed_postgres(tx, tenant, candidates, channel_code, night_codes.as_deref()).await
        }
        _ => allowed_sqlite(tx, tenant, candidates, req).await,
    }
}

/// One statement: the candidates (with their positions) joined against the primary key of
/// `consent_states`, the night-time consent as a semi-join, the positions aggregated into one
/// array so a million rows cross the wire as one value.
async fn allowed_postgres(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    candidates: &[Uuid],
    channel_code: &str,
    night_codes: Option<&[String]>,
) -> Result<Vec<usize>, DbErr> {
    let mut sql = String::from(
        "SELECT COALESCE(array_agg(c.ord - 1), '{}') AS positions
         FROM unnest($2::uuid[]) WITH ORDINALITY AS c(member_id, ord)
         JOIN consent_states s
           ON s.tenant_id = $1 AND s.member_id = c.member_id
          AND s.consent_type_code = $3 AND s.granted",
    );
    let mut values: Vec<Value> = vec![
        tenant.as_uuid().into(),
        candidates.to_vec().into(),
        channel_code.into(),
    ];
    if let Some(night) = night_codes {
        sql.push_str(
            " WHERE EXISTS (SELECT 1 FROM consent_states n
                WHERE n.tenant_id = $1 AND n.member_id = c.member_id
                  AND n.consent_type_code = ANY($4::text[]) AND n.granted)",
        );
        values.push(night.to_vec().into());
    }
    let row = tx
        .query_one_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("an aggregate returned no row".into()))?;
    let positions: Vec<i64> = row.try_get("", "positions")?;
    Ok(positions.into_iter().map(|p| p as usize).collect())
}

/// Many candidates: the tenant's members who granted `channel_code` (and, at night, any of
/// `night_codes`), each set as one array value, then the candidates judged against them.
async fn allowed_postgres_scan(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    candidates: &[Uuid],
    channel_code: &str,
    night_codes: Option<&[String]>,
) -> Result<Vec<usize>, DbErr> {
    let granted_of = |codes: Vec<String>| async move {
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT COALESCE(array_agg(member_id), '{}') AS ids FROM consent_states
                 WHERE tenant_id = $1 AND consent_type_code = ANY($2::text[]) AND granted",
                [tenant.as_uuid().into(), codes.into()],
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("an aggregate returned no row".into()))?;
        let ids: Vec<Uuid> = row.try_get("", "ids")?;
        Ok::<_, DbErr>(ids.into_iter().collect::<std::collections::HashSet<Uuid>>())
    };
    let channel = granted_of(vec![channel_code.to_string()]).await?;
    let night = match night_codes {
        Some(codes) => Some(granted_of(codes.to_vec()).await?),
        None => None,
    };
    Ok(candidates
        .iter()
        .enumerate()
        .filter(|(_, id)| channel.contains(id) && night.as_ref().is_none_or(|n| n.contains(id)))
        .map(|(i, _)| i)
        .collect())
}

/// Chunks of candidates: the granted rows of the codes involved, judged in memory.
async fn allowed_sqlite(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    candidates: &[Uuid],
    req: &Requirement,
) -> Result<Vec<usize>, DbErr> {
    let Requirement::Codes {
        channel_code,
        night_codes,
    } = req
    else {
        return Ok(Vec::new());
    };
    let mut codes: Vec<String> = vec![channel_code.clone()];
    codes.extend(night_codes.iter().flatten().cloned());
    let mut out = Vec::new();
    for (chunk_no, chunk) in candidates.chunks(SQLITE_CHUNK).enumerate() {
        let rows: Vec<(Uuid, String)> = states::Entity::find()
            .select_only()
            .column(states::Column::MemberId)
            .column(states::Column::ConsentTypeCode)
            .filter(states::Column::TenantId.eq(tenant.as_uuid()))
            .filter(states::Column::Granted.eq(true))
            .filter(states::Column::ConsentTypeCode.is_in(codes.clone()))
            .filter(states::Column::MemberId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(tx)
            .await?;
        let mut granted: HashMap<Uuid, BTreeSet<String>> = HashMap::new();
        for (m, c) in rows {
            granted.entry(m).or_default().insert(c);
        }
        for (i, id) in chunk.iter().enumerate() {
            if granted.get(id).is_some_and(|g| req.met_by(g)) {
                out.push(chunk_no * SQLITE_CHUNK + i);
            }
        }
    }
    Ok(out)
}

/// Granted advertising consents whose cycle started at or before `cutoff` and that have no
/// notice for that cycle yet, oldest cycle first.
pub async fn due_for_reconfirmation(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<StateRow>, DbErr> {
    let b = tx.get_database_backend();
    let sql = placeholders(
        b,
        "SELECT s.* FROM consent_states s
         WHERE s.tenant_id = $1 AND s.granted AND s.advertising AND s.cycle_start_time <= $2
           AND NOT EXISTS (SELECT 1 FROM reconfirmation_notices r
                WHERE r.tenant_id = s.tenant_id AND r.member_id = s.member_id
                  AND r.consent_type_code = s.consent_type_code
                  AND r.cycle_start_time = s.cycle_start_time)
         ORDER BY s.cycle_start_time
         LIMIT $3",
    );
    let rows = tx
        .query_all_raw(Statement::from_sql_and_values(
            b,
            sql,
            [
                tenant.as_uuid().into(),
                cutoff.into(),
                (limit.min(i64::MAX as u64) as i64).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok(StateRow {
                tenant_id: r.try_get("", "tenant_id")?,
                member_id: r.try_get("", "member_id")?,
                consent_type_code: r.try_get("", "consent_type_code")?,
                granted: r.try_get("", "granted")?,
                version: r.try_get("", "version")?,
                collection_channel: r.try_get("", "collection_channel")?,
                actor: r.try_get("", "actor")?,
                advertising: r.try_get("", "advertising")?,
                cycle_start_time: r.try_get("", "cycle_start_time")?,
                change_time: r.try_get("", "change_time")?,
                created_time: r.try_get("", "created_time")?,
                updated_time: r.try_get("", "updated_time")?,
            })
        })
        .collect()
}

/// `$1, $2, ...` as SQLite's numbered `?1, ?2, ...`.
fn placeholders(b: DatabaseBackend, sql: &str) -> String {
    if b == DatabaseBackend::Postgres {
        sql.to_string()
    } else {
        sql.replace('$', "?")
    }
}

pub use rn::Model as NoticeRow;

/// Records the notice of one cycle; `false` when that cycle already has one.
pub async fn insert_notice(tx: &DatabaseTransaction, row: &NoticeRow) -> Result<bool, DbErr> {
    let rows = rn::Entity::insert(row.clone().into_active_model())
        .on_conflict(
            OnConflict::columns([
                rn::Column::TenantId,
                rn::Column::MemberId,
                rn::Column::ConsentTypeCode,
                rn::Column::CycleStartTime,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(tx)
        .await?;
    Ok(rows == 1)
}

pub async fn notice_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<NoticeRow>, DbErr> {
    rn::Entity::find()
        .filter(rn::Column::TenantId.eq(tenant.as_uuid()))
        .filter(rn::Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await
}

/// Marks a notice sent and starts the consent's next cycle at `sent` (when the consent is
/// still granted in the cycle the notice was for).
pub async fn mark_notice_sent(
    tx: &DatabaseTransaction,
    notice: &NoticeRow,
    sent: DateTime<Utc>,
    channel: &str,
) -> Result<(), DbErr> {
    rn::Entity::update_many()
        .col_expr(rn::Column::SentTime, Some(sent).into())
        .col_expr(rn::Column::SentChannel, Some(channel.to_string()).into())
        .col_expr(rn::Column::UpdatedTime, Utc::now().into())
        .filter(rn::Column::TenantId.eq(notice.tenant_id))
        .filter(rn::Column::Id.eq(notice.id))
        .exec(tx)
        .await?;
    states::Entity::update_many()
        .col_expr(states::Column::CycleStartTime, sent.into())
        .col_expr(states::Column::UpdatedTime, Utc::now().into())
        .filter(states::Column::TenantId.eq(notice.tenant_id))
        .filter(states::Column::MemberId.eq(notice.member_id))
        .filter(states::Column::ConsentTypeCode.eq(notice.consent_type_code.as_str()))
        .filter(states::Column::CycleStartTime.eq(notice.cycle_start_time))
        .filter(states::Column::Granted.eq(true))
        .exec(tx)
        .await?;
    Ok(())
}

/// A new notice row for a state due now.
pub fn new_notice(state: &StateRow, due_date: NaiveDate, now: DateTime<Utc>) -> NoticeRow {
    NoticeRow {
        tenant_id: state.tenant_id,
        id: Uuid::now_v7(),
        member_id: state.member_id,
        consent_type_code: state.consent_type_code.clone(),
        version: state.version,
        cycle_start_time: state.cycle_start_time,
        due_date,
        emit_time: now,
        sent_time: None,
        sent_channel: None,
        created_time: now,
        updated_time: now,
    }
}

//! Queries on `coupon_templates` and its counter shards `template_shards`, including the two
//! statements of the first-come hot path: one read of the template with its issued count, the
//! member's holding and projection status, and the conditional shard update that makes
//! over-issue impossible.
use std::collections::HashMap;

use chrono::NaiveDate;
use rand::Rng;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait,
    FromQueryResult, IntoActiveModel, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use spharos_kit::{TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{
    corrupt,
    entity::{
        coupon_templates::{Column, Entity, Model},
        template_shards as shards,
    },
    json_list, parse_list, raw,
};
use crate::domain::{
    discount::Discount,
    member::MemberState,
    template::{self, IssueMethod, Template, TemplateStatus},
    validity::Validity,
};

const T: &str = "coupon_templates";

fn parse_date(column: &str, s: Option<&str>) -> Result<NaiveDate, DbErr> {
    let s = s.unwrap_or_default();
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| corrupt(T, column, s))
}

fn to_domain(m: Model, issued_count: i64) -> Result<Template, DbErr> {
    let discount = match m.discount_kind.as_str() {
        "FIXED" => Discount::Fixed {
            amount_krw: m
                .discount_amount_krw
                .ok_or_else(|| corrupt(T, "discount_amount_krw", "NULL"))?,
        },
        "PERCENT" => Discount::Percent {
            rate_bp: m
                .discount_rate_bp
                .ok_or_else(|| corrupt(T, "discount_rate_bp", "NULL"))?,
            max_discount_krw: m.max_discount_krw,
        },
        other => return Err(corrupt(T, "discount_kind", other)),
    };
    let validity = match m.validity_kind.as_str() {
        "FIXED" => Validity::Fixed {
            start: parse_date("valid_start_date", m.valid_start_date.as_deref())?,
            end: parse_date("valid_end_date", m.valid_end_date.as_deref())?,
        },
        "DAYS" => Validity::DaysFromIssue(
            m.valid_days
                .ok_or_else(|| corrupt(T, "valid_days", "NULL"))?,
        ),
        other => return Err(corrupt(T, "validity_kind", other)),
    };
    let issue_methods = parse_list(T, "issue_methods", &m.issue_methods)?
        .iter()
        .map(|s| IssueMethod::parse(s).ok_or_else(|| corrupt(T, "issue_methods", s)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Template {
        id: m.id,
        name: m.name,
        description: m.description,
        discount,
        min_purchase_krw: m.min_purchase_krw,
        store_codes: parse_list(T, "store_codes", &m.store_codes)?,
        categories: parse_list(T, "categories", &m.categories)?,
        validity,
        total_quantity: m.total_quantity,
        issued_count,
        per_member_limit: m.per_member_limit,
        issue_methods,
        stackable: m.stackable,
        status: TemplateStatus::parse(&m.status).ok_or_else(|| corrupt(T, "status", &m.status))?,
        created_time: m.created_time,
        updated_time: m.updated_time,
    })
}

fn to_model(tenant: TenantId, t: &Template, shard_count: i32) -> Model {
    let (kind, amount, rate, cap) = match t.discount {
        Discount::Fixed { amount_krw } => ("FIXED", Some(amount_krw), None, None),
        Discount::Percent {
            rate_bp,
            max_discount_krw,
        } => ("PERCENT", None, Some(rate_bp), max_discount_krw),
    };
    let (vkind, start, end, days) = match t.validity {
        Validity::Fixed { start, end } => (
            "FIXED",
            Some(start.to_string()),
            Some(end.to_string()),
            None,
        ),
        Validity::DaysFromIssue(n) => ("DAYS", None, None, Some(n)),
    };
    let methods: Vec<String> = t
        .issue_methods
        .iter()
        .map(|m| m.as_str().to_string())
        .collect();
    Model {
        tenant_id: tenant.as_uuid(),
        id: t.id,
        name: t.name.clone(),
        description: t.description.clone(),
        discount_kind: kind.into(),
        discount_amount_krw: amount,
        discount_rate_bp: rate,
        max_discount_krw: cap,
        min_purchase_krw: t.min_purchase_krw,
        store_codes: json_list(&t.store_codes),
        categories: json_list(&t.categories),
        issue_methods: json_list(&methods),
        validity_kind: vkind.into(),
        valid_start_date: start,
        valid_end_date: end,
        valid_days: days,
        total_quantity: t.total_quantity,
        shard_count,
        per_member_limit: t.per_member_limit,
        stackable: t.stackable,
        status: t.status.as_str().into(),
        created_time: t.created_time,
        updated_time: t.updated_time,
    }
}

/// Stores a new template with its counter shards (quotas summing to the total).
pub async fn insert(tx: &DatabaseTransaction, tenant: TenantId, t: &Template) -> Result<(), DbErr> {
    let n = template::shard_count(t.total_quantity);
    Entity::insert(to_model(tenant, t, n).into_active_model())
        .exec_without_returning(tx)
        .await?;
    let quotas = template::shard_quotas(t.total_quantity, &vec![0; n as usize])
        .ok_or_else(|| DbErr::Custom(format!("template {} cannot split its quantity", t.id)))?;
    let rows = quotas.into_iter().enumerate().map(|(i, quota)| {
        shards::Model {
            tenant_id: tenant.as_uuid(),
            template_id: t.id,
            shard: i as i32,
            quota,
            issued: 0,
        }
        .into_active_model()
    });
    shards::Entity::insert_many(rows)
        .exec_without_returning(tx)
        .await?;
    Ok(())
}

/// How many coupons each template issued (sum over its shards).
async fn issued_counts(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, i64>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, i64)> = shards::Entity::find()
        .select_only()
        .column(shards::Column::TemplateId)
        // SUM of a bigint is numeric on PostgreSQL: cast back so both backends give an i64.
        .column_as(Expr::cust("CAST(SUM(issued) AS BIGINT)"), "issued")
        .filter(shards::Column::TenantId.eq(tenant.as_uuid()))
        .filter(shards::Column::TemplateId.is_in(ids.iter().copied()))
        .group_by(shards::Column::TemplateId)
        .into_tuple()
        .all(tx)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Models → templates with their issued counts (one extra query for the lot).
async fn with_counts(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    models: Vec<Model>,
) -> Result<Vec<Template>, DbErr> {
    let ids: Vec<Uuid> = models.iter().map(|m| m.id).collect();
    let counts = issued_counts(tx, tenant, &ids).await?;
    models
        .into_iter()
        .map(|m| {
            let n = counts.get(&m.id).copied().unwrap_or(0);
            to_domain(m, n)
        })
        .collect()
}

pub async fn get(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Template>, DbErr> {
    let m = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?;
    Ok(with_counts(tx, tenant, m.into_iter().collect())
        .await?
        .pop())
}

/// The template's terms without its issued count (`issued_count` reads 0): what the till
/// needs, one query cheaper than [`get`].
pub async fn get_terms(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Template>, DbErr> {
    Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .one(tx)
        .await?
        .map(|m| to_domain(m, 0))
        .transpose()
}

/// Like [`get`], locking the template row and its shards until the transaction ends
/// (PostgreSQL; SQLite is serial): claims in flight finish first, new ones wait.
pub async fn get_for_update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<Template>, DbErr> {
    let Some(m) = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .lock_exclusive()
        .one(tx)
        .await?
    else {
        return Ok(None);
    };
    let locked = lock_shards(tx, tenant, id).await?;
    let issued = locked.iter().map(|s| s.issued).sum();
    to_domain(m, issued).map(Some)
}

/// The template's shards in shard order, locked (always in the same order: no deadlock
/// between two updates).
async fn lock_shards(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Vec<shards::Model>, DbErr> {
    shards::Entity::find()
        .filter(shards::Column::TenantId.eq(tenant.as_uuid()))
        .filter(shards::Column::TemplateId.eq(id))
        .order_by_asc(shards::Column::Shard)
        .lock_exclusive()
        .all(tx)
        .await
}

/// Writes the fields `UpdateTemplate` may change. A new `total_quantity` is spread over the
/// shards on top of what each issued; `false` (nothing written) when it is below the issued
/// count. Call after [`get_for_update`], which holds the shards.
pub async fn update(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    t: &Template,
) -> Result<bool, DbErr> {
    let locked = lock_shards(tx, tenant, t.id).await?;
    let issued: Vec<i64> = locked.iter().map(|s| s.issued).collect();
    let Some(quotas) = template::shard_quotas(t.total_quantity, &issued) else {
        return Ok(false);
    };
    for (s, quota) in locked.iter().zip(quotas) {
        if s.quota != quota {
            shards::Entity::update_many()
                .col_expr(shards::Column::Quota, quota.into())
                .filter(shards::Column::TenantId.eq(tenant.as_uuid()))
                .filter(shards::Column::TemplateId.eq(t.id))
                .filter(shards::Column::Shard.eq(s.shard))
                .exec(tx)
                .await?;
        }
    }
    Entity::update_many()
        .col_expr(Column::Name, t.name.clone().into())
        .col_expr(Column::Description, t.description.clone().into())
        .col_expr(Column::Status, t.status.as_str().into())
        .col_expr(Column::TotalQuantity, t.total_quantity.into())
        .col_expr(Column::UpdatedTime, t.updated_time.into())
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(t.id))
        .exec(tx)
        .await?;
    Ok(true)
}

/// One page in id order (UUIDv7: creation order), after `page.after`.
pub async fn list(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    status: Option<TemplateStatus>,
    page: &PageRequest,
) -> Result<Vec<Template>, DbErr> {
    let mut q = Entity::find().filter(Column::TenantId.eq(tenant.as_uuid()));
    if let Some(s) = status {
        q = q.filter(Column::Status.eq(s.as_str()));
    }
    if let Some(after) = page.after {
        q = q.filter(Column::Id.gt(after));
    }
    let models = q
        .order_by_asc(Column::Id)
        .limit(page.fetch_limit())
        .all(tx)
        .await?;
    with_counts(tx, tenant, models).await
}

/// The templates with these ids (for naming the coupons of a page).
pub async fn by_ids(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<Template>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let models = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .all(tx)
        .await?;
    with_counts(tx, tenant, models).await
}

/// Every ACTIVE template that allows `method` (the automatic issuers' list).
pub async fn active_with_method(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    method: IssueMethod,
) -> Result<Vec<Template>, DbErr> {
    let models = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Status.eq(TemplateStatus::Active.as_str()))
        .order_by_asc(Column::Id)
        .all(tx)
        .await?;
    Ok(with_counts(tx, tenant, models)
        .await?
        .into_iter()
        .filter(|t| t.issue_methods.contains(&method))
        .collect())
}

/// What an issue needs to decide, read in one round trip.
#[derive(Debug, Clone)]
pub struct IssueContext {
    pub template: Template,
    /// How many counter shards the template has.
    pub shards: i32,
    /// Coupons of this template the member holds (any status).
    pub held: i64,
    /// The member in the projection; `None` when its events have not arrived.
    pub member: Option<MemberState>,
}

/// The template with its issued count, how many of its coupons the member holds, and the
/// member's projected status, in one statement: the first-come path has no round trip to
/// spare.
pub async fn load_for_issue(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    template_id: Uuid,
    member_id: Uuid,
) -> Result<Option<IssueContext>, DbErr> {
    let stmt = raw(
        tx.get_database_backend(),
        "SELECT t.*,
           (SELECT CAST(COALESCE(SUM(s.issued), 0) AS BIGINT) FROM template_shards s
             WHERE s.tenant_id = t.tenant_id AND s.template_id = t.id) AS issued,
           (SELECT COUNT(*) FROM issued_coupons c
             WHERE c.tenant_id = t.tenant_id AND c.template_id = t.id AND c.member_id = $3) AS held,
           (SELECT m.status FROM coupon_members m
             WHERE m.tenant_id = t.tenant_id AND m.member_id = $3) AS member_status
         FROM coupon_templates t
         WHERE t.tenant_id = $1 AND t.id = $2",
        vec![
            tenant.as_uuid().into(),
            template_id.into(),
            member_id.into(),
        ],
    );
    let Some(row) = tx.query_one_raw(stmt).await? else {
        return Ok(None);
    };
    let model = Model::from_query_result(&row, "")?;
    let issued: i64 = row.try_get("", "issued")?;
    let held: i64 = row.try_get("", "held")?;
    let status: Option<String> = row.try_get("", "member_status")?;
    let member = status
        .map(|s| MemberState::parse(&s).ok_or_else(|| corrupt("coupon_members", "status", &s)))
        .transpose()?;
    let shards = model.shard_count;
    Ok(Some(IssueContext {
        template: to_domain(model, issued)?,
        shards,
        held,
        member,
    }))
}

/// Takes one coupon from the template's quantity: `true` when a shard had room and the
/// template is still ACTIVE. The exact guard against over-issue: each shard's update is
/// conditional on `issued < quota`, PostgreSQL re-checks it on the latest row version after
/// waiting for a concurrent claim's lock, and the quotas sum to the total. A random shard
/// first (claims spread over the shards and commit in parallel); when it is full, the others
/// that still have room, until none has: only then is the template sold out.
pub async fn take_one(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
    shard_count: i32,
) -> Result<bool, DbErr> {
    let backend = tx.get_database_backend();
    let take = |shard: i32| {
        raw(
            backend,
            "UPDATE template_shards SET issued = issued + 1
             WHERE tenant_id = $1 AND template_id = $2 AND shard = $3
               AND (quota IS NULL OR issued < quota)
               AND EXISTS (SELECT 1 FROM coupon_templates t
                           WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'ACTIVE')",
            vec![tenant.as_uuid().into(), id.into(), shard.into()],
        )
    };
    let first = rand::thread_rng().gen_range(0..Ord::max(shard_count, 1));
    if tx.execute_raw(take(first)).await?.rows_affected() == 1 {
        return Ok(true);
    }
    // Near the end of a rush: try the shards that (as last committed) still have room. A shard
    // whose last unit a concurrent claim holds is waited for, then re-checked. Every round
    // either takes a unit or finds one more shard full, so this ends.
    for _ in 0..=shard_count {
        let open: Vec<i32> = shards::Entity::find()
            .select_only()
            .column(shards::Column::Shard)
            .filter(shards::Column::TenantId.eq(tenant.as_uuid()))
            .filter(shards::Column::TemplateId.eq(id))
            .filter(
                Condition::any()
                    .add(shards::Column::Quota.is_null())
                    .add(Expr::col(shards::Column::Issued).lt(Expr::col(shards::Column::Quota))),
            )
            .into_tuple()
            .all(tx)
            .await?;
        if open.is_empty() {
            return Ok(false);
        }
        let pick = open[rand::thread_rng().gen_range(0..open.len())];
        if tx.execute_raw(take(pick)).await?.rows_affected() == 1 {
            return Ok(true);
        }
        if !is_active(tx, tenant, id).await? {
            return Ok(false);
        }
    }
    Ok(false)
}

/// `ids`' templates, each with its counter shards as last committed (in shard order) and the
/// issued count they sum to: what a batch of claims judges its claims by and plans to take
/// its units from ([`take_from_shards`] re-checks them). Two queries for the batch.
pub async fn for_claims(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    ids: &[Uuid],
) -> Result<Vec<(Template, Vec<shards::Model>)>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let models = Entity::find()
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.is_in(ids.iter().copied()))
        .all(tx)
        .await?;
    let mut all = shards_of(tx, tenant, ids).await?;
    models
        .into_iter()
        .map(|m| {
            let mine: Vec<shards::Model> = all
                .iter()
                .filter(|s| s.template_id == m.id)
                .cloned()
                .collect();
            all.retain(|s| s.template_id != m.id);
            let issued = mine.iter().map(|s| s.issued).sum();
            Ok((to_domain(m, issued)?, mine))
        })
        .collect()
}

/// The counter shards of `templates` as last committed, in (template, shard) order: where a
/// batch of claims plans to take its units ([`take_from_shards`] re-checks them).
async fn shards_of(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    templates: &[Uuid],
) -> Result<Vec<shards::Model>, DbErr> {
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    shards::Entity::find()
        .filter(shards::Column::TenantId.eq(tenant.as_uuid()))
        .filter(shards::Column::TemplateId.is_in(templates.iter().copied()))
        .order_by_asc(shards::Column::TemplateId)
        .order_by_asc(shards::Column::Shard)
        .all(tx)
        .await
}

/// Adds `takes` (shard, units) to the template's shard counters in one statement, each only
/// if its quota still has the room and the template is still ACTIVE: `false` when any of
/// them did not (a concurrent claim took the units, or the template stopped; the caller rolls
/// back, as some shards may have been updated). Exact like [`take_one`]: PostgreSQL re-checks
/// each condition on the latest row version after waiting for a concurrent update's lock.
pub async fn take_from_shards(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    template: Uuid,
    takes: &[(i32, i64)],
) -> Result<bool, DbErr> {
    if takes.is_empty() {
        return Ok(true);
    }
    let mut values: Vec<sea_orm::Value> = vec![tenant.as_uuid().into(), template.into()];
    let mut cases = String::new();
    let mut list = Vec::with_capacity(takes.len());
    for (shard, units) in takes {
        let n = values.len();
        cases.push_str(&format!(" WHEN ${} THEN ${}", n + 1, n + 2));
        list.push(format!("${}", n + 1));
        values.push((*shard).into());
        values.push((*units).into());
    }
    let sql = format!(
        "UPDATE template_shards SET issued = issued + CASE shard{cases} ELSE 0 END
         WHERE tenant_id = $1 AND template_id = $2 AND shard IN ({list})
           AND (quota IS NULL OR issued + CASE shard{cases} ELSE 0 END <= quota)
           AND EXISTS (SELECT 1 FROM coupon_templates t
                       WHERE t.tenant_id = $1 AND t.id = $2 AND t.status = 'ACTIVE')",
        list = list.join(", ")
    );
    let done = tx
        .execute_raw(raw(tx.get_database_backend(), &sql, values))
        .await?
        .rows_affected();
    Ok(done == takes.len() as u64)
}

async fn is_active(tx: &DatabaseTransaction, tenant: TenantId, id: Uuid) -> Result<bool, DbErr> {
    let status: Option<String> = Entity::find()
        .select_only()
        .column(Column::Status)
        .filter(Column::TenantId.eq(tenant.as_uuid()))
        .filter(Column::Id.eq(id))
        .into_tuple()
        .one(tx)
        .await?;
    Ok(status.as_deref() == Some(TemplateStatus::Active.as_str()))
}

/// The issued count as stored (sum over the shards); `None` for an unknown template.
pub async fn issued_count(
    tx: &DatabaseTransaction,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<i64>, DbErr> {
    Ok(get(tx, tenant, id).await?.map(|t| t.issued_count))
}

//! The gRPC boundary of `spharos.points.v1.PointsService`: the only file that knows the API's
//! prost types. It takes the tenant from the verified token, forwards the caller's token to
//! the member service (through [`Caller`]), converts requests into domain forms, calls the
//! application layer and converts back. Validation itself lives in the domain forms.
use spharos_kit::{
    ServiceError, TenantId,
    auth::{PERM_PII_UNMASK, Principal, principal},
    grpc::{from_timestamp, mask_paths, parse_uuid, timestamp},
    paging::PageRequest,
};
use spharos_proto::{
    common::{MemberRef, member_ref},
    points::{self as pb, cancel_request, points_service_server::PointsService},
};
use tonic::{Request, Response, Status};

use crate::{
    PERM_POINTS_ADMIN,
    app::{BalanceView, PointsApp, QuoteView, TransactionView},
    domain::{
        forms::{
            AdjustForm, CancelForm, CancelTargetForm, EarnForm, HistoryForm, MemberRefForm,
            PreviewForm, SpendForm, TxKind,
        },
        policy::{LineItem, Policy, PolicyForm, PromotionForm, ShortfallRule, VersionedPolicy},
    },
    events::tx_type,
    members::Caller,
};

const POLICY_MASK_PATHS: &[&str] = &[
    "base_rate_bp",
    "grade_rates",
    "store_multipliers",
    "category_multipliers",
    "promotions",
    "min_purchase_krw",
    "max_points_per_earn",
    "validity_months",
    "validity_days",
    "pending_days",
    "min_balance_to_spend",
    "spend_unit",
    "earn_cancel_shortfall",
];

/// The service implementation tonic serves (wrapped in the kit's `AuthInterceptor`).
#[derive(Clone, Debug)]
pub struct PointsGrpc {
    pub app: PointsApp,
}

type Rpc<T> = Result<Response<T>, Status>;

/// The verified caller, with the token to forward to the member service.
fn caller<T>(request: &Request<T>) -> Result<(Principal, Caller), Status> {
    let p = principal(request)?;
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let c = Caller {
        authorization,
        actor: p.subject.clone(),
    };
    Ok((p, c))
}

fn require_admin(p: &Principal) -> Result<(), ServiceError> {
    p.require(PERM_POINTS_ADMIN)
}

// ---- wire → domain ----------------------------------------------------------------------

fn member_ref(m: Option<MemberRef>) -> MemberRefForm {
    match m.and_then(|m| m.r#ref) {
        Some(member_ref::Ref::MemberId(id)) => MemberRefForm::Id(id),
        Some(member_ref::Ref::CardNumber(n)) => MemberRefForm::Card(n),
        None => MemberRefForm::Missing,
    }
}

fn line_items(items: Vec<pb::LineItem>) -> Vec<LineItem> {
    items
        .into_iter()
        .map(|i| LineItem {
            sku: i.sku,
            category: i.category,
            amount_krw: i.amount_krw,
            quantity: i.quantity,
        })
        .collect()
}

fn tx_kind(t: i32) -> Option<TxKind> {
    Some(match pb::TransactionType::try_from(t).ok()? {
        pb::TransactionType::Earn => TxKind::Earn,
        pb::TransactionType::Spend => TxKind::Spend,
        pb::TransactionType::CancelEarn => TxKind::CancelEarn,
        pb::TransactionType::CancelSpend => TxKind::CancelSpend,
        pb::TransactionType::Adjust => TxKind::Adjust,
        pb::TransactionType::Expire => TxKind::Expire,
        pb::TransactionType::Unspecified => return None,
    })
}

/// Applies the masked fields of `p` onto `form`.
fn merge_policy(
    form: &mut PolicyForm,
    paths: &[String],
    p: pb::PointsPolicy,
) -> Result<(), ServiceError> {
    for path in paths {
        match path.as_str() {
            "base_rate_bp" => form.base_rate_bp = p.base_rate_bp,
            "grade_rates" => {
                form.grade_rates = p
                    .grade_rates
                    .iter()
                    .map(|g| (g.grade_id.clone(), g.rate_bp))
                    .collect();
            }
            "store_multipliers" => {
                form.store_multipliers = p
                    .store_multipliers
                    .iter()
                    .map(|s| (s.store_code.clone(), s.multiplier_bp))
                    .collect();
            }
            "category_multipliers" => {
                form.category_multipliers = p
                    .category_multipliers
                    .iter()
                    .map(|c| (c.category.clone(), c.multiplier_bp))
                    .collect();
            }
            "promotions" => {
                form.promotions = p
                    .promotions
                    .iter()
                    .map(|x| PromotionForm {
                        name: x.name.clone(),
                        start_date: x.start_date.clone(),
                        end_date: x.end_date.clone(),
                        store_codes: x.store_codes.clone(),
                        multiplier_bp: x.multiplier_bp,
                        bonus_points: x.bonus_points,
                    })
                    .collect();
            }
            "min_purchase_krw" => form.min_purchase_krw = p.min_purchase_krw,
            "max_points_per_earn" => form.max_points_per_earn = p.max_points_per_earn,
            "validity_months" => form.validity_months = p.validity_months,
            "validity_days" => form.validity_days = p.validity_days,
            "pending_days" => form.pending_days = p.pending_days,
            "min_balance_to_spend" => form.min_balance_to_spend = p.min_balance_to_spend,
            "spend_unit" => form.spend_unit = p.spend_unit,
            "earn_cancel_shortfall" => {
                form.earn_cancel_shortfall =
                    match pb::EarnCancelShortfall::try_from(p.earn_cancel_shortfall) {
                        Ok(pb::EarnCancelShortfall::Unspecified) => None,
                        Ok(pb::EarnCancelShortfall::Debt) => Some(ShortfallRule::Debt),
                        Ok(pb::EarnCancelShortfall::Reject) => Some(ShortfallRule::Reject),
                        Err(_) => {
                            return Err(ServiceError::invalid(
                                "policy.earn_cancel_shortfall",
                                "알 수 없는 값입니다 (unknown value)",
                            ));
                        }
                    };
            }
            // mask_paths admitted only the paths above.
            other => {
                return Err(ServiceError::invalid(
                    "update_mask",
                    format!("{other:?} cannot be updated"),
                ));
            }
        }
    }
    Ok(())
}

// ---- domain → wire ----------------------------------------------------------------------

fn pb_policy(v: VersionedPolicy) -> pb::PointsPolicy {
    let p: Policy = v.policy;
    pb::PointsPolicy {
        version: v.version,
        base_rate_bp: p.base_rate_bp,
        grade_rates: p
            .grade_rates
            .iter()
            .map(|(g, r)| pb::GradeRate {
                grade_id: g.to_string(),
                rate_bp: *r,
            })
            .collect(),
        store_multipliers: p
            .store_multipliers
            .iter()
            .map(|(s, m)| pb::StoreMultiplier {
                store_code: s.clone(),
                multiplier_bp: *m,
            })
            .collect(),
        category_multipliers: p
            .category_multipliers
            .iter()
            .map(|(c, m)| pb::CategoryMultiplier {
                category: c.clone(),
                multiplier_bp: *m,
            })
            .collect(),
        promotions: p
            .promotions
            .iter()
            .map(|x| pb::Promotion {
                name: x.name.clone(),
                start_date: x.start_date.to_string(),
                end_date: x.end_date.to_string(),
                store_codes: x.store_codes.clone(),
                multiplier_bp: x.multiplier_bp,
                bonus_points: x.bonus_points,
            })
            .collect(),
        min_purchase_krw: p.min_purchase_krw,
        max_points_per_earn: p.max_points_per_earn,
        validity_months: p.validity_months,
        validity_days: p.validity_days,
        pending_days: p.pending_days,
        min_balance_to_spend: p.min_balance_to_spend,
        spend_unit: p.spend_unit,
        earn_cancel_shortfall: match p.earn_cancel_shortfall {
            ShortfallRule::Debt => pb::EarnCancelShortfall::Debt,
            ShortfallRule::Reject => pb::EarnCancelShortfall::Reject,
        }
        .into(),
        update_time: v.updated_time.map(timestamp),
        updated_by: v.updated_by,
    }
}

fn pb_transaction(t: TransactionView) -> pb::Transaction {
    pb::Transaction {
        transaction_id: t.id.to_string(),
        member_id: t.member_id.to_string(),
        r#type: tx_type(t.kind).into(),
        points: t.points,
        balance_after: t.balance_after,
        store_code: t.store_code.unwrap_or_default(),
        pos_transaction_id: t.pos_transaction_id.unwrap_or_default(),
        amount_krw: t.amount_krw,
        original_transaction_id: t
            .original_transaction_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        policy_version: t.policy_version.unwrap_or(0),
        rate_bp: t.rate_bp.unwrap_or(0),
        reason: t.reason.unwrap_or_default(),
        actor: t.actor,
        expire_time: t.expire_time.map(timestamp),
        available_time: t.available_time.map(timestamp),
        debt_delta: t.debt_delta,
        occurred_time: Some(timestamp(t.occurred_time)),
        create_time: Some(timestamp(t.created_time)),
    }
}

fn pb_balance(b: BalanceView) -> pb::Balance {
    pb::Balance {
        member_id: b.member_id.to_string(),
        available: b.available,
        pending: b.pending,
        debt: b.debt,
        balance: b.balance(),
        expiring_within_30_days: b.expiring_within_30_days,
        expiring_until_date: b.expiring_until_date.to_string(),
        lifetime_earned: b.lifetime_earned,
        lifetime_spent: b.lifetime_spent,
    }
}

fn pb_quote(q: QuoteView) -> pb::EarnQuote {
    pb::EarnQuote {
        points: q.quote.points,
        policy_version: q.policy_version,
        rate_bp: q.quote.rate_bp,
        bonus_points: q.quote.bonus_points,
        capped: q.quote.capped,
        below_minimum: q.quote.below_minimum,
        promotions: q.quote.promotions,
        expire_time: Some(timestamp(q.expire_time)),
        available_time: Some(timestamp(q.available_time)),
    }
}

fn tenant_of(p: &Principal) -> TenantId {
    p.tenant
}

#[tonic::async_trait]
impl PointsService for PointsGrpc {
    async fn get_points_policy(
        &self,
        request: Request<pb::GetPointsPolicyRequest>,
    ) -> Rpc<pb::GetPointsPolicyResponse> {
        let p = principal(&request)?;
        let policy = self.app.get_policy(p.tenant).await?;
        Ok(Response::new(pb::GetPointsPolicyResponse {
            policy: Some(pb_policy(policy)),
        }))
    }

    async fn update_points_policy(
        &self,
        request: Request<pb::UpdatePointsPolicyRequest>,
    ) -> Rpc<pb::UpdatePointsPolicyResponse> {
        let p = principal(&request)?;
        require_admin(&p)?;
        let r = request.into_inner();
        let paths = mask_paths(r.update_mask.as_ref(), POLICY_MASK_PATHS)?;
        if r.expected_version < 0 {
            return Err(ServiceError::invalid("expected_version", "must not be negative").into());
        }
        let expected = (r.expected_version > 0).then_some(r.expected_version);
        let incoming = r.policy.unwrap_or_default();
        let policy = self
            .app
            .update_policy(p.tenant, &p.subject, expected, |current| {
                let mut form = current.to_form();
                merge_policy(&mut form, &paths, incoming)?;
                form.validate()
            })
            .await?;
        Ok(Response::new(pb::UpdatePointsPolicyResponse {
            policy: Some(pb_policy(policy)),
        }))
    }

    async fn preview_earn(
        &self,
        request: Request<pb::PreviewEarnRequest>,
    ) -> Rpc<pb::PreviewEarnResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let form = PreviewForm {
            member: member_ref(r.member),
            store_code: r.store_code,
            amount_krw: r.amount_krw,
            items: line_items(r.items),
            occurred_time: from_timestamp(r.occurred_time.as_ref(), "occurred_time")?,
        };
        let quote = self.app.preview_earn(tenant_of(&p), &c, form).await?;
        Ok(Response::new(pb::PreviewEarnResponse {
            quote: Some(pb_quote(quote)),
        }))
    }

    async fn earn(&self, request: Request<pb::EarnRequest>) -> Rpc<pb::EarnResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let form = EarnForm {
            member: member_ref(r.member),
            store_code: r.store_code,
            pos_transaction_id: r.pos_transaction_id,
            amount_krw: r.amount_krw,
            items: line_items(r.items),
            occurred_time: from_timestamp(r.occurred_time.as_ref(), "occurred_time")?,
            idempotency_key: r.idempotency_key,
        };
        let e = self.app.earn(tenant_of(&p), &c, form).await?;
        Ok(Response::new(pb::EarnResponse {
            transaction: Some(pb_transaction(e.transaction)),
            quote: Some(pb_quote(e.quote)),
            balance: Some(pb_balance(e.balance)),
        }))
    }

    async fn spend(&self, request: Request<pb::SpendRequest>) -> Rpc<pb::SpendResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let form = SpendForm {
            member: member_ref(r.member),
            points: r.points,
            store_code: r.store_code,
            pos_transaction_id: r.pos_transaction_id,
            idempotency_key: r.idempotency_key,
        };
        let s = self.app.spend(tenant_of(&p), &c, form).await?;
        Ok(Response::new(pb::SpendResponse {
            transaction: Some(pb_transaction(s.transaction)),
            balance: Some(pb_balance(s.balance)),
        }))
    }

    async fn cancel(&self, request: Request<pb::CancelRequest>) -> Rpc<pb::CancelResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let target = match r.target {
            Some(cancel_request::Target::TransactionId(id)) => CancelTargetForm::TransactionId(id),
            Some(cancel_request::Target::Pos(pos)) => {
                CancelTargetForm::Pos(pos.store_code, pos.pos_transaction_id, tx_kind(pos.r#type))
            }
            None => CancelTargetForm::Missing,
        };
        let form = CancelForm {
            target,
            refund_amount_krw: r.refund_amount_krw,
            points: r.points,
            store_code: r.store_code,
            pos_transaction_id: r.pos_transaction_id,
            reason: r.reason,
            idempotency_key: r.idempotency_key,
        };
        let x = self.app.cancel(tenant_of(&p), &c, form).await?;
        Ok(Response::new(pb::CancelResponse {
            transaction: Some(pb_transaction(x.transaction)),
            balance: Some(pb_balance(x.balance)),
        }))
    }

    async fn adjust(&self, request: Request<pb::AdjustRequest>) -> Rpc<pb::AdjustResponse> {
        let (p, c) = caller(&request)?;
        require_admin(&p)?;
        let r = request.into_inner();
        let form = AdjustForm {
            member: member_ref(r.member),
            points: r.points,
            reason: r.reason,
            idempotency_key: r.idempotency_key,
        };
        let a = self.app.adjust(tenant_of(&p), &c, form).await?;
        Ok(Response::new(pb::AdjustResponse {
            transaction: Some(pb_transaction(a.transaction)),
            balance: Some(pb_balance(a.balance)),
        }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Rpc<pb::GetBalanceResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let key = member_ref(r.member).validate()?;
        let b = self.app.balance(tenant_of(&p), &c, &key).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: Some(pb_balance(b)),
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Rpc<pb::ListTransactionsResponse> {
        let (p, c) = caller(&request)?;
        let r = request.into_inner();
        let form = HistoryForm {
            member: member_ref(r.member),
            types: r.types.iter().map(|t| tx_kind(*t)).collect(),
            start_date: r.start_date,
            end_date: r.end_date,
        };
        // Page errors join the form's, so one answer names every bad field.
        let page = PageRequest::parse(r.page_size, &r.page_token);
        let checked = form.validate();
        let page = match (page, checked) {
            (Ok(page), Ok(_)) => page,
            (Err(ServiceError::InvalidArgument(mut a)), Err(ServiceError::InvalidArgument(b))) => {
                a.extend(b);
                return Err(ServiceError::InvalidArgument(a).into());
            }
            (Err(e), _) | (_, Err(e)) => return Err(e.into()),
        };
        let (rows, next) = self.app.history(tenant_of(&p), &c, form, page).await?;
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: rows.into_iter().map(pb_transaction).collect(),
            next_page_token: next,
        }))
    }

    async fn export_member_data(
        &self,
        request: Request<pb::ExportMemberDataRequest>,
    ) -> Rpc<pb::ExportMemberDataResponse> {
        let p = principal(&request)?;
        let member = parse_uuid(&request.get_ref().member_id, "member_id")?;
        p.require(PERM_PII_UNMASK)?;
        let document = self.app.export_member_data(p.tenant, member).await?;
        Ok(Response::new(pb::ExportMemberDataResponse {
            document_json: document.to_string(),
        }))
    }

    async fn run_expiry(
        &self,
        request: Request<pb::RunExpiryRequest>,
    ) -> Rpc<pb::RunExpiryResponse> {
        let p = principal(&request)?;
        require_admin(&p)?;
        let run = self.app.run_expiry(p.tenant, crate::app::now()).await?;
        Ok(Response::new(pb::RunExpiryResponse {
            expired_members: run.expired_members,
            expired_points: run.expired_points,
            notices: run.notices,
        }))
    }
}

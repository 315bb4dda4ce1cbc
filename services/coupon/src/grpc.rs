//! The gRPC boundary of `spharos.coupon.v1.CouponService`: the only file that knows the API's
//! prost types. It takes the tenant from the verified token, converts requests into domain
//! inputs (collecting every bad field), calls the application layer and converts back.
use chrono::Utc;
use spharos_kit::{
    ServiceError, TenantId, Violations,
    auth::{PERM_PII_UNMASK, principal},
    grpc::{mask_paths, parse_uuid, timestamp},
    paging::PageRequest,
};
use spharos_proto::coupon::{
    self as pb, coupon_service_server::CouponService, discount, get_coupon_request,
    get_voucher_request, validity,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    app::{CouponApp, CouponView, TillRequest, VoucherForm},
    domain::{
        bulk::{BulkIssue, BulkItem, BulkItemStatus, BulkStatus},
        code,
        coupon::{Basket, BasketItem, CouponStatus, Redemption, RedemptionStatus, WalletView},
        discount::Discount,
        template::{IssueMethod, Template, TemplateForm, TemplatePatch, TemplateStatus},
        validity::{Validity, ValidityForm},
        voucher::{Voucher, VoucherStatus, VoucherTransaction, VoucherTransactionKind},
    },
    events::issue_method as pb_issue_method,
};

const TEMPLATE_MASK_PATHS: &[&str] = &["name", "description", "status", "total_quantity"];
/// Bad member ids named one by one in a bulk request, at most (the rest are counted).
const MAX_NAMED_BAD_IDS: usize = 20;

/// The service implementation tonic serves (wrapped in the kit's `AuthInterceptor`).
#[derive(Clone, Debug)]
pub struct CouponGrpc {
    pub app: CouponApp,
}

type Rpc<T> = Result<Response<T>, Status>;

fn tenant<T>(request: &Request<T>) -> Result<TenantId, Status> {
    Ok(principal(request)?.tenant)
}

/// A UUID field, recording a violation instead of failing at once.
fn uuid_field(v: &mut Violations, value: &str, field: &str) -> Option<Uuid> {
    match parse_uuid(value, field) {
        Ok(u) => Some(u),
        Err(ServiceError::InvalidArgument(f)) => {
            for x in f {
                v.add(&x.field, x.description);
            }
            None
        }
        Err(_) => None,
    }
}

fn optional_uuid_field(v: &mut Violations, value: &str, field: &str) -> Option<Uuid> {
    if value.is_empty() {
        None
    } else {
        uuid_field(v, value, field)
    }
}

fn finish(v: Violations) -> Result<(), Status> {
    v.finish().map_err(Status::from)
}

fn proven<T>(v: Option<T>) -> Result<T, Status> {
    v.ok_or_else(|| ServiceError::internal("a checked field went missing").into())
}

// ---- conversions: wire → domain ---------------------------------------------------------

fn issue_method_from(value: i32) -> Option<IssueMethod> {
    match pb::IssueMethod::try_from(value).ok()? {
        pb::IssueMethod::Unspecified => None,
        pb::IssueMethod::Admin => Some(IssueMethod::Admin),
        pb::IssueMethod::Campaign => Some(IssueMethod::Campaign),
        pb::IssueMethod::Claim => Some(IssueMethod::Claim),
        pb::IssueMethod::OnJoin => Some(IssueMethod::OnJoin),
        pb::IssueMethod::Birthday => Some(IssueMethod::Birthday),
    }
}

/// ADMIN (also for UNSPECIFIED) or CAMPAIGN; anything else is a violation of `field`.
fn manual_method(v: &mut Violations, value: i32, field: &str) -> IssueMethod {
    match (value, issue_method_from(value)) {
        (0, _) => IssueMethod::Admin,
        (_, Some(m)) if m.is_manual() => m,
        _ => {
            v.add(
                field,
                "ADMIN 또는 CAMPAIGN만 지정할 수 있습니다 (must be ADMIN or CAMPAIGN)",
            );
            IssueMethod::Admin
        }
    }
}

fn template_status_from(value: i32) -> Option<TemplateStatus> {
    match pb::TemplateStatus::try_from(value).ok()? {
        pb::TemplateStatus::Unspecified => None,
        pb::TemplateStatus::Draft => Some(TemplateStatus::Draft),
        pb::TemplateStatus::Active => Some(TemplateStatus::Active),
        pb::TemplateStatus::Paused => Some(TemplateStatus::Paused),
        pb::TemplateStatus::Ended => Some(TemplateStatus::Ended),
    }
}

fn discount_from(d: Option<&pb::Discount>) -> Option<Discount> {
    match d?.kind.as_ref()? {
        discount::Kind::AmountKrw(a) => Some(Discount::Fixed { amount_krw: *a }),
        discount::Kind::Percent(p) => Some(Discount::Percent {
            rate_bp: p.rate_bp,
            max_discount_krw: (p.max_discount_krw != 0).then_some(p.max_discount_krw),
        }),
    }
}

fn validity_from(v: Option<&pb::Validity>) -> Option<ValidityForm> {
    match v?.kind.as_ref()? {
        validity::Kind::Fixed(r) => Some(ValidityForm::Fixed {
            start_date: r.start_date.clone(),
            end_date: r.end_date.clone(),
        }),
        validity::Kind::DaysFromIssue(n) => Some(ValidityForm::DaysFromIssue(*n)),
    }
}

fn basket_from(b: Option<pb::Basket>, v: &mut Violations) -> Basket {
    let Some(b) = b else {
        v.add("basket", "필수 항목입니다 (is required)");
        return Basket {
            amount_krw: 0,
            store_code: String::new(),
            items: Vec::new(),
        };
    };
    Basket {
        amount_krw: b.amount_krw,
        store_code: b.store_code,
        items: b
            .items
            .into_iter()
            .map(|i| BasketItem {
                sku: i.sku,
                category: i.category,
                amount_krw: i.amount_krw,
            })
            .collect(),
    }
}

// ---- conversions: domain → wire ---------------------------------------------------------

fn pb_template_status(s: TemplateStatus) -> pb::TemplateStatus {
    match s {
        TemplateStatus::Draft => pb::TemplateStatus::Draft,
        TemplateStatus::Active => pb::TemplateStatus::Active,
        TemplateStatus::Paused => pb::TemplateStatus::Paused,
        TemplateStatus::Ended => pb::TemplateStatus::Ended,
    }
}

fn pb_template(t: Template) -> pb::CouponTemplate {
    pb::CouponTemplate {
        template_id: t.id.to_string(),
        name: t.name,
        description: t.description,
        discount: Some(pb::Discount {
            kind: Some(match t.discount {
                Discount::Fixed { amount_krw } => discount::Kind::AmountKrw(amount_krw),
                Discount::Percent {
                    rate_bp,
                    max_discount_krw,
                } => discount::Kind::Percent(pb::PercentOff {
                    rate_bp,
                    max_discount_krw: max_discount_krw.unwrap_or(0),
                }),
            }),
        }),
        min_purchase_krw: t.min_purchase_krw,
        store_codes: t.store_codes,
        categories: t.categories,
        validity: Some(pb_validity(t.validity)),
        total_quantity: t.total_quantity.unwrap_or(0),
        issued_count: t.issued_count,
        per_member_limit: t.per_member_limit.unwrap_or(0),
        issue_methods: t
            .issue_methods
            .into_iter()
            .map(|m| pb_issue_method(m).into())
            .collect(),
        stackable: t.stackable,
        status: pb_template_status(t.status).into(),
        create_time: Some(timestamp(t.created_time)),
        update_time: Some(timestamp(t.updated_time)),
    }
}

fn pb_validity(v: Validity) -> pb::Validity {
    pb::Validity {
        kind: Some(match v {
            Validity::Fixed { start, end } => validity::Kind::Fixed(pb::DateRange {
                start_date: start.to_string(),
                end_date: end.to_string(),
            }),
            Validity::DaysFromIssue(n) => validity::Kind::DaysFromIssue(n),
        }),
    }
}

fn pb_coupon(v: CouponView) -> pb::Coupon {
    let c = v.coupon;
    pb::Coupon {
        coupon_id: c.id.to_string(),
        template_id: c.template_id.to_string(),
        template_name: v.template_name,
        member_id: c.member_id.to_string(),
        display_code: code::display(&c.code),
        status: match c.effective_status(Utc::now()) {
            CouponStatus::Issued => pb::CouponStatus::Issued,
            CouponStatus::Redeemed => pb::CouponStatus::Redeemed,
            CouponStatus::Expired => pb::CouponStatus::Expired,
        }
        .into(),
        code: c.code,
        issue_method: pb_issue_method(c.issue_method).into(),
        issue_time: Some(timestamp(c.issue_time)),
        valid_from_time: Some(timestamp(c.valid_from_time)),
        expire_time: Some(timestamp(c.expire_time)),
        redeem_time: c.redeem_time.map(timestamp),
    }
}

fn pb_redemption(r: Redemption) -> pb::Redemption {
    pb::Redemption {
        redemption_id: r.id.to_string(),
        coupon_id: r.coupon_id.to_string(),
        member_id: r.member_id.to_string(),
        pos_transaction_id: r.pos_transaction_id,
        store_code: r.store_code,
        amount_krw: r.amount_krw,
        discount_krw: r.discount_krw,
        status: match r.status {
            RedemptionStatus::Redeemed => pb::RedemptionStatus::Redeemed,
            RedemptionStatus::Cancelled => pb::RedemptionStatus::Cancelled,
        }
        .into(),
        redeem_time: Some(timestamp(r.redeem_time)),
        cancel_time: r.cancel_time.map(timestamp),
    }
}

fn pb_bulk(b: BulkIssue) -> pb::BulkIssue {
    pb::BulkIssue {
        bulk_issue_id: b.id.to_string(),
        template_id: b.template_id.to_string(),
        issue_method: pb_issue_method(b.issue_method).into(),
        status: match b.status {
            BulkStatus::Running => pb::BulkIssueStatus::Running,
            BulkStatus::Completed => pb::BulkIssueStatus::Completed,
        }
        .into(),
        total: b.total,
        processed: b.processed,
        issued: b.issued,
        failed: b.failed,
        create_time: Some(timestamp(b.created_time)),
        complete_time: b.complete_time.map(timestamp),
    }
}

fn pb_bulk_result(i: BulkItem) -> pb::BulkIssueResult {
    pb::BulkIssueResult {
        position: i.position,
        member_id: i.member_id.to_string(),
        status: match i.status {
            BulkItemStatus::Pending => pb::BulkIssueResultStatus::Pending,
            BulkItemStatus::Issued => pb::BulkIssueResultStatus::Issued,
            BulkItemStatus::Failed => pb::BulkIssueResultStatus::Failed,
        }
        .into(),
        coupon_id: i.coupon_id.map(|c| c.to_string()).unwrap_or_default(),
        failure_reason: i.failure_reason.unwrap_or_default(),
        failure_message: i.failure_message.unwrap_or_default(),
    }
}

fn pb_voucher(v: Voucher) -> pb::Voucher {
    pb::Voucher {
        voucher_id: v.id.to_string(),
        display_code: code::display(&v.code),
        status: match v.effective_status(Utc::now()) {
            VoucherStatus::Active => pb::VoucherStatus::Active,
            VoucherStatus::Expired => pb::VoucherStatus::Expired,
        }
        .into(),
        code: v.code,
        member_id: v.member_id.map(|m| m.to_string()).unwrap_or_default(),
        face_value_krw: v.face_value_krw,
        balance_krw: v.balance_krw,
        issue_time: Some(timestamp(v.issue_time)),
        valid_from_time: Some(timestamp(v.valid_from_time)),
        expire_time: Some(timestamp(v.expire_time)),
    }
}

fn pb_voucher_tx(t: VoucherTransaction) -> pb::VoucherTransaction {
    pb::VoucherTransaction {
        transaction_id: t.id.to_string(),
        voucher_id: t.voucher_id.to_string(),
        kind: match t.kind {
            VoucherTransactionKind::Issue => pb::VoucherTransactionKind::Issue,
            VoucherTransactionKind::Use => pb::VoucherTransactionKind::Use,
            VoucherTransactionKind::Refund => pb::VoucherTransactionKind::Refund,
            VoucherTransactionKind::Expire => pb::VoucherTransactionKind::Expire,
        }
        .into(),
        amount_krw: t.amount_krw,
        balance_after_krw: t.balance_after_krw,
        pos_transaction_id: t.pos_transaction_id.unwrap_or_default(),
        store_code: t.store_code.unwrap_or_default(),
        refund_of_transaction_id: t.refund_of.map(|r| r.to_string()).unwrap_or_default(),
        occur_time: Some(timestamp(t.occurred_time)),
    }
}

fn till_request(
    code: String,
    basket: Option<pb::Basket>,
    member_id: &str,
    pos: String,
) -> Result<TillRequest, Status> {
    let mut v = Violations::new();
    let present = basket.is_some();
    let basket = basket_from(basket, &mut v);
    let member_id = optional_uuid_field(&mut v, member_id, "member_id");
    if !v.is_empty() {
        // Name the code's and the basket's own problems in the same answer.
        crate::app::parse_code(&mut v, "code", &code);
        if present {
            basket.clone().check("basket", &mut v);
        }
        return finish(v)
            .and_then(|()| Err(Status::internal("validation failed without naming a field")));
    }
    Ok(TillRequest {
        code,
        basket,
        member_id,
        pos_transaction_id: pos,
    })
}

#[tonic::async_trait]
impl CouponService for CouponGrpc {
    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Rpc<pb::CreateTemplateResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let Some(t) = r.template else {
            return Err(ServiceError::invalid("template", "필수 항목입니다 (is required)").into());
        };
        let mut v = Violations::new();
        let mut methods = Vec::with_capacity(t.issue_methods.len());
        for (i, m) in t.issue_methods.iter().enumerate() {
            match issue_method_from(*m) {
                Some(m) => methods.push(m),
                None => {
                    v.add(
                        &format!("template.issue_methods[{i}]"),
                        "알 수 없는 발급 방식입니다 (unknown or unspecified issue method)",
                    );
                }
            }
        }
        let status = match t.status {
            0 => None,
            s => match template_status_from(s) {
                Some(s) => Some(s),
                None => {
                    v.add("template.status", "알 수 없는 상태입니다 (unknown status)");
                    None
                }
            },
        };
        let form = TemplateForm {
            name: t.name,
            description: t.description,
            discount: discount_from(t.discount.as_ref()),
            min_purchase_krw: t.min_purchase_krw,
            store_codes: t.store_codes,
            categories: t.categories,
            validity: validity_from(t.validity.as_ref()),
            total_quantity: t.total_quantity,
            per_member_limit: t.per_member_limit,
            issue_methods: methods,
            stackable: t.stackable,
            status,
        };
        if !v.is_empty() {
            // Name the form's own problems in the same answer.
            let _ = form.validate(self.app.today(), &mut v);
            return finish(v)
                .and_then(|()| Err(Status::internal("validation failed without naming a field")));
        }
        let created = self
            .app
            .create_template(tenant, form, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::CreateTemplateResponse {
            template: Some(pb_template(created)),
        }))
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Rpc<pb::GetTemplateResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().template_id, "template_id")?;
        let t = self.app.get_template(tenant, id).await?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(pb_template(t)),
        }))
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Rpc<pb::UpdateTemplateResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = uuid_field(&mut v, &r.template_id, "template_id");
        let paths = match mask_paths(r.update_mask.as_ref(), TEMPLATE_MASK_PATHS) {
            Ok(p) => p,
            Err(ServiceError::InvalidArgument(f)) => {
                for x in f {
                    v.add(&x.field, x.description);
                }
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        let t = r.template.unwrap_or_default();
        let mut patch = TemplatePatch::default();
        for p in &paths {
            match p.as_str() {
                "name" => patch.name = Some(t.name.clone()),
                "description" => patch.description = Some(t.description.clone()),
                "total_quantity" => patch.total_quantity = Some(t.total_quantity),
                "status" => match template_status_from(t.status) {
                    Some(s) => patch.status = Some(s),
                    None => {
                        v.add(
                            "template.status",
                            "DRAFT, ACTIVE, PAUSED 또는 ENDED입니다 (must be a status)",
                        );
                    }
                },
                _ => {}
            }
        }
        finish(v)?;
        let updated = self.app.update_template(tenant, proven(id)?, patch).await?;
        Ok(Response::new(pb::UpdateTemplateResponse {
            template: Some(pb_template(updated)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Rpc<pb::ListTemplatesResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let status = match r.status {
            0 => None,
            s => Some(template_status_from(s).ok_or_else(|| {
                ServiceError::invalid("status", "알 수 없는 상태입니다 (unknown status)")
            })?),
        };
        let (rows, next_page_token) = self.app.list_templates(tenant, status, page).await?;
        Ok(Response::new(pb::ListTemplatesResponse {
            templates: rows.into_iter().map(pb_template).collect(),
            next_page_token,
        }))
    }

    async fn issue_coupon(
        &self,
        request: Request<pb::IssueCouponRequest>,
    ) -> Rpc<pb::IssueCouponResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let template_id = uuid_field(&mut v, &r.template_id, "template_id");
        let member_id = uuid_field(&mut v, &r.member_id, "member_id");
        let method = manual_method(&mut v, r.issue_method, "issue_method");
        finish(v)?;
        let view = self
            .app
            .issue(
                tenant,
                proven(template_id)?,
                proven(member_id)?,
                method,
                &r.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::IssueCouponResponse {
            coupon: Some(pb_coupon(view)),
        }))
    }

    async fn claim_coupon(
        &self,
        request: Request<pb::ClaimCouponRequest>,
    ) -> Rpc<pb::ClaimCouponResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let template_id = uuid_field(&mut v, &r.template_id, "template_id");
        let member_id = uuid_field(&mut v, &r.member_id, "member_id");
        finish(v)?;
        let view = self
            .app
            .claim(
                tenant,
                proven(template_id)?,
                proven(member_id)?,
                &r.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::ClaimCouponResponse {
            coupon: Some(pb_coupon(view)),
        }))
    }

    async fn start_bulk_issue(
        &self,
        request: Request<pb::StartBulkIssueRequest>,
    ) -> Rpc<pb::StartBulkIssueResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let template_id = uuid_field(&mut v, &r.template_id, "template_id");
        let method = manual_method(&mut v, r.issue_method, "issue_method");
        let mut members = Vec::with_capacity(r.member_ids.len());
        let mut bad = 0usize;
        for (i, m) in r.member_ids.iter().enumerate() {
            match Uuid::parse_str(m) {
                Ok(u) => members.push(u),
                Err(_) => {
                    bad += 1;
                    if bad <= MAX_NAMED_BAD_IDS {
                        v.add(
                            &format!("member_ids[{i}]"),
                            "UUID여야 합니다 (must be a UUID)",
                        );
                    }
                }
            }
        }
        if bad > MAX_NAMED_BAD_IDS {
            v.add(
                "member_ids",
                format!("UUID가 아닌 값이 {bad}개 있습니다 ({bad} entries are not UUIDs; the first {MAX_NAMED_BAD_IDS} are named)"),
            );
        }
        finish(v)?;
        let job = self
            .app
            .start_bulk_issue(
                tenant,
                proven(template_id)?,
                members,
                method,
                &r.idempotency_key,
            )
            .await?;
        Ok(Response::new(pb::StartBulkIssueResponse {
            bulk_issue: Some(pb_bulk(job)),
        }))
    }

    async fn get_bulk_issue(
        &self,
        request: Request<pb::GetBulkIssueRequest>,
    ) -> Rpc<pb::GetBulkIssueResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().bulk_issue_id, "bulk_issue_id")?;
        let job = self.app.get_bulk_issue(tenant, id).await?;
        Ok(Response::new(pb::GetBulkIssueResponse {
            bulk_issue: Some(pb_bulk(job)),
        }))
    }

    async fn list_bulk_issue_results(
        &self,
        request: Request<pb::ListBulkIssueResultsRequest>,
    ) -> Rpc<pb::ListBulkIssueResultsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let id = uuid_field(&mut v, &r.bulk_issue_id, "bulk_issue_id");
        let page = match PageRequest::parse(r.page_size, &r.page_token) {
            Ok(p) => Some(p),
            Err(ServiceError::InvalidArgument(f)) => {
                for x in f {
                    v.add(&x.field, x.description);
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        finish(v)?;
        let page = self
            .app
            .list_bulk_results(tenant, proven(id)?, proven(page)?)
            .await?;
        Ok(Response::new(pb::ListBulkIssueResultsResponse {
            results: page.results.into_iter().map(pb_bulk_result).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn get_coupon(
        &self,
        request: Request<pb::GetCouponRequest>,
    ) -> Rpc<pb::GetCouponResponse> {
        let tenant = tenant(&request)?;
        let view = match request.into_inner().key {
            Some(get_coupon_request::Key::CouponId(id)) => {
                self.app
                    .get_coupon(tenant, parse_uuid(&id, "coupon_id")?)
                    .await?
            }
            Some(get_coupon_request::Key::Code(code)) => {
                self.app.find_coupon_by_code(tenant, &code).await?
            }
            None => {
                return Err(ServiceError::invalid(
                    "key",
                    "coupon_id 또는 code가 필요합니다 (coupon_id or code is required)",
                )
                .into());
            }
        };
        Ok(Response::new(pb::GetCouponResponse {
            coupon: Some(pb_coupon(view)),
        }))
    }

    async fn list_member_coupons(
        &self,
        request: Request<pb::ListMemberCouponsRequest>,
    ) -> Rpc<pb::ListMemberCouponsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let member_id = uuid_field(&mut v, &r.member_id, "member_id");
        let view = match pb::WalletView::try_from(r.view) {
            Ok(pb::WalletView::Unspecified) => WalletView::All,
            Ok(pb::WalletView::Usable) => WalletView::Usable,
            Ok(pb::WalletView::Used) => WalletView::Used,
            Ok(pb::WalletView::Expired) => WalletView::Expired,
            Err(_) => {
                v.add("view", "알 수 없는 보기입니다 (unknown wallet view)");
                WalletView::All
            }
        };
        let page = match PageRequest::parse(r.page_size, &r.page_token) {
            Ok(p) => Some(p),
            Err(ServiceError::InvalidArgument(f)) => {
                for x in f {
                    v.add(&x.field, x.description);
                }
                None
            }
            Err(e) => return Err(e.into()),
        };
        finish(v)?;
        let (rows, next_page_token) = self
            .app
            .list_member_coupons(tenant, proven(member_id)?, view, proven(page)?)
            .await?;
        Ok(Response::new(pb::ListMemberCouponsResponse {
            coupons: rows.into_iter().map(pb_coupon).collect(),
            next_page_token,
        }))
    }

    async fn validate_coupon(
        &self,
        request: Request<pb::ValidateCouponRequest>,
    ) -> Rpc<pb::ValidateCouponResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let req = till_request(r.code, r.basket, &r.member_id, r.pos_transaction_id)?;
        let answer = self.app.validate(tenant, req).await?;
        let (applicable, discount_krw, reason, message) = match answer.outcome {
            Ok(d) => (true, d, String::new(), String::new()),
            Err(rej) => (false, 0, rej.reason.to_string(), rej.message),
        };
        Ok(Response::new(pb::ValidateCouponResponse {
            applicable,
            discount_krw,
            reason,
            message,
            coupon: Some(pb_coupon(answer.coupon)),
        }))
    }

    async fn redeem_coupon(
        &self,
        request: Request<pb::RedeemCouponRequest>,
    ) -> Rpc<pb::RedeemCouponResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let req = till_request(r.code, r.basket, &r.member_id, r.pos_transaction_id)?;
        let done = self.app.redeem(tenant, req).await?;
        Ok(Response::new(pb::RedeemCouponResponse {
            redemption: Some(pb_redemption(done.redemption)),
            coupon: Some(pb_coupon(done.coupon)),
            replayed: done.replayed,
        }))
    }

    async fn cancel_redemption(
        &self,
        request: Request<pb::CancelRedemptionRequest>,
    ) -> Rpc<pb::CancelRedemptionResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let done = self
            .app
            .cancel_redemption(tenant, &r.pos_transaction_id, &r.code, &r.reason)
            .await?;
        Ok(Response::new(pb::CancelRedemptionResponse {
            redemptions: done.redemptions.into_iter().map(pb_redemption).collect(),
            coupons: done.coupons.into_iter().map(pb_coupon).collect(),
        }))
    }

    async fn issue_voucher(
        &self,
        request: Request<pb::IssueVoucherRequest>,
    ) -> Rpc<pb::IssueVoucherResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut v = Violations::new();
        let member_id = optional_uuid_field(&mut v, &r.member_id, "member_id");
        finish(v)?;
        let form = VoucherForm {
            face_value_krw: r.face_value_krw,
            member_id,
            validity: validity_from(r.validity.as_ref()),
        };
        let voucher = self
            .app
            .issue_voucher(tenant, form, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::IssueVoucherResponse {
            voucher: Some(pb_voucher(voucher)),
        }))
    }

    async fn get_voucher(
        &self,
        request: Request<pb::GetVoucherRequest>,
    ) -> Rpc<pb::GetVoucherResponse> {
        let tenant = tenant(&request)?;
        let voucher = match request.into_inner().key {
            Some(get_voucher_request::Key::VoucherId(id)) => {
                self.app
                    .get_voucher(tenant, parse_uuid(&id, "voucher_id")?)
                    .await?
            }
            Some(get_voucher_request::Key::Code(code)) => {
                self.app.find_voucher_by_code(tenant, &code).await?
            }
            None => {
                return Err(ServiceError::invalid(
                    "key",
                    "voucher_id 또는 code가 필요합니다 (voucher_id or code is required)",
                )
                .into());
            }
        };
        Ok(Response::new(pb::GetVoucherResponse {
            voucher: Some(pb_voucher(voucher)),
        }))
    }

    async fn use_voucher(
        &self,
        request: Request<pb::UseVoucherRequest>,
    ) -> Rpc<pb::UseVoucherResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let m = self
            .app
            .use_voucher(
                tenant,
                &r.code,
                r.amount_krw,
                &r.pos_transaction_id,
                &r.store_code,
            )
            .await?;
        Ok(Response::new(pb::UseVoucherResponse {
            transaction: Some(pb_voucher_tx(m.transaction)),
            voucher: Some(pb_voucher(m.voucher)),
            replayed: m.replayed,
        }))
    }

    async fn refund_voucher_use(
        &self,
        request: Request<pb::RefundVoucherUseRequest>,
    ) -> Rpc<pb::RefundVoucherUseResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let m = self
            .app
            .refund_voucher_use(tenant, &r.code, &r.pos_transaction_id)
            .await?;
        Ok(Response::new(pb::RefundVoucherUseResponse {
            transaction: Some(pb_voucher_tx(m.transaction)),
            voucher: Some(pb_voucher(m.voucher)),
            replayed: m.replayed,
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

    async fn list_voucher_transactions(
        &self,
        request: Request<pb::ListVoucherTransactionsRequest>,
    ) -> Rpc<pb::ListVoucherTransactionsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let (rows, next_page_token) = self.app.voucher_history(tenant, &r.code, page).await?;
        Ok(Response::new(pb::ListVoucherTransactionsResponse {
            transactions: rows.into_iter().map(pb_voucher_tx).collect(),
            next_page_token,
        }))
    }
}

//! The gRPC boundary of `spharos.member.v1.MemberService`: the only file that knows the API's
//! prost types. It takes the tenant from the verified token, converts requests into domain
//! inputs (collecting every bad field), calls the application layer and converts back.
use std::net::SocketAddr;

use spharos_kit::{
    ServiceError, TenantId,
    auth::{PERM_PII_UNMASK, Principal, principal},
    error::FieldViolation,
    grpc::{from_timestamp, mask_paths, parse_optional_uuid, parse_uuid, timestamp},
    paging::PageRequest,
};
use spharos_proto::{
    common::JoinChannel as PbJoinChannel,
    member::{
        self as pb, find_member_request, get_store_request, member_service_server::MemberService,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    app::{Access, MemberApp, UnmaskAudit},
    domain::{
        card::{Card, CardStatus, CardType},
        grade::{Grade, GradeForm},
        member::{
            Gender, JoinChannel, JoinForm, MemberFilter, MemberLookup, MemberPatchForm,
            MemberStatus, MemberView, SignupConsent,
        },
        pii::{self, Disclosure},
        store::{NewStore, Store, StoreFilter, StoreKey, StorePatch, StoreStatus, is_valid_code},
    },
};

const SERVICE_PATH: &str = "spharos.member.v1.MemberService";
pub use spharos_kit::auth::PERM_PII_ERASE;
/// The access-log reason of every data-subject export.
const DSR_ACCESS_REASON: &str = "DSR access";
const STORE_MASK_PATHS: &[&str] = &["name", "region", "trade_area", "status"];
const MEMBER_MASK_PATHS: &[&str] = &["name", "phone", "email", "birth_date", "gender"];

/// The service implementation tonic serves (wrapped in the kit's `AuthInterceptor`).
#[derive(Clone, Debug)]
pub struct MemberGrpc {
    pub app: MemberApp,
}

type Rpc<T> = Result<Response<T>, Status>;

/// Collects field violations across several checks, so one answer names every bad field.
#[derive(Default)]
struct Fields(Vec<FieldViolation>);

impl Fields {
    /// The value, or `None` after recording its violations; other errors pass through.
    fn take<T>(&mut self, r: Result<T, ServiceError>) -> Result<Option<T>, ServiceError> {
        match r {
            Ok(v) => Ok(Some(v)),
            Err(ServiceError::InvalidArgument(v)) => {
                self.0.extend(v);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::InvalidArgument(self.0))
        }
    }
}

/// A value that `Fields::finish` proved present.
fn proven<T>(v: Option<T>) -> Result<T, ServiceError> {
    v.ok_or_else(|| ServiceError::internal("a checked field went missing"))
}

fn caller<T>(request: &Request<T>) -> Result<(Principal, Option<SocketAddr>), Status> {
    Ok((principal(request)?, request.remote_addr()))
}

fn access(
    p: &Principal,
    unmask: Option<&pb::Unmask>,
    remote: Option<SocketAddr>,
    method: &str,
) -> Result<Access, ServiceError> {
    Ok(
        match pii::decide(unmask.map(|u| u.reason.as_str()), p.has(PERM_PII_UNMASK))? {
            Disclosure::Masked => Access::Masked,
            Disclosure::Clear { reason } => Access::Clear(UnmaskAudit {
                actor: p.subject.clone(),
                reason,
                client_address: remote.map(|a| a.to_string()).unwrap_or_default(),
                operation: format!("{SERVICE_PATH}/{method}"),
            }),
        },
    )
}

// ---- conversions: domain → wire -------------------------------------------------------

fn pb_store_status(s: StoreStatus) -> pb::StoreStatus {
    match s {
        StoreStatus::Open => pb::StoreStatus::Open,
        StoreStatus::Closed => pb::StoreStatus::Closed,
    }
}

fn pb_store(s: Store) -> pb::Store {
    pb::Store {
        store_id: s.id.to_string(),
        code: s.code,
        name: s.name,
        region: s.region,
        trade_area: s.trade_area,
        status: pb_store_status(s.status).into(),
        create_time: Some(timestamp(s.created_time)),
        update_time: Some(timestamp(s.updated_time)),
    }
}

fn pb_card_type(t: CardType) -> pb::CardType {
    match t {
        CardType::Mobile => pb::CardType::Mobile,
        CardType::Physical => pb::CardType::Physical,
    }
}

fn pb_card(c: Card) -> pb::Card {
    pb::Card {
        card_id: c.id.to_string(),
        member_id: c.member_id.to_string(),
        card_number: c.number,
        card_type: pb_card_type(c.card_type).into(),
        status: match c.status {
            CardStatus::Active => pb::CardStatus::Active,
            CardStatus::Lost => pb::CardStatus::Lost,
            CardStatus::Replaced => pb::CardStatus::Replaced,
        }
        .into(),
        replaces_card_id: c
            .replaces_card_id
            .map(|i| i.to_string())
            .unwrap_or_default(),
        issue_time: Some(timestamp(c.issue_time)),
    }
}

fn pb_gender(g: Gender) -> pb::Gender {
    match g {
        Gender::Unspecified => pb::Gender::Unspecified,
        Gender::Female => pb::Gender::Female,
        Gender::Male => pb::Gender::Male,
        Gender::Other => pb::Gender::Other,
    }
}

fn pb_member(v: MemberView) -> pb::Member {
    let p = v.profile;
    pb::Member {
        member_id: p.id.to_string(),
        status: match p.status {
            MemberStatus::Active => pb::MemberStatus::Active,
            MemberStatus::Withdrawn => pb::MemberStatus::Withdrawn,
        }
        .into(),
        name: v.pii.name,
        phone: v.pii.phone,
        email: v.pii.email,
        birth_date: v.pii.birth_date,
        gender: pb_gender(p.gender).into(),
        join_store_id: p.join_store_id.map(|i| i.to_string()).unwrap_or_default(),
        join_channel: crate::events::join_channel(p.join_channel).into(),
        grade_id: p.grade_id.map(|i| i.to_string()).unwrap_or_default(),
        grade_name: p.grade_name.unwrap_or_default(),
        unmasked: v.unmasked,
        join_time: Some(timestamp(p.join_time)),
        update_time: Some(timestamp(p.update_time)),
        withdraw_time: p.withdraw_time.map(timestamp),
        cards: v.cards.into_iter().map(pb_card).collect(),
        anonymised_time: p.anonymised_time.map(timestamp),
    }
}

fn pb_grade(g: Grade) -> pb::Grade {
    pb::Grade {
        grade_id: g.id.to_string(),
        name: g.name,
        min_purchase_krw: g.min_purchase_krw,
        points_rate_bp: g.points_rate_bp,
    }
}

// ---- conversions: wire → domain -------------------------------------------------------

fn store_status(s: pb::StoreStatus) -> Option<StoreStatus> {
    match s {
        pb::StoreStatus::Unspecified => None,
        pb::StoreStatus::Open => Some(StoreStatus::Open),
        pb::StoreStatus::Closed => Some(StoreStatus::Closed),
    }
}

fn card_type(t: pb::CardType) -> Option<CardType> {
    match t {
        pb::CardType::Unspecified => None,
        pb::CardType::Mobile => Some(CardType::Mobile),
        pb::CardType::Physical => Some(CardType::Physical),
    }
}

fn gender(g: pb::Gender) -> Gender {
    match g {
        pb::Gender::Unspecified => Gender::Unspecified,
        pb::Gender::Female => Gender::Female,
        pb::Gender::Male => Gender::Male,
        pb::Gender::Other => Gender::Other,
    }
}

fn join_channel(c: PbJoinChannel) -> JoinChannel {
    match c {
        PbJoinChannel::Unspecified => JoinChannel::Unspecified,
        PbJoinChannel::App => JoinChannel::App,
        PbJoinChannel::Web => JoinChannel::Web,
        PbJoinChannel::Pos => JoinChannel::Pos,
        PbJoinChannel::CallCenter => JoinChannel::CallCenter,
        PbJoinChannel::Admin => JoinChannel::Admin,
    }
}

fn member_status(s: pb::MemberStatus) -> Option<MemberStatus> {
    match s {
        pb::MemberStatus::Unspecified => None,
        pb::MemberStatus::Active => Some(MemberStatus::Active),
        pb::MemberStatus::Withdrawn => Some(MemberStatus::Withdrawn),
    }
}

fn store_patch(paths: &[String], s: &pb::Store) -> StorePatch {
    let has = |p: &str| paths.iter().any(|x| x == p);
    StorePatch {
        name: has("name").then(|| s.name.clone()),
        region: has("region").then(|| s.region.clone()),
        trade_area: has("trade_area").then(|| s.trade_area.clone()),
        status: has("status").then(|| store_status(s.status())),
    }
}

fn member_patch(paths: &[String], m: &pb::Member) -> MemberPatchForm {
    let has = |p: &str| paths.iter().any(|x| x == p);
    MemberPatchForm {
        name: has("name").then(|| m.name.clone()),
        phone: has("phone").then(|| m.phone.clone()),
        email: has("email").then(|| m.email.clone()),
        birth_date: has("birth_date").then(|| m.birth_date.clone()),
        gender: has("gender").then(|| gender(m.gender())),
    }
}

impl MemberGrpc {
    fn tenant<T>(request: &Request<T>) -> Result<TenantId, Status> {
        Ok(principal(request)?.tenant)
    }
}

#[tonic::async_trait]
impl MemberService for MemberGrpc {
    async fn create_store(
        &self,
        request: Request<pb::CreateStoreRequest>,
    ) -> Rpc<pb::CreateStoreResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let new = NewStore {
            status: store_status(r.status()),
            code: r.code,
            name: r.name,
            region: r.region,
            trade_area: r.trade_area,
        };
        let store = self.app.create_store(tenant, new).await?;
        Ok(Response::new(pb::CreateStoreResponse {
            store: Some(pb_store(store)),
        }))
    }

    async fn get_store(&self, request: Request<pb::GetStoreRequest>) -> Rpc<pb::GetStoreResponse> {
        let tenant = Self::tenant(&request)?;
        let key = match request.into_inner().key {
            Some(get_store_request::Key::StoreId(id)) => StoreKey::Id(parse_uuid(&id, "store_id")?),
            Some(get_store_request::Key::Code(code)) => {
                if !is_valid_code(&code) {
                    return Err(ServiceError::invalid(
                        "code",
                        "매장 코드 형식이 아닙니다 (not a store code)",
                    )
                    .into());
                }
                StoreKey::Code(code)
            }
            None => {
                return Err(ServiceError::invalid(
                    "key",
                    "store_id 또는 code가 필요합니다 (store_id or code is required)",
                )
                .into());
            }
        };
        let store = self.app.get_store(tenant, key).await?;
        Ok(Response::new(pb::GetStoreResponse {
            store: Some(pb_store(store)),
        }))
    }

    async fn update_store(
        &self,
        request: Request<pb::UpdateStoreRequest>,
    ) -> Rpc<pb::UpdateStoreResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.store_id, "store_id"))?;
        let paths = f.take(mask_paths(r.update_mask.as_ref(), STORE_MASK_PATHS))?;
        let patch = paths.map(|p| store_patch(&p, &r.store.unwrap_or_default()));
        if let Some(p) = &patch {
            f.take(p.clone().validate())?;
        }
        f.finish()?;
        let store = self
            .app
            .update_store(tenant, proven(id)?, proven(patch)?)
            .await?;
        Ok(Response::new(pb::UpdateStoreResponse {
            store: Some(pb_store(store)),
        }))
    }

    async fn list_stores(
        &self,
        request: Request<pb::ListStoresRequest>,
    ) -> Rpc<pb::ListStoresResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token)?;
        let filter = StoreFilter {
            status: store_status(r.status()),
            region: (!r.region.trim().is_empty()).then(|| r.region.trim().to_string()),
        };
        let (stores, next_page_token) = self.app.list_stores(tenant, filter, page).await?;
        Ok(Response::new(pb::ListStoresResponse {
            stores: stores.into_iter().map(pb_store).collect(),
            next_page_token,
        }))
    }

    async fn join_member(
        &self,
        request: Request<pb::JoinMemberRequest>,
    ) -> Rpc<pb::JoinMemberResponse> {
        let tenant = Self::tenant(&request)?;
        // Forwarded to the privacy service, which checks the consents as the same caller.
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let r = request.into_inner();
        let consents: Vec<SignupConsent> = r
            .consents
            .iter()
            .map(|c| SignupConsent {
                code: c.consent_type_code.clone(),
                granted: c.granted,
            })
            .collect();
        let form = JoinForm {
            gender: gender(r.gender()),
            join_channel: join_channel(r.join_channel()),
            card_type: card_type(r.card_type()),
            name: r.name,
            phone: r.phone,
            email: r.email,
            birth_date: r.birth_date,
            join_store_id: r.join_store_id,
            idempotency_key: r.idempotency_key,
        };
        let joined = self
            .app
            .join_with_consents(tenant, form, &consents, authorization.as_deref())
            .await?;
        Ok(Response::new(pb::JoinMemberResponse {
            member: Some(pb_member(joined.member)),
            card: Some(pb_card(joined.card)),
        }))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Rpc<pb::GetMemberResponse> {
        let (p, remote) = caller(&request)?;
        let r = request.into_inner();
        let id = parse_uuid(&r.member_id, "member_id")?;
        let access = access(&p, r.unmask.as_ref(), remote, "GetMember")?;
        let member = self.app.get_member(p.tenant, id, &access).await?;
        Ok(Response::new(pb::GetMemberResponse {
            member: Some(pb_member(member)),
        }))
    }

    async fn find_member(
        &self,
        request: Request<pb::FindMemberRequest>,
    ) -> Rpc<pb::FindMemberResponse> {
        let (p, remote) = caller(&request)?;
        let r = request.into_inner();
        let key = match r.key {
            Some(find_member_request::Key::CardNumber(n)) => MemberLookup::CardNumber(n),
            Some(find_member_request::Key::Phone(ph)) => MemberLookup::Phone(ph),
            None => {
                return Err(ServiceError::invalid(
                    "key",
                    "card_number 또는 phone이 필요합니다 (card_number or phone is required)",
                )
                .into());
            }
        };
        let access = access(&p, r.unmask.as_ref(), remote, "FindMember")?;
        let member = self.app.find_member(p.tenant, key, &access).await?;
        Ok(Response::new(pb::FindMemberResponse {
            member: Some(pb_member(member)),
        }))
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Rpc<pb::UpdateMemberResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.member_id, "member_id"))?;
        let paths = f.take(mask_paths(r.update_mask.as_ref(), MEMBER_MASK_PATHS))?;
        let form = paths.map(|p| member_patch(&p, &r.member.unwrap_or_default()));
        if let Some(form) = &form {
            f.take(form.validate(self.app.today()))?;
        }
        f.finish()?;
        let member = self
            .app
            .update_member(tenant, proven(id)?, proven(form)?)
            .await?;
        Ok(Response::new(pb::UpdateMemberResponse {
            member: Some(pb_member(member)),
        }))
    }

    async fn withdraw_member(
        &self,
        request: Request<pb::WithdrawMemberRequest>,
    ) -> Rpc<pb::WithdrawMemberResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let id = parse_uuid(&r.member_id, "member_id")?;
        let member = self.app.withdraw(tenant, id, &r.reason).await?;
        Ok(Response::new(pb::WithdrawMemberResponse {
            member: Some(pb_member(member)),
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Rpc<pb::ListMembersResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        let grade_id = f.take(parse_optional_uuid(&r.grade_id, "grade_id"))?;
        let join_store_id = f.take(parse_optional_uuid(&r.join_store_id, "join_store_id"))?;
        let after = f.take(from_timestamp(
            r.joined_after_time.as_ref(),
            "joined_after_time",
        ))?;
        let before = f.take(from_timestamp(
            r.joined_before_time.as_ref(),
            "joined_before_time",
        ))?;
        if let (Some(Some(a)), Some(Some(b))) = (after, before)
            && a >= b
        {
            f.0.push(FieldViolation {
                field: "joined_before_time".into(),
                description:
                    "joined_after_time보다 뒤여야 합니다 (must be after joined_after_time)".into(),
            });
        }
        f.finish()?;
        let filter = MemberFilter {
            grade_id: proven(grade_id)?,
            status: member_status(r.status()),
            join_store_id: proven(join_store_id)?,
            joined_after: proven(after)?,
            joined_before: proven(before)?,
        };
        let (members, next_page_token) =
            self.app.list_members(tenant, filter, proven(page)?).await?;
        Ok(Response::new(pb::ListMembersResponse {
            members: members.into_iter().map(pb_member).collect(),
            next_page_token,
        }))
    }

    async fn issue_card(
        &self,
        request: Request<pb::IssueCardRequest>,
    ) -> Rpc<pb::IssueCardResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let id = parse_uuid(&r.member_id, "member_id")?;
        let t = card_type(r.card_type()).unwrap_or(CardType::Mobile);
        let card = self
            .app
            .issue_card(tenant, id, t, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::IssueCardResponse {
            card: Some(pb_card(card)),
        }))
    }

    async fn report_card_lost(
        &self,
        request: Request<pb::ReportCardLostRequest>,
    ) -> Rpc<pb::ReportCardLostResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let card = self.app.report_card_lost(tenant, &r.card_number).await?;
        Ok(Response::new(pb::ReportCardLostResponse {
            card: Some(pb_card(card)),
        }))
    }

    async fn replace_card(
        &self,
        request: Request<pb::ReplaceCardRequest>,
    ) -> Rpc<pb::ReplaceCardResponse> {
        let tenant = Self::tenant(&request)?;
        let r = request.into_inner();
        let t = card_type(r.card_type());
        let replaced = self
            .app
            .replace_card(tenant, &r.card_number, t, &r.idempotency_key)
            .await?;
        Ok(Response::new(pb::ReplaceCardResponse {
            old_card: Some(pb_card(replaced.old_card)),
            new_card: Some(pb_card(replaced.new_card)),
        }))
    }

    async fn list_cards(
        &self,
        request: Request<pb::ListCardsRequest>,
    ) -> Rpc<pb::ListCardsResponse> {
        let tenant = Self::tenant(&request)?;
        let id = parse_uuid(&request.get_ref().member_id, "member_id")?;
        let cards = self.app.list_cards(tenant, id).await?;
        Ok(Response::new(pb::ListCardsResponse {
            cards: cards.into_iter().map(pb_card).collect(),
        }))
    }

    async fn set_grades(
        &self,
        request: Request<pb::SetGradesRequest>,
    ) -> Rpc<pb::SetGradesResponse> {
        let tenant = Self::tenant(&request)?;
        let forms = request
            .into_inner()
            .grades
            .into_iter()
            .map(|g| GradeForm {
                id: g.grade_id,
                name: g.name,
                min_purchase_krw: g.min_purchase_krw,
                points_rate_bp: g.points_rate_bp,
            })
            .collect();
        let grades = self.app.set_grades(tenant, forms).await?;
        Ok(Response::new(pb::SetGradesResponse {
            grades: grades.into_iter().map(pb_grade).collect(),
        }))
    }

    async fn list_grades(
        &self,
        request: Request<pb::ListGradesRequest>,
    ) -> Rpc<pb::ListGradesResponse> {
        let tenant = Self::tenant(&request)?;
        let grades = self.app.list_grades(tenant).await?;
        Ok(Response::new(pb::ListGradesResponse {
            grades: grades.into_iter().map(pb_grade).collect(),
        }))
    }

    async fn export_member_data(
        &self,
        request: Request<pb::ExportMemberDataRequest>,
    ) -> Rpc<pb::ExportMemberDataResponse> {
        let (p, remote) = caller(&request)?;
        let id = parse_uuid(&request.get_ref().member_id, "member_id")?;
        if !p.has(PERM_PII_UNMASK) {
            return Err(ServiceError::PermissionDenied(
                "개인정보 열람 권한(pii:unmask)이 없습니다 (the caller lacks the pii:unmask permission)".into(),
            )
            .into());
        }
        let audit = UnmaskAudit {
            actor: p.subject.clone(),
            reason: DSR_ACCESS_REASON.into(),
            client_address: remote.map(|a| a.to_string()).unwrap_or_default(),
            operation: format!("{SERVICE_PATH}/ExportMemberData"),
        };
        let document = self.app.export_member_data(p.tenant, id, &audit).await?;
        Ok(Response::new(pb::ExportMemberDataResponse {
            document_json: document.to_string(),
        }))
    }

    async fn erase_member(
        &self,
        request: Request<pb::EraseMemberRequest>,
    ) -> Rpc<pb::EraseMemberResponse> {
        let p = principal(&request)?;
        let id = parse_uuid(&request.get_ref().member_id, "member_id")?;
        if !p.has(PERM_PII_ERASE) {
            return Err(ServiceError::PermissionDenied(
                "개인정보 파기 권한(pii:erase)이 없습니다 (the caller lacks the pii:erase permission)".into(),
            )
            .into());
        }
        let member = self.app.erase_member(p.tenant, id).await?;
        Ok(Response::new(pb::EraseMemberResponse {
            member: Some(pb_member(member)),
        }))
    }

    async fn evaluate_grades(
        &self,
        request: Request<pb::EvaluateGradesRequest>,
    ) -> Rpc<pb::EvaluateGradesResponse> {
        let tenant = Self::tenant(&request)?;
        let member = parse_optional_uuid(&request.get_ref().member_id, "member_id")?;
        let e = self.app.evaluate_grades(tenant, member).await?;
        Ok(Response::new(pb::EvaluateGradesResponse {
            evaluated: e.evaluated,
            changed: e.changed,
        }))
    }
}

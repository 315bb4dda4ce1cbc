//! The gRPC boundary of `spharos.privacy.v1.PrivacyService`: the only file that knows the
//! API's prost types. It takes the tenant from the verified token, converts requests into
//! domain inputs (collecting every bad field), calls the application layer and converts back.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::{
    ServiceError, TenantId,
    auth::{PERM_PII_UNMASK, Principal, principal},
    error::FieldViolation,
    grpc::{
        from_timestamp, mask_paths, parse_optional_date, parse_optional_uuid, parse_uuid, timestamp,
    },
    paging::PageRequest,
};
use spharos_proto::{
    common::Channel as PbChannel,
    privacy::{self as pb, privacy_service_server::PrivacyService},
};
use tonic::{Request, Response, Status};

use crate::{
    PERM_PII_ERASE,
    app::{Caller, PrivacyApp},
    domain::{
        access_log::{AccessForm, Entry, Source},
        consent::{
            Answer, ChangeSource, ConsentChange, ConsentGroup, ConsentTypeForm, ConsentTypeVersion,
            MarketingChannel, MemberConsent, RevisionForm, SendChannel,
        },
        dsr::{self, Kind, Request as DsrRequest, RequestForm, Status as DsrStatus},
        notice::{Notice, NoticePatch},
        policy::{PolicyForm, PolicyKind, PolicyVersion},
    },
    events::{collection_channel, pb_collection_channel, pb_marketing_channel},
    store::{access_log::AccessFilter, consents::NoticeRow},
};

const NOTICE_MASK_PATHS: &[&str] = &["title", "body", "pinned", "sort_order"];
const SETTINGS_MASK_PATHS: &[&str] = &["retention_days"];

/// The service implementation tonic serves (wrapped in the kit's `AuthInterceptor`).
#[derive(Clone, Debug)]
pub struct PrivacyGrpc {
    pub app: PrivacyApp,
}

type Rpc<T> = Result<Response<T>, Status>;

/// Collects field violations across several checks, so one answer names every bad field.
#[derive(Default)]
struct Fields(Vec<FieldViolation>);

impl Fields {
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

    fn add(&mut self, field: &str, description: &str) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
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

fn tenant<T>(request: &Request<T>) -> Result<TenantId, Status> {
    Ok(principal(request)?.tenant)
}

fn caller<T>(request: &Request<T>, p: &Principal) -> Caller {
    Caller {
        subject: p.subject.clone(),
        authorization: request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        client_address: request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        can_unmask: p.has(PERM_PII_UNMASK),
        can_erase: p.has(PERM_PII_ERASE),
    }
}

// ---- conversions: wire → domain -------------------------------------------------------

fn group(g: pb::ConsentGroup) -> Option<ConsentGroup> {
    match g {
        pb::ConsentGroup::Unspecified => None,
        pb::ConsentGroup::Signup => Some(ConsentGroup::Signup),
        pb::ConsentGroup::Later => Some(ConsentGroup::Later),
    }
}

fn marketing_channel(c: pb::MarketingChannel) -> Option<MarketingChannel> {
    match c {
        pb::MarketingChannel::Unspecified => None,
        pb::MarketingChannel::Sms => Some(MarketingChannel::Sms),
        pb::MarketingChannel::Email => Some(MarketingChannel::Email),
        pb::MarketingChannel::AppPush => Some(MarketingChannel::AppPush),
        pb::MarketingChannel::Kakaotalk => Some(MarketingChannel::KakaoTalk),
    }
}

fn send_channel(c: PbChannel) -> Result<SendChannel, ServiceError> {
    Ok(match c {
        PbChannel::Sms => SendChannel::Sms,
        PbChannel::Lms => SendChannel::Lms,
        PbChannel::Mms => SendChannel::Mms,
        PbChannel::Email => SendChannel::Email,
        PbChannel::AppPush => SendChannel::AppPush,
        PbChannel::KakaoAlimtalk => SendChannel::KakaoAlimtalk,
        PbChannel::KakaoBrandMessage => SendChannel::KakaoBrandMessage,
        PbChannel::Unspecified => {
            return Err(ServiceError::invalid(
                "channel",
                "발송 채널을 지정하세요 (a channel is required)",
            ));
        }
    })
}

fn policy_kind(k: pb::PolicyKind) -> Option<PolicyKind> {
    match k {
        pb::PolicyKind::Unspecified => None,
        pb::PolicyKind::TermsOfService => Some(PolicyKind::TermsOfService),
        pb::PolicyKind::PrivacyPolicy => Some(PolicyKind::PrivacyPolicy),
    }
}

fn required_policy_kind(k: pb::PolicyKind) -> Result<PolicyKind, ServiceError> {
    policy_kind(k).ok_or_else(|| {
        ServiceError::invalid(
            "kind",
            "약관 종류를 지정하세요 (POLICY_KIND_TERMS_OF_SERVICE or POLICY_KIND_PRIVACY_POLICY)",
        )
    })
}

fn dsr_status(s: pb::DataSubjectRequestStatus) -> Option<DsrStatus> {
    match s {
        pb::DataSubjectRequestStatus::Unspecified => None,
        pb::DataSubjectRequestStatus::Received => Some(DsrStatus::Received),
        pb::DataSubjectRequestStatus::InProgress => Some(DsrStatus::InProgress),
        pb::DataSubjectRequestStatus::Completed => Some(DsrStatus::Completed),
        pb::DataSubjectRequestStatus::Rejected => Some(DsrStatus::Rejected),
    }
}

/// An optional `YYYY-MM-DD` date field.
fn date(value: &str, field: &str) -> Result<Option<NaiveDate>, ServiceError> {
    parse_optional_date(value, field)
}

fn time(
    t: Option<&prost_types::Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, ServiceError> {
    from_timestamp(t, field)
}

// ---- conversions: domain → wire -------------------------------------------------------

fn pb_group(g: ConsentGroup) -> pb::ConsentGroup {
    match g {
        ConsentGroup::Signup => pb::ConsentGroup::Signup,
        ConsentGroup::Later => pb::ConsentGroup::Later,
    }
}

fn pb_consent_type(v: ConsentTypeVersion) -> pb::ConsentType {
    pb::ConsentType {
        code: v.code,
        title: v.title,
        purpose: v.purpose,
        required: v.required,
        group: pb_group(v.group).into(),
        version: v.version,
        effective_date: v.effective_date.to_string(),
        advertising: v.role.is_advertising(),
        channel: pb_marketing_channel(v.role.channel()).into(),
        night_time: v.role.is_night(),
        create_time: Some(timestamp(v.created_time)),
    }
}

fn pb_member_consent(c: MemberConsent) -> pb::MemberConsent {
    pb::MemberConsent {
        consent_type_code: c.code,
        granted: c.granted,
        version: c.version,
        collection_channel: pb_collection_channel(c.collection_channel).into(),
        actor: c.actor,
        change_time: Some(timestamp(c.change_time)),
    }
}

fn pb_change(c: ConsentChange) -> pb::ConsentChange {
    pb::ConsentChange {
        change_id: c.id.to_string(),
        consent_type_code: c.code,
        version: c.version,
        granted: c.granted,
        collection_channel: pb_collection_channel(c.collection_channel).into(),
        actor: c.actor,
        source: match c.source {
            ChangeSource::Signup => pb::ConsentChangeSource::Signup,
            ChangeSource::Request => pb::ConsentChangeSource::Request,
            ChangeSource::MemberWithdrawn => pb::ConsentChangeSource::MemberWithdrawn,
        }
        .into(),
        change_time: Some(timestamp(c.change_time)),
    }
}

fn pb_send_channel(s: &str) -> PbChannel {
    PbChannel::from_str_name(s).unwrap_or(PbChannel::Unspecified)
}

fn pb_notice_row(n: NoticeRow) -> pb::ReconfirmationNotice {
    pb::ReconfirmationNotice {
        notice_id: n.id.to_string(),
        member_id: n.member_id.to_string(),
        consent_type_code: n.consent_type_code,
        cycle_start_time: Some(timestamp(n.cycle_start_time)),
        due_date: n.due_date.to_string(),
        emit_time: Some(timestamp(n.emit_time)),
        sent_time: n.sent_time.map(timestamp),
        sent_channel: n
            .sent_channel
            .as_deref()
            .map(pb_send_channel)
            .unwrap_or(PbChannel::Unspecified)
            .into(),
    }
}

fn pb_notice(n: Notice) -> pb::Notice {
    pb::Notice {
        notice_id: n.id.to_string(),
        title: n.title,
        body: n.body,
        pinned: n.pinned,
        sort_order: n.sort_order,
        published: n.published,
        publish_time: n.publish_time.map(timestamp),
        create_time: Some(timestamp(n.created_time)),
        update_time: Some(timestamp(n.updated_time)),
    }
}

fn pb_policy(p: PolicyVersion) -> pb::PolicyVersion {
    pb::PolicyVersion {
        policy_version_id: p.id.to_string(),
        kind: match p.kind {
            PolicyKind::TermsOfService => pb::PolicyKind::TermsOfService,
            PolicyKind::PrivacyPolicy => pb::PolicyKind::PrivacyPolicy,
        }
        .into(),
        version: p.version,
        title: p.title,
        body: p.body,
        effective_date: p.effective_date.to_string(),
        create_time: Some(timestamp(p.created_time)),
    }
}

fn pb_dsr(r: DsrRequest, today: NaiveDate) -> pb::DataSubjectRequest {
    pb::DataSubjectRequest {
        request_id: r.id.to_string(),
        member_id: r.member_id.to_string(),
        kind: match r.kind {
            Kind::Access => pb::DataSubjectRequestKind::Access,
            Kind::Erasure => pb::DataSubjectRequestKind::Erasure,
        }
        .into(),
        status: match r.status {
            DsrStatus::Received => pb::DataSubjectRequestStatus::Received,
            DsrStatus::InProgress => pb::DataSubjectRequestStatus::InProgress,
            DsrStatus::Completed => pb::DataSubjectRequestStatus::Completed,
            DsrStatus::Rejected => pb::DataSubjectRequestStatus::Rejected,
        }
        .into(),
        collection_channel: pb_collection_channel(r.collection_channel).into(),
        note: r.note,
        receive_time: Some(timestamp(r.receive_time)),
        due_date: r.due_date.to_string(),
        days_left: dsr::days_left(r.due_date, today),
        overdue: dsr::is_overdue(r.status, r.due_date, today),
        complete_time: r.complete_time.map(timestamp),
        reject_reason: r.reject_reason.unwrap_or_default(),
        last_error: r.last_error.unwrap_or_default(),
        services: r.services,
        actor: r.actor,
    }
}

fn pb_access(e: Entry) -> pb::PiiAccess {
    let a = e.access;
    pb::PiiAccess {
        entry_id: e.id.to_string(),
        seq: e.seq,
        member_id: a.member_id.to_string(),
        actor: a.actor,
        fields: a.fields,
        reason: a.reason,
        client_address: a.client_address,
        operation: a.operation,
        access_time: Some(timestamp(a.access_time)),
        source: match a.source {
            Source::Event => pb::PiiAccessSource::Event,
            Source::Direct => pb::PiiAccessSource::Direct,
        }
        .into(),
        recorded_by: a.recorded_by,
        entry_hash: e.entry_hash,
    }
}

fn notice_patch(paths: &[String], n: &pb::Notice) -> NoticePatch {
    let has = |p: &str| paths.iter().any(|x| x == p);
    NoticePatch {
        title: has("title").then(|| n.title.clone()),
        body: has("body").then(|| n.body.clone()),
        pinned: has("pinned").then_some(n.pinned),
        sort_order: has("sort_order").then_some(n.sort_order),
    }
}

#[tonic::async_trait]
impl PrivacyService for PrivacyGrpc {
    async fn create_consent_type(
        &self,
        request: Request<pb::CreateConsentTypeRequest>,
    ) -> Rpc<pb::CreateConsentTypeResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let effective_date = f.take(date(&r.effective_date, "effective_date"))?;
        f.finish()?;
        let form = ConsentTypeForm {
            group: group(r.group()),
            channel: marketing_channel(r.channel()),
            code: r.code,
            title: r.title,
            purpose: r.purpose,
            required: r.required,
            effective_date: proven(effective_date)?,
            advertising: r.advertising,
            night_time: r.night_time,
        };
        let created = self.app.create_consent_type(tenant, form).await?;
        Ok(Response::new(pb::CreateConsentTypeResponse {
            consent_type: Some(pb_consent_type(created)),
        }))
    }

    async fn revise_consent_type(
        &self,
        request: Request<pb::ReviseConsentTypeRequest>,
    ) -> Rpc<pb::ReviseConsentTypeResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let effective_date = date(&r.effective_date, "effective_date")?;
        let form = RevisionForm {
            group: group(r.group()),
            title: r.title,
            purpose: r.purpose,
            required: r.required,
            effective_date,
        };
        let revised = self.app.revise_consent_type(tenant, &r.code, form).await?;
        Ok(Response::new(pb::ReviseConsentTypeResponse {
            consent_type: Some(pb_consent_type(revised)),
        }))
    }

    async fn get_consent_type(
        &self,
        request: Request<pb::GetConsentTypeRequest>,
    ) -> Rpc<pb::GetConsentTypeResponse> {
        let tenant = tenant(&request)?;
        let code = request.into_inner().code;
        if code.trim().is_empty() {
            return Err(ServiceError::invalid("code", "is required").into());
        }
        let (current, versions) = self.app.get_consent_type(tenant, &code).await?;
        Ok(Response::new(pb::GetConsentTypeResponse {
            in_force: current.map(pb_consent_type),
            versions: versions.into_iter().map(pb_consent_type).collect(),
        }))
    }

    async fn list_consent_types(
        &self,
        request: Request<pb::ListConsentTypesRequest>,
    ) -> Rpc<pb::ListConsentTypesResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let at = date(&r.at_date, "at_date")?;
        let types = self
            .app
            .list_consent_types(tenant, group(r.group()), at)
            .await?;
        Ok(Response::new(pb::ListConsentTypesResponse {
            consent_types: types.into_iter().map(pb_consent_type).collect(),
        }))
    }

    async fn validate_signup_consents(
        &self,
        request: Request<pb::ValidateSignupConsentsRequest>,
    ) -> Rpc<pb::ValidateSignupConsentsResponse> {
        let tenant = tenant(&request)?;
        let answers: Vec<Answer> = request
            .into_inner()
            .consents
            .into_iter()
            .map(|c| Answer {
                code: c.consent_type_code,
                granted: c.granted,
            })
            .collect();
        let check = self.app.validate_signup_consents(tenant, &answers).await?;
        Ok(Response::new(pb::ValidateSignupConsentsResponse {
            missing_required_codes: check.missing_required,
            unknown_codes: check.unknown,
            duplicate_codes: check.duplicates,
        }))
    }

    async fn grant_consent(
        &self,
        request: Request<pb::GrantConsentRequest>,
    ) -> Rpc<pb::GrantConsentResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let (member_id, code) = member_and_code(&r.member_id, &r.consent_type_code)?;
        let consent = self
            .app
            .grant_consent(
                p.tenant,
                member_id,
                &code,
                collection_channel(r.collection_channel()),
                &p.subject,
            )
            .await?;
        Ok(Response::new(pb::GrantConsentResponse {
            consent: Some(pb_member_consent(consent)),
        }))
    }

    async fn withdraw_consent(
        &self,
        request: Request<pb::WithdrawConsentRequest>,
    ) -> Rpc<pb::WithdrawConsentResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let (member_id, code) = member_and_code(&r.member_id, &r.consent_type_code)?;
        let consent = self
            .app
            .withdraw_consent(
                p.tenant,
                member_id,
                &code,
                collection_channel(r.collection_channel()),
                &p.subject,
            )
            .await?;
        Ok(Response::new(pb::WithdrawConsentResponse {
            consent: Some(pb_member_consent(consent)),
        }))
    }

    async fn get_member_consents(
        &self,
        request: Request<pb::GetMemberConsentsRequest>,
    ) -> Rpc<pb::GetMemberConsentsResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().member_id, "member_id")?;
        let consents = self.app.member_consents(tenant, id).await?;
        Ok(Response::new(pb::GetMemberConsentsResponse {
            consents: consents.into_iter().map(pb_member_consent).collect(),
        }))
    }

    async fn list_consent_history(
        &self,
        request: Request<pb::ListConsentHistoryRequest>,
    ) -> Rpc<pb::ListConsentHistoryResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.member_id, "member_id"))?;
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        f.finish()?;
        let (changes, next_page_token) = self
            .app
            .consent_history(tenant, proven(id)?, proven(page)?)
            .await?;
        Ok(Response::new(pb::ListConsentHistoryResponse {
            changes: changes.into_iter().map(pb_change).collect(),
            next_page_token,
        }))
    }

    async fn filter_advertising_recipients(
        &self,
        request: Request<pb::FilterAdvertisingRecipientsRequest>,
    ) -> Rpc<pb::FilterAdvertisingRecipientsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let channel = f.take(send_channel(r.channel()))?;
        let at = f.take(time(r.send_time.as_ref(), "send_time"))?;
        f.finish()?;
        let at = proven(at)?.unwrap_or_else(Utc::now);
        let answer = self
            .app
            .filter_advertising_recipients(tenant, proven(channel)?, at, &r.member_ids_packed)
            .await?;
        Ok(Response::new(pb::FilterAdvertisingRecipientsResponse {
            allowed_bitmap: answer.bitmap,
            allowed_count: answer.allowed,
            night_time: answer.night_time,
        }))
    }

    async fn record_reconfirmation_notice_sent(
        &self,
        request: Request<pb::RecordReconfirmationNoticeSentRequest>,
    ) -> Rpc<pb::RecordReconfirmationNoticeSentResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.notice_id, "notice_id"))?;
        let sent = f.take(time(r.sent_time.as_ref(), "sent_time"))?;
        let channel = r.channel();
        if channel == PbChannel::Unspecified {
            f.add("channel", "발송 채널을 지정하세요 (a channel is required)");
        }
        f.finish()?;
        let sent = proven(sent)?.unwrap_or_else(crate::app::now);
        let notice = self
            .app
            .record_reconfirmation_sent(tenant, proven(id)?, sent, channel.as_str_name())
            .await?;
        Ok(Response::new(pb::RecordReconfirmationNoticeSentResponse {
            notice: Some(pb_notice_row(notice)),
        }))
    }

    async fn create_notice(
        &self,
        request: Request<pb::CreateNoticeRequest>,
    ) -> Rpc<pb::CreateNoticeResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let n = self
            .app
            .create_notice(
                tenant,
                NoticePatch {
                    title: Some(r.title),
                    body: Some(r.body),
                    pinned: Some(r.pinned),
                    sort_order: Some(r.sort_order),
                },
            )
            .await?;
        Ok(Response::new(pb::CreateNoticeResponse {
            notice: Some(pb_notice(n)),
        }))
    }

    async fn update_notice(
        &self,
        request: Request<pb::UpdateNoticeRequest>,
    ) -> Rpc<pb::UpdateNoticeResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.notice_id, "notice_id"))?;
        let paths = f.take(mask_paths(r.update_mask.as_ref(), NOTICE_MASK_PATHS))?;
        let patch = paths.map(|p| notice_patch(&p, &r.notice.unwrap_or_default()));
        if let Some(p) = &patch {
            f.take(p.clone().validate("notice."))?;
        }
        f.finish()?;
        let n = self
            .app
            .update_notice(tenant, proven(id)?, proven(patch)?)
            .await?;
        Ok(Response::new(pb::UpdateNoticeResponse {
            notice: Some(pb_notice(n)),
        }))
    }

    async fn publish_notice(
        &self,
        request: Request<pb::PublishNoticeRequest>,
    ) -> Rpc<pb::PublishNoticeResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().notice_id, "notice_id")?;
        let n = self.app.publish_notice(tenant, id).await?;
        Ok(Response::new(pb::PublishNoticeResponse {
            notice: Some(pb_notice(n)),
        }))
    }

    async fn unpublish_notice(
        &self,
        request: Request<pb::UnpublishNoticeRequest>,
    ) -> Rpc<pb::UnpublishNoticeResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().notice_id, "notice_id")?;
        let n = self.app.unpublish_notice(tenant, id).await?;
        Ok(Response::new(pb::UnpublishNoticeResponse {
            notice: Some(pb_notice(n)),
        }))
    }

    async fn delete_notice(
        &self,
        request: Request<pb::DeleteNoticeRequest>,
    ) -> Rpc<pb::DeleteNoticeResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().notice_id, "notice_id")?;
        self.app.delete_notice(tenant, id).await?;
        Ok(Response::new(pb::DeleteNoticeResponse {}))
    }

    async fn get_notice(
        &self,
        request: Request<pb::GetNoticeRequest>,
    ) -> Rpc<pb::GetNoticeResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().notice_id, "notice_id")?;
        let n = self.app.get_notice(tenant, id).await?;
        Ok(Response::new(pb::GetNoticeResponse {
            notice: Some(pb_notice(n)),
        }))
    }

    async fn list_notices(
        &self,
        request: Request<pb::ListNoticesRequest>,
    ) -> Rpc<pb::ListNoticesResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let published_only = r.view() != pb::NoticeView::Admin;
        let (notices, next_page_token) = self
            .app
            .list_notices(tenant, published_only, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListNoticesResponse {
            notices: notices.into_iter().map(pb_notice).collect(),
            next_page_token,
        }))
    }

    async fn create_policy_version(
        &self,
        request: Request<pb::CreatePolicyVersionRequest>,
    ) -> Rpc<pb::CreatePolicyVersionResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let effective_date = f.take(date(&r.effective_date, "effective_date"))?;
        f.finish()?;
        let form = PolicyForm {
            kind: policy_kind(r.kind()),
            version: r.version,
            title: r.title,
            body: r.body,
            effective_date: proven(effective_date)?,
        };
        let p = self.app.create_policy_version(tenant, form).await?;
        Ok(Response::new(pb::CreatePolicyVersionResponse {
            policy_version: Some(pb_policy(p)),
        }))
    }

    async fn get_policy_in_force(
        &self,
        request: Request<pb::GetPolicyInForceRequest>,
    ) -> Rpc<pb::GetPolicyInForceResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let kind = f.take(required_policy_kind(r.kind()))?;
        let at = f.take(date(&r.at_date, "at_date"))?;
        f.finish()?;
        let p = self
            .app
            .policy_in_force(tenant, proven(kind)?, proven(at)?)
            .await?;
        Ok(Response::new(pb::GetPolicyInForceResponse {
            policy_version: Some(pb_policy(p)),
        }))
    }

    async fn list_policy_versions(
        &self,
        request: Request<pb::ListPolicyVersionsRequest>,
    ) -> Rpc<pb::ListPolicyVersionsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let kind = f.take(required_policy_kind(r.kind()))?;
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        f.finish()?;
        let (versions, next_page_token) = self
            .app
            .list_policy_versions(tenant, proven(kind)?, proven(page)?)
            .await?;
        Ok(Response::new(pb::ListPolicyVersionsResponse {
            policy_versions: versions.into_iter().map(pb_policy).collect(),
            next_page_token,
        }))
    }

    async fn create_data_subject_request(
        &self,
        request: Request<pb::CreateDataSubjectRequestRequest>,
    ) -> Rpc<pb::CreateDataSubjectRequestResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let member_id = f.take(parse_uuid(&r.member_id, "member_id"))?;
        let kind = match r.kind() {
            pb::DataSubjectRequestKind::Access => Some(Kind::Access),
            pb::DataSubjectRequestKind::Erasure => Some(Kind::Erasure),
            pb::DataSubjectRequestKind::Unspecified => {
                f.add(
                    "kind",
                    "요구 종류를 지정하세요 (DATA_SUBJECT_REQUEST_KIND_ACCESS or _ERASURE)",
                );
                None
            }
        };
        f.take(dsr::check_note(&r.note))?;
        f.finish()?;
        let created = self
            .app
            .create_request(
                p.tenant,
                RequestForm {
                    member_id: proven(member_id)?,
                    kind: proven(kind)?,
                    collection_channel: collection_channel(r.collection_channel()),
                    note: r.note.clone(),
                    idempotency_key: r.idempotency_key.clone(),
                },
                &p.subject,
            )
            .await?;
        Ok(Response::new(pb::CreateDataSubjectRequestResponse {
            request: Some(pb_dsr(created, self.app.today())),
        }))
    }

    async fn process_data_subject_request(
        &self,
        request: Request<pb::ProcessDataSubjectRequestRequest>,
    ) -> Rpc<pb::ProcessDataSubjectRequestResponse> {
        let p = principal(&request)?;
        let who = caller(&request, &p);
        let id = parse_uuid(&request.get_ref().request_id, "request_id")?;
        let done = self.app.process_request(p.tenant, id, &who).await?;
        Ok(Response::new(pb::ProcessDataSubjectRequestResponse {
            request: Some(pb_dsr(done, self.app.today())),
        }))
    }

    async fn reject_data_subject_request(
        &self,
        request: Request<pb::RejectDataSubjectRequestRequest>,
    ) -> Rpc<pb::RejectDataSubjectRequestResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.take(parse_uuid(&r.request_id, "request_id"))?;
        f.take(dsr::check_reject_reason(&r.reason))?;
        f.finish()?;
        let rejected = self
            .app
            .reject_request(tenant, proven(id)?, &r.reason)
            .await?;
        Ok(Response::new(pb::RejectDataSubjectRequestResponse {
            request: Some(pb_dsr(rejected, self.app.today())),
        }))
    }

    async fn get_data_subject_request(
        &self,
        request: Request<pb::GetDataSubjectRequestRequest>,
    ) -> Rpc<pb::GetDataSubjectRequestResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().request_id, "request_id")?;
        let found = self.app.get_request(tenant, id).await?;
        Ok(Response::new(pb::GetDataSubjectRequestResponse {
            request: Some(pb_dsr(found, self.app.today())),
        }))
    }

    async fn list_data_subject_requests(
        &self,
        request: Request<pb::ListDataSubjectRequestsRequest>,
    ) -> Rpc<pb::ListDataSubjectRequestsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        let member_id = f.take(parse_optional_uuid(&r.member_id, "member_id"))?;
        f.finish()?;
        let (found, next_page_token) = self
            .app
            .list_requests(
                tenant,
                dsr_status(r.status()),
                proven(member_id)?,
                proven(page)?,
            )
            .await?;
        let today = self.app.today();
        Ok(Response::new(pb::ListDataSubjectRequestsResponse {
            requests: found.into_iter().map(|r| pb_dsr(r, today)).collect(),
            next_page_token,
        }))
    }

    async fn get_data_subject_export(
        &self,
        request: Request<pb::GetDataSubjectExportRequest>,
    ) -> Rpc<pb::GetDataSubjectExportResponse> {
        let p = principal(&request)?;
        let who = caller(&request, &p);
        if !who.can_unmask {
            return Err(ServiceError::PermissionDenied(
                "개인정보 열람 권한(pii:unmask)이 없습니다 (the caller lacks the pii:unmask permission)".into(),
            )
            .into());
        }
        let r = request.into_inner();
        let id = parse_uuid(&r.request_id, "request_id")?;
        let document_json = self
            .app
            .open_document(p.tenant, id, &r.reason, &who)
            .await?;
        Ok(Response::new(pb::GetDataSubjectExportResponse {
            document_json,
        }))
    }

    async fn export_member_data(
        &self,
        request: Request<pb::ExportMemberDataRequest>,
    ) -> Rpc<pb::ExportMemberDataResponse> {
        let tenant = tenant(&request)?;
        let id = parse_uuid(&request.get_ref().member_id, "member_id")?;
        let document = self.app.export_member_data(tenant, id).await?;
        Ok(Response::new(pb::ExportMemberDataResponse {
            document_json: document.to_string(),
        }))
    }

    async fn record_pii_access(
        &self,
        request: Request<pb::RecordPiiAccessRequest>,
    ) -> Rpc<pb::RecordPiiAccessResponse> {
        let p = principal(&request)?;
        let r = request.into_inner();
        let access_time = time(r.access_time.as_ref(), "access_time")?;
        let form = AccessForm {
            member_id: r.member_id,
            actor: r.actor,
            fields: r.fields,
            reason: r.reason,
            client_address: r.client_address,
            operation: r.operation,
            access_time,
        };
        let entry = self
            .app
            .record_pii_access(p.tenant, form, &p.subject)
            .await?;
        Ok(Response::new(pb::RecordPiiAccessResponse {
            entry: Some(pb_access(entry)),
        }))
    }

    async fn list_pii_accesses(
        &self,
        request: Request<pb::ListPiiAccessesRequest>,
    ) -> Rpc<pb::ListPiiAccessesResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let page = f.take(PageRequest::parse(r.page_size, &r.page_token))?;
        let member_id = f.take(parse_optional_uuid(&r.member_id, "member_id"))?;
        let from = f.take(time(r.from_time.as_ref(), "from_time"))?;
        let to = f.take(time(r.to_time.as_ref(), "to_time"))?;
        if let (Some(Some(a)), Some(Some(b))) = (from, to)
            && a >= b
        {
            f.add(
                "to_time",
                "from_time보다 뒤여야 합니다 (must be after from_time)",
            );
        }
        f.finish()?;
        let filter = AccessFilter {
            member_id: proven(member_id)?,
            actor: (!r.actor.trim().is_empty()).then(|| r.actor.trim().to_string()),
            from: proven(from)?,
            to: proven(to)?,
        };
        let (entries, next_page_token) = self
            .app
            .list_pii_accesses(tenant, filter, proven(page)?)
            .await?;
        Ok(Response::new(pb::ListPiiAccessesResponse {
            entries: entries.into_iter().map(pb_access).collect(),
            next_page_token,
        }))
    }

    async fn verify_access_log(
        &self,
        request: Request<pb::VerifyAccessLogRequest>,
    ) -> Rpc<pb::VerifyAccessLogResponse> {
        let tenant = tenant(&request)?;
        let v = self.app.verify_access_log(tenant).await?;
        Ok(Response::new(pb::VerifyAccessLogResponse {
            intact: v.intact,
            entries_checked: v.checked,
            first_broken_seq: v.first_broken_seq,
            problem: v.problem,
        }))
    }

    async fn get_privacy_settings(
        &self,
        request: Request<pb::GetPrivacySettingsRequest>,
    ) -> Rpc<pb::GetPrivacySettingsResponse> {
        let tenant = tenant(&request)?;
        let days = self.app.retention_days(tenant).await?;
        Ok(Response::new(pb::GetPrivacySettingsResponse {
            settings: Some(pb::PrivacySettings {
                retention_days: days,
            }),
        }))
    }

    async fn update_privacy_settings(
        &self,
        request: Request<pb::UpdatePrivacySettingsRequest>,
    ) -> Rpc<pb::UpdatePrivacySettingsResponse> {
        let tenant = tenant(&request)?;
        let r = request.into_inner();
        mask_paths(r.update_mask.as_ref(), SETTINGS_MASK_PATHS)?;
        let wanted = r.settings.unwrap_or_default().retention_days;
        let days = self.app.set_retention_days(tenant, wanted).await?;
        Ok(Response::new(pb::UpdatePrivacySettingsResponse {
            settings: Some(pb::PrivacySettings {
                retention_days: days,
            }),
        }))
    }
}

fn member_and_code(member_id: &str, code: &str) -> Result<(uuid::Uuid, String), ServiceError> {
    let mut f = Fields::default();
    let id = f.take(parse_uuid(member_id, "member_id"))?;
    let code = code.trim().to_string();
    if code.is_empty() {
        f.add("consent_type_code", "is required");
    }
    f.finish()?;
    Ok((proven(id)?, code))
}

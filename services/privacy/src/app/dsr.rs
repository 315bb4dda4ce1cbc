//! Data-subject requests: receive (with the 10-day deadline), process (an access request
//! collects every service's `ExportMemberData` into one JSON document, stored encrypted; an
//! erasure request erases the member everywhere), reject, and open the document (logged).
use serde::Serialize;
use serde_json::json;
use spharos_kit::{
    ServiceError, TenantId,
    idempotency::{self, Claim, fingerprint},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{PrivacyApp, member_not_found, now};
use crate::{
    domain::{
        access_log::{Access, Source},
        consent::CollectionChannel,
        dsr::{self, Kind, Request, RequestForm, Status},
    },
    store::{
        consents,
        dsr::{self as rows, DsrRow},
        members,
    },
};

const CREATE_SCOPE: &str = "privacy.dsr.create";
/// The name this service's own section has in an access document.
const OWN_SECTION: &str = "privacy";

/// Who asks, with what to forward to the other services.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's subject.
    pub subject: String,
    /// The `authorization` header, forwarded to the services a request visits.
    pub authorization: String,
    /// The caller's address, for the access log.
    pub client_address: String,
    /// Holds `pii:unmask` (needed to collect an access request's data).
    pub can_unmask: bool,
    /// Holds `pii:erase` (needed to run an erasure request).
    pub can_erase: bool,
}

fn request_not_found() -> ServiceError {
    ServiceError::not_found("정보주체 요구를 찾을 수 없습니다 (data-subject request not found)")
}

fn document_context(id: Uuid) -> String {
    format!("privacy.dsr_document:{id}")
}

#[derive(Serialize)]
struct CreateFingerprint<'a> {
    member_id: Uuid,
    kind: &'a str,
    channel: &'a str,
    note: &'a str,
}

impl PrivacyApp {
    /// Receives a request about a known member; its deadline is 10 days after today (tenant
    /// zone). A retry with the same idempotency key returns the first request.
    pub async fn create_request(
        &self,
        tenant: TenantId,
        form: RequestForm,
        actor: &str,
    ) -> Result<Request, ServiceError> {
        let RequestForm {
            member_id,
            kind,
            collection_channel: channel,
            note,
            idempotency_key,
        } = form;
        let idempotency_key = idempotency_key.as_str();
        let note = dsr::check_note(&note)?;
        let body = serde_json::to_vec(&CreateFingerprint {
            member_id,
            kind: kind.as_str(),
            channel: channel.as_str(),
            note: &note,
        })
        .map_err(ServiceError::internal)?;
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) = idempotency::claim(
            &tx,
            tenant,
            CREATE_SCOPE,
            idempotency_key,
            &fingerprint(&body),
        )
        .await?
        {
            let id: Uuid = serde_json::from_slice(&stored).map_err(ServiceError::internal)?;
            let row = rows::get(&tx, tenant, id)
                .await?
                .ok_or_else(|| ServiceError::internal("the request of a stored key is gone"))?;
            tx.commit().await?;
            return Ok(rows::to_domain(&row)?);
        }
        if members::get(&tx, tenant, member_id).await?.is_none() {
            return Err(member_not_found());
        }
        let t = now();
        let row = DsrRow {
            tenant_id: tenant.as_uuid(),
            id: Uuid::now_v7(),
            member_id,
            kind: kind.as_str().into(),
            status: Status::Received.as_str().into(),
            collection_channel: channel.as_str().into(),
            note,
            actor: actor.to_string(),
            receive_time: t,
            due_date: dsr::due_date(t, self.zone),
            complete_time: None,
            reject_reason: None,
            last_error: None,
            services: "[]".into(),
            document_enc: None,
            created_time: t,
            updated_time: t,
        };
        rows::insert(&tx, &row).await?;
        let stored = serde_json::to_vec(&row.id).map_err(ServiceError::internal)?;
        idempotency::complete(&tx, tenant, CREATE_SCOPE, idempotency_key, &stored).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, request_id = %row.id, kind = kind.as_str(), "data-subject request received");
        Ok(rows::to_domain(&row)?)
    }

    /// Runs a request: IN_PROGRESS (committed), then the other services are called without a
    /// transaction held, then COMPLETED with what they answered. When a service fails the
    /// request stays IN_PROGRESS with `last_error`, and processing it again retries (exports
    /// and erasures are both safe to repeat).
    pub async fn process_request(
        &self,
        tenant: TenantId,
        id: Uuid,
        caller: &Caller,
    ) -> Result<Request, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let mut row = rows::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(request_not_found)?;
        let request = rows::to_domain(&row)?;
        request.status.check_process()?;
        match request.kind {
            Kind::Access if !caller.can_unmask => {
                return Err(ServiceError::PermissionDenied(
                    "열람 요구 처리에는 pii:unmask 권한이 필요합니다 (processing an access request needs pii:unmask)".into(),
                ));
            }
            Kind::Erasure if !caller.can_erase => {
                return Err(ServiceError::PermissionDenied(
                    "삭제 요구 처리에는 pii:erase 권한이 필요합니다 (processing an erasure request needs pii:erase)".into(),
                ));
            }
            _ => {}
        }
        row.status = Status::InProgress.as_str().into();
        row.updated_time = now();
        rows::update(&tx, &row).await?;
        tx.commit().await?;

        let outcome = match request.kind {
            Kind::Access => self
                .collect(tenant, request.member_id, &caller.authorization)
                .await
                .map(|(doc, services)| (Some(doc), services)),
            Kind::Erasure => self
                .erase_elsewhere(
                    tenant,
                    request.member_id,
                    &format!("DSR {id}"),
                    &caller.authorization,
                )
                .await
                .map(|services| (None, services)),
        };

        let tx = self.db.begin(tenant).await?;
        let mut row = rows::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(request_not_found)?;
        let t = now();
        row.updated_time = t;
        match outcome {
            Ok((document, services)) => {
                let dk = self.data_key(&tx, tenant).await?;
                row.document_enc =
                    document.map(|d| dk.encrypt(&d.to_string(), &document_context(id)));
                row.services = serde_json::to_string(&services).map_err(ServiceError::internal)?;
                row.status = Status::Completed.as_str().into();
                row.complete_time = Some(t);
                row.last_error = None;
                if request.kind == Kind::Erasure {
                    self.erase_here(&tx, tenant, request.member_id).await?;
                }
                rows::update(&tx, &row).await?;
                tx.commit().await?;
                tracing::info!(tenant_id = %tenant, request_id = %id, "data-subject request completed");
                Ok(rows::to_domain(&row)?)
            }
            Err(e) => {
                row.last_error = Some(e.to_string());
                rows::update(&tx, &row).await?;
                tx.commit().await?;
                tracing::warn!(tenant_id = %tenant, request_id = %id, service = e.service, code = ?e.code, "data-subject request stopped");
                Err(ServiceError::Unavailable(format!(
                    "{} 서비스 처리에 실패했습니다; 요구는 진행 중으로 남고 다시 처리할 수 있습니다 ({} failed: {:?} {}; the request stays IN_PROGRESS, process it again to retry)",
                    e.service, e.service, e.code, e.message
                )))
            }
        }
    }

    /// Every service's document about the member, plus this service's own section.
    async fn collect(
        &self,
        tenant: TenantId,
        member_id: Uuid,
        authorization: &str,
    ) -> Result<(serde_json::Value, Vec<String>), crate::clients::CallError> {
        let mut sections = serde_json::Map::new();
        let mut names = Vec::new();
        for service in self.services.services() {
            let doc = service.export(member_id, authorization).await?;
            sections.insert(service.name.to_string(), doc);
            names.push(service.name.to_string());
        }
        let own = self
            .export_member_data(tenant, member_id)
            .await
            .map_err(|e| crate::clients::CallError {
                service: OWN_SECTION,
                code: tonic::Code::Internal,
                message: e.to_string(),
            })?;
        sections.insert(OWN_SECTION.into(), own);
        names.push(OWN_SECTION.into());
        let document = json!({
            "member_id": member_id,
            "generated_time": now(),
            "services": sections,
        });
        Ok((document, names))
    }

    /// Erases the member in every service that keeps PII.
    async fn erase_elsewhere(
        &self,
        _tenant: TenantId,
        member_id: Uuid,
        reason: &str,
        authorization: &str,
    ) -> Result<Vec<String>, crate::clients::CallError> {
        let mut names = Vec::new();
        for service in self.services.services() {
            if service.erase(member_id, reason, authorization).await? {
                names.push(service.name.to_string());
            }
        }
        names.push(OWN_SECTION.into());
        Ok(names)
    }

    /// This service's part of an erasure: the stored access documents go, the member is
    /// marked erased and any consent still granted ends. Consent history stays: it holds ids,
    /// no PII, and proves the consents.
    async fn erase_here(
        &self,
        tx: &spharos_kit::db::Tx,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        let t = now();
        rows::drop_documents_of(tx, tenant, member_id, t).await?;
        members::mark_erased(tx, tenant, member_id, t).await?;
        self.end_consents(tx, tenant, member_id, t).await
    }

    /// What this service holds about a member: consents and their whole history.
    pub async fn export_member_data(
        &self,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<serde_json::Value, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let member = members::get(&tx, tenant, member_id)
            .await?
            .ok_or_else(member_not_found)?;
        let states = consents::of_member(&tx, tenant, member_id).await?;
        let history = consents::full_history(&tx, tenant, member_id).await?;
        tx.commit().await?;
        Ok(json!({
            "member_id": member_id,
            "status": member.status,
            "consents": states,
            "consent_history": history,
        }))
    }

    pub async fn reject_request(
        &self,
        tenant: TenantId,
        id: Uuid,
        reason: &str,
    ) -> Result<Request, ServiceError> {
        let reason = dsr::check_reject_reason(reason)?;
        let tx = self.db.begin(tenant).await?;
        let mut row = rows::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(request_not_found)?;
        rows::to_domain(&row)?.status.check_reject()?;
        let t = now();
        row.status = Status::Rejected.as_str().into();
        row.reject_reason = Some(reason);
        row.complete_time = Some(t);
        row.updated_time = t;
        rows::update(&tx, &row).await?;
        tx.commit().await?;
        Ok(rows::to_domain(&row)?)
    }

    pub async fn get_request(&self, tenant: TenantId, id: Uuid) -> Result<Request, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let row = rows::get(&tx, tenant, id).await?;
        tx.commit().await?;
        Ok(rows::to_domain(&row.ok_or_else(request_not_found)?)?)
    }

    pub async fn list_requests(
        &self,
        tenant: TenantId,
        status: Option<Status>,
        member_id: Option<Uuid>,
        page: PageRequest,
    ) -> Result<(Vec<Request>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let found = rows::list(&tx, tenant, status, member_id, &page).await?;
        tx.commit().await?;
        let requests = found
            .iter()
            .map(rows::to_domain)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(requests, |r| r.id))
    }

    /// The document of a completed access request, in clear. The opening is written to the
    /// access log in the same transaction, before the document leaves.
    pub async fn open_document(
        &self,
        tenant: TenantId,
        id: Uuid,
        reason: &str,
        caller: &Caller,
    ) -> Result<String, ServiceError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > crate::domain::access_log::MAX_TEXT_CHARS {
            return Err(ServiceError::invalid(
                "reason",
                "열람 사유는 1~500자입니다 (1 to 500 characters)",
            ));
        }
        let tx = self.db.begin(tenant).await?;
        let row = rows::get(&tx, tenant, id)
            .await?
            .ok_or_else(request_not_found)?;
        let request = rows::to_domain(&row)?;
        let Some(sealed) = row.document_enc.as_ref() else {
            return Err(ServiceError::precondition(
                "NO_DOCUMENT",
                match (request.kind, request.status) {
                    (Kind::Access, Status::Completed) => {
                        "회원 정보가 파기되어 문서가 삭제되었습니다 (the document was deleted with the member's PII)"
                    }
                    _ => {
                        "완료된 열람 요구에만 문서가 있습니다 (only a completed access request has a document)"
                    }
                },
            ));
        };
        let dk = self.data_key(&tx, tenant).await?;
        let document = dk
            .decrypt(sealed, &document_context(id))
            .map_err(|_| ServiceError::internal(format!("DSR document {id} does not decrypt")))?;
        self.append_access(
            &tx,
            tenant,
            Access {
                member_id: request.member_id,
                actor: caller.subject.clone(),
                fields: vec!["dsr_document".into()],
                reason: reason.to_string(),
                client_address: caller.client_address.clone(),
                operation: "spharos.privacy.v1.PrivacyService/GetDataSubjectExport".into(),
                access_time: now(),
                source: Source::Direct,
                recorded_by: "privacy".into(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(document)
    }

    /// Erases a withdrawn member whose retention period ended: every service erases, then a
    /// completed ERASURE request records it (actor `privacy-retention`).
    pub(crate) async fn erase_after_retention(
        &self,
        tenant: TenantId,
        member_id: Uuid,
    ) -> Result<(), ServiceError> {
        let token = self
            .signer
            .mint(tenant, RETENTION_ACTOR, &[crate::PERM_PII_ERASE], 300);
        let services = self
            .erase_elsewhere(
                tenant,
                member_id,
                "보관 기간 경과 (retention period elapsed)",
                &format!("Bearer {token}"),
            )
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        let tx = self.db.begin(tenant).await?;
        let t = now();
        let row = DsrRow {
            tenant_id: tenant.as_uuid(),
            id: Uuid::now_v7(),
            member_id,
            kind: Kind::Erasure.as_str().into(),
            status: Status::Completed.as_str().into(),
            collection_channel: CollectionChannel::Unspecified.as_str().into(),
            note: "보관 기간 경과 후 자동 파기 (erased when the retention period ended)".into(),
            actor: RETENTION_ACTOR.into(),
            receive_time: t,
            due_date: dsr::due_date(t, self.zone),
            complete_time: Some(t),
            reject_reason: None,
            last_error: None,
            services: serde_json::to_string(&services).map_err(ServiceError::internal)?,
            document_enc: None,
            created_time: t,
            updated_time: t,
        };
        rows::insert(&tx, &row).await?;
        self.erase_here(&tx, tenant, member_id).await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, member_id = %member_id, "member erased after the retention period");
        Ok(())
    }
}

/// The actor of automatic erasures.
pub const RETENTION_ACTOR: &str = "privacy-retention";

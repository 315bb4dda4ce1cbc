//! The services that hold member data, for data-subject requests: where each one answers
//! `ExportMemberData` and (when it keeps PII) how it erases a member. Every service offers the
//! same message shapes (`ExportMemberDataRequest { string member_id = 1; }` →
//! `ExportMemberDataResponse { string document_json = 1; }`), so one generic gRPC call serves
//! them all and adding a service is one line in `MEMBER_DATA_MODULES`.
use std::time::Duration;

use http::uri::PathAndQuery;
use spharos_kit::config::Settings;
use spharos_proto::privacy::{ExportMemberDataRequest, ExportMemberDataResponse};
use tonic::{Code, transport::Channel};
use uuid::Uuid;

const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `EraseMember`-style request: the same field numbers in every service that erases PII.
#[derive(Clone, PartialEq, prost::Message)]
struct EraseMemberDataRequest {
    #[prost(string, tag = "1")]
    member_id: String,
    #[prost(string, tag = "2")]
    reason: String,
}

/// Whatever an erasure answers: only its status matters here (unknown fields are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct ErasureAnswer {}

/// One service that holds member data.
#[derive(Clone, Debug)]
pub struct MemberDataService {
    pub name: &'static str,
    channel: Channel,
    export_path: &'static str,
    erase_path: Option<&'static str>,
}

/// Why a call to another service failed (its status, kept for the request's `last_error`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}: {code:?} {message}")]
pub struct CallError {
    pub service: &'static str,
    pub code: Code,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the {service} service endpoint {endpoint:?} is not a valid URI: {reason}")]
pub struct EndpointError {
    service: &'static str,
    endpoint: String,
    reason: String,
}

impl MemberDataService {
    /// `export_path` / `erase_path` are full gRPC paths
    /// (`/spharos.member.v1.MemberService/ExportMemberData`). Connects on first use.
    pub fn new(
        name: &'static str,
        endpoint: &str,
        export_path: &'static str,
        erase_path: Option<&'static str>,
    ) -> Result<Self, EndpointError> {
        let channel = Channel::from_shared(endpoint.to_string())
            .map_err(|e| EndpointError {
                service: name,
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            name,
            channel,
            export_path,
            erase_path,
        })
    }

    fn fail(&self, status: &tonic::Status) -> CallError {
        CallError {
            service: self.name,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        msg: Req,
        authorization: &str,
    ) -> Result<Resp, CallError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.map_err(|e| CallError {
            service: self.name,
            code: Code::Unavailable,
            message: e.to_string(),
        })?;
        let mut request = tonic::Request::new(msg);
        let value = authorization.parse().map_err(|_| CallError {
            service: self.name,
            code: Code::Unauthenticated,
            message: "malformed authorization header".into(),
        })?;
        request.metadata_mut().insert("authorization", value);
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        grpc.unary(request, PathAndQuery::from_static(path), codec)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.fail(&s))
    }

    /// The service's JSON document about the member.
    pub async fn export(
        &self,
        member_id: Uuid,
        authorization: &str,
    ) -> Result<serde_json::Value, CallError> {
        let resp: ExportMemberDataResponse = self
            .unary(
                self.export_path,
                ExportMemberDataRequest {
                    member_id: member_id.to_string(),
                },
                authorization,
            )
            .await?;
        serde_json::from_str(&resp.document_json).map_err(|e| CallError {
            service: self.name,
            code: Code::Internal,
            message: format!("document_json is not JSON: {e}"),
        })
    }

    /// Erases the member's PII there; `false` when the service keeps no PII to erase.
    pub async fn erase(
        &self,
        member_id: Uuid,
        reason: &str,
        authorization: &str,
    ) -> Result<bool, CallError> {
        let Some(path) = self.erase_path else {
            return Ok(false);
        };
        let _: ErasureAnswer = self
            .unary(
                path,
                EraseMemberDataRequest {
                    member_id: member_id.to_string(),
                    reason: reason.to_string(),
                },
                authorization,
            )
            .await?;
        Ok(true)
    }
}

/// Every service a data-subject request visits, in order.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    services: Vec<MemberDataService>,
}

/// The modules that hold member data, with their `ExportMemberData` path and, where they
/// keep PII, their erase path. Adding a service is one line here.
const MEMBER_DATA_MODULES: &[(&str, &str, Option<&str>)] = &[
    (
        "member",
        "/spharos.member.v1.MemberService/ExportMemberData",
        Some("/spharos.member.v1.MemberService/EraseMember"),
    ),
    // Points and coupons keep no PII of their own (ledgers point at the member id, the
    // pseudonymous reference); coupon drops its copy of the birth month-day on `member.erased`.
    (
        "points",
        "/spharos.points.v1.PointsService/ExportMemberData",
        None,
    ),
    (
        "coupon",
        "/spharos.coupon.v1.CouponService/ExportMemberData",
        None,
    ),
];

impl Registry {
    /// Every module that holds member data, all in this process (`--target all`) unless
    /// `services.<module>` names another address.
    pub fn for_settings(settings: &Settings) -> Result<Self, EndpointError> {
        let all: Vec<&str> = MEMBER_DATA_MODULES.iter().map(|m| m.0).collect();
        Self::for_deployment(settings, &all)
    }

    /// The modules of a deployment: those in `in_process` at this process's address, the
    /// others where `services.<module>` names an address, and no others (a module that is
    /// not deployed holds no data).
    pub fn for_deployment(settings: &Settings, in_process: &[&str]) -> Result<Self, EndpointError> {
        let mut services = Vec::new();
        for &(name, export, erase) in MEMBER_DATA_MODULES {
            let endpoint = if in_process.contains(&name) {
                settings.endpoint_of(&None)
            } else if let Some(url) = settings.services.configured(name) {
                url.to_string()
            } else {
                continue;
            };
            services.push(MemberDataService::new(name, &endpoint, export, erase)?);
        }
        Ok(Self { services })
    }

    /// Adds (or replaces, by name) a service.
    pub fn with(mut self, service: MemberDataService) -> Self {
        self.services.retain(|s| s.name != service.name);
        self.services.push(service);
        self
    }

    pub fn services(&self) -> &[MemberDataService] {
        &self.services
    }
}

//! The event envelope and its CloudEvents 1.0 binary-mode mapping: attributes travel as `ce-`
//! headers next to the protobuf payload, so a consumer reads the tenant and trace context
//! without decoding the body (CONVENTIONS.md, "Events").
use async_nats::HeaderMap;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use uuid::Uuid;

use crate::{telemetry, tenancy::TenantId};

pub(crate) const CONTENT_TYPE: &str = "application/protobuf";
const TYPE_PREFIX: &str = "io.spharos.";
const TYPE_VERSION: &str = "v1";
const SOURCE_PREFIX: &str = "/spharos/";

/// One event: a CloudEvent whose payload is a protobuf message.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// UUIDv7; also the outbox row id, `ce-id` and `Nats-Msg-Id`.
    pub id: Uuid,
    /// `ce-tenantid`.
    pub tenant: TenantId,
    /// `member` → `ce-source` `/spharos/member`.
    pub service: String,
    /// `joined` → subject `<namespace>.member.joined`, `ce-type` `io.spharos.member.joined.v1`.
    pub event: String,
    /// The aggregate id, `ce-subject`.
    pub subject_id: String,
    /// `ce-time`, microsecond precision (what PostgreSQL stores).
    pub time: DateTime<Utc>,
    /// Protobuf bytes, content type `application/protobuf`.
    pub payload: Vec<u8>,
    /// W3C trace context of the operation that caused the event.
    pub traceparent: Option<String>,
}

impl Envelope {
    /// A new event from `service` about `subject_id`, carrying the current span's trace context.
    pub fn new(
        service: &str,
        event: &str,
        tenant: TenantId,
        subject_id: impl Into<String>,
        message: &impl prost::Message,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            tenant,
            service: service.to_string(),
            event: event.to_string(),
            subject_id: subject_id.into(),
            // Truncated so the envelope read back from PostgreSQL or headers compares equal.
            time: Utc::now().trunc_subsecs(6),
            payload: message.encode_to_vec(),
            traceparent: telemetry::current_traceparent(),
        }
    }

    /// `io.spharos.<service>.<event>.v1`.
    pub fn ce_type(&self) -> String {
        format!(
            "{TYPE_PREFIX}{}.{}.{TYPE_VERSION}",
            self.service, self.event
        )
    }

    /// `<service>.<event>`: the subject without the namespace.
    pub fn topic(&self) -> String {
        format!("{}.{}", self.service, self.event)
    }

    /// The protobuf payload as `M`.
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_slice())
    }

    pub(crate) fn subject(&self, namespace: &str) -> String {
        format!("{namespace}.{}", self.topic())
    }

    pub(crate) fn ce_source(&self) -> String {
        format!("{SOURCE_PREFIX}{}", self.service)
    }

    /// The CloudEvents binary-mode headers, plus `Nats-Msg-Id` for JetStream de-duplication.
    pub(crate) fn headers(&self) -> HeaderMap {
        let id = self.id.to_string();
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0");
        h.insert("ce-id", id.as_str());
        h.insert("ce-source", self.ce_source().as_str());
        h.insert("ce-type", self.ce_type().as_str());
        h.insert(
            "ce-time",
            self.time
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_str(),
        );
        h.insert("ce-subject", self.subject_id.as_str());
        h.insert("ce-tenantid", self.tenant.to_string().as_str());
        h.insert("content-type", CONTENT_TYPE);
        h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        if let Some(tp) = &self.traceparent {
            h.insert("traceparent", tp.as_str());
        }
        h
    }

    /// Reads an envelope back from CloudEvents headers; `Err` names what is wrong.
    pub(crate) fn from_headers(
        headers: Option<&HeaderMap>,
        payload: &[u8],
    ) -> Result<Self, String> {
        let headers = headers.ok_or("no headers")?;
        let get = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .ok_or_else(|| format!("missing header {name}"))
        };
        let spec = get("ce-specversion")?;
        if spec != "1.0" {
            return Err(format!("unsupported ce-specversion {spec:?}"));
        }
        if let Ok(ct) = get("content-type")
            && ct != CONTENT_TYPE
        {
            return Err(format!("unsupported content-type {ct:?}"));
        }
        let id = Uuid::parse_str(&get("ce-id")?).map_err(|e| format!("bad ce-id: {e}"))?;
        let tenant = get("ce-tenantid")?
            .parse::<TenantId>()
            .map_err(|e| format!("bad ce-tenantid: {e}"))?;
        let source = get("ce-source")?;
        let service = source
            .strip_prefix(SOURCE_PREFIX)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("bad ce-source {source:?}"))?
            .to_string();
        let ce_type = get("ce-type")?;
        let event = ce_type
            .strip_prefix(TYPE_PREFIX)
            .and_then(|t| t.strip_prefix(service.as_str()))
            .and_then(|t| t.strip_prefix('.'))
            .and_then(|t| t.rsplit_once('.'))
            .filter(|(event, version)| !event.is_empty() && version.starts_with('v'))
            .map(|(event, _)| event.to_string())
            .ok_or_else(|| format!("ce-type {ce_type:?} does not match ce-source {source:?}"))?;
        let time = DateTime::parse_from_rfc3339(&get("ce-time")?)
            .map_err(|e| format!("bad ce-time: {e}"))?
            .with_timezone(&Utc);
        Ok(Self {
            id,
            tenant,
            service,
            event,
            subject_id: get("ce-subject")?,
            time,
            payload: payload.to_vec(),
            traceparent: get("traceparent").ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            id: Uuid::now_v7(),
            tenant: TenantId::generate(),
            service: "campaign".into(),
            event: "message.sent".into(),
            subject_id: "msg-1".into(),
            time: Utc::now().trunc_subsecs(6),
            payload: vec![1, 2, 3],
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn headers_round_trip() {
        let e = sample();
        assert_eq!(e.ce_type(), "io.spharos.campaign.message.sent.v1");
        assert_eq!(e.topic(), "campaign.message.sent");
        let h = e.headers();
        assert_eq!(
            h.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(e.id.to_string().as_str())
        );
        let back = Envelope::from_headers(Some(&h), &e.payload).expect("round trip");
        assert_eq!(back, e);
    }

    #[test]
    fn malformed_headers_are_named() {
        let e = sample();
        let mut h = e.headers();
        h.insert("ce-tenantid", "not-a-uuid");
        let err = Envelope::from_headers(Some(&h), &[]).expect_err("bad tenant");
        assert!(err.contains("ce-tenantid"), "{err}");
        assert!(Envelope::from_headers(None, &[]).is_err());
    }
}

//! The sign-up consent check: before a join creates anything, the privacy service
//! (`spharos.privacy.v1.PrivacyService/ValidateSignupConsents`) says whether the answers cover
//! every required consent item in force. A client boundary, so it knows the privacy API's
//! prost types; the application layer sees only `SignupConsent` and `ServiceError`.
use std::{collections::HashMap, time::Duration};

use spharos_kit::{ServiceError, TenantId, auth::TokenSigner, error::FieldViolation};
use spharos_proto::privacy::{
    ConsentAnswer, ValidateSignupConsentsRequest, privacy_service_client::PrivacyServiceClient,
};
use tonic::{Code, transport::Channel};

use crate::domain::member::SignupConsent;

/// The subject of tokens minted for in-process callers without a token of their own (the
/// `--demo` seeding).
const SERVICE_SUBJECT: &str = "spharos-member";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the privacy service about sign-up consents. Cheap to clone.
#[derive(Clone)]
pub struct SignupConsentCheck {
    client: PrivacyServiceClient<Channel>,
    signer: TokenSigner,
}

impl std::fmt::Debug for SignupConsentCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignupConsentCheck")
    }
}

/// Why the check could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("privacy service endpoint {endpoint:?} is not a valid URI: {reason}")]
pub struct ConsentCheckError {
    endpoint: String,
    reason: String,
}

impl SignupConsentCheck {
    /// A check against the privacy service at `endpoint` (`http://host:port`). It connects on
    /// first use, so the privacy module may start after this one. `signer` mints a token for
    /// callers without one.
    pub fn new(endpoint: &str, signer: TokenSigner) -> Result<Self, ConsentCheckError> {
        let channel = Channel::from_shared(endpoint.to_string())
            .map_err(|e| ConsentCheckError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            client: PrivacyServiceClient::new(channel),
            signer,
        })
    }

    /// `Ok` when the answers may sign the member up. `authorization` is the caller's
    /// `authorization` header, forwarded so the privacy service sees the same caller; without
    /// one a short-lived token of this service is minted. Unknown or duplicate codes are
    /// `InvalidArgument` naming `consents[i].consent_type_code`; a required item not granted is
    /// `FailedPrecondition` / `CONSENT_REQUIRED` naming the codes.
    pub async fn check(
        &self,
        tenant: TenantId,
        consents: &[SignupConsent],
        authorization: Option<&str>,
    ) -> Result<(), ServiceError> {
        let mut request = tonic::Request::new(ValidateSignupConsentsRequest {
            consents: consents
                .iter()
                .map(|c| ConsentAnswer {
                    consent_type_code: c.code.clone(),
                    granted: c.granted,
                })
                .collect(),
        });
        let header = match authorization {
            Some(h) => h.to_string(),
            None => format!(
                "Bearer {}",
                self.signer.mint(tenant, SERVICE_SUBJECT, &[], 60)
            ),
        };
        let value = header
            .parse()
            .map_err(|_| ServiceError::Unauthenticated("malformed authorization header".into()))?;
        request.metadata_mut().insert("authorization", value);
        let answer = self
            .client
            .clone()
            .validate_signup_consents(request)
            .await
            .map_err(|status| match status.code() {
                Code::Unauthenticated => ServiceError::Unauthenticated(status.message().into()),
                Code::PermissionDenied => ServiceError::PermissionDenied(status.message().into()),
                _ => {
                    tracing::warn!(code = ?status.code(), error = %status.message(), %tenant, "signup consent check failed");
                    ServiceError::Unavailable(
                        "동의 항목을 확인할 수 없습니다. 잠시 후 다시 시도하세요 (the consent check is unavailable; retry)".into(),
                    )
                }
            })?
            .into_inner();
        let mut bad = Vec::new();
        for (i, c) in consents.iter().enumerate() {
            if answer.unknown_codes.contains(&c.code) {
                bad.push(FieldViolation {
                    field: format!("consents[{i}].consent_type_code"),
                    description: format!(
                        "없는 동의 항목입니다 (unknown consent type {:?})",
                        c.code
                    ),
                });
            } else if answer.duplicate_codes.contains(&c.code)
                && consents[..i].iter().any(|p| p.code == c.code)
            {
                bad.push(FieldViolation {
                    field: format!("consents[{i}].consent_type_code"),
                    description: format!(
                        "같은 동의 항목에 두 번 답했습니다 (consent type {:?} answered twice)",
                        c.code
                    ),
                });
            }
        }
        if !bad.is_empty() {
            return Err(ServiceError::InvalidArgument(bad));
        }
        if !answer.missing_required_codes.is_empty() {
            let codes = answer.missing_required_codes.join(", ");
            return Err(ServiceError::FailedPrecondition {
                reason: "CONSENT_REQUIRED",
                message: format!(
                    "필수 동의 항목에 동의해야 가입할 수 있습니다 (required consent missing): {codes}"
                ),
                metadata: HashMap::from([(
                    "missing_consent_type_codes".to_string(),
                    answer.missing_required_codes.join(","),
                )]),
            });
        }
        Ok(())
    }
}

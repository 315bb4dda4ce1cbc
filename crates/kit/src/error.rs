//! One mapping from domain errors to gRPC status (AIP-193): `InvalidArgument` carries
//! `google.rpc.BadRequest` field violations, business-rule failures carry `google.rpc.ErrorInfo`
//! with a stable reason in the `spharos.io` domain. `Internal` is only for bugs and outages.
use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The error domain of every `ErrorInfo` we send.
pub const ERROR_DOMAIN: &str = "spharos.io";

/// One bad field: its path in the request and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// A failure a caller can act on, or an internal fault.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
        metadata: HashMap<String, String>,
    },
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|f| format!("{}: {}", f.field, f.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    /// A single bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn already_exists(reason: &'static str, message: impl Into<String>) -> Self {
        Self::AlreadyExists {
            reason,
            message: message.into(),
        }
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
            metadata: HashMap::new(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<sea_orm::DbErr> for ServiceError {
    fn from(e: sea_orm::DbErr) -> Self {
        // Connection loss is an outage the caller may retry; everything else is our bug.
        match &e {
            sea_orm::DbErr::ConnectionAcquire(_) | sea_orm::DbErr::Conn(_) => {
                Self::Unavailable(format!("database unavailable: {e}"))
            }
            _ => Self::Internal(format!("database error: {e}")),
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidArgument(violations) => {
                let message = format!(
                    "잘못된 요청입니다 (invalid request): {}",
                    describe(&violations)
                );
                let mut details = ErrorDetails::new();
                for v in violations {
                    details.add_bad_request_violation(v.field, v.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists { reason, message } => {
                with_info(Code::AlreadyExists, reason, message, HashMap::new())
            }
            ServiceError::FailedPrecondition {
                reason,
                message,
                metadata,
            } => with_info(Code::FailedPrecondition, reason, message, metadata),
            ServiceError::ResourceExhausted { reason, message } => {
                with_info(Code::ResourceExhausted, reason, message, HashMap::new())
            }
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::Unavailable(m) => {
                tracing::warn!(error = %m, "backend unavailable");
                Status::unavailable(m)
            }
            ServiceError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("내부 오류가 발생했습니다 (internal error); it has been logged")
            }
        }
    }
}

fn with_info(
    code: Code,
    reason: &'static str,
    message: String,
    metadata: HashMap<String, String>,
) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// Collects field violations so a request reports every bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a violation of `field` when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) -> &mut Self {
        if !ok {
            self.add(field, description);
        }
        self
    }

    pub fn add(&mut self, field: &str, description: impl Into<String>) -> &mut Self {
        self.0.push(FieldViolation {
            field: field.to_string(),
            description: description.into(),
        });
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when no field was bad, otherwise `InvalidArgument` with all of them.
    pub fn finish(self) -> Result<(), ServiceError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ServiceError::InvalidArgument(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field() {
        let mut v = Violations::new();
        v.check(false, "name", "must not be empty")
            .check(true, "phone", "never shown")
            .check(false, "birth_date", "must be YYYY-MM-DD");
        let status: Status = v.finish().expect_err("two violations").into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["name", "birth_date"]);
    }

    #[test]
    fn business_rules_carry_a_stable_reason() {
        let status: Status =
            ServiceError::already_exists("PHONE_ALREADY_REGISTERED", "이미 가입된 전화번호입니다")
                .into();
        assert_eq!(status.code(), Code::AlreadyExists);
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("error info");
        assert_eq!(info.reason, "PHONE_ALREADY_REGISTERED");
        assert_eq!(info.domain, ERROR_DOMAIN);
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status: Status = ServiceError::internal("secret connection string").into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}

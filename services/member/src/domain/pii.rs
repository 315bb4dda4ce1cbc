//! The masking choice: PII is shown masked unless the request asks to unmask, gives a reason,
//! and the caller holds the unmask permission. Every clear view is audited by the caller.
use spharos_kit::ServiceError;

pub const MAX_REASON_CHARS: usize = 500;

/// How a response shows PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disclosure {
    Masked,
    /// In clear, for this stated reason (goes to the access log).
    Clear {
        reason: String,
    },
}

/// Decides from the request's `unmask` (its reason, when present) and whether the caller holds
/// `pii:unmask`. Permission is checked first so a caller without it learns nothing more.
pub fn decide(
    unmask_reason: Option<&str>,
    has_permission: bool,
) -> Result<Disclosure, ServiceError> {
    let Some(reason) = unmask_reason else {
        return Ok(Disclosure::Masked);
    };
    if !has_permission {
        return Err(ServiceError::PermissionDenied(
            "개인정보 열람 권한(pii:unmask)이 없습니다 (the caller lacks the pii:unmask permission)".into(),
        ));
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(ServiceError::invalid(
            "unmask.reason",
            "개인정보 열람 사유를 입력하세요 (a reason is required to unmask)",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::invalid(
            "unmask.reason",
            "열람 사유는 500자 이하입니다 (at most 500 characters)",
        ));
    }
    Ok(Disclosure::Clear {
        reason: reason.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_unless_asked_allowed_and_explained() {
        assert_eq!(decide(None, false).expect("masked"), Disclosure::Masked);
        assert_eq!(decide(None, true).expect("masked"), Disclosure::Masked);
        assert!(matches!(
            decide(Some("문의"), false),
            Err(ServiceError::PermissionDenied(_))
        ));
        assert!(matches!(
            decide(Some("  "), false),
            Err(ServiceError::PermissionDenied(_))
        ));
        match decide(Some(" "), true) {
            Err(ServiceError::InvalidArgument(v)) => assert_eq!(v[0].field, "unmask.reason"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide(Some(" 고객 문의 #1 "), true).expect("clear"),
            Disclosure::Clear {
                reason: "고객 문의 #1".into()
            }
        );
    }
}

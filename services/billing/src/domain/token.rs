//! Tenant API tokens as billing issues them (the kit's signed JWTs): who they speak for, which
//! tenant permissions they carry (never the platform's), how long they live, and their state.
use chrono::{DateTime, Utc};
use spharos_kit::{ServiceError, TenantId, Violations};
use uuid::Uuid;

pub use spharos_kit::auth::PERM_PLATFORM_ADMIN;

pub const MAX_SUBJECT_CHARS: usize = 100;
pub const MAX_PERMISSIONS: usize = 32;
pub const MAX_PERMISSION_CHARS: usize = 64;
/// Two years: keys outliving that should be rotated.
pub const MAX_TTL_SECONDS: i64 = 2 * 366 * 24 * 3600;

/// An issued token's record (billing never stores the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The token's `jti`.
    pub id: Uuid,
    pub tenant: TenantId,
    pub subject: String,
    pub permissions: Vec<String>,
    pub issue_time: DateTime<Utc>,
    pub expire_time: DateTime<Utc>,
    pub revoke_time: Option<DateTime<Utc>>,
    pub replaced_by: Option<Uuid>,
}

impl ApiToken {
    /// Its lifetime in seconds (kept by a rotation).
    pub fn ttl_seconds(&self) -> u64 {
        u64::try_from((self.expire_time - self.issue_time).num_seconds()).unwrap_or(0)
    }
}

/// An `IssueToken` request as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenForm {
    pub subject: String,
    pub permissions: Vec<String>,
    /// 0 = the platform default.
    pub ttl_seconds: i64,
}

/// A validated token request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub subject: String,
    /// Sorted, without duplicates.
    pub permissions: Vec<String>,
    pub ttl_seconds: u64,
}

/// `scope:action`: lowercase letters, digits, `_` and `-` on both sides of one `:`.
fn is_permission(p: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    };
    p.len() <= MAX_PERMISSION_CHARS && p.split_once(':').is_some_and(|(a, b)| ok(a) && ok(b))
}

impl TokenForm {
    pub fn validate(self, default_ttl_seconds: u64) -> Result<TokenRequest, ServiceError> {
        let mut v = Violations::new();
        let subject = self.subject.trim().to_string();
        if subject.is_empty() {
            v.add("subject", "필수 항목입니다 (is required)");
        } else if subject.chars().count() > MAX_SUBJECT_CHARS
            || subject.chars().any(char::is_control)
        {
            v.add(
                "subject",
                format!(
                    "{MAX_SUBJECT_CHARS}자 이하, 제어 문자 없이 입력하세요 (at most {MAX_SUBJECT_CHARS} characters, no control characters)"
                ),
            );
        }
        if self.permissions.len() > MAX_PERMISSIONS {
            v.add(
                "permissions",
                format!("권한은 {MAX_PERMISSIONS}개까지입니다 (at most {MAX_PERMISSIONS})"),
            );
        }
        for (i, p) in self.permissions.iter().enumerate() {
            let field = format!("permissions[{i}]");
            if p == PERM_PLATFORM_ADMIN || p == "*" {
                v.add(
                    &field,
                    "테넌트 토큰에는 플랫폼 권한을 줄 수 없습니다 (a tenant token cannot carry platform permissions)",
                );
            } else if !is_permission(p) {
                v.add(
                    &field,
                    "권한 형식이 아닙니다 (not a permission like pii:unmask)",
                );
            }
        }
        let ttl_seconds = match self.ttl_seconds {
            0 => Some(default_ttl_seconds.min(MAX_TTL_SECONDS as u64)),
            n if (1..=MAX_TTL_SECONDS).contains(&n) => u64::try_from(n).ok(),
            _ => {
                v.add(
                    "ttl_seconds",
                    format!(
                        "유효기간은 1초에서 {MAX_TTL_SECONDS}초 사이입니다 (must be between 1 and {MAX_TTL_SECONDS} seconds, or 0 for the default)"
                    ),
                );
                None
            }
        };
        v.finish()?;
        let mut permissions = self.permissions;
        permissions.sort();
        permissions.dedup();
        Ok(TokenRequest {
            subject,
            permissions,
            ttl_seconds: ttl_seconds.unwrap_or(default_ttl_seconds),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_request_is_normalised() {
        let r = TokenForm {
            subject: " pos-gangnam-1 ".into(),
            permissions: vec![
                "pii:unmask".into(),
                "points:write".into(),
                "pii:unmask".into(),
            ],
            ttl_seconds: 0,
        }
        .validate(3600)
        .expect("valid");
        assert_eq!(r.subject, "pos-gangnam-1");
        assert_eq!(r.permissions, ["pii:unmask", "points:write"]);
        assert_eq!(r.ttl_seconds, 3600);
    }

    #[test]
    fn platform_permissions_and_bad_values_are_refused() {
        let err = TokenForm {
            subject: String::new(),
            permissions: vec![
                "platform:admin".into(),
                "*".into(),
                "NoColon".into(),
                "ok:fine".into(),
            ],
            ttl_seconds: -1,
        }
        .validate(3600)
        .expect_err("invalid");
        let ServiceError::InvalidArgument(v) = err else {
            panic!("expected InvalidArgument");
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "subject",
                "permissions[0]",
                "permissions[1]",
                "permissions[2]",
                "ttl_seconds"
            ]
        );
        assert!(
            TokenForm {
                subject: "x".into(),
                permissions: vec![],
                ttl_seconds: MAX_TTL_SECONDS + 1,
            }
            .validate(3600)
            .is_err()
        );
    }
}

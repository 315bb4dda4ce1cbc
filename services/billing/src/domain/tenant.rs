//! Tenants (merchants) as the platform registers them: name, business registration number,
//! contact and business time zone, and the rules their fields follow.
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use spharos_kit::{ServiceError, TenantId, Violations};

use super::brn::BusinessNumber;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_CONTACT_NAME_CHARS: usize = 50;
pub const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub business_number: BusinessNumber,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub time_zone: Tz,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

/// A `CreateTenant` request as sent (text fields untrimmed, zone empty = default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTenantForm {
    pub id: Option<TenantId>,
    pub name: String,
    pub business_registration_number: String,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub time_zone: String,
}

/// A validated new tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenant {
    pub id: Option<TenantId>,
    pub name: String,
    pub business_number: BusinessNumber,
    pub contact_name: String,
    pub contact_email: String,
    pub contact_phone: String,
    pub time_zone: Tz,
}

impl NewTenantForm {
    /// Trims and checks every field, reporting all bad ones; `default_zone` fills an empty
    /// zone.
    pub fn validate(self, default_zone: Tz) -> Result<NewTenant, ServiceError> {
        let mut v = Violations::new();
        let name = self.name.trim().to_string();
        let contact_name = self.contact_name.trim().to_string();
        let contact_email = self.contact_email.trim().to_string();
        let contact_phone = self.contact_phone.trim().to_string();
        let zone = self.time_zone.trim();
        check_text(&mut v, "name", &name, MAX_NAME_CHARS);
        check_text(
            &mut v,
            "contact_name",
            &contact_name,
            MAX_CONTACT_NAME_CHARS,
        );
        v.check(
            is_email(&contact_email),
            "contact_email",
            "이메일 주소 형식이 아닙니다 (not an e-mail address)",
        );
        v.check(
            contact_phone.is_empty() || is_phone(&contact_phone),
            "contact_phone",
            "전화번호 형식이 아닙니다 (not a phone number: digits, '-', '+', 8 to 20 characters)",
        );
        let business_number = match BusinessNumber::parse(&self.business_registration_number) {
            Ok(n) => Some(n),
            Err(e) => {
                v.add("business_registration_number", e.describe());
                None
            }
        };
        let time_zone = if zone.is_empty() {
            Some(default_zone)
        } else {
            let parsed = spharos_kit::time::parse_zone(zone);
            if parsed.is_none() {
                v.add(
                    "time_zone",
                    "IANA 시간대 이름이 아닙니다 (not an IANA time zone, e.g. Asia/Seoul)",
                );
            }
            parsed
        };
        v.finish()?;
        let (Some(business_number), Some(time_zone)) = (business_number, time_zone) else {
            return Err(ServiceError::internal("validated tenant fields missing"));
        };
        Ok(NewTenant {
            id: self.id,
            name,
            business_number,
            contact_name,
            contact_email,
            contact_phone,
            time_zone,
        })
    }
}

fn check_text(v: &mut Violations, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        v.add(field, "필수 항목입니다 (is required)");
    } else if value.chars().count() > max {
        v.add(
            field,
            format!("{max}자 이하로 입력하세요 (at most {max} characters)"),
        );
    } else if value.chars().any(char::is_control) {
        v.add(
            field,
            "제어 문자를 쓸 수 없습니다 (must not contain control characters)",
        );
    }
}

/// A plausible address: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_email(s: &str) -> bool {
    if s.len() > MAX_EMAIL_CHARS || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// Digits with optional `-`, spaces and a leading `+`, 8 to 20 characters, at least 8 digits.
pub fn is_phone(s: &str) -> bool {
    let len = s.chars().count();
    let digits = s.chars().filter(char::is_ascii_digit).count();
    (8..=20).contains(&len)
        && digits >= 8
        && s.chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == '-' || c == ' ' || (c == '+' && i == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> NewTenantForm {
        NewTenantForm {
            id: None,
            name: " 행복베이커리 ".into(),
            business_registration_number: "123-45-67891".into(),
            contact_name: "김담당".into(),
            contact_email: "ops@bakery.example".into(),
            contact_phone: "02-123-4567".into(),
            time_zone: String::new(),
        }
    }

    #[test]
    fn a_valid_form_is_trimmed_and_defaults_the_zone() {
        let t = form()
            .validate(chrono_tz::Asia::Seoul)
            .expect("valid tenant");
        assert_eq!(t.name, "행복베이커리");
        assert_eq!(t.time_zone, chrono_tz::Asia::Seoul);
        assert_eq!(t.business_number.formatted(), "123-45-67891");
        let ny = NewTenantForm {
            time_zone: "America/New_York".into(),
            contact_phone: String::new(),
            ..form()
        }
        .validate(chrono_tz::Asia::Seoul)
        .expect("valid");
        assert_eq!(ny.time_zone, chrono_tz::America::New_York);
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = NewTenantForm {
            id: None,
            name: "  ".into(),
            business_registration_number: "123-45-67890".into(),
            contact_name: "x".repeat(51),
            contact_email: "not-an-email".into(),
            contact_phone: "call me".into(),
            time_zone: "Mars/Olympus".into(),
        }
        .validate(chrono_tz::Asia::Seoul)
        .expect_err("invalid");
        let ServiceError::InvalidArgument(v) = err else {
            panic!("expected InvalidArgument");
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "contact_name",
                "contact_email",
                "contact_phone",
                "business_registration_number",
                "time_zone"
            ]
        );
    }

    #[test]
    fn emails_and_phones() {
        assert!(is_email("a@b.co"));
        for bad in [
            "", "a@", "@b.co", "a@b", "a b@c.de", "a@b@c.de", "a@.b", "a@b.",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert!(is_phone("010-1234-5678"));
        assert!(is_phone("+82 2 123 4567"));
        for bad in ["123", "010-1234-567a", "12+3456789", "--------"] {
            assert!(!is_phone(bad), "{bad}");
        }
    }
}

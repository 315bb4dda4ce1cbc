//! Terms and policies (이용약관, 개인정보처리방침): immutable versions with effective dates,
//! and which one is in force on a given date.
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

pub const MAX_LABEL_CHARS: usize = 30;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    TermsOfService,
    PrivacyPolicy,
}

impl PolicyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TermsOfService => "TERMS_OF_SERVICE",
            Self::PrivacyPolicy => "PRIVACY_POLICY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "TERMS_OF_SERVICE" => Some(Self::TermsOfService),
            "PRIVACY_POLICY" => Some(Self::PrivacyPolicy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub id: Uuid,
    pub kind: PolicyKind,
    pub version: String,
    pub title: String,
    pub body: String,
    pub effective_date: NaiveDate,
    pub created_time: DateTime<Utc>,
}

/// A `CreatePolicyVersion` request as sent.
#[derive(Debug, Clone, Default)]
pub struct PolicyForm {
    pub kind: Option<PolicyKind>,
    pub version: String,
    pub title: String,
    pub body: String,
    pub effective_date: Option<NaiveDate>,
}

/// A validated new version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPolicyVersion {
    pub kind: PolicyKind,
    pub version: String,
    pub title: String,
    pub body: String,
    pub effective_date: NaiveDate,
}

impl PolicyForm {
    /// Checks every field. Once a kind has versions (`has_versions`), a new one starts today
    /// or later: the history of what members agreed to is never rewritten.
    pub fn validate(
        &self,
        today: NaiveDate,
        has_versions: bool,
    ) -> Result<NewPolicyVersion, ServiceError> {
        let mut v = Violations::new();
        v.check(
            self.kind.is_some(),
            "kind",
            "약관 종류를 지정하세요 (POLICY_KIND_TERMS_OF_SERVICE or POLICY_KIND_PRIVACY_POLICY)",
        );
        let version = self.version.trim().to_string();
        v.check(
            !version.is_empty() && version.chars().count() <= MAX_LABEL_CHARS,
            "version",
            "버전은 1~30자입니다 (1 to 30 characters)",
        );
        let title = self.title.trim().to_string();
        v.check(
            !title.is_empty() && title.chars().count() <= MAX_TITLE_CHARS,
            "title",
            "제목은 1~200자입니다 (1 to 200 characters)",
        );
        let body = self.body.trim().to_string();
        v.check(
            !body.is_empty() && body.chars().count() <= MAX_BODY_CHARS,
            "body",
            "본문은 1~200000자입니다 (1 to 200000 characters)",
        );
        let effective_date = self.effective_date.unwrap_or(today);
        v.check(
            !has_versions || effective_date >= today,
            "effective_date",
            "시행일은 오늘 이후여야 합니다 (must be today or later once the policy has versions)",
        );
        v.finish()?;
        Ok(NewPolicyVersion {
            kind: self.kind.unwrap_or(PolicyKind::TermsOfService),
            version,
            title,
            body,
            effective_date,
        })
    }
}

/// The version in force on `date`: the latest effective date not after it.
pub fn in_force(versions: &[PolicyVersion], date: NaiveDate) -> Option<&PolicyVersion> {
    versions
        .iter()
        .filter(|v| v.effective_date <= date)
        .max_by_key(|v| v.effective_date)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn v(label: &str, from: &str) -> PolicyVersion {
        PolicyVersion {
            id: Uuid::now_v7(),
            kind: PolicyKind::PrivacyPolicy,
            version: label.into(),
            title: "개인정보처리방침".into(),
            body: "...".into(),
            effective_date: d(from),
            created_time: Utc::now(),
        }
    }

    #[test]
    fn the_version_in_force_on_a_date() {
        let vs = vec![
            v("v1", "2025-01-01"),
            v("v3", "2027-01-01"),
            v("v2", "2026-03-01"),
        ];
        assert_eq!(in_force(&vs, d("2024-12-31")), None);
        assert_eq!(
            in_force(&vs, d("2025-06-01")).map(|p| p.version.as_str()),
            Some("v1")
        );
        assert_eq!(
            in_force(&vs, d("2026-03-01")).map(|p| p.version.as_str()),
            Some("v2")
        );
        assert_eq!(
            in_force(&vs, d("2030-01-01")).map(|p| p.version.as_str()),
            Some("v3")
        );
    }

    #[test]
    fn forms_name_every_bad_field_and_protect_history() {
        let today = d("2026-12-10");
        match PolicyForm::default().validate(today, false) {
            Err(ServiceError::InvalidArgument(v)) => {
                let f: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
                assert_eq!(f, ["kind", "version", "title", "body"]);
            }
            other => panic!("{other:?}"),
        }
        let form = PolicyForm {
            kind: Some(PolicyKind::TermsOfService),
            version: "v1".into(),
            title: "이용약관".into(),
            body: "제1조".into(),
            effective_date: Some(d("2020-01-01")),
        };
        assert!(
            form.validate(today, false).is_ok(),
            "the first version may predate today"
        );
        assert!(form.validate(today, true).is_err(), "later ones may not");
    }
}

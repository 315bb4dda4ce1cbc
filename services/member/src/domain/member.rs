//! Members: who they are (PII, kept apart from everything else so it cannot leak by accident),
//! their profile, and the rules for joining and changing them.
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

use super::{
    card::{Card, CardType},
    phone,
};

pub const MAX_NAME_CHARS: usize = 50;
pub const MAX_EMAIL_CHARS: usize = 254;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Active,
    Withdrawn,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "WITHDRAWN" => Some(Self::Withdrawn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gender {
    Unspecified,
    Female,
    Male,
    Other,
}

impl Gender {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::Female => "FEMALE",
            Self::Male => "MALE",
            Self::Other => "OTHER",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "FEMALE" => Self::Female,
            "MALE" => Self::Male,
            "OTHER" => Self::Other,
            _ => Self::Unspecified,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinChannel {
    Unspecified,
    App,
    Web,
    Pos,
    CallCenter,
    Admin,
}

impl JoinChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "UNSPECIFIED",
            Self::App => "APP",
            Self::Web => "WEB",
            Self::Pos => "POS",
            Self::CallCenter => "CALL_CENTER",
            Self::Admin => "ADMIN",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "APP" => Self::App,
            "WEB" => Self::Web,
            "POS" => Self::Pos,
            "CALL_CENTER" => Self::CallCenter,
            "ADMIN" => Self::Admin,
            _ => Self::Unspecified,
        }
    }
}

/// A member's personal data in clear. Lives only in memory: stored encrypted, shown masked
/// unless an audited unmask asks otherwise. `Debug` is redacted so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberPii {
    pub name: String,
    /// Normal form: digits only.
    pub phone: String,
    pub email: Option<String>,
    pub birth_date: Option<NaiveDate>,
}

impl std::fmt::Debug for MemberPii {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberPii([REDACTED])")
    }
}

/// PII as a response shows it: clear or masked, "" for an absent field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownPii {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub birth_date: String,
}

impl MemberPii {
    /// In clear, phone formatted for reading (`010-1234-5678`).
    pub fn clear(&self) -> ShownPii {
        ShownPii {
            name: self.name.clone(),
            phone: phone::format(&self.phone),
            email: self.email.clone().unwrap_or_default(),
            birth_date: self.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        }
    }

    /// Masked after Korean conventions (`홍*동`, `010-****-5678`, `ho**@example.com`,
    /// `1990-**-**`).
    pub fn masked(&self) -> ShownPii {
        use spharos_kit::crypto::mask;
        let clear = self.clear();
        ShownPii {
            name: mask::name(&clear.name),
            phone: mask::phone(&self.phone),
            email: mask::email(&clear.email),
            birth_date: mask::birth_date(&clear.birth_date),
        }
    }

    /// Nothing: what an erased member's PII reads as.
    pub fn erased() -> Self {
        Self {
            name: String::new(),
            phone: String::new(),
            email: None,
            birth_date: None,
        }
    }

    /// The fields that hold a value, as the privacy access log names them.
    pub fn present_fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if !self.name.is_empty() {
            f.push("name");
        }
        if !self.phone.is_empty() {
            f.push("phone");
        }
        if self.email.is_some() {
            f.push("email");
        }
        if self.birth_date.is_some() {
            f.push("birth_date");
        }
        f
    }

    /// "MM-DD" for birthday coupons (the year, which dates a person, stays out of events).
    pub fn birth_month_day(&self) -> String {
        self.birth_date
            .map(|d| d.format("%m-%d").to_string())
            .unwrap_or_default()
    }
}

/// Everything about a member except PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberProfile {
    pub id: Uuid,
    pub status: MemberStatus,
    pub gender: Gender,
    pub join_store_id: Option<Uuid>,
    pub join_channel: JoinChannel,
    pub grade_id: Option<Uuid>,
    pub grade_name: Option<String>,
    pub join_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub withdraw_time: Option<DateTime<Utc>>,
    /// Set once the member's PII was erased.
    pub anonymised_time: Option<DateTime<Utc>>,
}

/// A member as an API response shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub profile: MemberProfile,
    pub pii: ShownPii,
    /// True when `pii` is in clear.
    pub unmasked: bool,
    /// The member's active cards.
    pub cards: Vec<Card>,
}

/// One consent item answered at sign-up: the privacy service's consent type code and the
/// answer. The privacy service decides which items exist and which are required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignupConsent {
    pub code: String,
    pub granted: bool,
}

pub const MAX_CONSENT_CODE_CHARS: usize = 20;

/// Checks the shape of sign-up consent answers (codes present and short; whether they exist
/// is the privacy service's answer), naming each bad one as `consents[i].consent_type_code`.
pub fn check_signup_consents(consents: &[SignupConsent], v: &mut Violations) -> Vec<SignupConsent> {
    let mut out = Vec::with_capacity(consents.len());
    for (i, c) in consents.iter().enumerate() {
        let code = c.code.trim();
        if code.is_empty() || code.chars().count() > MAX_CONSENT_CODE_CHARS {
            v.add(
                &format!("consents[{i}].consent_type_code"),
                "동의 항목 코드는 1~20자입니다 (1 to 20 characters)",
            );
        }
        out.push(SignupConsent {
            code: code.to_string(),
            granted: c.granted,
        });
    }
    out
}

/// A `JoinMember` request as sent. `Debug` leaves the PII out.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinForm {
    pub name: String,
    pub phone: String,
    pub email: String,
    pub birth_date: String,
    pub gender: Gender,
    pub join_store_id: String,
    pub join_channel: JoinChannel,
    /// `None`: a mobile card.
    pub card_type: Option<CardType>,
    pub idempotency_key: String,
}

impl std::fmt::Debug for JoinForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinForm")
            .field("join_store_id", &self.join_store_id)
            .field("join_channel", &self.join_channel)
            .field("card_type", &self.card_type)
            .finish_non_exhaustive()
    }
}

/// A join that passed validation, in normal form.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct ValidJoin {
    pub pii: MemberPii,
    pub gender: Gender,
    pub join_store_id: Option<Uuid>,
    pub join_channel: JoinChannel,
    pub card_type: CardType,
}

impl std::fmt::Debug for ValidJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidJoin")
            .field("join_store_id", &self.join_store_id)
            .field("join_channel", &self.join_channel)
            .finish_non_exhaustive()
    }
}

impl ValidJoin {
    /// The request in one canonical text, for the idempotency fingerprint: two requests that
    /// differ only in how the phone was typed are the same request.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl JoinForm {
    /// Checks every field; `today` is the business date in the tenant's zone. On failure the
    /// violations are returned unfinished so the caller can add the store check.
    pub fn validate(&self, today: NaiveDate) -> Result<ValidJoin, Violations> {
        let mut v = Violations::new();
        let name = check_name(&mut v, "name", &self.name);
        let phone = check_phone(&mut v, "phone", &self.phone);
        let email = check_email(&mut v, "email", &self.email);
        let birth_date = check_birth_date(&mut v, "birth_date", &self.birth_date, today);
        let join_store_id = parse_optional_id(&mut v, "join_store_id", &self.join_store_id);
        match (name, phone, email, birth_date, join_store_id) {
            (Some(name), Some(phone), Some(email), Some(birth_date), Some(join_store_id))
                if v.is_empty() =>
            {
                Ok(ValidJoin {
                    pii: MemberPii {
                        name,
                        phone,
                        email,
                        birth_date,
                    },
                    gender: self.gender,
                    join_store_id,
                    join_channel: self.join_channel,
                    card_type: self.card_type.unwrap_or(CardType::Mobile),
                })
            }
            _ => Err(v),
        }
    }
}

/// The fields an `UpdateMember` mask named, as sent; a field left `None` is not changed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemberPatchForm {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub birth_date: Option<String>,
    pub gender: Option<Gender>,
}

/// A validated patch. `email: Some(None)` clears the e-mail.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MemberPatch {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<Option<String>>,
    pub birth_date: Option<Option<NaiveDate>>,
    pub gender: Option<Gender>,
}

/// The names of the fields a patch touches (its `Debug`: values are PII).
fn touched(
    name: bool,
    phone: bool,
    email: bool,
    birth_date: bool,
    gender: bool,
) -> Vec<&'static str> {
    [
        ("name", name),
        ("phone", phone),
        ("email", email),
        ("birth_date", birth_date),
        ("gender", gender),
    ]
    .into_iter()
    .filter_map(|(n, t)| t.then_some(n))
    .collect()
}

impl std::fmt::Debug for MemberPatchForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = touched(
            self.name.is_some(),
            self.phone.is_some(),
            self.email.is_some(),
            self.birth_date.is_some(),
            self.gender.is_some(),
        );
        f.debug_tuple("MemberPatchForm").field(&t).finish()
    }
}

impl std::fmt::Debug for MemberPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = touched(
            self.name.is_some(),
            self.phone.is_some(),
            self.email.is_some(),
            self.birth_date.is_some(),
            self.gender.is_some(),
        );
        f.debug_tuple("MemberPatch").field(&t).finish()
    }
}

impl MemberPatchForm {
    /// Checks the named fields; violations name them under `member.`.
    pub fn validate(&self, today: NaiveDate) -> Result<MemberPatch, ServiceError> {
        let mut v = Violations::new();
        let patch = MemberPatch {
            name: self
                .name
                .as_ref()
                .and_then(|n| check_name(&mut v, "member.name", n)),
            phone: self
                .phone
                .as_ref()
                .and_then(|p| check_phone(&mut v, "member.phone", p)),
            email: self
                .email
                .as_ref()
                .and_then(|e| check_email(&mut v, "member.email", e)),
            birth_date: self
                .birth_date
                .as_ref()
                .and_then(|b| check_birth_date(&mut v, "member.birth_date", b, today)),
            gender: self.gender,
        };
        v.finish()?;
        Ok(patch)
    }
}

impl MemberPatch {
    /// Applies the patch; returns the names of the fields whose value changed (what
    /// `member.updated` carries: names, never values).
    pub fn apply(&self, pii: &mut MemberPii, gender: &mut Gender) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(n) = &self.name
            && *n != pii.name
        {
            pii.name = n.clone();
            changed.push("name");
        }
        if let Some(p) = &self.phone
            && *p != pii.phone
        {
            pii.phone = p.clone();
            changed.push("phone");
        }
        if let Some(e) = &self.email
            && *e != pii.email
        {
            pii.email = e.clone();
            changed.push("email");
        }
        if let Some(b) = &self.birth_date
            && *b != pii.birth_date
        {
            pii.birth_date = *b;
            changed.push("birth_date");
        }
        if let Some(g) = self.gender
            && g != *gender
        {
            *gender = g;
            changed.push("gender");
        }
        changed
    }
}

/// `ListMembers` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub grade_id: Option<Uuid>,
    pub status: Option<MemberStatus>,
    pub join_store_id: Option<Uuid>,
    /// Inclusive.
    pub joined_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub joined_before: Option<DateTime<Utc>>,
}

/// How `FindMember` names a member.
#[derive(Clone, PartialEq, Eq)]
pub enum MemberLookup {
    CardNumber(String),
    /// Normal form (digits only).
    Phone(String),
}

impl std::fmt::Debug for MemberLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CardNumber(_) => f.write_str("CardNumber(..)"),
            Self::Phone(_) => f.write_str("Phone([REDACTED])"),
        }
    }
}

/// An optional id field: `Some(None)` when empty, `None` (and a violation) when not a UUID.
pub fn parse_optional_id(v: &mut Violations, field: &str, value: &str) -> Option<Option<Uuid>> {
    if value.is_empty() {
        return Some(None);
    }
    match Uuid::parse_str(value) {
        Ok(id) => Some(Some(id)),
        Err(_) => {
            v.add(field, "UUID 형식이어야 합니다 (must be a UUID)");
            None
        }
    }
}

fn check_name(v: &mut Violations, field: &str, name: &str) -> Option<String> {
    let name = name.trim();
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        v.add(field, "이름은 1~50자입니다 (required, 1 to 50 characters)");
        return None;
    }
    Some(name.to_string())
}

fn check_phone(v: &mut Violations, field: &str, input: &str) -> Option<String> {
    if input.trim().is_empty() {
        v.add(field, "휴대폰 번호는 필수입니다 (required)");
        return None;
    }
    let normalized = phone::normalize(input);
    if normalized.is_none() {
        v.add(field, phone::INVALID_PHONE);
    }
    normalized
}

/// E-mail: optional ("" clears it), and only "looks like an address" — the mail server is the
/// real judge, so this catches typos, not every RFC 5322 corner.
fn check_email(v: &mut Violations, field: &str, email: &str) -> Option<Option<String>> {
    let email = email.trim();
    if email.is_empty() {
        return Some(None);
    }
    if is_plausible_email(email) {
        Some(Some(email.to_string()))
    } else {
        v.add(
            field,
            "이메일 형식이 아닙니다 (must look like name@example.com)",
        );
        None
    }
}

pub fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= MAX_EMAIL_CHARS
        && !local.is_empty()
        && local.len() <= 64
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn check_birth_date(
    v: &mut Violations,
    field: &str,
    value: &str,
    today: NaiveDate,
) -> Option<Option<NaiveDate>> {
    let value = value.trim();
    if value.is_empty() {
        return Some(None);
    }
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("1900-01-01 is a valid date");
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(d) if value.len() == 10 && d >= earliest && d <= today => Some(Some(d)),
        Ok(d) if value.len() == 10 && d > today => {
            v.add(field, "미래 날짜일 수 없습니다 (must not be in the future)");
            None
        }
        Ok(d) if value.len() == 10 && d < earliest => {
            v.add(
                field,
                "1900-01-01 이후여야 합니다 (must be 1900-01-01 or later)",
            );
            None
        }
        _ => {
            v.add(
                field,
                "YYYY-MM-DD 형식이어야 합니다 (must be a date YYYY-MM-DD)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 3).expect("valid")
    }

    fn form() -> JoinForm {
        JoinForm {
            name: " 홍길동 ".into(),
            phone: "010-1234-5678".into(),
            email: "hong@example.com".into(),
            birth_date: "1990-05-17".into(),
            gender: Gender::Male,
            join_store_id: String::new(),
            join_channel: JoinChannel::App,
            card_type: None,
            idempotency_key: String::new(),
        }
    }

    fn fields(v: Violations) -> Vec<String> {
        match v.finish() {
            Err(ServiceError::InvalidArgument(f)) => f.into_iter().map(|f| f.field).collect(),
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_join_is_normalized() {
        let j = form().validate(today()).expect("valid");
        assert_eq!(j.pii.name, "홍길동");
        assert_eq!(j.pii.phone, "01012345678");
        assert_eq!(j.pii.birth_date, NaiveDate::from_ymd_opt(1990, 5, 17));
        assert_eq!(j.card_type, CardType::Mobile);
        let mut other = form();
        other.phone = "01012345678".into();
        assert_eq!(
            other.validate(today()).expect("valid").canonical(),
            j.canonical(),
            "the phone's spelling does not change the request"
        );
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let bad = JoinForm {
            name: String::new(),
            phone: "02-123-4567".into(),
            email: "not-an-email".into(),
            birth_date: "1990-13-01".into(),
            join_store_id: "store-1".into(),
            ..form()
        };
        assert_eq!(
            fields(bad.validate(today()).expect_err("invalid")),
            ["name", "phone", "email", "birth_date", "join_store_id"]
        );
    }

    #[test]
    fn names_are_bounded() {
        let mut f = form();
        f.name = "가".repeat(51);
        assert_eq!(fields(f.validate(today()).expect_err("too long")), ["name"]);
        f.name = "가".repeat(50);
        assert!(f.validate(today()).is_ok());
    }

    #[test]
    fn birth_dates_are_real_past_dates() {
        for (input, ok) in [
            ("", true),
            ("2026-12-03", true),
            ("2026-12-04", false),
            ("1900-01-01", true),
            ("1899-12-31", false),
            ("1990-2-3", false),
            ("19900203", false),
            ("1990-02-30", false),
        ] {
            let mut f = form();
            f.birth_date = input.into();
            assert_eq!(f.validate(today()).is_ok(), ok, "{input}");
        }
    }

    #[test]
    fn emails_look_like_addresses() {
        for ok in ["a@b.kr", "hong.gil-dong+x@example.co.kr", "홍@예시.한국"] {
            assert!(is_plausible_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.kr", "a@@b.kr", "a b@c.kr", "a@b..kr", "a@-b.kr", "a@b.kr@c",
        ] {
            assert!(!is_plausible_email(bad), "{bad}");
        }
    }

    #[test]
    fn a_patch_reports_under_member_and_names_changed_fields() {
        let err = MemberPatchForm {
            name: Some(String::new()),
            phone: Some("123".into()),
            ..Default::default()
        }
        .validate(today())
        .expect_err("invalid");
        let ServiceError::InvalidArgument(v) = err else {
            panic!("{err:?}")
        };
        let f: Vec<_> = v.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(f, ["member.name", "member.phone"]);

        let mut pii = form().validate(today()).expect("valid").pii;
        let mut gender = Gender::Male;
        let patch = MemberPatchForm {
            name: Some("홍길동".into()),
            email: Some(String::new()),
            gender: Some(Gender::Female),
            ..Default::default()
        }
        .validate(today())
        .expect("valid");
        assert_eq!(patch.apply(&mut pii, &mut gender), ["email", "gender"]);
        assert_eq!(pii.email, None);
    }

    #[test]
    fn masking_hides_and_clear_formats() {
        let pii = form().validate(today()).expect("valid").pii;
        let m = pii.masked();
        assert_eq!(m.name, "홍*동");
        assert_eq!(m.phone, "010-****-5678");
        assert_eq!(m.email, "ho**@example.com");
        assert_eq!(m.birth_date, "1990-**-**");
        let c = pii.clear();
        assert_eq!(c.phone, "010-1234-5678");
        assert_eq!(c.birth_date, "1990-05-17");
        assert_eq!(
            pii.present_fields(),
            ["name", "phone", "email", "birth_date"]
        );
        assert_eq!(pii.birth_month_day(), "05-17");
        assert!(!format!("{pii:?}").contains("홍"), "Debug never shows PII");
    }

    #[test]
    fn an_erased_member_shows_nothing() {
        let pii = MemberPii::erased();
        assert!(pii.present_fields().is_empty());
        let c = pii.clear();
        let m = pii.masked();
        for shown in [c, m] {
            assert_eq!(
                (shown.name, shown.phone, shown.email, shown.birth_date),
                (String::new(), String::new(), String::new(), String::new())
            );
        }
    }

    #[test]
    fn signup_consent_codes_are_checked_for_shape() {
        let mut v = Violations::new();
        let ok = check_signup_consents(
            &[
                SignupConsent {
                    code: " A0001 ".into(),
                    granted: true,
                },
                SignupConsent {
                    code: String::new(),
                    granted: false,
                },
            ],
            &mut v,
        );
        assert_eq!(ok[0].code, "A0001");
        match v.finish() {
            Err(ServiceError::InvalidArgument(f)) => {
                assert_eq!(f[0].field, "consents[1].consent_type_code")
            }
            other => panic!("{other:?}"),
        }
    }
}

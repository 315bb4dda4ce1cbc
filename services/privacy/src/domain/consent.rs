//! Consent types and members' answers: the rules of 개인정보 보호법 and 정보통신망법 as plain
//! functions. Items are asked separately, required or optional; advertising needs an opt-in
//! per channel, plus the separate night-time consent between 21:00 and 08:00 tenant time.
use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use spharos_kit::{ServiceError, Violations};

pub const MAX_CODE_CHARS: usize = 20;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_PURPOSE_CHARS: usize = 2000;
/// The night-time advertising window, tenant time (정보통신망법 제50조 ③): from 21:00 ...
pub const NIGHT_STARTS_HOUR: u32 = 21;
/// ... until 08:00.
pub const NIGHT_ENDS_HOUR: u32 = 8;

/// When an item is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ConsentGroup {
    Signup,
    Later,
}

impl ConsentGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "SIGNUP",
            Self::Later => "LATER",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SIGNUP" => Some(Self::Signup),
            "LATER" => Some(Self::Later),
            _ => None,
        }
    }
}

/// The channel an advertising consent covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum MarketingChannel {
    Sms,
    Email,
    AppPush,
    KakaoTalk,
}

impl MarketingChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "SMS",
            Self::Email => "EMAIL",
            Self::AppPush => "APP_PUSH",
            Self::KakaoTalk => "KAKAOTALK",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SMS" => Some(Self::Sms),
            "EMAIL" => Some(Self::Email),
            "APP_PUSH" => Some(Self::AppPush),
            "KAKAOTALK" => Some(Self::KakaoTalk),
            _ => None,
        }
    }
}

/// What a campaign sends on (the common `Channel` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendChannel {
    Sms,
    Lms,
    Mms,
    Email,
    AppPush,
    KakaoAlimtalk,
    KakaoBrandMessage,
}

impl SendChannel {
    /// The consent an advertisement on this channel needs. Alimtalk is informational only
    /// (Kakao's rules and the law): it never carries advertising.
    pub fn marketing_channel(self) -> Result<MarketingChannel, ServiceError> {
        match self {
            Self::Sms | Self::Lms | Self::Mms => Ok(MarketingChannel::Sms),
            Self::Email => Ok(MarketingChannel::Email),
            Self::AppPush => Ok(MarketingChannel::AppPush),
            Self::KakaoBrandMessage => Ok(MarketingChannel::KakaoTalk),
            Self::KakaoAlimtalk => Err(ServiceError::invalid(
                "channel",
                "알림톡으로는 광고를 보낼 수 없습니다 (Alimtalk cannot carry advertising; use a brand message)",
            )),
        }
    }
}

/// The advertising role of a consent type, fixed for its whole life (a new role is a new code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AdRole {
    /// Not advertising (e.g. collection and use of personal data).
    None,
    /// Opt-in to advertising on one channel.
    Channel(MarketingChannel),
    /// The night-time consent, for one channel or (None) every channel.
    Night(Option<MarketingChannel>),
}

impl AdRole {
    /// The slot the role fills in a tenant; at most one consent type per slot (a unique
    /// constraint), so "the SMS advertising consent" is one code. `None` for non-advertising.
    pub fn slot(self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Channel(c) => Some(c.as_str().to_string()),
            Self::Night(Some(c)) => Some(format!("NIGHT:{}", c.as_str())),
            Self::Night(None) => Some("NIGHT:ALL".to_string()),
        }
    }

    pub fn is_advertising(self) -> bool {
        !matches!(self, Self::None)
    }

    pub fn channel(self) -> Option<MarketingChannel> {
        match self {
            Self::None | Self::Night(None) => None,
            Self::Channel(c) | Self::Night(Some(c)) => Some(c),
        }
    }

    pub fn is_night(self) -> bool {
        matches!(self, Self::Night(_))
    }

    /// Rebuilds the role from its stored columns.
    pub fn from_parts(
        advertising: bool,
        channel: Option<MarketingChannel>,
        night_time: bool,
    ) -> Option<Self> {
        match (advertising, channel, night_time) {
            (false, None, false) => Some(Self::None),
            (true, Some(c), false) => Some(Self::Channel(c)),
            (true, c, true) => Some(Self::Night(c)),
            _ => None,
        }
    }
}

/// One version of a consent type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentTypeVersion {
    pub code: String,
    pub version: i32,
    pub title: String,
    pub purpose: String,
    pub required: bool,
    pub group: ConsentGroup,
    pub effective_date: NaiveDate,
    pub role: AdRole,
    pub created_time: DateTime<Utc>,
}

/// A `CreateConsentType` request as sent.
#[derive(Debug, Clone, Default)]
pub struct ConsentTypeForm {
    pub code: String,
    pub title: String,
    pub purpose: String,
    pub required: bool,
    pub group: Option<ConsentGroup>,
    pub effective_date: Option<NaiveDate>,
    pub advertising: bool,
    pub channel: Option<MarketingChannel>,
    pub night_time: bool,
}

/// A `ReviseConsentType` request as sent.
#[derive(Debug, Clone, Default)]
pub struct RevisionForm {
    pub title: String,
    pub purpose: String,
    pub required: bool,
    pub group: Option<ConsentGroup>,
    pub effective_date: Option<NaiveDate>,
}

/// The wording of a version: what a revision may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wording {
    pub title: String,
    pub purpose: String,
    pub required: bool,
    pub group: ConsentGroup,
    pub effective_date: NaiveDate,
}

/// A validated new consent type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsentType {
    pub code: String,
    pub wording: Wording,
    pub role: AdRole,
}

pub fn is_valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.chars().count() <= MAX_CODE_CHARS
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

const BAD_CODE: &str =
    "영문, 숫자, '-', '_' 20자 이하입니다 (letters, digits, '-', '_', at most 20 characters)";

fn check_wording(
    v: &mut Violations,
    title: &str,
    purpose: &str,
    group: Option<ConsentGroup>,
) -> (String, String) {
    let title = title.trim().to_string();
    let purpose = purpose.trim().to_string();
    v.check(
        !title.is_empty() && title.chars().count() <= MAX_TITLE_CHARS,
        "title",
        "제목은 1~200자입니다 (1 to 200 characters)",
    );
    v.check(
        !purpose.is_empty() && purpose.chars().count() <= MAX_PURPOSE_CHARS,
        "purpose",
        "목적은 1~2000자입니다 (1 to 2000 characters)",
    );
    v.check(
        group.is_some(),
        "group",
        "동의 시점(SIGNUP 또는 LATER)을 지정하세요 (CONSENT_GROUP_SIGNUP or CONSENT_GROUP_LATER)",
    );
    (title, purpose)
}

impl ConsentTypeForm {
    /// Checks every field; `today` is the business date in the tenant zone (the default
    /// effective date).
    pub fn validate(&self, today: NaiveDate) -> Result<NewConsentType, ServiceError> {
        let mut v = Violations::new();
        let code = self.code.trim().to_string();
        v.check(is_valid_code(&code), "code", BAD_CODE);
        let (title, purpose) = check_wording(&mut v, &self.title, &self.purpose, self.group);
        let role = match (self.advertising, self.channel, self.night_time) {
            (false, None, false) => Some(AdRole::None),
            (false, _, _) => {
                v.add(
                    "advertising",
                    "채널이나 야간 동의는 광고성 동의 항목에만 지정합니다 (channel and night_time need advertising = true)",
                );
                None
            }
            (true, Some(c), false) => Some(AdRole::Channel(c)),
            (true, None, false) => {
                v.add(
                    "channel",
                    "광고성 동의 항목은 채널이 필요합니다 (an advertising consent needs a channel)",
                );
                None
            }
            (true, c, true) => Some(AdRole::Night(c)),
        };
        if self.required && self.advertising {
            v.add(
                "required",
                "광고성 정보 수신 동의는 선택 항목이어야 합니다 (an advertising consent is always optional)",
            );
        }
        v.finish()?;
        Ok(NewConsentType {
            code,
            wording: Wording {
                title,
                purpose,
                required: self.required,
                group: self.group.unwrap_or(ConsentGroup::Later),
                effective_date: self.effective_date.unwrap_or(today),
            },
            role: role.unwrap_or(AdRole::None),
        })
    }
}

impl RevisionForm {
    /// Checks a revision of a type with `role`, whose latest version starts on `last`: the
    /// new version starts today or later and after `last` (history is never rewritten).
    pub fn validate(
        &self,
        role: AdRole,
        last: NaiveDate,
        today: NaiveDate,
    ) -> Result<Wording, ServiceError> {
        let mut v = Violations::new();
        let (title, purpose) = check_wording(&mut v, &self.title, &self.purpose, self.group);
        let effective = self.effective_date.unwrap_or(today);
        v.check(
            effective >= today,
            "effective_date",
            "시행일은 오늘 이후여야 합니다 (must be today or later)",
        );
        v.check(
            effective > last,
            "effective_date",
            "시행일은 직전 버전의 시행일보다 뒤여야 합니다 (must be after the latest version's effective date)",
        );
        if self.required && role.is_advertising() {
            v.add(
                "required",
                "광고성 정보 수신 동의는 선택 항목이어야 합니다 (an advertising consent is always optional)",
            );
        }
        v.finish()?;
        Ok(Wording {
            title,
            purpose,
            required: self.required,
            group: self.group.unwrap_or(ConsentGroup::Later),
            effective_date: effective,
        })
    }
}

/// The version in force on `date`: the latest whose effective date is not after it.
pub fn in_force(versions: &[ConsentTypeVersion], date: NaiveDate) -> Option<&ConsentTypeVersion> {
    versions
        .iter()
        .filter(|v| v.effective_date <= date)
        .max_by_key(|v| (v.effective_date, v.version))
}

/// Where a consent was collected (the common `JoinChannel` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CollectionChannel {
    Unspecified,
    App,
    Web,
    Pos,
    CallCenter,
    Admin,
}

impl CollectionChannel {
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

/// Why a consent changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeSource {
    /// Answered on the sign-up form (recorded from `member.joined`).
    Signup,
    /// `GrantConsent` / `WithdrawConsent`.
    Request,
    /// Withdrawn because the member left (`member.withdrawn`).
    MemberWithdrawn,
}

impl ChangeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signup => "SIGNUP",
            Self::Request => "REQUEST",
            Self::MemberWithdrawn => "MEMBER_WITHDRAWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SIGNUP" => Some(Self::Signup),
            "REQUEST" => Some(Self::Request),
            "MEMBER_WITHDRAWN" => Some(Self::MemberWithdrawn),
            _ => None,
        }
    }
}

/// A member's current answer to one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberConsent {
    pub code: String,
    pub granted: bool,
    pub version: i32,
    pub collection_channel: CollectionChannel,
    pub actor: String,
    pub change_time: DateTime<Utc>,
}

/// One entry of a member's consent history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentChange {
    pub id: uuid::Uuid,
    pub member_id: uuid::Uuid,
    pub code: String,
    pub version: i32,
    pub granted: bool,
    pub collection_channel: CollectionChannel,
    pub actor: String,
    pub source: ChangeSource,
    pub change_time: DateTime<Utc>,
}

/// One answer of a sign-up form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: String,
    pub granted: bool,
}

/// What a sign-up's answers lack or get wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignupCheck {
    /// Required items in force that were not granted, in code order.
    pub missing_required: Vec<String>,
    /// Codes the tenant does not have (or not yet in force).
    pub unknown: Vec<String>,
    /// Codes answered more than once.
    pub duplicates: Vec<String>,
}

impl SignupCheck {
    pub fn is_ok(&self) -> bool {
        self.missing_required.is_empty() && self.unknown.is_empty() && self.duplicates.is_empty()
    }
}

/// Checks sign-up answers against the types in force (one version per code). A required item
/// must be granted, whatever group it belongs to; declining an optional one is fine.
pub fn check_signup(answers: &[Answer], in_force: &[ConsentTypeVersion]) -> SignupCheck {
    let by_code: HashMap<&str, &ConsentTypeVersion> =
        in_force.iter().map(|t| (t.code.as_str(), t)).collect();
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    let mut granted = BTreeSet::new();
    for a in answers {
        let code = a.code.trim();
        if !seen.insert(code) {
            duplicates.insert(code.to_string());
        }
        if !by_code.contains_key(code) {
            unknown.insert(code.to_string());
        } else if a.granted {
            granted.insert(code);
        }
    }
    let mut missing: Vec<String> = in_force
        .iter()
        .filter(|t| t.required && !granted.contains(t.code.as_str()))
        .map(|t| t.code.clone())
        .collect();
    missing.sort();
    SignupCheck {
        missing_required: missing,
        unknown: unknown.into_iter().collect(),
        duplicates: duplicates.into_iter().collect(),
    }
}

/// Is `at` inside the night-time advertising window (21:00–08:00) in `zone`?
pub fn is_night(at: DateTime<Utc>, zone: Tz) -> bool {
    let hour = at.with_timezone(&zone).hour();
    !(NIGHT_ENDS_HOUR..NIGHT_STARTS_HOUR).contains(&hour)
}

/// The consents an advertisement needs, as codes: the channel's consent, and at night one of
/// the night-time consents (the channel's own or the all-channel one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The tenant has no consent type that could allow it: nobody may receive it.
    Nobody,
    /// Granted `channel_code`, and when `night_codes` is `Some`, one of those granted too.
    Codes {
        channel_code: String,
        night_codes: Option<Vec<String>>,
    },
}

/// What an advertisement on `channel` at a time that is (or is not) `night` requires, given
/// the tenant's consent types (code and role).
pub fn advertising_requirement(
    types: &[(String, AdRole)],
    channel: MarketingChannel,
    night: bool,
) -> Requirement {
    let Some(channel_code) = types
        .iter()
        .find(|(_, r)| *r == AdRole::Channel(channel))
        .map(|(c, _)| c.clone())
    else {
        return Requirement::Nobody;
    };
    if !night {
        return Requirement::Codes {
            channel_code,
            night_codes: None,
        };
    }
    let mut night_codes: Vec<String> = types
        .iter()
        .filter(|(_, r)| *r == AdRole::Night(Some(channel)) || *r == AdRole::Night(None))
        .map(|(c, _)| c.clone())
        .collect();
    night_codes.sort();
    if night_codes.is_empty() {
        return Requirement::Nobody;
    }
    Requirement::Codes {
        channel_code,
        night_codes: Some(night_codes),
    }
}

impl Requirement {
    /// Does a member whose granted codes are `granted` meet it?
    pub fn met_by(&self, granted: &BTreeSet<String>) -> bool {
        match self {
            Self::Nobody => false,
            Self::Codes {
                channel_code,
                night_codes,
            } => {
                granted.contains(channel_code)
                    && night_codes
                        .as_ref()
                        .is_none_or(|n| n.iter().any(|c| granted.contains(c)))
            }
        }
    }
}

/// The ids of a packed `member_ids_packed` field: 16 bytes per UUID.
pub fn unpack_member_ids(packed: &[u8], max: usize) -> Result<Vec<uuid::Uuid>, ServiceError> {
    if !packed.len().is_multiple_of(16) {
        return Err(ServiceError::invalid(
            "member_ids_packed",
            "회원 ID는 16바이트 단위입니다 (must hold 16 bytes per member id)",
        ));
    }
    let n = packed.len() / 16;
    if n > max {
        return Err(ServiceError::invalid(
            "member_ids_packed",
            format!("한 번에 최대 {max}명입니다 (at most {max} member ids per call)"),
        ));
    }
    Ok(packed
        .chunks_exact(16)
        .map(|c| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            uuid::Uuid::from_bytes(b)
        })
        .collect())
}

/// A bitmap of `n` bits with the given positions set (bit i = byte i / 8, bit i % 8 from the
/// least significant).
pub fn bitmap(n: usize, set: impl IntoIterator<Item = usize>) -> Vec<u8> {
    let mut bits = vec![0u8; n.div_ceil(8)];
    for i in set {
        if i < n {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn version(code: &str, v: i32, required: bool, from: &str, role: AdRole) -> ConsentTypeVersion {
        ConsentTypeVersion {
            code: code.into(),
            version: v,
            title: "t".into(),
            purpose: "p".into(),
            required,
            group: ConsentGroup::Signup,
            effective_date: date(from),
            role,
            created_time: Utc::now(),
        }
    }

    fn form() -> ConsentTypeForm {
        ConsentTypeForm {
            code: "A0009".into(),
            title: "광고성 정보 수신 (SMS)".into(),
            purpose: "이벤트 안내".into(),
            group: Some(ConsentGroup::Signup),
            ..Default::default()
        }
    }

    #[test]
    fn advertising_consents_need_a_channel_and_are_never_required() {
        let today = date("2026-12-10");
        let plain = form().validate(today).expect("valid");
        assert_eq!(plain.role, AdRole::None);
        assert_eq!(plain.wording.effective_date, today);

        let sms = ConsentTypeForm {
            advertising: true,
            channel: Some(MarketingChannel::Sms),
            ..form()
        };
        assert_eq!(
            sms.validate(today).expect("valid").role,
            AdRole::Channel(MarketingChannel::Sms)
        );

        let bad = ConsentTypeForm {
            code: "bad code!".into(),
            title: " ".into(),
            required: true,
            advertising: true,
            group: None,
            ..form()
        };
        match bad.validate(today) {
            Err(ServiceError::InvalidArgument(v)) => {
                let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(fields, ["code", "title", "group", "channel", "required"]);
            }
            other => panic!("{other:?}"),
        }
        let night_without_ads = ConsentTypeForm {
            night_time: true,
            ..form()
        };
        assert!(night_without_ads.validate(today).is_err());
        let night_all = ConsentTypeForm {
            advertising: true,
            night_time: true,
            ..form()
        };
        assert_eq!(
            night_all.validate(today).expect("valid").role,
            AdRole::Night(None)
        );
    }

    #[test]
    fn roles_have_one_slot_each() {
        assert_eq!(AdRole::None.slot(), None);
        assert_eq!(
            AdRole::Channel(MarketingChannel::Sms).slot().as_deref(),
            Some("SMS")
        );
        assert_eq!(
            AdRole::Night(Some(MarketingChannel::Email))
                .slot()
                .as_deref(),
            Some("NIGHT:EMAIL")
        );
        assert_eq!(AdRole::Night(None).slot().as_deref(), Some("NIGHT:ALL"));
        for role in [
            AdRole::None,
            AdRole::Channel(MarketingChannel::AppPush),
            AdRole::Night(None),
            AdRole::Night(Some(MarketingChannel::KakaoTalk)),
        ] {
            assert_eq!(
                AdRole::from_parts(role.is_advertising(), role.channel(), role.is_night()),
                Some(role)
            );
        }
        assert_eq!(
            AdRole::from_parts(false, Some(MarketingChannel::Sms), false),
            None
        );
    }

    #[test]
    fn revisions_start_today_or_later_after_the_last_version() {
        let today = date("2026-12-10");
        let r = RevisionForm {
            title: "개정".into(),
            purpose: "목적".into(),
            required: true,
            group: Some(ConsentGroup::Signup),
            effective_date: Some(date("2027-01-01")),
        };
        let w = r
            .validate(AdRole::None, date("2026-01-01"), today)
            .expect("valid");
        assert_eq!(w.effective_date, date("2027-01-01"));
        let past = RevisionForm {
            effective_date: Some(date("2026-12-09")),
            ..r.clone()
        };
        assert!(
            past.validate(AdRole::None, date("2026-01-01"), today)
                .is_err()
        );
        assert!(
            r.validate(AdRole::None, date("2027-01-01"), today).is_err(),
            "same date as the last version"
        );
        assert!(
            r.validate(
                AdRole::Channel(MarketingChannel::Sms),
                date("2026-01-01"),
                today
            )
            .is_err(),
            "advertising cannot become required"
        );
    }

    #[test]
    fn the_version_in_force_is_the_latest_started() {
        let vs = vec![
            version("A", 1, false, "2026-01-01", AdRole::None),
            version("A", 2, true, "2026-06-01", AdRole::None),
            version("A", 3, false, "2027-01-01", AdRole::None),
        ];
        assert_eq!(in_force(&vs, date("2025-12-31")), None);
        assert_eq!(
            in_force(&vs, date("2026-01-01")).map(|v| v.version),
            Some(1)
        );
        assert_eq!(
            in_force(&vs, date("2026-12-31")).map(|v| v.version),
            Some(2)
        );
        assert_eq!(
            in_force(&vs, date("2027-01-01")).map(|v| v.version),
            Some(3)
        );
    }

    #[test]
    fn signup_needs_every_required_item_granted() {
        let types = vec![
            version("A0001", 1, true, "2026-01-01", AdRole::None),
            version("A0002", 1, true, "2026-01-01", AdRole::None),
            version(
                "A0009",
                1,
                false,
                "2026-01-01",
                AdRole::Channel(MarketingChannel::Sms),
            ),
        ];
        let a = |code: &str, granted| Answer {
            code: code.into(),
            granted,
        };
        let ok = check_signup(
            &[a("A0001", true), a("A0002", true), a("A0009", false)],
            &types,
        );
        assert!(ok.is_ok(), "declining an optional item never blocks");
        let missing = check_signup(&[a("A0002", false), a("A0009", true)], &types);
        assert_eq!(missing.missing_required, ["A0001", "A0002"]);
        let bad = check_signup(
            &[a("A0001", true), a("A0001", true), a("ZZZ", true)],
            &types,
        );
        assert_eq!(bad.duplicates, ["A0001"]);
        assert_eq!(bad.unknown, ["ZZZ"]);
        assert_eq!(bad.missing_required, ["A0002"]);
        assert!(
            check_signup(&[], &[]).is_ok(),
            "no consent types, none needed"
        );
    }

    #[test]
    fn night_is_21_to_08_in_the_tenant_zone() {
        let seoul = spharos_kit::time::DEFAULT_TIME_ZONE;
        let kst = |h: u32, m: u32| {
            seoul
                .with_ymd_and_hms(2026, 12, 10, h, m, 0)
                .single()
                .expect("valid")
                .with_timezone(&Utc)
        };
        assert!(!is_night(kst(8, 0), seoul));
        assert!(!is_night(kst(20, 59), seoul));
        assert!(is_night(kst(21, 0), seoul));
        assert!(is_night(kst(23, 30), seoul));
        assert!(is_night(kst(0, 0), seoul));
        assert!(is_night(kst(7, 59), seoul));
        // 12:30 UTC is 21:30 in Seoul: the zone decides, not UTC.
        let utc_noon = Utc
            .with_ymd_and_hms(2026, 12, 10, 12, 30, 0)
            .single()
            .expect("valid");
        assert!(is_night(utc_noon, seoul));
        assert!(!is_night(utc_noon, chrono_tz::UTC));
    }

    #[test]
    fn advertising_needs_the_channel_and_at_night_the_night_consent() {
        let types = vec![
            ("A0001".to_string(), AdRole::None),
            ("SMS".to_string(), AdRole::Channel(MarketingChannel::Sms)),
            ("MAIL".to_string(), AdRole::Channel(MarketingChannel::Email)),
            ("N-ALL".to_string(), AdRole::Night(None)),
            (
                "N-SMS".to_string(),
                AdRole::Night(Some(MarketingChannel::Sms)),
            ),
        ];
        let granted = |codes: &[&str]| codes.iter().map(|c| c.to_string()).collect::<BTreeSet<_>>();
        let day = advertising_requirement(&types, MarketingChannel::Sms, false);
        assert!(day.met_by(&granted(&["SMS"])));
        assert!(!day.met_by(&granted(&["MAIL", "N-ALL"])));
        let night = advertising_requirement(&types, MarketingChannel::Sms, true);
        assert!(!night.met_by(&granted(&["SMS"])));
        assert!(night.met_by(&granted(&["SMS", "N-SMS"])));
        assert!(night.met_by(&granted(&["SMS", "N-ALL"])));
        let mail_night = advertising_requirement(&types, MarketingChannel::Email, true);
        assert!(
            !mail_night.met_by(&granted(&["MAIL", "N-SMS"])),
            "another channel's night consent"
        );
        assert!(mail_night.met_by(&granted(&["MAIL", "N-ALL"])));
        assert_eq!(
            advertising_requirement(&types, MarketingChannel::AppPush, false),
            Requirement::Nobody
        );
        let no_night = vec![("SMS".to_string(), AdRole::Channel(MarketingChannel::Sms))];
        assert_eq!(
            advertising_requirement(&no_night, MarketingChannel::Sms, true),
            Requirement::Nobody
        );
        assert!(SendChannel::KakaoAlimtalk.marketing_channel().is_err());
        assert_eq!(
            SendChannel::Lms.marketing_channel().expect("sms family"),
            MarketingChannel::Sms
        );
    }

    #[test]
    fn packed_ids_and_bitmaps() {
        let ids: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::now_v7()).collect();
        let packed: Vec<u8> = ids.iter().flat_map(|u| *u.as_bytes()).collect();
        assert_eq!(unpack_member_ids(&packed, 10).expect("valid"), ids);
        assert!(unpack_member_ids(&packed[1..], 10).is_err());
        assert!(unpack_member_ids(&packed, 2).is_err());
        assert_eq!(bitmap(10, [0, 3, 9]), vec![0b0000_1001, 0b0000_0010]);
        assert_eq!(bitmap(0, []), Vec::<u8>::new());
    }
}

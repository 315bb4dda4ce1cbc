//! Plans, modules, channels and the price catalogue: Basic at a fixed monthly fee under member
//! and store limits, Custom at negotiated per-module fees, and one per-message price table by
//! channel that applies on every plan. Defaults are in code; a host may configure its own.
use std::collections::BTreeMap;

use spharos_kit::{ServiceError, Violations};

/// VAT (부가가치세) rate in percent.
pub const VAT_PERCENT: i64 = 10;

/// The most a negotiated module fee may be (10억 won a month): a typo guard that also keeps
/// fee × days far inside `i64`.
pub const MAX_MODULE_FEE_KRW: i64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plan {
    Basic,
    Custom,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "BASIC",
            Self::Custom => "CUSTOM",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "BASIC" => Some(Self::Basic),
            "CUSTOM" => Some(Self::Custom),
            _ => None,
        }
    }
}

/// A module of the Custom plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Membership,
    AppWeb,
    Campaign,
    Analytics,
    CustomerCentre,
    Privacy,
}

impl Module {
    pub const ALL: [Module; 6] = [
        Self::Membership,
        Self::AppWeb,
        Self::Campaign,
        Self::Analytics,
        Self::CustomerCentre,
        Self::Privacy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Membership => "MEMBERSHIP",
            Self::AppWeb => "APP_WEB",
            Self::Campaign => "CAMPAIGN",
            Self::Analytics => "ANALYTICS",
            Self::CustomerCentre => "CUSTOMER_CENTRE",
            Self::Privacy => "PRIVACY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Korean name, then English, for invoice lines.
    pub fn label(self) -> &'static str {
        match self {
            Self::Membership => "멤버십 (membership)",
            Self::AppWeb => "앱/웹 (app/web)",
            Self::Campaign => "캠페인 (campaign)",
            Self::Analytics => "분석 (analytics)",
            Self::CustomerCentre => "고객센터 (customer centre)",
            Self::Privacy => "개인정보 운영 (privacy operations)",
        }
    }
}

/// A message channel that is priced per message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Sms,
    Lms,
    Mms,
    KakaoAlimtalk,
    KakaoBrandMessage,
    Email,
    AppPush,
}

impl Channel {
    pub const ALL: [Channel; 7] = [
        Self::Sms,
        Self::Lms,
        Self::Mms,
        Self::KakaoAlimtalk,
        Self::KakaoBrandMessage,
        Self::Email,
        Self::AppPush,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "SMS",
            Self::Lms => "LMS",
            Self::Mms => "MMS",
            Self::KakaoAlimtalk => "KAKAO_ALIMTALK",
            Self::KakaoBrandMessage => "KAKAO_BRAND_MESSAGE",
            Self::Email => "EMAIL",
            Self::AppPush => "APP_PUSH",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sms => "SMS 발송 (SMS)",
            Self::Lms => "LMS 발송 (LMS)",
            Self::Mms => "MMS 발송 (MMS)",
            Self::KakaoAlimtalk => "카카오 알림톡 (KakaoTalk Alimtalk)",
            Self::KakaoBrandMessage => "카카오 브랜드 메시지 (KakaoTalk brand message)",
            Self::Email => "이메일 (e-mail)",
            Self::AppPush => "앱 푸시 (app push)",
        }
    }
}

/// One module's negotiated monthly fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleFee {
    pub module: Module,
    pub monthly_fee_krw: i64,
}

/// The prices billing charges. [`BillingCatalogue::default`] is the published catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingCatalogue {
    pub basic_monthly_fee_krw: i64,
    /// Basic serves fewer than this many members...
    pub basic_member_limit: i64,
    /// ...and fewer than this many (open) stores.
    pub basic_store_limit: i64,
    /// Won per message, by channel; a channel missing here costs 0.
    pub message_prices: BTreeMap<Channel, i64>,
}

impl Default for BillingCatalogue {
    fn default() -> Self {
        Self {
            basic_monthly_fee_krw: 30_000,
            basic_member_limit: 300_000,
            basic_store_limit: 100,
            message_prices: BTreeMap::from([
                (Channel::Sms, 20),
                (Channel::Lms, 50),
                (Channel::Mms, 120),
                (Channel::KakaoAlimtalk, 8),
                (Channel::KakaoBrandMessage, 15),
                (Channel::Email, 1),
                (Channel::AppPush, 0),
            ]),
        }
    }
}

impl BillingCatalogue {
    pub fn unit_price(&self, channel: Channel) -> i64 {
        self.message_prices.get(&channel).copied().unwrap_or(0)
    }

    /// A configured catalogue must make sense before the service starts with it.
    pub fn validate(&self) -> Result<(), String> {
        if self.basic_monthly_fee_krw < 0 {
            return Err("basic_monthly_fee_krw must not be negative".into());
        }
        if self.basic_member_limit <= 0 || self.basic_store_limit <= 0 {
            return Err("Basic member and store limits must be positive".into());
        }
        if let Some((c, p)) = self.message_prices.iter().find(|(_, p)| **p < 0) {
            return Err(format!("the price of {} is negative ({p})", c.as_str()));
        }
        Ok(())
    }
}

/// A plan with its fees, as chosen for a subscription or a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChoice {
    pub plan: Plan,
    /// Custom only, sorted by module.
    pub module_fees: Vec<ModuleFee>,
}

/// A plan choice as sent: `None` stands for an unspecified enum value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChoiceForm {
    pub plan: Option<Plan>,
    pub module_fees: Vec<(Option<Module>, i64)>,
}

impl PlanChoiceForm {
    /// Basic takes no module fees; Custom takes at least one, each module once, each fee
    /// between 0 and [`MAX_MODULE_FEE_KRW`]. Every bad field is reported.
    pub fn validate(self) -> Result<PlanChoice, ServiceError> {
        let mut v = Violations::new();
        let mut fees: Vec<ModuleFee> = Vec::new();
        for (i, (module, fee)) in self.module_fees.iter().enumerate() {
            match module {
                None => {
                    v.add(
                        &format!("module_fees[{i}].module"),
                        "모듈을 지정하세요 (module is required)",
                    );
                }
                Some(m) if fees.iter().any(|f| f.module == *m) => {
                    v.add(
                        &format!("module_fees[{i}].module"),
                        format!("{} 모듈이 중복되었습니다 (module listed twice)", m.as_str()),
                    );
                }
                Some(m) => fees.push(ModuleFee {
                    module: *m,
                    monthly_fee_krw: *fee,
                }),
            }
            if !(0..=MAX_MODULE_FEE_KRW).contains(fee) {
                v.add(
                    &format!("module_fees[{i}].monthly_fee_krw"),
                    format!(
                        "월 이용료는 0원 이상 {MAX_MODULE_FEE_KRW}원 이하입니다 (must be between 0 and {MAX_MODULE_FEE_KRW} won)"
                    ),
                );
            }
        }
        match self.plan {
            None => {
                v.add("plan", "요금제를 지정하세요 (plan is required)");
            }
            Some(Plan::Basic) if !self.module_fees.is_empty() => {
                v.add(
                    "module_fees",
                    "Basic 요금제는 모듈 이용료가 없습니다 (the Basic plan has a fixed fee; leave module_fees empty)",
                );
            }
            Some(Plan::Custom) if self.module_fees.is_empty() => {
                v.add(
                    "module_fees",
                    "Custom 요금제는 모듈 이용료가 1개 이상 필요합니다 (the Custom plan needs at least one module fee)",
                );
            }
            Some(_) => {}
        }
        v.finish()?;
        let plan = self
            .plan
            .ok_or_else(|| ServiceError::internal("validated plan missing"))?;
        fees.sort_by_key(|f| f.module);
        Ok(PlanChoice {
            plan,
            module_fees: fees,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: ServiceError) -> Vec<String> {
        match e {
            ServiceError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn the_default_catalogue_is_the_published_one() {
        let c = BillingCatalogue::default();
        assert_eq!(c.basic_monthly_fee_krw, 30_000);
        assert_eq!((c.basic_member_limit, c.basic_store_limit), (300_000, 100));
        let prices: Vec<(&str, i64)> = Channel::ALL
            .iter()
            .map(|ch| (ch.as_str(), c.unit_price(*ch)))
            .collect();
        assert_eq!(
            prices,
            [
                ("SMS", 20),
                ("LMS", 50),
                ("MMS", 120),
                ("KAKAO_ALIMTALK", 8),
                ("KAKAO_BRAND_MESSAGE", 15),
                ("EMAIL", 1),
                ("APP_PUSH", 0)
            ]
        );
        assert!(c.validate().is_ok());
        let mut bad = c.clone();
        bad.message_prices.insert(Channel::Sms, -1);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn names_round_trip() {
        for m in Module::ALL {
            assert_eq!(Module::parse(m.as_str()), Some(m));
        }
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Some(c));
        }
        for p in [Plan::Basic, Plan::Custom] {
            assert_eq!(Plan::parse(p.as_str()), Some(p));
        }
        assert_eq!(Plan::parse("GOLD"), None);
    }

    #[test]
    fn custom_fees_are_validated_field_by_field() {
        let ok = PlanChoiceForm {
            plan: Some(Plan::Custom),
            module_fees: vec![
                (Some(Module::Campaign), 300_000),
                (Some(Module::Membership), 500_000),
            ],
        }
        .validate()
        .expect("valid");
        // Sorted by module, whatever the request order.
        assert_eq!(ok.module_fees[0].module, Module::Membership);

        let err = PlanChoiceForm {
            plan: Some(Plan::Custom),
            module_fees: vec![
                (None, 1),
                (Some(Module::Analytics), -5),
                (Some(Module::Analytics), 10),
            ],
        }
        .validate()
        .expect_err("invalid");
        assert_eq!(
            fields(err),
            [
                "module_fees[0].module",
                "module_fees[1].monthly_fee_krw",
                "module_fees[2].module"
            ]
        );
    }

    #[test]
    fn basic_takes_no_fees_and_custom_needs_some() {
        let err = PlanChoiceForm {
            plan: Some(Plan::Basic),
            module_fees: vec![(Some(Module::Campaign), 1)],
        }
        .validate()
        .expect_err("basic with fees");
        assert_eq!(fields(err), ["module_fees"]);
        let err = PlanChoiceForm {
            plan: Some(Plan::Custom),
            module_fees: vec![],
        }
        .validate()
        .expect_err("custom without fees");
        assert_eq!(fields(err), ["module_fees"]);
        let err = PlanChoiceForm::default().validate().expect_err("no plan");
        assert_eq!(fields(err), ["plan"]);
        assert!(
            PlanChoiceForm {
                plan: Some(Plan::Basic),
                module_fees: vec![]
            }
            .validate()
            .is_ok()
        );
    }
}

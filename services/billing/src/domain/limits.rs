//! Plan limits: a Basic tenant with the Basic member limit of members, or the store limit of
//! open stores, has outgrown its plan. The signal is informational: nothing is cut off, the
//! platform team decides.
use super::catalogue::{BillingCatalogue, Plan};

/// Why a tenant is not compliant with its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReason {
    MemberLimitReached,
    StoreLimitReached,
}

impl LimitReason {
    /// Stable reason for events and the operator's condition.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberLimitReached => "BASIC_MEMBER_LIMIT_REACHED",
            Self::StoreLimitReached => "BASIC_STORE_LIMIT_REACHED",
        }
    }
}

/// A tenant's plan compliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compliance {
    /// `None` when compliant.
    pub violation: Option<LimitReason>,
    /// Korean-first explanation ("" when compliant).
    pub message: String,
    /// The limits of the plan (0 = none).
    pub member_limit: i64,
    pub store_limit: i64,
}

impl Compliance {
    pub fn compliant(&self) -> bool {
        self.violation.is_none()
    }
}

/// Checks `members` and open `stores` against the limits of `plan` (`None` = no plan in force,
/// which has nothing to comply with). Members are checked first.
pub fn check(
    plan: Option<Plan>,
    members: i64,
    stores: i64,
    catalogue: &BillingCatalogue,
) -> Compliance {
    if plan != Some(Plan::Basic) {
        return Compliance {
            violation: None,
            message: String::new(),
            member_limit: 0,
            store_limit: 0,
        };
    }
    let (ml, sl) = (catalogue.basic_member_limit, catalogue.basic_store_limit);
    let (violation, message) = if members >= ml {
        (
            Some(LimitReason::MemberLimitReached),
            format!(
                "Basic 요금제 회원 수 한도({ml})에 도달했습니다: 현재 {members}명. Custom 요금제가 필요합니다 (Basic plan member limit {ml} reached: {members} members; the Custom plan is required)"
            ),
        )
    } else if stores >= sl {
        (
            Some(LimitReason::StoreLimitReached),
            format!(
                "Basic 요금제 매장 수 한도({sl})에 도달했습니다: 현재 {stores}개. Custom 요금제가 필요합니다 (Basic plan store limit {sl} reached: {stores} stores; the Custom plan is required)"
            ),
        )
    } else {
        (None, String::new())
    };
    Compliance {
        violation,
        message,
        member_limit: ml,
        store_limit: sl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_is_for_fewer_than_300k_members_and_100_stores() {
        let c = BillingCatalogue::default();
        let basic = Some(Plan::Basic);
        assert!(check(basic, 299_999, 99, &c).compliant());
        assert_eq!(
            check(basic, 300_000, 0, &c).violation,
            Some(LimitReason::MemberLimitReached)
        );
        assert_eq!(
            check(basic, 10, 100, &c).violation,
            Some(LimitReason::StoreLimitReached)
        );
        // Both: members are named first.
        let both = check(basic, 300_000, 100, &c);
        assert_eq!(both.violation, Some(LimitReason::MemberLimitReached));
        assert!(both.message.contains("300000"), "{}", both.message);
        assert_eq!((both.member_limit, both.store_limit), (300_000, 100));
    }

    #[test]
    fn custom_and_no_plan_have_no_limits() {
        let c = BillingCatalogue::default();
        let custom = check(Some(Plan::Custom), 5_000_000, 2_000, &c);
        assert!(custom.compliant());
        assert_eq!((custom.member_limit, custom.store_limit), (0, 0));
        assert!(check(None, 5_000_000, 2_000, &c).compliant());
    }
}

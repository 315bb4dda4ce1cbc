//! A tenant's subscription: its lifecycle (active, suspended, cancelled) and when plan changes
//! take effect. The plans themselves are the tenant's plan periods (`timeline`).
use chrono::{DateTime, NaiveDate, Utc};
use spharos_kit::ServiceError;
use uuid::Uuid;

pub const MAX_SUSPEND_REASON_CHARS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    /// The service is paused; the contract and its billing continue.
    Suspended,
    /// Ended; billed through the day of cancellation.
    Cancelled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(Self::Active),
            "SUSPENDED" => Some(Self::Suspended),
            "CANCELLED" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// When a plan change applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeTiming {
    /// From today, prorated by days.
    Immediate,
    /// From the first day of next month.
    NextCycle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: Uuid,
    pub status: SubscriptionStatus,
    pub start_date: NaiveDate,
    /// Last billed day once cancelled.
    pub end_date: Option<NaiveDate>,
    pub suspend_reason: Option<String>,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

/// What the platform does to a subscription's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Suspend,
    Resume,
    Cancel,
    ChangePlan,
}

/// Checks that `action` applies to a subscription in `status`; the error names the rule
/// (`SUBSCRIPTION_NOT_ACTIVE`, `SUBSCRIPTION_NOT_SUSPENDED`, `SUBSCRIPTION_CANCELLED`).
pub fn allow(status: SubscriptionStatus, action: Lifecycle) -> Result<(), ServiceError> {
    use Lifecycle as L;
    use SubscriptionStatus as S;
    match (status, action) {
        (S::Cancelled, _) => Err(ServiceError::precondition(
            "SUBSCRIPTION_CANCELLED",
            "해지된 구독입니다. 새로 구독하세요 (the subscription is cancelled; subscribe again)",
        )),
        (S::Active, L::Suspend | L::Cancel | L::ChangePlan)
        | (S::Suspended, L::Resume | L::Cancel | L::ChangePlan) => Ok(()),
        (S::Suspended, L::Suspend) => Err(ServiceError::precondition(
            "SUBSCRIPTION_NOT_ACTIVE",
            "이미 정지된 구독입니다 (the subscription is already suspended)",
        )),
        (S::Active, L::Resume) => Err(ServiceError::precondition(
            "SUBSCRIPTION_NOT_SUSPENDED",
            "정지되지 않은 구독은 재개할 수 없습니다 (only a suspended subscription can be resumed)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<(), ServiceError>) -> &'static str {
        match r {
            Err(ServiceError::FailedPrecondition { reason, .. }) => reason,
            other => panic!("expected FailedPrecondition, got {other:?}"),
        }
    }

    #[test]
    fn lifecycle_rules() {
        use Lifecycle as L;
        use SubscriptionStatus as S;
        assert!(allow(S::Active, L::Suspend).is_ok());
        assert!(allow(S::Suspended, L::Resume).is_ok());
        assert!(allow(S::Suspended, L::Cancel).is_ok());
        assert!(allow(S::Suspended, L::ChangePlan).is_ok());
        assert_eq!(
            reason(allow(S::Active, L::Resume)),
            "SUBSCRIPTION_NOT_SUSPENDED"
        );
        assert_eq!(
            reason(allow(S::Suspended, L::Suspend)),
            "SUBSCRIPTION_NOT_ACTIVE"
        );
        for a in [L::Suspend, L::Resume, L::Cancel, L::ChangePlan] {
            assert_eq!(reason(allow(S::Cancelled, a)), "SUBSCRIPTION_CANCELLED");
        }
        for s in [S::Active, S::Suspended, S::Cancelled] {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
    }
}

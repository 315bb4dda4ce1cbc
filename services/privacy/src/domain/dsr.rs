//! Data-subject requests (정보주체의 열람·삭제 요구): their kinds, the states they move
//! through, and the legal deadline of 10 days after receipt (개인정보 보호법 시행령 제41조,
//! 제42조), counted in the tenant's calendar.
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use spharos_kit::ServiceError;
use uuid::Uuid;

use super::consent::CollectionChannel;

/// Days after receipt by which the controller must answer.
pub const DEADLINE_DAYS: u64 = 10;
pub const MAX_NOTE_CHARS: usize = 1000;
pub const MAX_REASON_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Erasure,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "ACCESS",
            Self::Erasure => "ERASURE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACCESS" => Some(Self::Access),
            "ERASURE" => Some(Self::Erasure),
            _ => None,
        }
    }
}

/// received → in progress → completed, or rejected before completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Received,
    InProgress,
    Completed,
    Rejected,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "RECEIVED",
            Self::InProgress => "IN_PROGRESS",
            Self::Completed => "COMPLETED",
            Self::Rejected => "REJECTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RECEIVED" => Some(Self::Received),
            "IN_PROGRESS" => Some(Self::InProgress),
            "COMPLETED" => Some(Self::Completed),
            "REJECTED" => Some(Self::Rejected),
            _ => None,
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, Self::Received | Self::InProgress)
    }

    /// May processing start (or be retried after a failure)?
    pub fn check_process(self) -> Result<(), ServiceError> {
        if self.is_open() {
            Ok(())
        } else {
            Err(ServiceError::precondition(
                "DSR_CLOSED",
                format!(
                    "이미 종결된 요구입니다 (the request is already {})",
                    self.as_str()
                ),
            ))
        }
    }

    /// May the request be rejected? Only while open: a completed erasure cannot be undone.
    pub fn check_reject(self) -> Result<(), ServiceError> {
        self.check_process()
    }
}

/// A data-subject request as the API shows it (the access document travels separately).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: Uuid,
    pub member_id: Uuid,
    pub kind: Kind,
    pub status: Status,
    pub collection_channel: CollectionChannel,
    pub note: String,
    pub actor: String,
    pub receive_time: DateTime<Utc>,
    pub due_date: NaiveDate,
    pub complete_time: Option<DateTime<Utc>>,
    pub reject_reason: Option<String>,
    pub last_error: Option<String>,
    /// The services whose data was collected or erased.
    pub services: Vec<String>,
}

/// A `CreateDataSubjectRequest` as received.
#[derive(Debug, Clone)]
pub struct RequestForm {
    pub member_id: Uuid,
    pub kind: Kind,
    pub collection_channel: CollectionChannel,
    pub note: String,
    pub idempotency_key: String,
}

/// A `CreateDataSubjectRequest` note: optional, bounded.
pub fn check_note(note: &str) -> Result<String, ServiceError> {
    let n = note.trim();
    if n.chars().count() > MAX_NOTE_CHARS {
        return Err(ServiceError::invalid(
            "note",
            "메모는 1000자 이하입니다 (at most 1000 characters)",
        ));
    }
    Ok(n.to_string())
}

/// The deadline: the receipt's date in the tenant zone plus 10 days.
pub fn due_date(receive_time: DateTime<Utc>, zone: Tz) -> NaiveDate {
    let received = spharos_kit::time::local_date(receive_time, zone);
    received
        .checked_add_days(Days::new(DEADLINE_DAYS))
        .unwrap_or(received)
}

/// Days from `today` until `due` (0 on the due date, negative after it).
pub fn days_left(due: NaiveDate, today: NaiveDate) -> i32 {
    (due - today)
        .num_days()
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Past its deadline and still open.
pub fn is_overdue(status: Status, due: NaiveDate, today: NaiveDate) -> bool {
    status.is_open() && today > due
}

/// A rejection needs a reason the member can be told.
pub fn check_reject_reason(reason: &str) -> Result<String, ServiceError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON_CHARS {
        return Err(ServiceError::invalid(
            "reason",
            "거절 사유는 1~1000자입니다 (1 to 1000 characters)",
        ));
    }
    Ok(r.to_string())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_deadline_is_ten_days_after_receipt_in_the_tenant_zone() {
        let seoul = spharos_kit::time::DEFAULT_TIME_ZONE;
        // 2026-12-03 23:30 KST = 14:30 UTC: received on the 3rd in Korea.
        let at = Utc
            .with_ymd_and_hms(2026, 12, 3, 14, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(due_date(at, seoul).to_string(), "2026-12-13");
        // 15:30 UTC is already the 4th in Seoul.
        let late = Utc
            .with_ymd_and_hms(2026, 12, 3, 15, 30, 0)
            .single()
            .expect("valid");
        assert_eq!(due_date(late, seoul).to_string(), "2026-12-14");
        // Across a month end.
        let eom = Utc
            .with_ymd_and_hms(2026, 12, 25, 3, 0, 0)
            .single()
            .expect("valid");
        assert_eq!(due_date(eom, seoul).to_string(), "2027-01-04");
    }

    #[test]
    fn days_left_and_overdue() {
        let due = NaiveDate::from_ymd_opt(2026, 12, 13).expect("date");
        let d = |day| NaiveDate::from_ymd_opt(2026, 12, day).expect("date");
        assert_eq!(days_left(due, d(3)), 10);
        assert_eq!(days_left(due, d(13)), 0);
        assert_eq!(days_left(due, d(15)), -2);
        assert!(!is_overdue(Status::Received, due, d(13)));
        assert!(is_overdue(Status::InProgress, due, d(14)));
        assert!(!is_overdue(Status::Completed, due, d(20)));
    }

    #[test]
    fn only_open_requests_move() {
        assert!(Status::Received.check_process().is_ok());
        assert!(Status::InProgress.check_process().is_ok());
        assert!(Status::Completed.check_process().is_err());
        assert!(Status::Rejected.check_reject().is_err());
        assert!(check_reject_reason("  ").is_err());
        assert_eq!(
            check_reject_reason(" 본인 확인 불가 ").expect("ok"),
            "본인 확인 불가"
        );
        for s in ["RECEIVED", "IN_PROGRESS", "COMPLETED", "REJECTED"] {
            assert_eq!(Status::parse(s).map(Status::as_str), Some(s));
        }
    }
}

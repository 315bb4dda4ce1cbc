//! Notices (공지사항): what a notice must hold, how the member app orders them (pinned first,
//! then the merchant's sort order, then newest first) and the page cursor for that order.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 20_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub id: Uuid,
    pub title: String,
    pub body: String,
    pub pinned: bool,
    pub sort_order: i32,
    pub published: bool,
    pub publish_time: Option<DateTime<Utc>>,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

/// A `CreateNotice` request, or the fields an `UpdateNotice` mask named (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct NoticePatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub pinned: Option<bool>,
    pub sort_order: Option<i32>,
}

impl NoticePatch {
    /// Checks the fields present, trimmed; violations name them under `prefix`.
    pub fn validate(self, prefix: &str) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        let title = self.title.map(|t| t.trim().to_string());
        let body = self.body.map(|b| b.trim().to_string());
        if let Some(t) = &title {
            v.check(
                !t.is_empty() && t.chars().count() <= MAX_TITLE_CHARS,
                &format!("{prefix}title"),
                "제목은 1~200자입니다 (1 to 200 characters)",
            );
        }
        if let Some(b) = &body {
            v.check(
                !b.is_empty() && b.chars().count() <= MAX_BODY_CHARS,
                &format!("{prefix}body"),
                "본문은 1~20000자입니다 (1 to 20000 characters)",
            );
        }
        v.finish()?;
        Ok(Self {
            title,
            body,
            pinned: self.pinned,
            sort_order: self.sort_order,
        })
    }

    /// Checks a new notice: title and body are required.
    pub fn validate_new(self) -> Result<Self, ServiceError> {
        let patch = Self {
            title: Some(self.title.unwrap_or_default()),
            body: Some(self.body.unwrap_or_default()),
            ..self
        };
        patch.validate("")
    }

    /// Applies the patch; true when anything changed.
    pub fn apply(&self, n: &mut Notice) -> bool {
        let before = n.clone();
        if let Some(t) = &self.title {
            n.title = t.clone();
        }
        if let Some(b) = &self.body {
            n.body = b.clone();
        }
        if let Some(p) = self.pinned {
            n.pinned = p;
        }
        if let Some(s) = self.sort_order {
            n.sort_order = s;
        }
        *n != before
    }
}

/// Where a page of notices resumes: after this (pinned, sort_order, id) in list order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoticeCursor {
    pub pinned: bool,
    pub sort_order: i32,
    pub id: Uuid,
}

const CURSOR_PREFIX: &[u8] = b"ntc1";

impl NoticeCursor {
    pub fn of(n: &Notice) -> Self {
        Self {
            pinned: n.pinned,
            sort_order: n.sort_order,
            id: n.id,
        }
    }

    pub fn encode(&self) -> String {
        let mut b = CURSOR_PREFIX.to_vec();
        b.push(u8::from(self.pinned));
        b.extend_from_slice(&self.sort_order.to_be_bytes());
        b.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(token: &str) -> Result<Option<Self>, ServiceError> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || ServiceError::invalid("page_token", "is not a token returned by this API");
        let b = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        let rest = b.strip_prefix(CURSOR_PREFIX).ok_or_else(bad)?;
        if rest.len() != 1 + 4 + 16 || rest[0] > 1 {
            return Err(bad());
        }
        let mut order = [0u8; 4];
        order.copy_from_slice(&rest[1..5]);
        Ok(Some(Self {
            pinned: rest[0] == 1,
            sort_order: i32::from_be_bytes(order),
            id: Uuid::from_slice(&rest[5..]).map_err(|_| bad())?,
        }))
    }
}

/// The list order: pinned first, then ascending sort order, then newest (highest UUIDv7) first.
pub fn sort(notices: &mut [Notice]) {
    notices.sort_by(|a, b| {
        b.pinned
            .cmp(&a.pinned)
            .then(a.sort_order.cmp(&b.sort_order))
            .then(b.id.cmp(&a.id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(pinned: bool, sort_order: i32) -> Notice {
        Notice {
            id: Uuid::now_v7(),
            title: "t".into(),
            body: "b".into(),
            pinned,
            sort_order,
            published: true,
            publish_time: None,
            created_time: Utc::now(),
            updated_time: Utc::now(),
        }
    }

    #[test]
    fn pinned_first_then_order_then_newest() {
        let old = notice(false, 0);
        let new = notice(false, 0);
        let first = notice(false, -1);
        let pin = notice(true, 5);
        let mut list = vec![old.clone(), pin.clone(), new.clone(), first.clone()];
        sort(&mut list);
        let ids: Vec<Uuid> = list.iter().map(|n| n.id).collect();
        assert_eq!(ids, [pin.id, first.id, new.id, old.id]);
    }

    #[test]
    fn cursors_round_trip_and_bad_tokens_are_named() {
        let c = NoticeCursor::of(&notice(true, -3));
        assert_eq!(NoticeCursor::decode(&c.encode()).expect("ok"), Some(c));
        assert_eq!(NoticeCursor::decode("").expect("ok"), None);
        match NoticeCursor::decode("garbage") {
            Err(ServiceError::InvalidArgument(v)) => assert_eq!(v[0].field, "page_token"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn patches_are_validated_and_report_changes() {
        let err = NoticePatch {
            title: Some(" ".into()),
            body: Some(String::new()),
            ..Default::default()
        }
        .validate("notice.")
        .expect_err("empty");
        match err {
            ServiceError::InvalidArgument(v) => {
                assert_eq!(v[0].field, "notice.title");
                assert_eq!(v[1].field, "notice.body");
            }
            other => panic!("{other:?}"),
        }
        let mut n = notice(false, 0);
        let p = NoticePatch {
            pinned: Some(true),
            ..Default::default()
        };
        assert!(p.apply(&mut n));
        assert!(!p.apply(&mut n), "already pinned");
    }
}

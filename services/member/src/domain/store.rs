//! Stores (the merchant's shops): their codes, status and the rules their fields follow.
use chrono::{DateTime, Utc};
use spharos_kit::{ServiceError, Violations};
use uuid::Uuid;

pub const MAX_CODE_CHARS: usize = 20;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_PLACE_CHARS: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreStatus {
    Open,
    Closed,
}

impl StoreStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "OPEN" => Some(Self::Open),
            "CLOSED" => Some(Self::Closed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub region: String,
    pub trade_area: String,
    pub status: StoreStatus,
    pub created_time: DateTime<Utc>,
    pub updated_time: DateTime<Utc>,
}

/// A `CreateStore` request as sent; `status` `None` means "open".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewStore {
    pub code: String,
    pub name: String,
    pub region: String,
    pub trade_area: String,
    pub status: Option<StoreStatus>,
}

impl NewStore {
    /// Trims the text fields and checks them all, reporting every bad one.
    pub fn validate(mut self) -> Result<Self, ServiceError> {
        self.code = self.code.trim().to_string();
        self.name = self.name.trim().to_string();
        self.region = self.region.trim().to_string();
        self.trade_area = self.trade_area.trim().to_string();
        let mut v = Violations::new();
        check_code(&mut v, "code", &self.code);
        check_name(&mut v, "name", &self.name);
        check_place(&mut v, "region", &self.region);
        check_place(&mut v, "trade_area", &self.trade_area);
        v.finish()?;
        Ok(self)
    }
}

/// The fields an `UpdateStore` mask named; a field left `None` is not changed.
/// `status: Some(None)` is a status the caller named but left unspecified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorePatch {
    pub name: Option<String>,
    pub region: Option<String>,
    pub trade_area: Option<String>,
    pub status: Option<Option<StoreStatus>>,
}

impl StorePatch {
    /// Checks the named fields; violations name them under `store.`.
    pub fn validate(mut self) -> Result<Self, ServiceError> {
        let mut v = Violations::new();
        if let Some(n) = &mut self.name {
            *n = n.trim().to_string();
            check_name(&mut v, "store.name", n);
        }
        if let Some(r) = &mut self.region {
            *r = r.trim().to_string();
            check_place(&mut v, "store.region", r);
        }
        if let Some(t) = &mut self.trade_area {
            *t = t.trim().to_string();
            check_place(&mut v, "store.trade_area", t);
        }
        if let Some(None) = self.status {
            v.add(
                "store.status",
                "OPEN 또는 CLOSED여야 합니다 (must be STORE_STATUS_OPEN or STORE_STATUS_CLOSED)",
            );
        }
        v.finish()?;
        Ok(self)
    }

    /// Applies the patch; returns the names of the fields whose value changed.
    pub fn apply(&self, store: &mut Store) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(n) = &self.name
            && *n != store.name
        {
            store.name = n.clone();
            changed.push("name");
        }
        if let Some(r) = &self.region
            && *r != store.region
        {
            store.region = r.clone();
            changed.push("region");
        }
        if let Some(t) = &self.trade_area
            && *t != store.trade_area
        {
            store.trade_area = t.clone();
            changed.push("trade_area");
        }
        if let Some(Some(s)) = self.status
            && s != store.status
        {
            store.status = s;
            changed.push("status");
        }
        changed
    }
}

/// How a store is named in `GetStore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKey {
    Id(Uuid),
    Code(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFilter {
    pub status: Option<StoreStatus>,
    pub region: Option<String>,
}

/// Store codes: 1..=20 of `[A-Za-z0-9_-]`, so they are safe in URLs, receipts and exports.
pub fn is_valid_code(code: &str) -> bool {
    (1..=MAX_CODE_CHARS).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_code(v: &mut Violations, field: &str, code: &str) {
    v.check(
        is_valid_code(code),
        field,
        "매장 코드는 영문·숫자·_·- 1~20자입니다 (must be 1 to 20 of A-Z a-z 0-9 _ -)",
    );
}

fn check_name(v: &mut Violations, field: &str, name: &str) {
    v.check(
        !name.is_empty() && name.chars().count() <= MAX_NAME_CHARS,
        field,
        "매장 이름은 1~100자입니다 (required, at most 100 characters)",
    );
}

fn check_place(v: &mut Violations, field: &str, s: &str) {
    v.check(
        s.chars().count() <= MAX_PLACE_CHARS,
        field,
        "50자 이하여야 합니다 (at most 50 characters)",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_and_plain() {
        assert!(is_valid_code("GN001"));
        assert!(is_valid_code("seoul_gangnam-1"));
        assert!(!is_valid_code(""));
        assert!(!is_valid_code("강남"));
        assert!(!is_valid_code("GN 001"));
        assert!(!is_valid_code(&"A".repeat(21)));
    }

    #[test]
    fn a_new_store_reports_every_bad_field() {
        let err = NewStore {
            code: "bad code".into(),
            name: "  ".into(),
            region: "서".repeat(51),
            ..Default::default()
        }
        .validate()
        .expect_err("invalid");
        let ServiceError::InvalidArgument(v) = err else {
            panic!("{err:?}")
        };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["code", "name", "region"]);
    }

    #[test]
    fn a_patch_changes_only_what_differs() {
        let now = Utc::now();
        let mut s = Store {
            id: Uuid::now_v7(),
            code: "GN001".into(),
            name: "강남점".into(),
            region: "서울".into(),
            trade_area: "강남역".into(),
            status: StoreStatus::Open,
            created_time: now,
            updated_time: now,
        };
        let patch = StorePatch {
            name: Some("강남점".into()),
            status: Some(Some(StoreStatus::Closed)),
            ..Default::default()
        }
        .validate()
        .expect("valid");
        assert_eq!(patch.apply(&mut s), ["status"]);
        assert_eq!(s.status, StoreStatus::Closed);
        assert!(
            StorePatch {
                status: Some(None),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}

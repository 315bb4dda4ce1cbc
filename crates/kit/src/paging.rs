//! AIP-158 paging: `page_size` (default 50, max 1000) and an opaque `page_token` that resumes
//! after the last row returned (keyset paging on a UUIDv7 id, so pages are stable under inserts).
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::ServiceError;

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u64,
    /// Return rows whose id is greater than this.
    pub after: Option<Uuid>,
}

impl PageRequest {
    /// Validates `page_size` and decodes `page_token`; errors name the field.
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, ServiceError> {
        let size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => return Err(ServiceError::invalid("page_size", "must not be negative")),
            n => (n as u64).min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token).ok_or_else(|| {
                ServiceError::invalid("page_token", "is not a token returned by this API")
            })?)
        };
        Ok(Self { size, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> u64 {
        self.size + 1
    }

    /// Trims the extra row and returns the next page token ("" at the end).
    pub fn finish<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
        if rows.len() as u64 > self.size {
            rows.truncate(self.size as usize);
            let token = rows
                .last()
                .map(|r| encode_token(id_of(r)))
                .unwrap_or_default();
            (rows, token)
        } else {
            (rows, String::new())
        }
    }
}

const TOKEN_PREFIX: &[u8] = b"sp1:";

pub fn encode_token(after: Uuid) -> String {
    let mut bytes = TOKEN_PREFIX.to_vec();
    bytes.extend_from_slice(after.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_token(token: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let rest = bytes.strip_prefix(TOKEN_PREFIX)?;
    Uuid::from_slice(rest).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_and_cap() {
        assert_eq!(PageRequest::parse(0, "").expect("ok").size, 50);
        assert_eq!(PageRequest::parse(5000, "").expect("ok").size, 1000);
        assert!(PageRequest::parse(-1, "").is_err());
        assert!(PageRequest::parse(10, "garbage").is_err());
    }

    #[test]
    fn tokens_resume_after_the_last_row() {
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
        let page = PageRequest::parse(2, "").expect("ok");
        let (rows, token) = page.finish(ids[..3].to_vec(), |u| *u);
        assert_eq!(rows, ids[..2]);
        let next = PageRequest::parse(2, &token).expect("ok");
        assert_eq!(next.after, Some(ids[1]));
        let (_, end) = next.finish(ids[2..3].to_vec(), |u| *u);
        assert!(end.is_empty());
    }
}

//! The PII access log's hash chain: each entry's hash is SHA-256 over the previous entry's
//! hash and the entry's canonical fields, so editing, inserting or deleting any entry breaks
//! every later link, and verification finds the first break.
use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use spharos_kit::{ServiceError, TenantId, Violations};
use uuid::Uuid;

/// The hash before the first entry of a tenant.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub const MAX_FIELDS: usize = 20;
pub const MAX_TEXT_CHARS: usize = 500;

/// How an entry reached the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `privacy.pii_accessed` event.
    Event,
    /// `RecordPiiAccess` or this service itself.
    Direct,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Event => "EVENT",
            Self::Direct => "DIRECT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EVENT" => Some(Self::Event),
            "DIRECT" => Some(Self::Direct),
            _ => None,
        }
    }
}

/// One access, before it has a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub member_id: Uuid,
    pub actor: String,
    pub fields: Vec<String>,
    pub reason: String,
    pub client_address: String,
    pub operation: String,
    pub access_time: DateTime<Utc>,
    pub source: Source,
    pub recorded_by: String,
}

/// An entry as stored: the access, its place and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub id: Uuid,
    pub access: Access,
    pub prev_hash: String,
    pub entry_hash: String,
}

/// A `RecordPiiAccess` request as sent.
#[derive(Debug, Clone, Default)]
pub struct AccessForm {
    pub member_id: String,
    pub actor: String,
    pub fields: Vec<String>,
    pub reason: String,
    pub client_address: String,
    pub operation: String,
    pub access_time: Option<DateTime<Utc>>,
}

impl AccessForm {
    /// Checks every field; `caller` is the token's subject (the default actor and always the
    /// recorder), `now` the default access time.
    pub fn validate(&self, caller: &str, now: DateTime<Utc>) -> Result<Access, ServiceError> {
        let mut v = Violations::new();
        let member_id = Uuid::parse_str(&self.member_id).ok();
        v.check(member_id.is_some(), "member_id", "must be a UUID");
        let fields: Vec<String> = self.fields.iter().map(|f| f.trim().to_string()).collect();
        v.check(
            !fields.is_empty()
                && fields.len() <= MAX_FIELDS
                && fields.iter().all(|f| !f.is_empty() && f.len() <= 50),
            "fields",
            "열람한 항목을 1~20개 입력하세요 (name 1 to 20 fields of at most 50 characters)",
        );
        let reason = self.reason.trim().to_string();
        v.check(
            !reason.is_empty() && reason.chars().count() <= MAX_TEXT_CHARS,
            "reason",
            "열람 사유는 1~500자입니다 (1 to 500 characters)",
        );
        for (name, value) in [
            ("actor", &self.actor),
            ("client_address", &self.client_address),
            ("operation", &self.operation),
        ] {
            v.check(
                value.chars().count() <= MAX_TEXT_CHARS,
                name,
                "500자 이하입니다 (at most 500 characters)",
            );
        }
        if let Some(t) = self.access_time {
            v.check(
                t <= now + chrono::Duration::minutes(5),
                "access_time",
                "미래 시각일 수 없습니다 (must not be in the future)",
            );
        }
        v.finish()?;
        let actor = self.actor.trim();
        Ok(Access {
            member_id: member_id.unwrap_or_default(),
            actor: if actor.is_empty() { caller } else { actor }.to_string(),
            fields,
            reason,
            client_address: self.client_address.trim().to_string(),
            operation: self.operation.trim().to_string(),
            access_time: self.access_time.unwrap_or(now),
            source: Source::Direct,
            recorded_by: caller.to_string(),
        })
    }
}

/// Appends `s` length-prefixed, so no two different field lists encode the same bytes.
fn put(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u64).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The bytes an entry's hash covers: the tenant, its place and every field of the access.
pub fn canonical(tenant: TenantId, seq: i64, id: Uuid, a: &Access) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    put(&mut buf, "spharos.privacy.access_log.v1");
    put(&mut buf, &tenant.to_string());
    put(&mut buf, &seq.to_string());
    put(&mut buf, &id.to_string());
    put(&mut buf, &a.member_id.to_string());
    put(&mut buf, &a.actor);
    put(&mut buf, &a.fields.len().to_string());
    for f in &a.fields {
        put(&mut buf, f);
    }
    put(&mut buf, &a.reason);
    put(&mut buf, &a.client_address);
    put(&mut buf, &a.operation);
    put(
        &mut buf,
        &a.access_time.to_rfc3339_opts(SecondsFormat::Micros, true),
    );
    put(&mut buf, a.source.as_str());
    put(&mut buf, &a.recorded_by);
    buf
}

/// `hex(SHA-256(prev_hash || canonical))`.
pub fn entry_hash(prev_hash: &str, tenant: TenantId, seq: i64, id: Uuid, a: &Access) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(canonical(tenant, seq, id, a));
    hex::encode(h.finalize())
}

/// Seals an access as the entry after (`last_seq`, `last_hash`).
pub fn seal(tenant: TenantId, last_seq: i64, last_hash: &str, id: Uuid, access: Access) -> Entry {
    let seq = last_seq + 1;
    let hash = entry_hash(last_hash, tenant, seq, id, &access);
    Entry {
        seq,
        id,
        access,
        prev_hash: last_hash.to_string(),
        entry_hash: hash,
    }
}

/// Where and how the chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub problem: String,
}

/// Walks a tenant's entries in `seq` order, one at a time (so a long log is checked in pages).
#[derive(Debug)]
pub struct ChainCheck {
    tenant: TenantId,
    next_seq: i64,
    prev_hash: String,
    checked: i64,
}

impl ChainCheck {
    pub fn new(tenant: TenantId) -> Self {
        Self {
            tenant,
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            checked: 0,
        }
    }

    pub fn checked(&self) -> i64 {
        self.checked
    }

    /// Checks the next stored entry.
    pub fn next(&mut self, e: &Entry) -> Result<(), Break> {
        if e.seq != self.next_seq {
            return Err(Break {
                seq: self.next_seq,
                problem: if e.seq > self.next_seq {
                    format!(
                        "기록 {}이(가) 삭제되었습니다 (entry {} is missing)",
                        self.next_seq, self.next_seq
                    )
                } else {
                    format!(
                        "기록 {} 순서가 맞지 않습니다 (entry {} is out of order)",
                        e.seq, e.seq
                    )
                },
            });
        }
        if e.prev_hash != self.prev_hash {
            return Err(Break {
                seq: e.seq,
                problem: format!(
                    "기록 {}의 이전 해시가 맞지 않습니다 (entry {} does not follow entry {})",
                    e.seq,
                    e.seq,
                    e.seq - 1
                ),
            });
        }
        let expected = entry_hash(&self.prev_hash, self.tenant, e.seq, e.id, &e.access);
        if expected != e.entry_hash {
            return Err(Break {
                seq: e.seq,
                problem: format!(
                    "기록 {}이(가) 변경되었습니다 (entry {} was edited)",
                    e.seq, e.seq
                ),
            });
        }
        self.prev_hash = e.entry_hash.clone();
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// Checks the end of the chain against the head (the last sequence and hash recorded
    /// with every append): deleting the newest entries leaves the head pointing past the end.
    pub fn finish(&self, head: Option<(i64, &str)>) -> Result<(), Break> {
        let (last_seq, last_hash) = head.unwrap_or((0, GENESIS_HASH));
        if last_seq != self.next_seq - 1 {
            return Err(Break {
                seq: self.next_seq,
                problem: format!(
                    "기록 {}부터 {}까지 삭제되었습니다 (entries {} to {} are missing)",
                    self.next_seq, last_seq, self.next_seq, last_seq
                ),
            });
        }
        if last_hash != self.prev_hash {
            return Err(Break {
                seq: last_seq,
                problem: format!(
                    "마지막 기록 {}의 해시가 기록과 다릅니다 (entry {} does not match the chain head)",
                    last_seq, last_seq
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(n: u32) -> Access {
        Access {
            member_id: Uuid::now_v7(),
            actor: format!("staff-{n}"),
            fields: vec!["name".into(), "phone".into()],
            reason: "고객 문의".into(),
            client_address: "10.0.0.1:5000".into(),
            operation: "spharos.member.v1.MemberService/GetMember".into(),
            access_time: Utc::now(),
            source: Source::Event,
            recorded_by: "member".into(),
        }
    }

    fn chain(tenant: TenantId, n: u32) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        for i in 0..n {
            let (seq, hash) = out
                .last()
                .map(|e| (e.seq, e.entry_hash.clone()))
                .unwrap_or((0, GENESIS_HASH.to_string()));
            out.push(seal(tenant, seq, &hash, Uuid::now_v7(), access(i)));
        }
        out
    }

    fn verify(
        tenant: TenantId,
        entries: &[Entry],
        head: Option<(i64, &str)>,
    ) -> Result<i64, Break> {
        let mut c = ChainCheck::new(tenant);
        for e in entries {
            c.next(e)?;
        }
        c.finish(head)?;
        Ok(c.checked())
    }

    fn head(entries: &[Entry]) -> Option<(i64, &str)> {
        entries.last().map(|e| (e.seq, e.entry_hash.as_str()))
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let t = TenantId::generate();
        let entries = chain(t, 5);
        assert_eq!(entries[0].prev_hash, GENESIS_HASH);
        assert_eq!(entries[1].prev_hash, entries[0].entry_hash);
        assert_eq!(verify(t, &entries, head(&entries)), Ok(5));
        assert_eq!(verify(t, &[], None), Ok(0));
    }

    #[test]
    fn an_edited_entry_is_found() {
        let t = TenantId::generate();
        let mut entries = chain(t, 5);
        let h = head(&entries).map(|(s, h)| (s, h.to_string()));
        entries[2].access.reason = "다른 사유".into();
        let err =
            verify(t, &entries, h.as_ref().map(|(s, h)| (*s, h.as_str()))).expect_err("edited");
        assert_eq!(err.seq, 3);
        assert!(err.problem.contains("edited"), "{}", err.problem);
    }

    #[test]
    fn a_deleted_entry_is_found_in_the_middle_and_at_the_end() {
        let t = TenantId::generate();
        let entries = chain(t, 5);
        let mut gap = entries.clone();
        gap.remove(1);
        let err = verify(t, &gap, head(&entries)).expect_err("gap");
        assert_eq!(err.seq, 2);
        assert!(err.problem.contains("missing"), "{}", err.problem);

        let truncated = &entries[..3];
        let err = verify(t, truncated, head(&entries)).expect_err("tail deleted");
        assert_eq!(err.seq, 4);
    }

    #[test]
    fn a_rehashed_edit_still_breaks_the_next_link() {
        let t = TenantId::generate();
        let mut entries = chain(t, 4);
        let h = head(&entries).map(|(s, h)| (s, h.to_string()));
        // The forger fixes the edited entry's own hash but cannot fix what follows without
        // rewriting the whole tail and the head.
        entries[1].access.actor = "someone-else".into();
        entries[1].entry_hash = entry_hash(
            &entries[1].prev_hash,
            t,
            2,
            entries[1].id,
            &entries[1].access,
        );
        let err = verify(t, &entries, h.as_ref().map(|(s, h)| (*s, h.as_str())))
            .expect_err("broken link");
        assert_eq!(err.seq, 3);
    }

    #[test]
    fn the_hash_binds_the_tenant_and_field_boundaries() {
        let t = TenantId::generate();
        let id = Uuid::now_v7();
        let a = access(1);
        let h = entry_hash(GENESIS_HASH, t, 1, id, &a);
        assert_ne!(h, entry_hash(GENESIS_HASH, TenantId::generate(), 1, id, &a));
        let mut shifted = a.clone();
        shifted.fields = vec!["namephone".into()];
        assert_ne!(h, entry_hash(GENESIS_HASH, t, 1, id, &shifted));
        assert_eq!(h.len(), 64);
    }

    #[test]
    fn direct_writes_are_validated_and_default_to_the_caller() {
        let now = Utc::now();
        let form = AccessForm {
            member_id: Uuid::now_v7().to_string(),
            fields: vec!["phone".into()],
            reason: "배송 확인".into(),
            ..Default::default()
        };
        let a = form.validate("cs-7", now).expect("valid");
        assert_eq!(a.actor, "cs-7");
        assert_eq!(a.recorded_by, "cs-7");
        assert_eq!(a.access_time, now);
        assert_eq!(a.source, Source::Direct);
        let bad = AccessForm {
            member_id: "x".into(),
            access_time: Some(now + chrono::Duration::hours(1)),
            ..Default::default()
        };
        match bad.validate("cs-7", now) {
            Err(ServiceError::InvalidArgument(v)) => {
                let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(fields, ["member_id", "fields", "reason", "access_time"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

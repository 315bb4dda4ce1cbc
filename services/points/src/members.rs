//! The member service, as the points service sees it: who a member id or card number is,
//! whether they are ACTIVE, their grade and the grade's points rate. The points service owns
//! no member data; it asks `spharos.member.v1.MemberService` over gRPC with the caller's own
//! token and caches the answers briefly. The second prost boundary of this crate (next to
//! `grpc.rs`): member-service types never leave this file.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use spharos_kit::{ServiceError, TenantId};
use spharos_proto::member::{
    self as pb, find_member_request, member_service_client::MemberServiceClient,
};
use tonic::{Code, Status, metadata::MetadataValue, transport::Channel};
use uuid::Uuid;

use crate::domain::forms::MemberKey;

/// How long an answer is reused: a withdrawal or grade change reaches the points service
/// within this time.
pub const MEMBER_CACHE_TTL: Duration = Duration::from_secs(30);
/// Bound on cached entries per map; the map is cleared when it is reached (cheap, and a
/// burst of misses after it is what the TTL costs anyway).
const MAX_CACHE_ENTRIES: usize = 100_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// What the points service needs to know about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberFacts {
    pub id: Uuid,
    pub active: bool,
    pub grade_id: Option<Uuid>,
}

/// The bearer token of the call being served, forwarded to the member service, and who made
/// the call (the token subject, for the ledger's audit columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The `authorization` header value (`Bearer <token>`).
    pub authorization: String,
    pub actor: String,
}

type Entry<T> = (Instant, T);

#[derive(Default)]
struct Cache {
    members: HashMap<(TenantId, Uuid), Entry<MemberFacts>>,
    cards: HashMap<(TenantId, String), Entry<Uuid>>,
    grades: HashMap<TenantId, Entry<Arc<HashMap<Uuid, i32>>>>,
}

fn fresh<K: std::hash::Hash + Eq, T: Clone>(
    map: &HashMap<K, Entry<T>>,
    key: &K,
    ttl: Duration,
) -> Option<T> {
    map.get(key)
        .filter(|(at, _)| at.elapsed() < ttl)
        .map(|(_, v)| v.clone())
}

fn remember<K: std::hash::Hash + Eq, T>(map: &mut HashMap<K, Entry<T>>, key: K, value: T) {
    if map.len() >= MAX_CACHE_ENTRIES {
        map.clear();
    }
    map.insert(key, (Instant::now(), value));
}

/// A client of the member service with a short-lived cache. Cheap to clone.
#[derive(Clone)]
pub struct MemberDirectory {
    client: MemberServiceClient<Channel>,
    cache: Arc<Mutex<Cache>>,
    ttl: Duration,
}

impl std::fmt::Debug for MemberDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberDirectory")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn member_not_found() -> ServiceError {
    ServiceError::not_found("회원을 찾을 수 없습니다 (member not found)")
}

/// The member service's answer as ours: its "not found" and "bad card number" are the
/// caller's problem; an outage is ours to report as UNAVAILABLE.
fn from_status(s: Status, field: &str) -> ServiceError {
    match s.code() {
        Code::NotFound => member_not_found(),
        Code::InvalidArgument => ServiceError::invalid(field, s.message().to_string()),
        Code::Unauthenticated => ServiceError::Unauthenticated(s.message().to_string()),
        Code::PermissionDenied => ServiceError::PermissionDenied(s.message().to_string()),
        _ => ServiceError::Unavailable(format!(
            "회원 서비스에 연결할 수 없습니다 (member service unavailable): {}",
            s.message()
        )),
    }
}

fn facts(m: &pb::Member) -> Result<MemberFacts, ServiceError> {
    let id = Uuid::parse_str(&m.member_id).map_err(|_| {
        ServiceError::internal("the member service returned a member without a valid id")
    })?;
    Ok(MemberFacts {
        id,
        active: m.status == pb::MemberStatus::Active as i32,
        grade_id: Uuid::parse_str(&m.grade_id).ok(),
    })
}

impl MemberDirectory {
    /// A client of the member service at `endpoint` (`http://host:port`). Connects on first
    /// use, so the member module may start after this one.
    pub fn new(endpoint: &str) -> Result<Self, tonic::codegen::http::uri::InvalidUri> {
        let channel = Channel::from_shared(endpoint.to_string())?
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            client: MemberServiceClient::new(channel),
            cache: Arc::default(),
            ttl: MEMBER_CACHE_TTL,
        })
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // Every update is a single insert or clear: the maps stay consistent after a panic.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn request<T>(msg: T, caller: &Caller) -> Result<tonic::Request<T>, ServiceError> {
        let mut r = tonic::Request::new(msg);
        let value = MetadataValue::try_from(caller.authorization.as_str()).map_err(|_| {
            ServiceError::Unauthenticated("authorization must be `Bearer <token>`".into())
        })?;
        r.metadata_mut().insert("authorization", value);
        Ok(r)
    }

    /// Who `key` is, ACTIVE or not (a card number finds only ACTIVE members holding an
    /// ACTIVE card; anyone else is NOT_FOUND).
    pub async fn resolve(
        &self,
        tenant: TenantId,
        key: &MemberKey,
        caller: &Caller,
    ) -> Result<MemberFacts, ServiceError> {
        match key {
            MemberKey::Id(id) => {
                if let Some(f) = fresh(&self.cache().members, &(tenant, *id), self.ttl) {
                    return Ok(f);
                }
                let req = Self::request(
                    pb::GetMemberRequest {
                        member_id: id.to_string(),
                        unmask: None,
                    },
                    caller,
                )?;
                let member = self
                    .client
                    .clone()
                    .get_member(req)
                    .await
                    .map_err(|s| from_status(s, "member.member_id"))?
                    .into_inner()
                    .member
                    .ok_or_else(member_not_found)?;
                let f = facts(&member)?;
                remember(&mut self.cache().members, (tenant, f.id), f);
                Ok(f)
            }
            MemberKey::Card(number) => {
                let known = fresh(&self.cache().cards, &(tenant, number.clone()), self.ttl);
                if let Some(id) = known
                    && let Some(f) = fresh(&self.cache().members, &(tenant, id), self.ttl)
                {
                    return Ok(f);
                }
                let req = Self::request(
                    pb::FindMemberRequest {
                        key: Some(find_member_request::Key::CardNumber(number.clone())),
                        unmask: None,
                    },
                    caller,
                )?;
                let member = self
                    .client
                    .clone()
                    .find_member(req)
                    .await
                    .map_err(|s| from_status(s, "member.card_number"))?
                    .into_inner()
                    .member
                    .ok_or_else(member_not_found)?;
                let f = facts(&member)?;
                let mut cache = self.cache();
                remember(&mut cache.cards, (tenant, number.clone()), f.id);
                remember(&mut cache.members, (tenant, f.id), f);
                Ok(f)
            }
        }
    }

    /// The points rate of a grade in the member service's grade table (`None`: no such grade).
    pub async fn grade_rate(
        &self,
        tenant: TenantId,
        grade: Uuid,
        caller: &Caller,
    ) -> Result<Option<i32>, ServiceError> {
        if let Some(table) = fresh(&self.cache().grades, &tenant, self.ttl) {
            return Ok(table.get(&grade).copied());
        }
        let req = Self::request(pb::ListGradesRequest {}, caller)?;
        let grades = self
            .client
            .clone()
            .list_grades(req)
            .await
            .map_err(|s| from_status(s, "member"))?
            .into_inner()
            .grades;
        let table: HashMap<Uuid, i32> = grades
            .iter()
            .filter_map(|g| {
                Uuid::parse_str(&g.grade_id)
                    .ok()
                    .map(|id| (id, g.points_rate_bp))
            })
            .collect();
        let rate = table.get(&grade).copied();
        remember(&mut self.cache().grades, tenant, Arc::new(table));
        Ok(rate)
    }
}

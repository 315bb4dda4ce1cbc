//! `spawn_app` (zero2prod style): a fresh database and bus per test, the member and points
//! modules served on one random port (the points module reaches the member service through
//! it), tonic clients, token minting, an event tap, and the ledger invariant check that reads
//! the stored rows directly.
pub use spharos_kit::testing::{EventTap, assert_invalid, assert_reason, with_token};
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use spharos_kit::{
    TenantId,
    auth::TokenSigner,
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_points::{
    PERM_POINTS_ADMIN, PointsApp, PointsOptions,
    store::{accounts, lots, movements, transactions},
};
use spharos_proto::{
    common::{MemberRef, member_ref},
    member::{self as mpb, member_service_client::MemberServiceClient},
    points::{self as pb, points_service_client::PointsServiceClient},
};
use tonic::{Request, Status, transport::Channel};
use uuid::Uuid;

pub const POS: &str = "pos-gn001";
pub const ADMIN: &str = "admin-kim";

pub struct TestApp {
    pub points: PointsServiceClient<Channel>,
    pub members: MemberServiceClient<Channel>,
    pub signer: TokenSigner,
    pub tenant: TenantId,
    pub platform: Platform,
    pub app: PointsApp,
    phones: AtomicU32,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops the server, relays, consumers and schedules of this test.
        self.platform.shutdown.cancel();
    }
}

/// A member of the test tenant: id and card number.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: String,
    pub card: String,
}

impl Member {
    pub fn by_id(&self) -> Option<MemberRef> {
        Some(MemberRef {
            r#ref: Some(member_ref::Ref::MemberId(self.id.clone())),
        })
    }

    pub fn by_card(&self) -> Option<MemberRef> {
        Some(MemberRef {
            r#ref: Some(member_ref::Ref::CardNumber(self.card.clone())),
        })
    }

    pub fn uuid(&self) -> Uuid {
        Uuid::parse_str(&self.id).expect("member ids are UUIDs")
    }
}

/// A test app whose expiry schedule stays out of the way (tests run the job themselves, at
/// the instants they choose).
pub async fn spawn_app(backend: TestBackend) -> TestApp {
    spawn_app_with(
        backend,
        PointsOptions {
            expiry_interval: Duration::from_secs(3600),
        },
    )
    .await
}

pub async fn spawn_app_with(backend: TestBackend, options: PointsOptions) -> TestApp {
    let (mut settings, dir) = testing::settings(backend).await;
    // The points module calls the member service at grpc.listen: bind first, so the address
    // is known before the modules are built.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound address");
    settings.grpc.listen = addr.to_string();
    let (platform, signer) = testing::platform(settings).await;
    platform.bus.hold_deliveries();
    let mut routes = tonic::service::RoutesBuilder::default();
    spharos_member::module(&platform, &mut routes)
        .await
        .expect("the member module starts");
    let (_module, app) = spharos_points::module_with(&platform, &mut routes, options)
        .await
        .expect("the points module starts");
    platform.bus.release_deliveries();
    let shutdown = platform.shutdown.clone();
    tokio::spawn(async move {
        spharos_kit::grpc::serve(listener, routes.routes(), shutdown)
            .await
            .expect("the gRPC server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("the client connects");
    TestApp {
        points: PointsServiceClient::new(channel.clone()),
        members: MemberServiceClient::new(channel),
        signer,
        tenant: TenantId::generate(),
        platform,
        app,
        phones: AtomicU32::new(0),
        _dir: dir,
    }
}

pub fn earn_request(m: &Member, pos_tx: &str, amount_krw: i64) -> pb::EarnRequest {
    pb::EarnRequest {
        member: m.by_id(),
        store_code: "GN001".into(),
        pos_transaction_id: pos_tx.into(),
        amount_krw,
        items: vec![],
        occurred_time: None,
        idempotency_key: format!("earn-{pos_tx}"),
    }
}

pub fn spend_request(m: &Member, pos_tx: &str, points: i64) -> pb::SpendRequest {
    pb::SpendRequest {
        member: m.by_id(),
        points,
        store_code: "GN001".into(),
        pos_transaction_id: pos_tx.into(),
        idempotency_key: format!("spend-{pos_tx}"),
    }
}

pub fn cancel_of(transaction_id: &str, key: &str) -> pb::CancelRequest {
    pb::CancelRequest {
        target: Some(pb::cancel_request::Target::TransactionId(
            transaction_id.into(),
        )),
        refund_amount_krw: 0,
        points: 0,
        store_code: String::new(),
        pos_transaction_id: String::new(),
        reason: "고객 환불".into(),
        idempotency_key: key.into(),
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

impl TestApp {
    /// A request of this test's tenant from a till (no permissions).
    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, &[], msg)
    }

    /// A request of this test's tenant from staff holding `points:admin`.
    pub fn admin<T>(&self, msg: T) -> Request<T> {
        let token = self
            .signer
            .mint(self.tenant, ADMIN, &[PERM_POINTS_ADMIN], 600);
        with_token(msg, &token)
    }

    pub fn req_as<T>(&self, tenant: TenantId, perms: &[&str], msg: T) -> Request<T> {
        let token = self.signer.mint(tenant, POS, perms, 600);
        with_token(msg, &token)
    }

    /// Joins a new member of this test's tenant (through the member service).
    pub async fn member(&self) -> Member {
        self.member_of(self.tenant).await
    }

    pub async fn member_of(&self, tenant: TenantId) -> Member {
        let n = self.phones.fetch_add(1, Ordering::Relaxed);
        let r = mpb::JoinMemberRequest {
            name: "홍길동".into(),
            phone: format!("010-{:04}-{:04}", 1000 + n / 10_000, n % 10_000),
            email: String::new(),
            birth_date: String::new(),
            gender: 0,
            join_store_id: String::new(),
            join_channel: 0,
            card_type: 0,
            idempotency_key: String::new(),
            // Fields the member API grows (consents, ...) keep their defaults.
            ..Default::default()
        };
        let joined = self
            .members
            .clone()
            .join_member(self.req_as(tenant, &[], r))
            .await
            .expect("member joined")
            .into_inner();
        Member {
            id: joined.member.expect("member").member_id,
            card: joined.card.expect("card").card_number,
        }
    }

    pub async fn withdraw(&self, m: &Member) {
        self.members
            .clone()
            .withdraw_member(self.req(mpb::WithdrawMemberRequest {
                member_id: m.id.clone(),
                reason: "test".into(),
            }))
            .await
            .expect("withdrawn");
    }

    pub async fn earn(&self, m: &Member, pos_tx: &str, amount_krw: i64) -> pb::EarnResponse {
        self.earn_req(earn_request(m, pos_tx, amount_krw)).await
    }

    pub async fn earn_req(&self, r: pb::EarnRequest) -> pb::EarnResponse {
        self.points
            .clone()
            .earn(self.req(r))
            .await
            .expect("earned")
            .into_inner()
    }

    pub async fn spend(
        &self,
        m: &Member,
        pos_tx: &str,
        points: i64,
    ) -> Result<pb::SpendResponse, Status> {
        self.points
            .clone()
            .spend(self.req(spend_request(m, pos_tx, points)))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn cancel(&self, r: pb::CancelRequest) -> Result<pb::CancelResponse, Status> {
        self.points
            .clone()
            .cancel(self.req(r))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn adjust(
        &self,
        m: &Member,
        points: i64,
        key: &str,
    ) -> Result<pb::AdjustResponse, Status> {
        self.points
            .clone()
            .adjust(self.admin(pb::AdjustRequest {
                member: m.by_id(),
                points,
                reason: "고객 보상".into(),
                idempotency_key: key.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn balance(&self, m: &Member) -> pb::Balance {
        self.points
            .clone()
            .get_balance(self.req(pb::GetBalanceRequest { member: m.by_id() }))
            .await
            .expect("balance")
            .into_inner()
            .balance
            .expect("balance in response")
    }

    /// Changes the policy fields named in `paths` to those of `policy`.
    pub async fn set_policy(&self, paths: &[&str], policy: pb::PointsPolicy) -> pb::PointsPolicy {
        self.points
            .clone()
            .update_points_policy(self.admin(pb::UpdatePointsPolicyRequest {
                policy: Some(policy),
                update_mask: mask(paths),
                expected_version: 0,
            }))
            .await
            .expect("policy updated")
            .into_inner()
            .policy
            .expect("policy in response")
    }

    /// Every ledger entry of a member, oldest first (all pages).
    pub async fn history(&self, m: &Member) -> Vec<pb::Transaction> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .points
                .clone()
                .list_transactions(self.req(pb::ListTransactionsRequest {
                    member: m.by_id(),
                    page_size: 100,
                    page_token: token,
                    types: vec![],
                    start_date: String::new(),
                    end_date: String::new(),
                }))
                .await
                .expect("history")
                .into_inner();
            all.extend(page.transactions);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        all.reverse();
        all
    }

    /// A durable tap on `topics`, subscribed now.
    pub async fn tap(&self, name: &str, topics: &[&str]) -> EventTap {
        EventTap::start(&self.platform, name, topics).await
    }

    /// Checks the stored ledger of a member: account == Σ lots − debt == Σ ledger; every
    /// lot's remaining == Σ its movements and is not negative; every entry's points == Σ its
    /// movements − its debt change; debt only while no lot holds points; nothing restored or
    /// reversed beyond what was spent or earned.
    pub async fn assert_ledger_consistent(&self, member: Uuid) {
        assert_ledger_consistent(self.app.db(), self.tenant, member).await;
    }
}

/// [`TestApp::assert_ledger_consistent`] on any points database (the crash test reads the
/// child process's).
pub async fn assert_ledger_consistent(db: &spharos_kit::db::Db, tenant: TenantId, member: Uuid) {
    let tx = db.begin(tenant).await.expect("tx");
    let account = accounts::get(&tx, tenant, member)
        .await
        .expect("account query");
    let lots = lots::all_of_member(&tx, tenant, member)
        .await
        .expect("lots");
    let entries = transactions::all_of_member(&tx, tenant, member)
        .await
        .expect("ledger");
    let mut per_lot: HashMap<Uuid, i64> = HashMap::new();
    let mut per_entry: HashMap<Uuid, i64> = HashMap::new();
    for e in &entries {
        for m in movements::of_transaction(&tx, tenant, e.id)
            .await
            .expect("movements")
        {
            *per_lot.entry(m.lot_id).or_default() += m.points;
            *per_entry.entry(e.id).or_default() += m.points;
        }
    }
    tx.commit().await.expect("commit");
    let Some(account) = account else {
        assert!(
            entries.is_empty() && lots.is_empty(),
            "ledger rows without an account"
        );
        return;
    };
    assert!(
        account.available >= 0 && account.pending >= 0 && account.debt >= 0,
        "{account:?}"
    );
    let available: i64 = lots
        .iter()
        .filter(|l| !l.pending)
        .map(|l| l.remaining)
        .sum();
    let pending: i64 = lots.iter().filter(|l| l.pending).map(|l| l.remaining).sum();
    assert_eq!(
        (account.available, account.pending),
        (available, pending),
        "account vs lots"
    );
    let ledger: i64 = entries.iter().map(|e| e.points).sum();
    assert_eq!(
        available + pending - account.debt,
        ledger,
        "Σ lots − debt vs Σ ledger"
    );
    if account.debt > 0 {
        assert_eq!(available + pending, 0, "debt next to points");
    }
    for l in &lots {
        assert!(l.remaining >= 0 && l.expired >= 0, "negative lot {l:?}");
        assert_eq!(
            per_lot.get(&l.id).copied().unwrap_or(0),
            l.remaining,
            "lot {} vs its movements",
            l.id
        );
    }
    let mut running = 0;
    for e in &entries {
        assert_eq!(
            per_entry.get(&e.id).copied().unwrap_or(0) - e.debt_delta,
            e.points,
            "entry {} vs its movements",
            e.id
        );
        running += e.points;
        assert_eq!(
            running, e.balance_after,
            "balance_after of {} ({})",
            e.id, e.kind
        );
        if e.kind == "EARN" {
            assert!(e.reversed_points <= e.points && e.refunded_amount_krw <= e.amount_krw);
        }
        if e.kind == "SPEND" {
            assert!(
                e.reversed_points <= -e.points,
                "spend {} restored beyond what it took",
                e.id
            );
        }
    }
}

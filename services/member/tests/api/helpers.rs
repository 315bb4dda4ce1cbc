//! `spawn_app` (zero2prod style): a fresh database and bus per test, the member module served
//! on a random port, a tonic client, token minting, an event tap and assertion helpers.
pub use spharos_kit::testing::{EventTap, assert_invalid, assert_reason, with_token};
use std::time::Duration;

use spharos_kit::{
    TenantId,
    auth::{PERM_PII_UNMASK, TokenSigner},
    bus::Envelope,
    config::Settings,
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_member::MemberApp;
use spharos_proto::member::{self as pb, member_service_client::MemberServiceClient};
use tonic::{Request, transport::Channel};

pub const STAFF: &str = "staff-1";

pub struct TestApp {
    pub client: MemberServiceClient<Channel>,
    pub signer: TokenSigner,
    /// The tenant every `req` speaks for.
    pub tenant: TenantId,
    pub platform: Platform,
    pub app: MemberApp,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops the server, relay, consumer and schedule of this test.
        self.platform.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: TestBackend) -> TestApp {
    let (settings, dir) = testing::settings(backend).await;
    spawn_app_with(settings, dir).await
}

pub async fn spawn_app_with(settings: Settings, dir: tempfile::TempDir) -> TestApp {
    let (platform, signer) = testing::platform(settings).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    let (_module, app) = spharos_member::module(&platform, &mut routes)
        .await
        .expect("the member module starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound address");
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
        client: MemberServiceClient::new(channel),
        signer,
        tenant: TenantId::generate(),
        platform,
        app,

        _dir: dir,
    }
}

impl TestApp {
    /// A request of this test's tenant, staff without PII permission.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, &[], msg)
    }

    /// A request of this test's tenant, staff holding `pii:unmask`.
    pub fn req_unmask<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, &[PERM_PII_UNMASK], msg)
    }

    pub fn req_as<T>(&self, tenant: TenantId, perms: &[&str], msg: T) -> Request<T> {
        let token = self.signer.mint(tenant, STAFF, perms, 600);
        with_token(msg, &token)
    }

    /// A durable tap on `topics`, subscribed now (so it sees everything published after).
    pub async fn tap(&self, name: &str, topics: &[&str]) -> EventTap {
        EventTap::start(&self.platform, name, topics).await
    }

    pub async fn create_store(&self, code: &str) -> pb::Store {
        self.client
            .clone()
            .create_store(self.req(pb::CreateStoreRequest {
                code: code.into(),
                name: format!("{code} 매장"),
                region: "서울".into(),
                trade_area: "강남역".into(),
                status: 0,
            }))
            .await
            .expect("store created")
            .into_inner()
            .store
            .expect("store in response")
    }

    pub async fn join(&self, name: &str, phone: &str) -> pb::JoinMemberResponse {
        self.join_req(join_request(name, phone)).await
    }

    pub async fn join_req(&self, r: pb::JoinMemberRequest) -> pb::JoinMemberResponse {
        self.client
            .clone()
            .join_member(self.req(r))
            .await
            .expect("member joined")
            .into_inner()
    }

    pub async fn get_member(&self, id: &str) -> pb::Member {
        self.client
            .clone()
            .get_member(self.req(pb::GetMemberRequest {
                member_id: id.into(),
                unmask: None,
            }))
            .await
            .expect("member found")
            .into_inner()
            .member
            .expect("member in response")
    }

    /// Sets a BASIC (0) / GOLD (100,000) / VIP (200,000) table.
    pub async fn set_standard_grades(&self) -> Vec<pb::Grade> {
        self.client
            .clone()
            .set_grades(self.req(pb::SetGradesRequest {
                grades: vec![
                    grade("BASIC", 0, 100),
                    grade("GOLD", 100_000, 200),
                    grade("VIP", 200_000, 300),
                ],
            }))
            .await
            .expect("grades set")
            .into_inner()
            .grades
    }

    /// Publishes `points.purchase_recorded` for a member of this tenant, as the points
    /// service would.
    pub async fn publish_purchase(
        &self,
        member_id: &str,
        pos_tx: &str,
        amount_krw: i64,
    ) -> Envelope {
        let env = purchase_envelope(
            self.tenant,
            member_id,
            pos_tx,
            amount_krw,
            chrono::Utc::now(),
        );
        self.platform
            .bus
            .publish_batch(std::slice::from_ref(&env))
            .await
            .expect("published");
        env
    }

    /// Polls GetMember until its grade name is `name`.
    pub async fn wait_for_grade(
        &self,
        member_id: &str,
        name: &str,
        within: Duration,
    ) -> pb::Member {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let m = self.get_member(member_id).await;
            if m.grade_name == name {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member {member_id} did not reach grade {name} within {within:?} (still {:?})",
                m.grade_name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn purchase_envelope(
    tenant: TenantId,
    member_id: &str,
    pos_tx: &str,
    amount_krw: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Envelope {
    let msg = spharos_proto::points::PurchaseRecorded {
        member_id: member_id.into(),
        store_code: "GN001".into(),
        pos_transaction_id: pos_tx.into(),
        amount_krw,
        items: vec![],
        occurred_time: Some(spharos_kit::grpc::timestamp(at)),
    };
    Envelope::new("points", "purchase_recorded", tenant, member_id, &msg)
}

pub fn join_request(name: &str, phone: &str) -> pb::JoinMemberRequest {
    pb::JoinMemberRequest {
        name: name.into(),
        phone: phone.into(),
        email: "hong@example.com".into(),
        birth_date: "1990-05-17".into(),
        gender: pb::Gender::Male.into(),
        join_store_id: String::new(),
        join_channel: spharos_proto::common::JoinChannel::App.into(),
        card_type: 0,
        idempotency_key: String::new(),
        consents: vec![],
    }
}

pub fn grade(name: &str, min: i64, bp: i32) -> pb::Grade {
    pb::Grade {
        grade_id: String::new(),
        name: name.into(),
        min_purchase_krw: min,
        points_rate_bp: bp,
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

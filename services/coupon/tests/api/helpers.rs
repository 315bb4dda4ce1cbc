//! `spawn_app` (zero2prod style): a fresh database and bus per test, the coupon module served
//! on a random port, tonic clients, token minting, member events as the member service would
//! publish them, an event tap and assertion helpers.
pub use spharos_kit::testing::{EventTap, assert_invalid, assert_reason, with_token};
use std::time::Duration;

use chrono::{Duration as Days, Utc};
use spharos_coupon::CouponApp;
use spharos_kit::{
    TenantId,
    auth::TokenSigner,
    bus::Envelope,
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_proto::coupon::{
    self as pb, coupon_service_client::CouponServiceClient, discount, validity,
};
use tonic::{Request, Status, transport::Channel};
use tonic_types::StatusExt;

pub const STAFF: &str = "staff-1";

pub struct TestApp {
    pub client: CouponServiceClient<Channel>,
    /// The server address, for tests that open more channels.
    pub addr: std::net::SocketAddr,
    pub signer: TokenSigner,
    /// The tenant every `req` speaks for.
    pub tenant: TenantId,
    pub platform: Platform,
    pub app: CouponApp,
    pub backend: TestBackend,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops the server, relay, consumer, worker and schedule of this test.
        self.platform.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: TestBackend) -> TestApp {
    let (settings, dir) = testing::settings(backend).await;
    let (platform, signer) = testing::platform(settings).await;
    let mut routes = tonic::service::RoutesBuilder::default();
    let (_module, app) = spharos_coupon::module(&platform, &mut routes)
        .await
        .expect("the coupon module starts");
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
    TestApp {
        client: CouponServiceClient::new(channel(addr).await),
        addr,
        signer,
        tenant: TenantId::generate(),
        platform,
        app,
        backend,
        _dir: dir,
    }
}

pub async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("the client connects")
}

impl TestApp {
    /// A request of this test's tenant.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, msg)
    }

    pub fn req_as<T>(&self, tenant: TenantId, msg: T) -> Request<T> {
        let token = self.signer.mint(tenant, STAFF, &[], 600);
        with_token(msg, &token)
    }

    /// A token of this test's tenant, for many requests.
    pub fn token(&self) -> String {
        self.signer.mint(self.tenant, STAFF, &[], 3600)
    }

    /// A durable tap on `topics`, subscribed now (so it sees everything published after).
    pub async fn tap(&self, name: &str, topics: &[&str]) -> EventTap {
        EventTap::start(&self.platform, name, topics).await
    }

    pub async fn create_template(&self, t: pb::CouponTemplate) -> pb::CouponTemplate {
        self.client
            .clone()
            .create_template(self.req(pb::CreateTemplateRequest {
                template: Some(t),
                idempotency_key: String::new(),
            }))
            .await
            .expect("template created")
            .into_inner()
            .template
            .expect("template in response")
    }

    pub async fn issue(&self, template_id: &str, member_id: &str) -> pb::Coupon {
        self.client
            .clone()
            .issue_coupon(self.req(pb::IssueCouponRequest {
                template_id: template_id.into(),
                member_id: member_id.into(),
                issue_method: 0,
                idempotency_key: String::new(),
            }))
            .await
            .expect("coupon issued")
            .into_inner()
            .coupon
            .expect("coupon in response")
    }

    pub async fn claim(&self, template_id: &str, member_id: &str) -> Result<pb::Coupon, Status> {
        self.client
            .clone()
            .claim_coupon(self.req(pb::ClaimCouponRequest {
                template_id: template_id.into(),
                member_id: member_id.into(),
                idempotency_key: String::new(),
            }))
            .await
            .map(|r| r.into_inner().coupon.expect("coupon in response"))
    }

    pub async fn get_coupon_by_code(&self, code: &str) -> Result<pb::Coupon, Status> {
        self.client
            .clone()
            .get_coupon(self.req(pb::GetCouponRequest {
                key: Some(pb::get_coupon_request::Key::Code(code.into())),
            }))
            .await
            .map(|r| r.into_inner().coupon.expect("coupon in response"))
    }

    pub async fn redeem(
        &self,
        code: &str,
        pos: &str,
        basket: pb::Basket,
    ) -> Result<pb::RedeemCouponResponse, Status> {
        self.client
            .clone()
            .redeem_coupon(self.req(pb::RedeemCouponRequest {
                code: code.into(),
                basket: Some(basket),
                pos_transaction_id: pos.into(),
                member_id: String::new(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn validate(&self, code: &str, basket: pb::Basket) -> pb::ValidateCouponResponse {
        self.client
            .clone()
            .validate_coupon(self.req(pb::ValidateCouponRequest {
                code: code.into(),
                basket: Some(basket),
                member_id: String::new(),
                pos_transaction_id: String::new(),
            }))
            .await
            .expect("validated")
            .into_inner()
    }

    pub async fn wallet(&self, member_id: &str, view: pb::WalletView) -> Vec<pb::Coupon> {
        self.client
            .clone()
            .list_member_coupons(self.req(pb::ListMemberCouponsRequest {
                member_id: member_id.into(),
                view: view.into(),
                page_size: 1000,
                page_token: String::new(),
            }))
            .await
            .expect("wallet listed")
            .into_inner()
            .coupons
    }

    /// Publishes `member.joined` as the member service would.
    pub async fn publish_joined(&self, member_id: &str, birth_month_day: &str) {
        let env = joined_envelope(self.tenant, member_id, birth_month_day);
        self.platform
            .bus
            .publish_batch(&[env])
            .await
            .expect("published");
    }

    pub async fn publish_withdrawn(&self, member_id: &str) {
        let msg = spharos_proto::member::MemberWithdrawn {
            member_id: member_id.into(),
            reason: "test".into(),
            withdraw_time: Some(spharos_kit::grpc::timestamp(Utc::now())),
        };
        let env = Envelope::new("member", "withdrawn", self.tenant, member_id, &msg);
        self.platform
            .bus
            .publish_batch(&[env])
            .await
            .expect("published");
    }

    /// Polls `check` every 50 ms until it holds, for at most 10 s.
    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if check().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn joined_envelope(tenant: TenantId, member_id: &str, birth_month_day: &str) -> Envelope {
    let msg = spharos_proto::member::MemberJoined {
        member_id: member_id.into(),
        join_store_id: String::new(),
        join_channel: spharos_proto::common::JoinChannel::App.into(),
        grade_id: String::new(),
        join_time: Some(spharos_kit::grpc::timestamp(Utc::now())),
        birth_month_day: birth_month_day.into(),
        ..Default::default()
    };
    Envelope::new("member", "joined", tenant, member_id, &msg)
}

pub fn member() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An ACTIVE template: 5,000원 off from 30,000원, 30 days, unlimited, 1 per member, issued
/// by staff and claims, at every store.
pub fn fixed_template(name: &str) -> pb::CouponTemplate {
    pb::CouponTemplate {
        name: name.into(),
        description: "테스트 쿠폰".into(),
        discount: Some(pb::Discount {
            kind: Some(discount::Kind::AmountKrw(5_000)),
        }),
        min_purchase_krw: 30_000,
        validity: Some(days(30)),
        total_quantity: 0,
        per_member_limit: 1,
        issue_methods: vec![pb::IssueMethod::Admin.into(), pb::IssueMethod::Claim.into()],
        stackable: false,
        status: pb::TemplateStatus::Active.into(),
        ..Default::default()
    }
}

pub fn percent(rate_bp: i32, max_discount_krw: i64) -> Option<pb::Discount> {
    Some(pb::Discount {
        kind: Some(discount::Kind::Percent(pb::PercentOff {
            rate_bp,
            max_discount_krw,
        })),
    })
}

pub fn days(n: i32) -> pb::Validity {
    pb::Validity {
        kind: Some(validity::Kind::DaysFromIssue(n)),
    }
}

/// A fixed range from `from` to `to` days from today (Seoul).
pub fn dates(from: i64, to: i64) -> pb::Validity {
    let today = spharos_kit::time::local_date(Utc::now(), spharos_kit::time::DEFAULT_TIME_ZONE);
    pb::Validity {
        kind: Some(validity::Kind::Fixed(pb::DateRange {
            start_date: (today + Days::days(from)).to_string(),
            end_date: (today + Days::days(to)).to_string(),
        })),
    }
}

pub fn basket(amount_krw: i64, store_code: &str) -> pb::Basket {
    pb::Basket {
        amount_krw,
        store_code: store_code.into(),
        items: vec![],
    }
}

pub fn item(category: &str, amount_krw: i64) -> pb::BasketItem {
    pb::BasketItem {
        sku: format!("SKU-{category}"),
        category: category.into(),
        amount_krw,
    }
}

pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

/// The reason of a status's `ErrorInfo` ("" when it has none).
pub fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

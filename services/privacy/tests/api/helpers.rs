//! `spawn_app` (zero2prod style): a fresh database and bus per test, the member, points,
//! coupon and privacy modules served together on a random port (as `spharos serve --target
//! all` does, so the member service's consent check and the privacy service's data-subject
//! calls go over real gRPC to this process), tonic clients, token minting, an event tap and
//! assertion helpers.
pub use spharos_kit::testing::{EventTap, assert_invalid, assert_reason, with_token};
use std::time::Duration;

use spharos_kit::{
    TenantId,
    auth::{PERM_PII_UNMASK, TokenSigner},
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_member::{MemberApp, MemberOptions};
use spharos_privacy::{PERM_PII_ERASE, PrivacyApp};
use spharos_proto::{
    coupon::coupon_service_client::CouponServiceClient,
    member::{self as mpb, member_service_client::MemberServiceClient},
    points::points_service_client::PointsServiceClient,
    privacy::{self as pb, privacy_service_client::PrivacyServiceClient},
};
use tonic::{Code, Request, transport::Channel};

pub const STAFF: &str = "staff-1";

pub struct TestApp {
    pub privacy: PrivacyServiceClient<Channel>,
    pub members: MemberServiceClient<Channel>,
    pub points: PointsServiceClient<Channel>,
    pub coupons: CouponServiceClient<Channel>,
    pub signer: TokenSigner,
    /// The tenant every `req` speaks for.
    pub tenant: TenantId,
    pub platform: Platform,
    pub app: PrivacyApp,
    pub member_app: MemberApp,
    pub backend: TestBackend,
    pub dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops the server, relays, consumers and schedules of this test.
        self.platform.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: TestBackend) -> TestApp {
    let (mut settings, dir) = testing::settings(backend).await;
    // Bound first: the modules reach each other at `grpc.listen`, as in `--target all`.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound address");
    settings.grpc.listen = addr.to_string();
    let (platform, signer) = testing::platform(settings).await;
    platform.bus.hold_deliveries();
    let mut routes = tonic::service::RoutesBuilder::default();
    let (_member, member_app) = spharos_member::module_with(
        &platform,
        &mut routes,
        MemberOptions::with_privacy_in_process(&platform),
    )
    .await
    .expect("the member module starts");
    // The other services that hold member data, so data-subject requests visit them all.
    spharos_points::module(&platform, &mut routes)
        .await
        .expect("the points module starts");
    spharos_coupon::module(&platform, &mut routes)
        .await
        .expect("the coupon module starts");
    let (_privacy, app) = spharos_privacy::module(&platform, &mut routes)
        .await
        .expect("the privacy module starts");
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
        privacy: PrivacyServiceClient::new(channel.clone())
            .max_decoding_message_size(32 * 1024 * 1024)
            .max_encoding_message_size(32 * 1024 * 1024),
        members: MemberServiceClient::new(channel.clone()),
        points: PointsServiceClient::new(channel.clone()),
        coupons: CouponServiceClient::new(channel),
        signer,
        tenant: TenantId::generate(),
        platform,
        app,
        member_app,
        backend,
        dir,
    }
}

impl TestApp {
    /// A request of this test's tenant, staff without PII permissions.
    pub fn req<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, &[], msg)
    }

    /// A request of this test's tenant, staff holding `pii:unmask` and `pii:erase` (a privacy
    /// officer).
    pub fn req_officer<T>(&self, msg: T) -> Request<T> {
        self.req_as(self.tenant, &[PERM_PII_UNMASK, PERM_PII_ERASE], msg)
    }

    pub fn req_as<T>(&self, tenant: TenantId, perms: &[&str], msg: T) -> Request<T> {
        let token = self.signer.mint(tenant, STAFF, perms, 600);
        with_token(msg, &token)
    }

    /// A durable tap on `topics`, subscribed now (so it sees everything published after).
    pub async fn tap(&self, name: &str, topics: &[&str]) -> EventTap {
        EventTap::start(&self.platform, name, topics).await
    }

    /// Creates a consent type (group SIGNUP unless given otherwise).
    pub async fn consent_type(&self, r: pb::CreateConsentTypeRequest) -> pb::ConsentType {
        self.privacy
            .clone()
            .create_consent_type(self.req(r))
            .await
            .expect("consent type created")
            .into_inner()
            .consent_type
            .expect("consent type in response")
    }

    /// The usual set: A0001 (required), A0009 (SMS advertising), A0010 (e-mail advertising)
    /// and N0001 (night-time advertising, every channel).
    pub async fn standard_consent_types(&self) {
        self.consent_type(required("A0001")).await;
        self.consent_type(advertising("A0009", pb::MarketingChannel::Sms))
            .await;
        self.consent_type(advertising("A0010", pb::MarketingChannel::Email))
            .await;
        self.consent_type(pb::CreateConsentTypeRequest {
            night_time: true,
            ..advertising("N0001", pb::MarketingChannel::Unspecified)
        })
        .await;
    }

    /// Signs a member up with these consent answers; returns the member id.
    pub async fn join(&self, phone: &str, consents: &[(&str, bool)]) -> String {
        let r = join_request(phone, consents);
        self.members
            .clone()
            .join_member(self.req(r))
            .await
            .expect("member joined")
            .into_inner()
            .member
            .expect("member")
            .member_id
    }

    /// Waits until the privacy service knows the member (its `member.joined` was consumed)
    /// and returns its consents.
    pub async fn wait_for_member(&self, member_id: &str) -> Vec<pb::MemberConsent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self
                .privacy
                .clone()
                .get_member_consents(self.req(pb::GetMemberConsentsRequest {
                    member_id: member_id.into(),
                }))
                .await;
            match r {
                Ok(r) => return r.into_inner().consents,
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => panic!("GetMemberConsents failed: {s:?}"),
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "member.joined of {member_id} not consumed within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Joins a member and waits until the privacy service recorded the sign-up.
    pub async fn joined(&self, phone: &str, consents: &[(&str, bool)]) -> String {
        let id = self.join(phone, consents).await;
        self.wait_for_member(&id).await;
        id
    }

    pub async fn grant(&self, member_id: &str, code: &str) -> pb::MemberConsent {
        self.privacy
            .clone()
            .grant_consent(self.req(pb::GrantConsentRequest {
                member_id: member_id.into(),
                consent_type_code: code.into(),
                collection_channel: spharos_proto::common::JoinChannel::App.into(),
            }))
            .await
            .expect("granted")
            .into_inner()
            .consent
            .expect("consent")
    }

    pub async fn withdraw(&self, member_id: &str, code: &str) -> pb::MemberConsent {
        self.privacy
            .clone()
            .withdraw_consent(self.req(pb::WithdrawConsentRequest {
                member_id: member_id.into(),
                consent_type_code: code.into(),
                collection_channel: spharos_proto::common::JoinChannel::Web.into(),
            }))
            .await
            .expect("withdrawn")
            .into_inner()
            .consent
            .expect("consent")
    }

    /// Which of `members` may receive an advertisement on `channel` at `at`, by the bulk RPC.
    pub async fn may_receive(
        &self,
        channel: spharos_proto::common::Channel,
        at: chrono::DateTime<chrono::Utc>,
        members: &[&str],
    ) -> Vec<bool> {
        let packed: Vec<u8> = members
            .iter()
            .flat_map(|m| *uuid::Uuid::parse_str(m).expect("uuid").as_bytes())
            .collect();
        let r = self
            .privacy
            .clone()
            .filter_advertising_recipients(self.req(pb::FilterAdvertisingRecipientsRequest {
                channel: channel.into(),
                send_time: Some(spharos_kit::grpc::timestamp(at)),
                member_ids_packed: packed,
            }))
            .await
            .expect("bulk query")
            .into_inner();
        let bits = bits(&r.allowed_bitmap, members.len());
        assert_eq!(
            r.allowed_count,
            bits.iter().filter(|b| **b).count() as i64,
            "allowed_count matches the bitmap"
        );
        bits
    }

    /// The member's PII as GetMember shows it unmasked.
    pub async fn member_unmasked(&self, member_id: &str) -> mpb::Member {
        self.members
            .clone()
            .get_member(self.req_officer(mpb::GetMemberRequest {
                member_id: member_id.into(),
                unmask: Some(mpb::Unmask {
                    reason: "정보주체 요구 확인".into(),
                }),
            }))
            .await
            .expect("member")
            .into_inner()
            .member
            .expect("member")
    }

    /// Polls `f` until it returns `Some`, for up to 10 s.
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f().await {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Bits of a bitmap, least significant first.
pub fn bits(bitmap: &[u8], n: usize) -> Vec<bool> {
    (0..n)
        .map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0)
        .collect()
}

pub fn required(code: &str) -> pb::CreateConsentTypeRequest {
    pb::CreateConsentTypeRequest {
        code: code.into(),
        title: "개인정보 수집·이용 동의 (필수)".into(),
        purpose: "회원 관리, 포인트 적립".into(),
        required: true,
        group: pb::ConsentGroup::Signup.into(),
        ..Default::default()
    }
}

pub fn advertising(code: &str, channel: pb::MarketingChannel) -> pb::CreateConsentTypeRequest {
    pb::CreateConsentTypeRequest {
        code: code.into(),
        title: "광고성 정보 수신 동의 (선택)".into(),
        purpose: "이벤트·혜택 안내".into(),
        required: false,
        group: pb::ConsentGroup::Signup.into(),
        advertising: true,
        channel: channel.into(),
        ..Default::default()
    }
}

pub fn join_request(phone: &str, consents: &[(&str, bool)]) -> mpb::JoinMemberRequest {
    mpb::JoinMemberRequest {
        name: "홍길동".into(),
        phone: phone.into(),
        email: "hong@example.com".into(),
        birth_date: "1990-05-17".into(),
        join_channel: spharos_proto::common::JoinChannel::App.into(),
        consents: consents
            .iter()
            .map(|(code, granted)| mpb::SignupConsent {
                consent_type_code: (*code).into(),
                granted: *granted,
            })
            .collect(),
        ..Default::default()
    }
}

/// A time in the tenant zone (Asia/Seoul) on 2026-12-10.
pub fn kst(hour: u32, minute: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    spharos_kit::time::DEFAULT_TIME_ZONE
        .with_ymd_and_hms(2026, 12, 10, hour, minute, 0)
        .single()
        .expect("valid time")
        .with_timezone(&chrono::Utc)
}

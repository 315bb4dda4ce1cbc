//! `spawn_app` (zero2prod style): a fresh database and bus per test, the billing module (and,
//! when asked, the member module) served on a random port, a clock the test moves, token
//! minting for platform admins and tenants, event publishing as other services would, an event
//! tap and assertion helpers.
pub use spharos_kit::testing::{EventTap, assert_invalid, assert_reason, with_token};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, TimeZone, Utc};
use spharos_billing::{BillingApp, BillingCatalogue, BillingOptions, Clock, PERM_PLATFORM_ADMIN};
use spharos_kit::{
    TenantId,
    auth::TokenSigner,
    bus::{Bus, Envelope},
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_proto::{
    billing::{self as pb, billing_service_client::BillingServiceClient},
    common::Channel,
    member::member_service_client::MemberServiceClient,
};
use tonic::{Request, transport::Channel as GrpcChannel};

/// A clock the test sets; billing reads it for "today".
#[derive(Clone)]
pub struct TestClock(Arc<Mutex<DateTime<Utc>>>);

impl TestClock {
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = at;
    }
}

/// `y-m-d h:00` in Seoul, as UTC.
pub fn kst(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Seoul
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("a valid Seoul time")
        .with_timezone(&Utc)
}

pub struct TestApp {
    pub client: BillingServiceClient<GrpcChannel>,
    pub member: MemberServiceClient<GrpcChannel>,
    pub signer: TokenSigner,
    pub platform: Platform,
    pub app: BillingApp,
    pub clock: TestClock,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stops the server, relays, consumers and jobs of this test.
        self.platform.shutdown.cancel();
    }
}

/// What a test changes from the production defaults.
pub struct Spawn {
    pub catalogue: BillingCatalogue,
    /// Also serve the member module on the same server.
    pub with_member: bool,
    pub now: DateTime<Utc>,
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            catalogue: BillingCatalogue::default(),
            with_member: false,
            now: Utc::now(),
        }
    }
}

pub async fn spawn_app(backend: TestBackend) -> TestApp {
    spawn_app_with(backend, Spawn::default()).await
}

pub async fn spawn_app_with(backend: TestBackend, spawn: Spawn) -> TestApp {
    let (settings, dir) = testing::settings(backend).await;
    let (platform, signer) = testing::platform(settings).await;
    // In-process deliveries wait until every module subscribed, as in `spharos serve`.
    platform.bus.hold_deliveries();
    let clock = TestClock(Arc::new(Mutex::new(spawn.now)));
    let reading = clock.clone();
    let options = BillingOptions {
        catalogue: spawn.catalogue,
        clock: Clock::from_fn(move || *reading.0.lock().expect("clock lock")),
        // Tests run the month close by hand.
        close_interval: Duration::from_secs(24 * 3600),
    };
    let mut routes = tonic::service::RoutesBuilder::default();
    if spawn.with_member {
        spharos_member::module(&platform, &mut routes)
            .await
            .expect("the member module starts");
    }
    let (_module, app) = spharos_billing::module_with(&platform, &mut routes, options)
        .await
        .expect("the billing module starts");
    platform.bus.release_deliveries();
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
    let channel = GrpcChannel::from_shared(format!("http://{addr}"))
        .expect("valid uri")
        .connect()
        .await
        .expect("the client connects");
    TestApp {
        client: BillingServiceClient::new(channel.clone()),
        member: MemberServiceClient::new(channel),
        signer,
        platform,
        app,
        clock,
        _dir: dir,
    }
}

/// A business registration number built from nine digits, its check digit computed here by
/// the published rule (weights 1,3,7,1,3,7,1,3,5 plus floor(d9 × 5 / 10)).
pub fn brn(nine: &str) -> String {
    let d: Vec<u32> = nine.bytes().map(|b| u32::from(b - b'0')).collect();
    let weights = [1, 3, 7, 1, 3, 7, 1, 3, 5];
    let sum: u32 = d.iter().zip(weights).map(|(x, w)| x * w).sum::<u32>() + d[8] * 5 / 10;
    let check = (10 - sum % 10) % 10;
    format!("{}-{}-{}{check}", &nine[..3], &nine[3..5], &nine[5..])
}

impl TestApp {
    /// A request of the platform team (its own tenant, holding `platform:admin`).
    pub fn admin<T>(&self, msg: T) -> Request<T> {
        let token = self.signer.mint(
            TenantId::generate(),
            "platform-ops",
            &[PERM_PLATFORM_ADMIN],
            600,
        );
        with_token(msg, &token)
    }

    /// A request of `tenant`'s staff, without platform permission.
    pub fn as_tenant<T>(&self, tenant: &str, msg: T) -> Request<T> {
        let tenant: TenantId = tenant.parse().expect("a tenant id");
        with_token(msg, &self.signer.mint(tenant, "staff-1", &[], 600))
    }

    pub fn create_request(name: &str) -> pb::CreateTenantRequest {
        pb::CreateTenantRequest {
            tenant_id: String::new(),
            name: name.into(),
            business_registration_number: brn("220810123"),
            contact_name: "김담당".into(),
            contact_email: "ops@merchant.example".into(),
            contact_phone: "02-555-0100".into(),
            time_zone: String::new(),
        }
    }

    pub async fn create_tenant(&self, name: &str) -> pb::Tenant {
        self.client
            .clone()
            .create_tenant(self.admin(Self::create_request(name)))
            .await
            .expect("tenant created")
            .into_inner()
            .tenant
            .expect("tenant in response")
    }

    pub async fn subscribe(
        &self,
        tenant: &str,
        plan: pb::Plan,
        fees: &[(pb::Module, i64)],
    ) -> pb::Subscription {
        self.client
            .clone()
            .subscribe(self.admin(pb::SubscribeRequest {
                tenant_id: tenant.into(),
                plan: plan.into(),
                module_fees: module_fees(fees),
            }))
            .await
            .expect("subscribed")
            .into_inner()
            .subscription
            .expect("subscription in response")
    }

    pub async fn get_tenant(&self, tenant: &str) -> pb::GetTenantResponse {
        self.client
            .clone()
            .get_tenant(self.admin(pb::GetTenantRequest {
                tenant_id: tenant.into(),
            }))
            .await
            .expect("tenant found")
            .into_inner()
    }

    pub async fn close_month(&self, tenant: &str, month: &str) -> pb::CloseMonthResponse {
        self.client
            .clone()
            .close_month(self.admin(pb::CloseMonthRequest {
                tenant_id: tenant.into(),
                year_month: month.into(),
            }))
            .await
            .expect("month closed")
            .into_inner()
    }

    /// Publishes events as their owning service's relay would.
    pub async fn publish(&self, events: &[Envelope]) {
        self.platform
            .bus
            .publish_batch(events)
            .await
            .expect("published");
    }

    /// Delivers `event` again as a redelivery after JetStream's de-duplication window would:
    /// same CloudEvent id, new `Nats-Msg-Id` on NATS; the same envelope again in-process.
    pub async fn replay(&self, event: &Envelope) {
        match &self.platform.bus {
            Bus::InProcess(_) => self.publish(std::slice::from_ref(event)).await,
            Bus::Nats(_) => {
                let url = self.platform.settings.nats.url.clone().expect("a NATS url");
                let client = async_nats::connect(url).await.expect("NATS connects");
                let js = async_nats::jetstream::new(client);
                let mut h = async_nats::HeaderMap::new();
                h.insert("ce-specversion", "1.0");
                h.insert("ce-id", event.id.to_string().as_str());
                h.insert("ce-source", format!("/spharos/{}", event.service).as_str());
                h.insert("ce-type", event.ce_type().as_str());
                h.insert(
                    "ce-time",
                    event
                        .time
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                        .as_str(),
                );
                h.insert("ce-subject", event.subject_id.as_str());
                h.insert("ce-tenantid", event.tenant.to_string().as_str());
                h.insert("content-type", "application/protobuf");
                h.insert("Nats-Msg-Id", uuid::Uuid::now_v7().to_string().as_str());
                let subject = format!("{}.{}", self.platform.bus.namespace(), event.topic());
                js.publish_with_headers(subject, h, event.payload.clone().into())
                    .await
                    .expect("publish accepted")
                    .await
                    .expect("publish acknowledged");
            }
        }
    }

    /// GetUsage totals of `[from, to]` for `tenant`, polled until `channel` reaches `count`
    /// (10 s).
    pub async fn wait_for_usage(
        &self,
        tenant: &str,
        from: &str,
        to: &str,
        channel: Channel,
        count: i64,
    ) -> pb::GetUsageResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let u = self
                .client
                .clone()
                .get_usage(self.as_tenant(
                    tenant,
                    pb::GetUsageRequest {
                        tenant_id: String::new(),
                        from_date: from.into(),
                        to_date: to.into(),
                    },
                ))
                .await
                .expect("usage read")
                .into_inner();
            let seen = total(&u, channel);
            if seen >= count {
                return u;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel:?} usage of {tenant} stayed at {seen}, expected {count}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GetTenant polled until `done` holds for its status (10 s).
    pub async fn wait_for_status(
        &self,
        tenant: &str,
        what: &str,
        done: impl Fn(&pb::TenantStatus) -> bool,
    ) -> pb::TenantStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.get_tenant(tenant).await.status.expect("status");
            if done(&s) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} not reached within 10 s: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A durable tap on `topics`, subscribed now (so it sees everything published after).
    pub async fn tap(&self, name: &str, topics: &[&str]) -> EventTap {
        EventTap::start(&self.platform, name, topics).await
    }
}

pub fn module_fees(fees: &[(pb::Module, i64)]) -> Vec<pb::ModuleFee> {
    fees.iter()
        .map(|(m, f)| pb::ModuleFee {
            module: (*m).into(),
            monthly_fee_krw: *f,
        })
        .collect()
}

pub fn total(u: &pb::GetUsageResponse, channel: Channel) -> i64 {
    u.totals
        .iter()
        .filter(|t| t.channel == i32::from(channel))
        .map(|t| t.message_count)
        .sum()
}

/// `campaign.message.sent` of `count` messages, as the campaign service publishes it.
pub fn message_sent(
    tenant: &str,
    channel: Channel,
    count: i32,
    sent_time: DateTime<Utc>,
) -> Envelope {
    let msg = spharos_proto::campaign::MessageSent {
        campaign_id: uuid::Uuid::now_v7().to_string(),
        member_id: uuid::Uuid::now_v7().to_string(),
        channel: channel.into(),
        message_count: count,
        sent_time: Some(spharos_kit::grpc::timestamp(sent_time)),
    };
    let tenant: TenantId = tenant.parse().expect("tenant id");
    Envelope::new(
        "campaign",
        "message.sent",
        tenant,
        msg.campaign_id.clone(),
        &msg,
    )
}

/// `member.store_created` / `member.store_updated`, as the member service publishes it.
pub fn store_event(tenant: &str, event: &str, store_id: &str, open: bool) -> Envelope {
    let msg = spharos_proto::member::StoreChanged {
        store_id: store_id.into(),
        code: "S".into(),
        open,
    };
    let tenant: TenantId = tenant.parse().expect("tenant id");
    Envelope::new("member", event, tenant, store_id, &msg)
}

/// `member.joined`, as the member service publishes it.
pub fn member_joined(tenant: &str) -> Envelope {
    let id = uuid::Uuid::now_v7().to_string();
    let msg = spharos_proto::member::MemberJoined {
        member_id: id.clone(),
        ..Default::default()
    };
    let tenant: TenantId = tenant.parse().expect("tenant id");
    Envelope::new("member", "joined", tenant, id, &msg)
}

/// `member.withdrawn` of a member that joined with `joined`.
pub fn member_withdrawn(joined: &Envelope) -> Envelope {
    let msg = spharos_proto::member::MemberWithdrawn {
        member_id: joined.subject_id.clone(),
        ..Default::default()
    };
    Envelope::new(
        "member",
        "withdrawn",
        joined.tenant,
        joined.subject_id.clone(),
        &msg,
    )
}

//! Test fixtures, after controller-rs `fixtures.rs`: chainable tenant builders over the
//! shipped example manifests, file snapshots, an `ApiServerVerifier` over
//! `tower_test::mock::pair` that asserts every request the reconciler makes, and a real billing
//! service served in-process (as `services/billing/tests/api/helpers.rs` starts it).
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::{path::PathBuf, sync::Arc, time::Duration};

use http::{Method, Request, Response};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{Client, Resource, ResourceExt, client::Body};
use serde_json::{Value, json};
use spharos_billing::{BillingCatalogue, BillingOptions, PERM_PLATFORM_ADMIN};
use spharos_kit::{
    TenantId,
    auth::{AuthError, TokenSigner},
    platform::Platform,
    testing::{self, TestBackend},
};
use spharos_operator::{
    Context,
    billing::Billing,
    crd::{FINALIZER, MembershipTenant, MembershipTenantStatus},
    desired::OperatorConfig,
    keys::{self, PlatformPublicKey},
    metrics::Metrics,
};
use spharos_proto::billing::{self as pb, billing_service_client::BillingServiceClient};
use tonic::transport::Channel;
use tower_test::mock::{Handle, SendResponse};

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A shipped example manifest (`k8s-operator/examples/<name>.yaml`).
pub fn example(name: &str) -> MembershipTenant {
    let path = crate_dir().join("examples").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).expect("example readable");
    serde_yaml::from_str(&text).expect("example is a valid MembershipTenant")
}

/// The small merchant (basic, shared), as the apiserver would hand it over: uid, generation.
pub fn small_merchant() -> MembershipTenant {
    example("small-merchant").stored()
}

/// The large franchise (custom, dedicated, microservices).
pub fn large_franchise() -> MembershipTenant {
    example("large-franchise").stored()
}

/// Builders in the controller-rs style: `small_merchant().finalized().deleting()`.
pub trait TenantExt: Sized {
    fn stored(self) -> Self;
    fn finalized(self) -> Self;
    fn deleting(self) -> Self;
    fn with_status(self, status: MembershipTenantStatus) -> Self;
    fn with_tenant_id(self, id: &str) -> Self;
}

impl TenantExt for MembershipTenant {
    fn stored(mut self) -> Self {
        self.meta_mut().uid = Some("5f0c7a52-8f3b-4a55-9d1e-0c0ffee00001".into());
        self.meta_mut().generation = Some(1);
        self
    }
    fn finalized(mut self) -> Self {
        self.finalizers_mut().push(FINALIZER.to_string());
        self
    }
    fn deleting(mut self) -> Self {
        self.meta_mut().deletion_timestamp = Some(Time(
            Timestamp::from_second(1_800_000_000).expect("valid time"),
        ));
        self
    }
    fn with_status(mut self, status: MembershipTenantStatus) -> Self {
        self.status = Some(status);
        self
    }
    fn with_tenant_id(mut self, id: &str) -> Self {
        let mut s = self.status.clone().unwrap_or_default();
        s.tenant_id = Some(id.into());
        self.status = Some(s);
        self
    }
}

/// The platform's signing key of the snapshot tests (fixed, so snapshots are stable).
pub fn fixed_platform_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// A dedicated tenant's signing key as the operator would generate it, but fixed (PKCS#8 PEM).
pub fn fixed_tenant_signing_key_pem() -> String {
    keys::signing_key_pem(&ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
}

/// The operator as the chart deploys it: the defaults plus the platform's public key.
pub fn operator_config_trusting(platform: &PlatformPublicKey) -> OperatorConfig {
    OperatorConfig {
        platform_public_key: Some(platform.clone()),
        ..OperatorConfig::default()
    }
}

/// [`operator_config_trusting`] the fixed platform key.
pub fn operator_config() -> OperatorConfig {
    operator_config_trusting(&PlatformPublicKey::from_key(
        &fixed_platform_key().verifying_key(),
    ))
}

/// Compares `actual` with `tests/snapshots/<name>.yaml`. `SPHAROS_UPDATE_SNAPSHOTS=1` rewrites
/// the file; a missing snapshot fails (so CI never passes on a snapshot nobody reviewed).
pub fn assert_snapshot(name: &str, actual: &str) {
    let path = crate_dir()
        .join("tests/snapshots")
        .join(format!("{name}.yaml"));
    if std::env::var("SPHAROS_UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("snapshot dir");
        std::fs::write(&path, actual).expect("snapshot written");
        // Update mode never passes: a rewritten snapshot has to be reviewed, then the suite
        // rerun without the variable to compare.
        panic!(
            "snapshot {} rewritten; review it and rerun without SPHAROS_UPDATE_SNAPSHOTS",
            path.display()
        );
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "snapshot {} is missing; run with SPHAROS_UPDATE_SNAPSHOTS=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  - {e}\n  + {a}", i + 1))
            .collect();
        panic!(
            "snapshot {name} differs ({} vs {} lines); first differences:\n{}\n\
             rerun with SPHAROS_UPDATE_SNAPSHOTS=1 if the change is intended",
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

// ---- the mocked API server --------------------------------------------------------------

type ApiServerHandle = Handle<Request<Body>, Response<Body>>;

/// One request the reconciler made.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// Asserts each request in order and answers it as the apiserver would.
pub struct ApiServerVerifier {
    handle: ApiServerHandle,
    pub seen: Vec<Seen>,
}

pub const TENANTS: &str = "/apis/membership.spharos.io/v1alpha1/namespaces";

fn respond(send: SendResponse<Response<Body>>, status: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .expect("response"),
    );
}

impl ApiServerVerifier {
    async fn next(&mut self, method: Method, path: &str) -> (Seen, SendResponse<Response<Body>>) {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(20), self.handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("no request within 20 s; expected {method} {path}"))
                .unwrap_or_else(|| panic!("the client went away; expected {method} {path}"));
        let seen_method = request.method().clone();
        let uri = request.uri().clone();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let seen = Seen {
            method: seen_method,
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            body,
        };
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request {} {}?{} (after {:?})",
            seen.method,
            seen.path,
            seen.query,
            self.seen
                .iter()
                .map(|s| format!("{} {}", s.method, s.path))
                .collect::<Vec<_>>()
        );
        self.seen.push(seen.clone());
        (seen, send)
    }

    /// Answers with `body` and status `status`.
    pub async fn reply(&mut self, method: Method, path: &str, status: u16, body: Value) -> Seen {
        let (seen, send) = self.next(method, path).await;
        respond(send, status, &body);
        seen
    }

    /// Answers with the request's own body (a create that the apiserver accepted).
    pub async fn echo(&mut self, method: Method, path: &str, status: u16) -> Seen {
        let (seen, send) = self.next(method, path).await;
        let body = seen.body.clone();
        respond(send, status, &body);
        seen
    }

    /// A `GET` of something that does not exist.
    pub async fn not_found(&mut self, path: &str) -> Seen {
        self.reply(
            Method::GET,
            path,
            404,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "not found", "reason": "NotFound", "code": 404,
            }),
        )
        .await
    }

    /// A server-side apply (`PATCH ?fieldManager=spharos-operator&force=true`), answered
    /// with the applied object.
    pub async fn apply(&mut self, path: &str) -> Seen {
        let (seen, send) = self.next(Method::PATCH, path).await;
        assert!(
            seen.query.contains("fieldManager=spharos-operator")
                && seen.query.contains("force=true"),
            "{path} was not a forced server-side apply: {}",
            seen.query
        );
        let body = seen.body.clone();
        respond(send, 200, &body);
        seen
    }

    /// A status apply of `tenant`, answered with the tenant carrying that status.
    pub async fn status_apply(&mut self, tenant: &MembershipTenant) -> MembershipTenantStatus {
        let path = format!(
            "{TENANTS}/{}/membershiptenants/{}/status",
            tenant.namespace().expect("namespaced"),
            tenant.name_any()
        );
        let (seen, send) = self.next(Method::PATCH, &path).await;
        assert!(seen.query.contains("fieldManager=spharos-operator"));
        let status: MembershipTenantStatus =
            serde_json::from_value(seen.body["status"].clone()).expect("a valid status");
        let mut answered = tenant.clone();
        answered.status = Some(status.clone());
        respond(send, 200, &serde_json::to_value(&answered).expect("json"));
        status
    }

    /// An Event about the tenant with `reason`; returns its note.
    pub async fn event(&mut self, namespace: &str, reason: &str) -> String {
        let path = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let (seen, send) = self.next(Method::POST, &path).await;
        assert_eq!(
            seen.body["reason"].as_str(),
            Some(reason),
            "event {:?}: {}",
            seen.body["reason"],
            seen.body["note"]
        );
        let body = seen.body.clone();
        respond(send, 201, &body);
        body["note"].as_str().unwrap_or_default().to_string()
    }

    /// The finalizer's JSON patch (add or remove), answered with `answer`.
    pub async fn finalizer_patch(
        &mut self,
        tenant: &MembershipTenant,
        answer: &MembershipTenant,
    ) -> Value {
        let path = format!(
            "{TENANTS}/{}/membershiptenants/{}",
            tenant.namespace().expect("namespaced"),
            tenant.name_any()
        );
        let (seen, send) = self.next(Method::PATCH, &path).await;
        respond(send, 200, &serde_json::to_value(answer).expect("json"));
        seen.body
    }

    /// Asserts the reconciler made no further request.
    pub async fn done(mut self) -> Vec<Seen> {
        match tokio::time::timeout(Duration::from_millis(300), self.handle.next_request()).await {
            Ok(Some((r, _))) => panic!("unexpected extra request {} {}", r.method(), r.uri()),
            Ok(None) | Err(_) => self.seen,
        }
    }
}

// ---- a real billing service -------------------------------------------------------------

/// Billing served in-process on a free port, on SQLite with the in-process bus.
pub struct BillingServer {
    pub endpoint: String,
    pub client: BillingServiceClient<Channel>,
    pub admin_token: String,
    pub signer: TokenSigner,
    pub platform: Platform,
    _dir: tempfile::TempDir,
}

impl Drop for BillingServer {
    fn drop(&mut self) {
        self.platform.shutdown.cancel();
    }
}

/// Starts billing with the default catalogue, as `spawn_app` does.
pub async fn spawn_billing() -> BillingServer {
    spawn_billing_with(BillingCatalogue::default()).await
}

/// Starts billing with `catalogue` (e.g. low Basic limits to reach them with a few events).
pub async fn spawn_billing_with(catalogue: BillingCatalogue) -> BillingServer {
    let (settings, dir) = testing::settings(TestBackend::Sqlite).await;
    let (platform, signer) = testing::platform(settings).await;
    platform.bus.hold_deliveries();
    let mut routes = tonic::service::RoutesBuilder::default();
    let options = BillingOptions {
        catalogue,
        ..BillingOptions::default()
    };
    let (_module, _app) = spharos_billing::module_with(&platform, &mut routes, options)
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
    let endpoint = format!("http://{addr}");
    let channel = Channel::from_shared(endpoint.clone())
        .expect("valid uri")
        .connect()
        .await
        .expect("the client connects");
    let admin_token = signer.mint(
        TenantId::generate(),
        "spharos-operator",
        &[PERM_PLATFORM_ADMIN],
        600,
    );
    BillingServer {
        endpoint,
        client: BillingServiceClient::new(channel),
        admin_token,
        signer,
        platform,
        _dir: dir,
    }
}

impl BillingServer {
    fn admin<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.admin_token)
                .parse()
                .expect("ascii"),
        );
        r
    }

    /// `GetTenant` as the platform.
    pub async fn get_tenant(&self, tenant_id: &str) -> pb::GetTenantResponse {
        self.client
            .clone()
            .get_tenant(self.admin(pb::GetTenantRequest {
                tenant_id: tenant_id.into(),
            }))
            .await
            .expect("tenant found")
            .into_inner()
    }

    /// `IssueToken` as the platform (the platform's default lifetime).
    pub async fn issue_token(&self, tenant_id: &str, subject: &str) -> pb::IssueTokenResponse {
        self.client
            .clone()
            .issue_token(self.admin(pb::IssueTokenRequest {
                tenant_id: tenant_id.into(),
                subject: subject.into(),
                permissions: Vec::new(),
                ttl_seconds: 0,
            }))
            .await
            .expect("token issued")
            .into_inner()
    }

    /// `RevokeToken` as the platform.
    pub async fn revoke_token(&self, tenant_id: &str, token_id: &str) -> pb::ApiToken {
        self.client
            .clone()
            .revoke_token(self.admin(pb::RevokeTokenRequest {
                tenant_id: tenant_id.into(),
                token_id: token_id.into(),
            }))
            .await
            .expect("token revoked")
            .into_inner()
            .token
            .expect("token")
    }

    /// Every token billing recorded for the tenant (`ListTokens`, first page of 1,000).
    pub async fn list_tokens(&self, tenant_id: &str) -> Vec<pb::ApiToken> {
        let r = self
            .client
            .clone()
            .list_tokens(self.admin(pb::ListTokensRequest {
                tenant_id: tenant_id.into(),
                page_size: 1000,
                page_token: String::new(),
            }))
            .await
            .expect("tokens listed")
            .into_inner();
        assert!(r.next_page_token.is_empty(), "more than one page of tokens");
        r.tokens
    }

    /// Polls the platform's verifier (kit's revocation list, fed by `billing.token_revoked`
    /// through the bus) until it refuses `token` (10 s); returns why.
    pub async fn wait_until_refused(&self, token: &str) -> AuthError {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.platform.verifier.verify(token) {
                Err(e) => return e,
                Ok(p) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "token {} of {} still accepted after 10 s",
                    p.token_id,
                    p.subject
                ),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `GetTenant` until `done` holds (10 s): metering is event-driven.
    pub async fn wait_for(
        &self,
        tenant_id: &str,
        what: &str,
        done: impl Fn(&pb::GetTenantResponse) -> bool,
    ) -> pb::GetTenantResponse {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.get_tenant(tenant_id).await;
            if done(&t) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} not reached within 10 s: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A reconciler context over the mocked API server and the real billing, the operator
/// configured with billing's public key (as the chart's `keys.publicKey` gives it).
pub async fn context(billing: &BillingServer) -> (Arc<Context>, ApiServerVerifier) {
    let platform = PlatformPublicKey::from_pem(&billing.signer.public_key_pem())
        .expect("billing's public key parses");
    context_with(billing, operator_config_trusting(&platform)).await
}

/// A reconciler context with `config`.
pub async fn context_with(
    billing: &BillingServer,
    config: OperatorConfig,
) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let channel = Channel::from_shared(billing.endpoint.clone())
        .expect("valid uri")
        .connect()
        .await
        .expect("billing reachable");
    let ctx = Context::new(
        client,
        Billing::new(channel, billing.admin_token.clone()),
        config,
        Metrics::default(),
    );
    (
        Arc::new(ctx),
        ApiServerVerifier {
            handle,
            seen: Vec::new(),
        },
    )
}

/// A kube client over the mocked API server, without billing (leader election tests).
pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        Client::new(service, "default"),
        ApiServerVerifier {
            handle,
            seen: Vec::new(),
        },
    )
}

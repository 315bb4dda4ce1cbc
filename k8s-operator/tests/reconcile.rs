//! `reconcile` against a mocked API server (every Kubernetes request asserted in order, the
//! controller-rs `ApiServerVerifier` pattern) and a REAL billing service in-process on a free
//! port: create, update (plan change), plan violation (declared and metered), dedicated
//! provisioning, finalizer deletion (billing cancelled and exported, the API tokens revoked in
//! billing and refused by kit's verifier, re-runs idempotent), and a failure counted by the
//! error policy.
mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use common::{
    ApiServerVerifier, BillingServer, Seen, TenantExt, context, context_with, large_franchise,
    small_merchant, spawn_billing, spawn_billing_with,
};
use http::Method;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{ResourceExt, api::ObjectMeta, runtime::controller::Action};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use spharos_billing::BillingCatalogue;
use spharos_kit::{
    TenantId,
    auth::{TokenSigner, TokenVerifier},
    bus::Envelope,
};
use spharos_operator::{
    Context, Error,
    controller::error_policy,
    crd::{FINALIZER, MembershipTenant, ModuleName, ModuleSpec, Phase, Placement, Plan},
    desired::OperatorConfig,
    metrics::{self, Metrics},
    reconcile,
};
use spharos_proto::billing as pb;

/// Runs `reconcile` while `script` plays the apiserver; both must finish.
async fn run<F>(
    tenant: MembershipTenant,
    ctx: Arc<Context>,
    api: ApiServerVerifier,
    script: impl FnOnce(ApiServerVerifier) -> F,
) -> (Result<Action, Error>, F::Output)
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let server = tokio::spawn(script(api));
    let result = tokio::time::timeout(Duration::from_secs(30), reconcile(Arc::new(tenant), ctx))
        .await
        .expect("reconcile finishes");
    let out = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the apiserver script finishes")
        .expect("the apiserver script passed");
    (result, out)
}

fn secret_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/secrets/{name}")
}

fn condition<'a>(
    s: &'a spharos_operator::MembershipTenantStatus,
    type_: &str,
) -> &'a spharos_operator::crd::Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("{type_} missing"))
}

/// What the first reconcile of a shared tenant did.
struct Created {
    tenant: MembershipTenant,
    token: String,
}

/// The first reconcile of a new shared tenant: id written to the status first, registered and
/// subscribed in billing, token issued into its Secret, status applied. `condition_events` are
/// the Events expected after `TokenIssued`.
async fn create_shared(
    billing: &BillingServer,
    tenant: MembershipTenant,
    condition_events: &'static [&'static str],
) -> Created {
    let (ctx, api) = context(billing).await;
    let t = tenant.clone();
    let (result, (status, token, seen)) =
        run(tenant.clone(), ctx, api, move |mut api| async move {
            let ns = t.namespace().expect("namespaced");
            // 1. The new tenant id goes to the status before billing hears of it.
            let first = api.status_apply(&t).await;
            let id = first.tenant_id.clone().expect("tenant id assigned");
            assert_eq!(first.phase, Some(Phase::Provisioning));
            // 2. Billing calls, each followed by its Event.
            api.event(&ns, "TenantRegistered").await;
            api.event(&ns, "Subscribed").await;
            // 3. No token Secret yet: one is issued and applied.
            let name = format!("{}-spharos-api", t.name_any());
            api.not_found(&secret_path(&ns, &name)).await;
            let secret = api.apply(&secret_path(&ns, &name)).await;
            let token = secret.body["stringData"]["token"]
                .as_str()
                .expect("token")
                .to_string();
            assert_eq!(secret.body["stringData"]["tenantId"], id.as_str());
            api.event(&ns, "TokenIssued").await;
            for reason in condition_events {
                api.event(&ns, reason).await;
            }
            let status = api.status_apply(&t).await;
            assert_eq!(status.tenant_id.as_deref(), Some(id.as_str()));
            (status, token, api.done().await)
        })
        .await;
    let action = result.expect("reconcile succeeds");
    assert_ne!(action, Action::await_change(), "a tenant is resynced");
    assert!(seen.len() >= 7);
    Created {
        tenant: tenant.with_status(status),
        token,
    }
}

#[tokio::test]
async fn a_new_tenant_gets_the_finalizer_first() {
    let billing = spawn_billing().await;
    let (ctx, api) = context(&billing).await;
    let tenant = small_merchant();
    let t = tenant.clone();
    let (result, body) = run(tenant, ctx, api, move |mut api| async move {
        let body = api.finalizer_patch(&t, &t.clone().finalized()).await;
        api.done().await;
        body
    })
    .await;
    assert_eq!(result.expect("reconcile"), Action::await_change());
    assert_eq!(
        body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    );
}

#[tokio::test]
async fn create_registers_subscribes_and_writes_a_working_token() {
    let billing = spawn_billing().await;
    let created = create_shared(
        &billing,
        small_merchant().finalized(),
        &["Provisioned", "Ready"],
    )
    .await;
    let status = created.tenant.status.clone().expect("status");
    assert_eq!(status.phase, Some(Phase::Ready));
    assert_eq!(status.placement, Some(Placement::Shared));
    for c in ["Ready", "Provisioned", "BillingActive", "PlanCompliant"] {
        assert_eq!(condition(&status, c).status, "True", "{c}: {status:?}");
    }
    assert_eq!(status.observed_generation, Some(1));
    let id = status.tenant_id.clone().expect("id");
    // Billing really has the tenant, on the Basic plan.
    let t = billing.get_tenant(&id).await;
    let registered = t.tenant.expect("tenant");
    assert_eq!(registered.name, "한빛베이커리");
    assert_eq!(registered.business_registration_number, "220-81-01238");
    let sub = t.subscription.expect("subscription");
    assert_eq!(sub.plan(), pb::Plan::Basic);
    assert_eq!(sub.status(), pb::SubscriptionStatus::Active);
    // The token in the Secret is a real tenant token of that tenant.
    let principal = billing
        .platform
        .verifier
        .verify(&created.token)
        .expect("the issued token verifies");
    assert_eq!(principal.tenant.to_string(), id);
    assert!(
        principal
            .subject
            .starts_with("operator/merchants/hanbit-bakery")
    );
}

#[tokio::test]
async fn update_follows_a_plan_change_in_billing() {
    let billing = spawn_billing().await;
    let created = create_shared(
        &billing,
        small_merchant().finalized(),
        &["Provisioned", "Ready"],
    )
    .await;
    let id = created
        .tenant
        .status
        .as_ref()
        .and_then(|s| s.tenant_id.clone())
        .expect("id");
    // The merchant grows: custom plan, staying on the shared deployment.
    let mut upgraded = created.tenant.clone();
    upgraded.metadata.generation = Some(2);
    upgraded.spec.plan = Plan::Custom;
    upgraded.spec.placement = Some(Placement::Shared);
    upgraded.spec.expected_members = 450_000;
    upgraded.spec.modules = vec![
        ModuleSpec {
            name: ModuleName::Membership,
            monthly_fee_krw: 1_200_000,
        },
        ModuleSpec {
            name: ModuleName::Campaign,
            monthly_fee_krw: 400_000,
        },
    ];
    let (ctx, api) = context(&billing).await;
    let t = upgraded.clone();
    let (result, status) = run(upgraded, ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        let note = api.event(&ns, "PlanChanged").await;
        assert!(note.contains("from basic to custom"), "{note}");
        // The token Secret exists: it is left alone, no token is issued again.
        let name = format!("{}-spharos-api", t.name_any());
        let existing = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        };
        api.reply(
            Method::GET,
            &secret_path(&ns, &name),
            200,
            serde_json::to_value(&existing).expect("json"),
        )
        .await;
        // Every condition stayed True: no condition Events.
        let status = api.status_apply(&t).await;
        api.done().await;
        status
    })
    .await;
    result.expect("reconcile succeeds");
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.phase, Some(Phase::Ready));
    assert!(
        condition(&status, "BillingActive")
            .message
            .contains("custom")
    );
    // Billing follows, effective today.
    let sub = billing
        .get_tenant(&id)
        .await
        .subscription
        .expect("subscription");
    assert_eq!(sub.plan(), pb::Plan::Custom);
    let mut fees: Vec<(i32, i64)> = sub
        .module_fees
        .iter()
        .map(|f| (f.module, f.monthly_fee_krw))
        .collect();
    fees.sort();
    assert_eq!(
        fees,
        [
            (pb::Module::Membership as i32, 1_200_000),
            (pb::Module::Campaign as i32, 400_000)
        ]
    );
    // The new plan's limits apply: 450,000 members is compliant on custom.
    assert_eq!(condition(&status, "PlanCompliant").status, "True");
}

#[tokio::test]
async fn basic_tenant_declaring_300k_members_is_flagged() {
    let billing = spawn_billing().await;
    let mut tenant = small_merchant().finalized();
    tenant.spec.expected_members = 300_000;
    let created = create_shared(&billing, tenant, &["Provisioned", "PlanViolation"]).await;
    let status = created.tenant.status.expect("status");
    let c = condition(&status, "PlanCompliant");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BasicMemberLimitDeclared")
    );
    assert!(c.message.contains("300000"), "{}", c.message);
    assert_eq!(condition(&status, "Ready").status, "False");
    assert_eq!(status.phase, Some(Phase::Degraded));
    // Still registered and billed: a violation is reported, not enforced by deprovisioning.
    assert_eq!(condition(&status, "BillingActive").status, "True");
}

#[tokio::test]
async fn basic_tenant_that_billing_meters_over_its_limit_is_flagged() {
    // A catalogue whose Basic plan ends at 2 stores, so two store events cross it.
    let billing = spawn_billing_with(BillingCatalogue {
        basic_store_limit: 2,
        ..BillingCatalogue::default()
    })
    .await;
    let mut tenant = small_merchant().finalized();
    tenant.spec.expected_stores = 1;
    let created = create_shared(&billing, tenant, &["Provisioned", "Ready"]).await;
    let id = created
        .tenant
        .status
        .as_ref()
        .and_then(|s| s.tenant_id.clone())
        .expect("id");
    // The member service reports two open stores.
    let tenant_id: TenantId = id.parse().expect("uuid");
    let events: Vec<Envelope> = (0..2)
        .map(|i| {
            let store = uuid::Uuid::now_v7().to_string();
            let msg = spharos_proto::member::StoreChanged {
                store_id: store.clone(),
                code: format!("S{i}"),
                open: true,
            };
            Envelope::new("member", "store_created", tenant_id, store, &msg)
        })
        .collect();
    billing
        .platform
        .bus
        .publish_batch(&events)
        .await
        .expect("published");
    billing
        .wait_for(&id, "billing sees the store limit", |t| {
            t.status.as_ref().is_some_and(|s| !s.plan_compliant)
        })
        .await;

    let (ctx, api) = context(&billing).await;
    let t = created.tenant.clone();
    let (result, status) = run(created.tenant, ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        let name = format!("{}-spharos-api", t.name_any());
        let existing = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": name, "namespace": ns },
        });
        api.reply(Method::GET, &secret_path(&ns, &name), 200, existing)
            .await;
        let note = api.event(&ns, "PlanViolation").await;
        assert!(!note.is_empty());
        let status = api.status_apply(&t).await;
        api.done().await;
        status
    })
    .await;
    result.expect("reconcile succeeds");
    let c = condition(&status, "PlanCompliant");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "BasicStoreLimitReached")
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
}

/// The apiserver's side of a dedicated tenant's first reconcile; `trusted`: the operator has
/// the platform public key. Returns the status and every applied object, in order.
async fn first_dedicated_reconcile(
    mut api: ApiServerVerifier,
    t: MembershipTenant,
    trusted: bool,
) -> (spharos_operator::MembershipTenantStatus, Vec<Seen>) {
    let ns = t.namespace().expect("namespaced");
    let ded = "spharos-franchises-daehan-coffee";
    api.status_apply(&t).await;
    api.event(&ns, "TenantRegistered").await;
    api.event(&ns, "Subscribed").await;
    let token = format!("{}-spharos-api", t.name_any());
    api.not_found(&secret_path(&ns, &token)).await;
    // CloudNativePG is not installed here: the existing database secret is used.
    api.not_found(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.postgresql.cnpg.io",
    )
    .await;
    let db = Secret {
        metadata: ObjectMeta {
            name: Some("daehan-coffee-db".into()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "url".to_string(),
            ByteString(b"postgres://daehan:pw@db.example:5432/daehan".to_vec()),
        )])),
        ..Secret::default()
    };
    api.reply(
        Method::GET,
        &secret_path(&ns, "daehan-coffee-db"),
        200,
        serde_json::to_value(&db).expect("json"),
    )
    .await;
    // The messaging credentials are copied into the dedicated namespace.
    let messaging = Secret {
        metadata: ObjectMeta {
            name: Some("daehan-coffee-messaging".into()),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "sms-api-key".to_string(),
            ByteString(b"k-123".to_vec()),
        )])),
        ..Secret::default()
    };
    api.reply(
        Method::GET,
        &secret_path(&ns, "daehan-coffee-messaging"),
        200,
        serde_json::to_value(&messaging).expect("json"),
    )
    .await;
    // No master key and no signing key yet: both are generated.
    api.not_found(&secret_path(ded, "spharos-master-key")).await;
    api.not_found(&secret_path(ded, "spharos-signing-key"))
        .await;
    let mut paths = vec![
        secret_path(&ns, &token),
        format!("/api/v1/namespaces/{ded}"),
        secret_path(ded, "spharos-master-key"),
        secret_path(ded, "spharos-signing-key"),
    ];
    if trusted {
        paths.push(format!(
            "/api/v1/namespaces/{ded}/configmaps/spharos-trusted-keys"
        ));
    }
    paths.extend([
        secret_path(ded, "spharos-database"),
        secret_path(ded, "spharos-messaging"),
        format!("/api/v1/namespaces/{ded}/configmaps/spharos-config"),
    ]);
    for svc in ["member", "points", "coupon", "privacy"] {
        paths.push(format!(
            "/apis/apps/v1/namespaces/{ded}/deployments/spharos-{svc}"
        ));
        paths.push(format!("/api/v1/namespaces/{ded}/services/spharos-{svc}"));
        paths.push(format!(
            "/apis/policy/v1/namespaces/{ded}/poddisruptionbudgets/spharos-{svc}"
        ));
        paths.push(format!(
            "/apis/autoscaling/v2/namespaces/{ded}/horizontalpodautoscalers/spharos-{svc}"
        ));
    }
    paths.push(format!(
        "/apis/networking.k8s.io/v1/namespaces/{ded}/networkpolicies/spharos-isolate"
    ));
    let mut applied = Vec::new();
    for p in &paths {
        applied.push(api.apply(p).await);
    }
    api.event(&ns, "TokenIssued").await;
    if trusted {
        api.event(&ns, "Provisioned").await;
        api.event(&ns, "Ready").await;
    } else {
        // A Warning Event with the condition's reason and message.
        let note = api.event(&ns, "PlatformPublicKeyMissing").await;
        assert!(note.contains("will not verify"), "{note}");
    }
    let status = api.status_apply(&t).await;
    api.done().await;
    (status, applied)
}

#[tokio::test]
async fn dedicated_tenant_is_provisioned_by_server_side_apply() {
    let billing = spawn_billing().await;
    let tenant = large_franchise().finalized();
    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (result, (status, applied)) = run(tenant, ctx, api, move |api| {
        first_dedicated_reconcile(api, t, true)
    })
    .await;
    result.expect("reconcile succeeds");
    assert_eq!(status.phase, Some(Phase::Ready));
    assert_eq!(status.placement, Some(Placement::Dedicated));
    // The database URL and the messaging credentials were copied into the namespace.
    let key = applied[2].body["stringData"]["master.key"]
        .as_str()
        .expect("master key");
    assert!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(
        applied[5].body["stringData"]["url"],
        "postgres://daehan:pw@db.example:5432/daehan"
    );
    assert_eq!(applied[6].body["stringData"]["sms-api-key"], "k-123");
    // The tenant's signing key is a key kit signs with, and its pods trust it.
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = applied[3].body["stringData"]["signing.pem"]
        .as_str()
        .expect("signing key");
    std::fs::write(dir.path().join("signing.pem"), pem).expect("written");
    let tenant_signer = TokenSigner::load_or_create(&dir.path().join("signing.pem"), false)
        .expect("a PKCS#8 Ed25519 signing key");
    let config = &applied[7].body["data"];
    assert_eq!(
        config["SPHAROS__AUTH__SIGNING_KEY_FILE"],
        "/etc/spharos/signing/signing.pem"
    );
    assert_eq!(
        config["SPHAROS__AUTH__PUBLIC_KEY_FILES"],
        "/etc/spharos/trusted/platform.pem"
    );
    // The token billing issued into the Secret verifies with the public key the dedicated
    // pods are given (billing's own), next to the tenant's key.
    std::fs::write(
        dir.path().join("platform.pem"),
        applied[4].body["data"]["platform.pem"]
            .as_str()
            .expect("platform key"),
    )
    .expect("written");
    let platform = TokenVerifier::public_key_from_pem_file(&dir.path().join("platform.pem"))
        .expect("an SPKI public key");
    let verifier = TokenVerifier::new([tenant_signer.public_key(), platform]);
    let token = applied[0].body["stringData"]["token"]
        .as_str()
        .expect("token");
    let principal = verifier.verify(token).expect("billing's token verifies");
    assert_eq!(Some(principal.tenant.to_string()), status.tenant_id.clone());
    // Every pod mounts both.
    for a in &applied[8..] {
        if a.body["kind"] != "Deployment" {
            continue;
        }
        let volumes = a.body["spec"]["template"]["spec"]["volumes"].to_string();
        assert!(
            volumes.contains("spharos-signing-key") && volumes.contains("spharos-trusted-keys"),
            "{volumes}"
        );
    }
    assert_eq!(
        status.workloads,
        [
            "spharos-member",
            "spharos-points",
            "spharos-coupon",
            "spharos-privacy"
        ]
    );
    let id = status.tenant_id.expect("id");
    let sub = billing
        .get_tenant(&id)
        .await
        .subscription
        .expect("subscription");
    assert_eq!(sub.plan(), pb::Plan::Custom);
    assert_eq!(sub.module_fees.len(), 3);
}

#[tokio::test]
async fn a_dedicated_tenant_without_the_platform_key_is_told_why_tokens_fail() {
    let billing = spawn_billing().await;
    let tenant = large_franchise().finalized();
    let (ctx, api) = context_with(&billing, OperatorConfig::default()).await;
    let t = tenant.clone();
    let (result, (status, applied)) = run(tenant, ctx, api, move |api| {
        first_dedicated_reconcile(api, t, false)
    })
    .await;
    // Not an error: everything is applied and retried on the slower, unprovisioned cadence.
    assert_eq!(
        result.expect("reconcile succeeds"),
        Action::requeue(Duration::from_secs(60))
    );
    let c = condition(&status, "Provisioned");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "PlatformPublicKeyMissing")
    );
    assert_eq!(status.phase, Some(Phase::Provisioning));
    let config = applied
        .iter()
        .find(|a| a.path.ends_with("/configmaps/spharos-config"))
        .expect("config");
    assert!(config.body["data"]["SPHAROS__AUTH__PUBLIC_KEY_FILES"].is_null());
    assert!(config.body["data"]["SPHAROS__AUTH__SIGNING_KEY_FILE"].is_string());
}

/// The apiserver's side of a shared tenant's cleanup: `cancelled` when billing still has a
/// live subscription. Returns the exported ConfigMap and the two step notes.
async fn shared_cleanup(
    mut api: ApiServerVerifier,
    t: MembershipTenant,
    cancelled: bool,
) -> (Seen, String, String, Value) {
    let ns = t.namespace().expect("namespaced");
    let plan = api.event(&ns, "Deprovisioning").await;
    assert!(
        plan.contains("4 steps: CancelSubscription, ExportBilling, RevokeTokens, RetainSharedData"),
        "{plan}"
    );
    if cancelled {
        api.event(&ns, "SubscriptionCancelled").await;
    }
    let export = api
        .apply(&format!(
            "/api/v1/namespaces/{ns}/configmaps/hanbit-bakery-retention-export"
        ))
        .await;
    api.event(&ns, "RetentionExported").await;
    let revoked = api.event(&ns, "TokensRevoked").await;
    let retained = api.event(&ns, "SharedDataRetained").await;
    api.event(&ns, "Deprovisioned").await;
    // Only now the finalizer is removed.
    let mut gone = t.clone();
    gone.finalizers_mut().clear();
    let removal = api.finalizer_patch(&t, &gone).await;
    api.done().await;
    (export, revoked, retained, removal)
}

#[tokio::test]
async fn deletion_cancels_billing_exports_and_revokes_the_tokens_before_the_finalizer_goes() {
    let billing = spawn_billing().await;
    let created = create_shared(
        &billing,
        small_merchant().finalized(),
        &["Provisioned", "Ready"],
    )
    .await;
    let id = created
        .tenant
        .status
        .as_ref()
        .and_then(|s| s.tenant_id.clone())
        .expect("id");
    // Besides the operator's token in the Secret: a POS token, and one revoked by hand before.
    let pos = billing.issue_token(&id, "pos-gangnam-01").await;
    let old = billing.issue_token(&id, "pos-retired").await;
    let old_id = old.token.expect("token").token_id;
    let old_revoked = billing.revoke_token(&id, &old_id).await.revoke_time;
    assert!(billing.platform.verifier.verify(&created.token).is_ok());
    assert!(billing.platform.verifier.verify(&pos.secret).is_ok());

    let deleting = created.tenant.clone().deleting();
    let (ctx, api) = context(&billing).await;
    let t = deleting.clone();
    let (result, (export, revoked, retained, removal)) =
        run(deleting.clone(), ctx, api, move |api| {
            shared_cleanup(api, t, true)
        })
        .await;
    assert_eq!(result.expect("cleanup succeeds"), Action::await_change());
    assert_eq!(
        removal,
        json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
            { "op": "remove", "path": "/metadata/finalizers/0" },
        ])
    );
    // The export is billing's real CSV, kept outside the tenant's ownership, with a README of
    // what else is kept: the shared data, under the tenant id.
    let data = &export.body["data"];
    assert!(
        data["invoices.csv"]
            .as_str()
            .is_some_and(|c| c.contains("invoice_id")),
        "{data}"
    );
    assert!(data["invoice-lines.csv"].is_string());
    let readme = data["README.txt"].as_str().expect("README.txt");
    assert!(
        readme.contains(&format!("under tenant id {id}"))
            && readme.contains("privacy service's erasure"),
        "{readme}"
    );
    assert!(export.body["metadata"]["ownerReferences"].is_null());
    // Billing has the subscription cancelled.
    let sub = billing
        .get_tenant(&id)
        .await
        .subscription
        .expect("subscription");
    assert_eq!(sub.status(), pb::SubscriptionStatus::Cancelled);
    // The two live tokens were revoked; the one revoked by hand was left as it was.
    assert!(revoked.contains("(2 API tokens revoked;"), "{revoked}");
    let tokens = billing.list_tokens(&id).await;
    assert_eq!(tokens.len(), 3, "{tokens:?}");
    assert!(tokens.iter().all(|t| t.revoke_time.is_some()), "{tokens:?}");
    let old = tokens.iter().find(|t| t.token_id == old_id).expect("old");
    assert_eq!(old.revoke_time, old_revoked);
    // And kit's revocation check refuses them: the Secret's token and the POS token alike.
    for token in [&created.token, &pos.secret] {
        assert_eq!(
            billing.wait_until_refused(token).await,
            spharos_kit::auth::AuthError::Revoked
        );
    }
    // The data is not dropped, and the Event says where it is and how it is removed.
    assert!(retained.starts_with("공유 배포의"), "{retained}");
    assert!(
        retained.contains(&format!("under tenant id {id}")),
        "{retained}"
    );

    // The same cleanup again (the finalizer patch was lost, say): every step is done already,
    // so it succeeds without cancelling or revoking anything a second time.
    let (ctx, api) = context(&billing).await;
    let t = deleting.clone();
    let (result, (_, revoked, _, _)) =
        run(deleting, ctx, api, move |api| shared_cleanup(api, t, false)).await;
    assert_eq!(result.expect("a re-run succeeds"), Action::await_change());
    assert!(revoked.contains("(0 API tokens revoked;"), "{revoked}");
    let again = billing.list_tokens(&id).await;
    assert_eq!(again, tokens, "a re-run changes no token");
}

#[tokio::test]
async fn deleting_a_tenant_billing_never_heard_of_releases_it() {
    let billing = spawn_billing().await;
    // The status has an id, but billing never registered it (the first reconcile failed).
    let id = uuid::Uuid::now_v7().to_string();
    let tenant = small_merchant().finalized().with_tenant_id(&id).deleting();
    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (result, retained) = run(tenant, ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        api.event(&ns, "Deprovisioning").await;
        // Nothing to cancel, export or revoke: no Event for those steps.
        let retained = api.event(&ns, "SharedDataRetained").await;
        api.event(&ns, "Deprovisioned").await;
        let mut gone = t.clone();
        gone.finalizers_mut().clear();
        api.finalizer_patch(&t, &gone).await;
        api.done().await;
        retained
    })
    .await;
    assert_eq!(result.expect("cleanup succeeds"), Action::await_change());
    assert!(retained.contains(&id), "{retained}");
}

#[tokio::test]
async fn a_failed_reconcile_is_counted_by_the_error_policy() {
    let billing = spawn_billing().await;
    let mut registry = Registry::default();
    let metrics = Metrics::default().register(&mut registry);
    let (ctx, api) = context(&billing).await;
    let ctx = Arc::new(Context {
        metrics: metrics.clone(),
        ..(*ctx).clone()
    });
    // A business number whose check digit is wrong: billing refuses to register it.
    let mut tenant = small_merchant().finalized();
    tenant.spec.business_number = "220-81-01230".into();
    let t = tenant.clone();
    let (result, ()) = run(
        tenant.clone(),
        ctx.clone(),
        api,
        move |mut api| async move {
            api.status_apply(&t).await;
            api.done().await;
        },
    )
    .await;
    let err = result.expect_err("billing refuses the tenant");
    assert!(err.to_string().contains("CreateTenant"), "{err}");
    let action = error_policy(Arc::new(tenant), &err, ctx);
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    let text = metrics::encode(&Arc::new(registry)).expect("metrics encode");
    assert!(
        text.contains(
            "spharos_operator_reconciliation_errors_total{instance=\"merchants/hanbit-bakery\",error=\"apply_billing_CreateTenant_InvalidArgument\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("spharos_operator_reconciliations_total 1"),
        "{text}"
    );
}

#[tokio::test]
async fn dedicated_deletion_waits_for_the_database_backup_before_removing_anything() {
    let billing = spawn_billing().await;
    // The franchise was provisioned earlier: registered and subscribed under this id.
    let id = uuid::Uuid::now_v7().to_string();
    let tenant = large_franchise().finalized().with_tenant_id(&id).deleting();
    let mut client = billing.client.clone();
    let admin = |msg| {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", billing.admin_token)
                .parse()
                .expect("ascii"),
        );
        r
    };
    client
        .create_tenant(admin(pb::CreateTenantRequest {
            tenant_id: id.clone(),
            name: tenant.spec.display_name.clone(),
            business_registration_number: tenant.spec.business_number.clone(),
            contact_name: tenant.spec.contact.name.clone(),
            contact_email: tenant.spec.contact.email.clone(),
            contact_phone: String::new(),
            time_zone: String::new(),
        }))
        .await
        .expect("registered");
    let mut sub = tonic::Request::new(pb::SubscribeRequest {
        tenant_id: id.clone(),
        plan: pb::Plan::Custom.into(),
        module_fees: vec![pb::ModuleFee {
            module: pb::Module::Membership.into(),
            monthly_fee_krw: 1_500_000,
        }],
    });
    sub.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", billing.admin_token)
            .parse()
            .expect("ascii"),
    );
    client.subscribe(sub).await.expect("subscribed");
    // Its API tokens: the operator's and one a POS uses.
    let issued = [
        billing
            .issue_token(&id, "operator/franchises/daehan-coffee")
            .await,
        billing.issue_token(&id, "pos-seoul-01").await,
    ];

    const DED: &str = "spharos-franchises-daehan-coffee";
    let ded = DED;
    let backup_path =
        format!("/apis/postgresql.cnpg.io/v1/namespaces/{ded}/backups/spharos-db-retention");
    let crd_path =
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.postgresql.cnpg.io";
    let cnpg_crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "clusters.postgresql.cnpg.io" },
        "spec": { "group": "postgresql.cnpg.io", "scope": "Namespaced",
                  "names": { "kind": "Cluster", "plural": "clusters" }, "versions": [] },
    });
    let backup = |phase: &str| {
        json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Backup",
            "metadata": { "name": "spharos-db-retention", "namespace": DED },
            "spec": { "cluster": { "name": "spharos-db" } },
            "status": { "phase": phase },
        })
    };

    // First pass: billing is cancelled and exported, the backup is still running, so the
    // reconcile fails on purpose and the finalizer (and every object) stays.
    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (crd, b1, b2) = (cnpg_crd.clone(), backup_path.clone(), backup("running"));
    let (result, ()) = run(
        tenant.clone(),
        ctx.clone(),
        api,
        move |mut api| async move {
            let ns = t.namespace().expect("namespaced");
            api.reply(Method::GET, crd_path, 200, crd).await;
            api.event(&ns, "Deprovisioning").await;
            api.event(&ns, "SubscriptionCancelled").await;
            api.apply(&format!(
                "/api/v1/namespaces/{ns}/configmaps/daehan-coffee-retention-export"
            ))
            .await;
            api.event(&ns, "RetentionExported").await;
            // Revoked before the backup is waited for: nothing the backup needs uses them.
            let revoked = api.event(&ns, "TokensRevoked").await;
            assert!(revoked.contains("(2 API tokens revoked;"), "{revoked}");
            let applied = api.apply(&b1).await;
            assert_eq!(applied.body["spec"]["cluster"]["name"], "spharos-db");
            api.reply(Method::GET, &b1, 200, b2).await;
            api.done().await;
        },
    )
    .await;
    let err = result.expect_err("a running backup holds the deletion");
    assert!(err.to_string().contains("not completed"), "{err}");
    assert_eq!(
        error_policy(Arc::new(tenant.clone()), &err, ctx),
        Action::requeue(Duration::from_secs(30))
    );
    let sub = billing
        .get_tenant(&id)
        .await
        .subscription
        .expect("subscription");
    assert_eq!(sub.status(), pb::SubscriptionStatus::Cancelled);
    // The tokens are revoked already, while the backup still holds the tenant.
    let tokens = billing.list_tokens(&id).await;
    assert_eq!(tokens.len(), 2);
    assert!(tokens.iter().all(|t| t.revoke_time.is_some()), "{tokens:?}");
    for i in &issued {
        assert_eq!(
            billing.wait_until_refused(&i.secret).await,
            spharos_kit::auth::AuthError::Revoked
        );
    }

    // Second pass: the backup completed; now the namespace goes, then the finalizer.
    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (result, ()) = run(tenant.clone(), ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        api.reply(Method::GET, crd_path, 200, cnpg_crd).await;
        api.event(&ns, "Deprovisioning").await;
        // Already cancelled: no second cancellation, but the export is refreshed.
        api.apply(&format!(
            "/api/v1/namespaces/{ns}/configmaps/daehan-coffee-retention-export"
        ))
        .await;
        api.event(&ns, "RetentionExported").await;
        // Revoked in the first pass: nothing left to revoke, and that is no error.
        let revoked = api.event(&ns, "TokensRevoked").await;
        assert!(revoked.contains("(0 API tokens revoked;"), "{revoked}");
        api.apply(&backup_path).await;
        api.reply(Method::GET, &backup_path, 200, backup("completed"))
            .await;
        api.event(&ns, "DatabaseBackedUp").await;
        // The master key is copied out before the namespace goes.
        let key = Secret {
            metadata: ObjectMeta {
                name: Some("spharos-master-key".into()),
                namespace: Some(ded.into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "master.key".to_string(),
                ByteString("ab".repeat(32).into_bytes()),
            )])),
            ..Secret::default()
        };
        api.reply(
            Method::GET,
            &secret_path(ded, "spharos-master-key"),
            200,
            serde_json::to_value(&key).expect("json"),
        )
        .await;
        let copy = api
            .apply(&secret_path(&ns, "daehan-coffee-retention-master-key"))
            .await;
        assert_eq!(copy.body["stringData"]["master.key"], "ab".repeat(32));
        assert!(copy.body["metadata"]["ownerReferences"].is_null());
        api.event(&ns, "MasterKeyRetained").await;
        let gone = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": ded }, "status": { "phase": "Terminating" },
        });
        api.reply(
            Method::DELETE,
            &format!("/api/v1/namespaces/{ded}"),
            200,
            gone,
        )
        .await;
        api.event(&ns, "NamespaceDeleted").await;
        api.event(&ns, "Deprovisioned").await;
        let mut released = t.clone();
        released.finalizers_mut().clear();
        api.finalizer_patch(&t, &released).await;
        api.done().await;
    })
    .await;
    assert_eq!(result.expect("cleanup completes"), Action::await_change());
    assert_eq!(billing.list_tokens(&id).await, tokens, "no token changed");
}

#[tokio::test]
async fn switching_a_dedicated_tenant_to_monolithic_removes_the_per_service_workloads() {
    let billing = spawn_billing().await;
    let id = uuid::Uuid::now_v7().to_string();
    // Reconciled before in microservices mode: its status records the four workloads.
    let before = large_franchise().finalized();
    let observed = spharos_operator::desired::Observed {
        tenant_id: id.clone(),
        cnpg_available: true,
        database_url: None,
        messaging_secret: None,
        master_key: None,
        signing_key: None,
        issued_token: None,
        billing: spharos_operator::desired::BillingState::default(),
        limits: spharos_operator::desired::PlanLimits::default(),
        now: "2026-12-04T00:00:00Z".into(),
    };
    let previous =
        spharos_operator::desired::status(&before, &observed, &common::operator_config(), true);
    assert_eq!(previous.workloads.len(), 4);
    let mut tenant = before.with_status(previous);
    tenant.metadata.generation = Some(2);
    tenant.spec.dedicated.as_mut().expect("sizing").mode =
        spharos_operator::crd::DeploymentMode::Monolithic;

    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (result, status) = run(tenant, ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        let ded = "spharos-franchises-daehan-coffee";
        // Billing did not know it yet (a restored cluster): registered under the same id.
        api.event(&ns, "TenantRegistered").await;
        api.event(&ns, "Subscribed").await;
        let token = format!("{}-spharos-api", t.name_any());
        let existing = json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": token, "namespace": ns },
        });
        api.reply(Method::GET, &secret_path(&ns, &token), 200, existing)
            .await;
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "clusters.postgresql.cnpg.io" },
            "spec": { "group": "postgresql.cnpg.io", "scope": "Namespaced",
                      "names": { "kind": "Cluster", "plural": "clusters" }, "versions": [] },
        });
        api.reply(
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusters.postgresql.cnpg.io",
            200,
            crd,
        )
        .await;
        // The messaging secret is not there yet: nothing to copy, the pods mount it optionally.
        api.not_found(&secret_path(&ns, "daehan-coffee-messaging"))
            .await;
        // The master key and the signing key exist: neither is replaced.
        for name in ["spharos-master-key", "spharos-signing-key"] {
            let key = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": { "name": name, "namespace": ded },
            });
            api.reply(Method::GET, &secret_path(ded, name), 200, key)
                .await;
        }
        for p in [
            format!("/api/v1/namespaces/{ded}"),
            format!("/api/v1/namespaces/{ded}/configmaps/spharos-trusted-keys"),
            format!("/apis/postgresql.cnpg.io/v1/namespaces/{ded}/clusters/spharos-db"),
            format!("/api/v1/namespaces/{ded}/configmaps/spharos-config"),
            format!("/apis/apps/v1/namespaces/{ded}/deployments/spharos"),
            format!("/api/v1/namespaces/{ded}/services/spharos"),
            format!("/apis/policy/v1/namespaces/{ded}/poddisruptionbudgets/spharos"),
            format!("/apis/autoscaling/v2/namespaces/{ded}/horizontalpodautoscalers/spharos"),
            format!("/apis/networking.k8s.io/v1/namespaces/{ded}/networkpolicies/spharos-isolate"),
        ] {
            api.apply(&p).await;
        }
        // Then the old per-service workloads go, each kind of each one.
        for svc in ["member", "points", "coupon", "privacy"] {
            let name = format!("spharos-{svc}");
            let deleted = json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": name, "namespace": ded },
            });
            api.reply(
                Method::DELETE,
                &format!("/apis/apps/v1/namespaces/{ded}/deployments/{name}"),
                200,
                deleted,
            )
            .await;
            for kind in [
                format!("/api/v1/namespaces/{ded}/services/{name}"),
                format!("/apis/policy/v1/namespaces/{ded}/poddisruptionbudgets/{name}"),
                format!("/apis/autoscaling/v2/namespaces/{ded}/horizontalpodautoscalers/{name}"),
            ] {
                // Already gone is fine.
                let (m, p) = (Method::DELETE, kind);
                api.reply(
                    m,
                    &p,
                    404,
                    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "NotFound", "code": 404 }),
                )
                .await;
            }
        }
        let note = api.event(&ns, "WorkloadsRemoved").await;
        assert!(
            note.contains("spharos-member, spharos-points, spharos-coupon, spharos-privacy"),
            "{note}"
        );
        // The earlier status had no subscription (billing was unknown); now it is Ready.
        api.event(&ns, "Ready").await;
        let status = api.status_apply(&t).await;
        api.done().await;
        status
    })
    .await;
    result.expect("reconcile succeeds");
    assert_eq!(status.workloads, ["spharos"]);
    assert_eq!(status.phase, Some(Phase::Ready));
}

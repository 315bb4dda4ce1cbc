//! `reconcile` against a mocked API server (every Kubernetes request asserted in order, the
//! controller-rs `ApiServerVerifier` pattern) and a REAL billing service in-process on a free
//! port: create, update (plan change), plan violation (declared and metered), dedicated
//! provisioning, finalizer deletion, and a failure counted by the error policy.
mod common;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use common::{
    ApiServerVerifier, BillingServer, TenantExt, context, large_franchise, small_merchant,
    spawn_billing, spawn_billing_with,
};
use http::Method;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{ResourceExt, api::ObjectMeta, runtime::controller::Action};
use prometheus_client::registry::Registry;
use serde_json::json;
use spharos_billing::BillingCatalogue;
use spharos_kit::{TenantId, bus::Envelope};
use spharos_operator::{
    Context, Error,
    controller::error_policy,
    crd::{FINALIZER, MembershipTenant, ModuleName, ModuleSpec, Phase, Placement, Plan},
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

#[tokio::test]
async fn dedicated_tenant_is_provisioned_by_server_side_apply() {
    let billing = spawn_billing().await;
    let tenant = large_franchise().finalized();
    let (ctx, api) = context(&billing).await;
    let t = tenant.clone();
    let (result, (status, applied)) = run(tenant, ctx, api, move |mut api| async move {
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
        // No master key yet: one is generated.
        api.not_found(&secret_path(ded, "spharos-master-key")).await;
        let mut paths = vec![
            secret_path(&ns, &token),
            format!("/api/v1/namespaces/{ded}"),
            secret_path(ded, "spharos-master-key"),
            secret_path(ded, "spharos-database"),
            secret_path(ded, "spharos-messaging"),
            format!("/api/v1/namespaces/{ded}/configmaps/spharos-config"),
        ];
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
        api.event(&ns, "Provisioned").await;
        api.event(&ns, "Ready").await;
        let status = api.status_apply(&t).await;
        api.done().await;
        (status, applied)
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
        applied[3].body["stringData"]["url"],
        "postgres://daehan:pw@db.example:5432/daehan"
    );
    assert_eq!(applied[4].body["stringData"]["sms-api-key"], "k-123");
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
async fn deletion_cancels_billing_and_exports_before_the_finalizer_goes() {
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
    let deleting = created.tenant.clone().deleting();
    let (ctx, api) = context(&billing).await;
    let t = deleting.clone();
    let (result, (export, removal)) = run(deleting, ctx, api, move |mut api| async move {
        let ns = t.namespace().expect("namespaced");
        api.event(&ns, "Deprovisioning").await;
        api.event(&ns, "SubscriptionCancelled").await;
        let export = api
            .apply(&format!(
                "/api/v1/namespaces/{ns}/configmaps/hanbit-bakery-retention-export"
            ))
            .await;
        api.event(&ns, "RetentionExported").await;
        api.event(&ns, "Deprovisioned").await;
        // Only now the finalizer is removed.
        let mut gone = t.clone();
        gone.finalizers_mut().clear();
        let removal = api.finalizer_patch(&t, &gone).await;
        api.done().await;
        (export, removal)
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
    // The export is billing's real CSV, kept outside the tenant's ownership.
    let data = &export.body["data"];
    assert!(
        data["invoices.csv"]
            .as_str()
            .is_some_and(|c| c.contains("invoice_id")),
        "{data}"
    );
    assert!(data["invoice-lines.csv"].is_string());
    assert!(export.body["metadata"]["ownerReferences"].is_null());
    // Billing has the subscription cancelled.
    let sub = billing
        .get_tenant(&id)
        .await
        .subscription
        .expect("subscription");
    assert_eq!(sub.status(), pb::SubscriptionStatus::Cancelled);
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
        issued_token: None,
        billing: spharos_operator::desired::BillingState::default(),
        limits: spharos_operator::desired::PlanLimits::default(),
        now: "2026-12-04T00:00:00Z".into(),
    };
    let previous = spharos_operator::desired::status(
        &before,
        &observed,
        &spharos_operator::desired::OperatorConfig::default(),
        true,
    );
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
        // The master key exists: it is never replaced.
        let key = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "spharos-master-key", "namespace": ded },
        });
        api.reply(
            Method::GET,
            &secret_path(ded, "spharos-master-key"),
            200,
            key,
        )
        .await;
        for p in [
            format!("/api/v1/namespaces/{ded}"),
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

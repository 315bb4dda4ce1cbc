//! Unit and snapshot tests of the sans-IO decisions: desired objects, billing calls, compliance,
//! status and teardown, for a shared Basic tenant, a dedicated Custom tenant in each mode, a
//! non-compliant Basic tenant, a plan change and a deletion.
mod common;

use common::{TenantExt, assert_snapshot, large_franchise, small_merchant};
use k8s_openapi::api::{
    apps::v1::Deployment,
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Namespace, Secret, Service},
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
};
use kube::ResourceExt;
use serde_json::Value;
use spharos_operator::{
    crd::{DeploymentMode, MembershipTenant, ModuleName, ModuleSpec, Phase, Placement, Plan},
    desired::{
        self, BillingAction, BillingState, DesiredObject, Observed, OperatorConfig, PlanLimits,
        SubscriptionState, SubscriptionStatus, TeardownStep,
    },
};

const TENANT_ID: &str = "0190f2c4-6f1e-7000-8000-000000000001";

fn active(plan: Plan, modules: Vec<ModuleSpec>) -> BillingState {
    BillingState {
        registered: true,
        subscription: Some(SubscriptionState {
            plan,
            status: SubscriptionStatus::Active,
            modules,
        }),
        member_count: 0,
        store_count: 0,
        compliant: true,
        compliance_reason: String::new(),
        compliance_message: String::new(),
    }
}

fn observed(tenant: &MembershipTenant) -> Observed {
    Observed {
        tenant_id: TENANT_ID.into(),
        cnpg_available: true,
        database_url: Some("postgres://spharos:pw@db.example:5432/daehan".into()),
        messaging_secret: (tenant.spec.effective_placement() == Placement::Dedicated).then(|| {
            std::collections::BTreeMap::from([("sms-api-key".to_string(), "k-123".to_string())])
        }),
        master_key: (tenant.spec.effective_placement() == Placement::Dedicated)
            .then(|| "ab".repeat(32)),
        issued_token: Some("eyJ.test.token".into()),
        billing: active(tenant.spec.plan, desired::declared_modules(tenant)),
        limits: PlanLimits::default(),
        now: "2026-12-04T00:00:00Z".into(),
    }
}

fn to_yaml(objects: &[DesiredObject]) -> String {
    objects
        .iter()
        .map(|o| {
            let mut v = serde_json::to_value(&o.object).expect("json");
            // DynamicObject carries apiVersion/kind in `types`; make them lead like kubectl.
            if let Value::Object(m) = &mut v {
                m.remove("status");
            }
            format!("---\n{}", serde_yaml::to_string(&v).expect("yaml"))
        })
        .collect()
}

fn kinds(objects: &[DesiredObject]) -> Vec<String> {
    objects.iter().map(DesiredObject::describe).collect()
}

/// Every built-in object must survive a round trip through its k8s-openapi type unchanged:
/// a misspelt field would be dropped by the typed model and show up here.
fn assert_typed_round_trip(objects: &[DesiredObject]) {
    fn check<K: serde::de::DeserializeOwned + serde::Serialize>(v: &Value, what: &str) {
        let typed: K = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
        let back = serde_json::to_value(&typed).expect("json");
        assert_eq!(&back, v, "{what} loses fields in its typed form");
    }
    for o in objects {
        let v = serde_json::to_value(&o.object).expect("json");
        let what = o.describe();
        match o.api.kind.as_str() {
            "Namespace" => check::<Namespace>(&v, &what),
            "Secret" => check::<Secret>(&v, &what),
            "ConfigMap" => check::<ConfigMap>(&v, &what),
            "Deployment" => check::<Deployment>(&v, &what),
            "Service" => check::<Service>(&v, &what),
            "PodDisruptionBudget" => check::<PodDisruptionBudget>(&v, &what),
            "HorizontalPodAutoscaler" => check::<HorizontalPodAutoscaler>(&v, &what),
            "NetworkPolicy" => check::<NetworkPolicy>(&v, &what),
            // CloudNativePG types are not in k8s-openapi; the snapshot pins them instead.
            "Cluster" | "Backup" => {}
            other => panic!("unexpected kind {other}"),
        }
    }
}

fn status_yaml(t: &MembershipTenant, o: &Observed) -> String {
    let s = desired::status(t, o, &OperatorConfig::default(), true);
    serde_yaml::to_string(&s).expect("yaml")
}

#[test]
fn shared_basic_tenant_gets_only_its_token_secret() {
    let t = small_merchant();
    let o = observed(&t);
    assert_eq!(t.spec.effective_placement(), Placement::Shared);
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    assert_eq!(
        kinds(&objects),
        ["Secret/merchants/hanbit-bakery-spharos-api"]
    );
    let secret = &objects[0].object.data;
    assert_eq!(secret["stringData"]["token"], "eyJ.test.token");
    assert_eq!(secret["stringData"]["tenantId"], TENANT_ID);
    assert_eq!(
        secret["stringData"]["endpoint"],
        OperatorConfig::default().shared_grpc_endpoint
    );
    // Owned by the tenant resource, so it goes with it (after the finalizer).
    let owners = objects[0].object.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "MembershipTenant");
    assert_typed_round_trip(&objects);
    assert_snapshot("shared-basic.objects", &to_yaml(&objects));
    let status = desired::status(&t, &o, &OperatorConfig::default(), true);
    assert_eq!(status.phase, Some(Phase::Ready));
    assert!(
        status.conditions.iter().all(|c| c.status == "True"),
        "{status:?}"
    );
    assert_snapshot("shared-basic.status", &status_yaml(&t, &o));
}

#[test]
fn an_existing_token_secret_is_never_rewritten() {
    let t = small_merchant();
    let mut o = observed(&t);
    o.issued_token = None;
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    assert!(objects.is_empty(), "{:?}", kinds(&objects));
}

#[test]
fn dedicated_custom_tenant_monolithic_on_cloudnativepg() {
    let mut t = large_franchise();
    t.spec.dedicated.as_mut().expect("sizing").mode = DeploymentMode::Monolithic;
    let o = observed(&t);
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    let ns = "spharos-franchises-daehan-coffee";
    assert_eq!(
        kinds(&objects),
        [
            "Secret/franchises/daehan-coffee-spharos-api".to_string(),
            format!("Namespace/{ns}"),
            format!("Secret/{ns}/spharos-master-key"),
            format!("Cluster/{ns}/spharos-db"),
            format!("Secret/{ns}/spharos-messaging"),
            format!("ConfigMap/{ns}/spharos-config"),
            format!("Deployment/{ns}/spharos"),
            format!("Service/{ns}/spharos"),
            format!("PodDisruptionBudget/{ns}/spharos"),
            format!("HorizontalPodAutoscaler/{ns}/spharos"),
            format!("NetworkPolicy/{ns}/spharos-isolate"),
        ]
    );
    let deploy = &objects[6].object.data["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        deploy["args"],
        serde_json::json!(["serve", "--target", "member,points,coupon,privacy"])
    );
    // The database URL comes from CloudNativePG's app secret.
    assert_eq!(
        deploy["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "spharos-db-app"
    );
    let hpa = &objects[9].object.data["spec"];
    assert_eq!(
        (hpa["minReplicas"].as_i64(), hpa["maxReplicas"].as_i64()),
        (Some(3), Some(12))
    );
    assert_typed_round_trip(&objects);
    assert_snapshot("dedicated-monolithic.objects", &to_yaml(&objects));
    assert_snapshot("dedicated-monolithic.status", &status_yaml(&t, &o));
}

#[test]
fn dedicated_custom_tenant_microservices_on_an_existing_database() {
    let t = large_franchise();
    let mut o = observed(&t);
    // No CloudNativePG here: the existing database secret is the fallback.
    o.cnpg_available = false;
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    let ns = "spharos-franchises-daehan-coffee";
    let names = kinds(&objects);
    assert!(
        names.contains(&format!("Secret/{ns}/spharos-database")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("Cluster/")),
        "{names:?}"
    );
    for svc in ["member", "points", "coupon", "privacy"] {
        for kind in [
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
        ] {
            let want = format!("{kind}/{ns}/spharos-{svc}");
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
    }
    let member = objects
        .iter()
        .find(|o| o.describe() == format!("Deployment/{ns}/spharos-member"))
        .expect("member deployment");
    assert_eq!(
        member.object.data["spec"]["template"]["spec"]["containers"][0]["args"],
        serde_json::json!(["serve", "--target", "member"])
    );
    let config = objects
        .iter()
        .find(|o| o.api.kind == "ConfigMap")
        .expect("config");
    assert_eq!(
        config.object.data["data"]["SPHAROS__SERVICES__POINTS"],
        format!("http://spharos-points.{ns}.svc:50051")
    );
    assert_typed_round_trip(&objects);
    assert_snapshot("dedicated-microservices.objects", &to_yaml(&objects));
    let status = desired::status(&t, &o, &OperatorConfig::default(), true);
    assert_eq!(status.phase, Some(Phase::Ready));
    assert_eq!(
        status.endpoints[0].url,
        format!("http://spharos-member.{ns}.svc:50051")
    );
}

#[test]
fn dedicated_tenant_without_a_database_gets_no_workloads() {
    let t = large_franchise();
    let mut o = observed(&t);
    o.cnpg_available = false;
    o.database_url = None;
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    assert!(
        !objects.iter().any(|o| o.api.kind == "Deployment"),
        "{:?}",
        kinds(&objects)
    );
    let status = desired::status(&t, &o, &OperatorConfig::default(), true);
    let prov = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Provisioned")
        .expect("Provisioned");
    assert_eq!(
        (prov.status.as_str(), prov.reason.as_str()),
        ("False", "DatabaseUnavailable")
    );
    assert_eq!(status.phase, Some(Phase::Provisioning));
}

#[test]
fn basic_tenant_declaring_too_many_members_or_stores_is_not_compliant() {
    let mut t = small_merchant();
    t.spec.expected_members = 300_000;
    let o = observed(&t);
    let c = desired::compliance(&t, &o);
    assert!(!c.compliant);
    assert_eq!(c.reason, "BasicMemberLimitDeclared");
    assert!(c.message.contains("300000"), "{}", c.message);
    let status = desired::status(&t, &o, &OperatorConfig::default(), true);
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_snapshot("non-compliant-basic.status", &status_yaml(&t, &o));

    let mut t = small_merchant();
    t.spec.expected_stores = 100;
    assert_eq!(
        desired::compliance(&t, &o).reason,
        "BasicStoreLimitDeclared"
    );
    t.spec.expected_stores = 99;
    t.spec.expected_members = 299_999;
    assert!(desired::compliance(&t, &o).compliant);
    // The same declaration on the custom plan is fine.
    let mut t = large_franchise();
    t.spec.expected_members = 5_000_000;
    assert!(desired::compliance(&t, &observed(&t)).compliant);
}

#[test]
fn basic_tenant_billing_reports_over_its_limits_is_not_compliant() {
    let t = small_merchant();
    let mut o = observed(&t);
    o.billing.compliant = false;
    o.billing.store_count = 100;
    o.billing.compliance_reason = "BASIC_STORE_LIMIT_REACHED".into();
    o.billing.compliance_message = "매장 100개 이상: 커스텀 요금제가 필요합니다".into();
    let c = desired::compliance(&t, &o);
    assert_eq!(
        (c.compliant, c.reason.as_str()),
        (false, "BasicStoreLimitReached")
    );
    assert_eq!(c.message, "매장 100개 이상: 커스텀 요금제가 필요합니다");
}

#[test]
fn billing_actions_register_subscribe_and_follow_plan_changes() {
    let basic = small_merchant();
    // Unknown to billing: register, then subscribe.
    assert_eq!(
        desired::billing_actions(&basic, &BillingState::default()),
        [
            BillingAction::CreateTenant,
            BillingAction::Subscribe {
                plan: Plan::Basic,
                modules: vec![]
            }
        ]
    );
    // Already on the declared plan: nothing.
    assert!(desired::billing_actions(&basic, &active(Plan::Basic, vec![])).is_empty());

    // Plan change basic → custom: ChangePlan with the modules sorted as billing reports them.
    let mut upgraded = small_merchant();
    upgraded.spec.plan = Plan::Custom;
    upgraded.spec.placement = Some(Placement::Shared);
    upgraded.spec.modules = vec![
        ModuleSpec {
            name: ModuleName::Privacy,
            monthly_fee_krw: 300_000,
        },
        ModuleSpec {
            name: ModuleName::Membership,
            monthly_fee_krw: 1_000_000,
        },
    ];
    let actions = desired::billing_actions(&upgraded, &active(Plan::Basic, vec![]));
    assert_eq!(
        actions,
        [BillingAction::ChangePlan {
            from: Plan::Basic,
            plan: Plan::Custom,
            modules: vec![
                ModuleSpec {
                    name: ModuleName::Membership,
                    monthly_fee_krw: 1_000_000
                },
                ModuleSpec {
                    name: ModuleName::Privacy,
                    monthly_fee_krw: 300_000
                },
            ],
        }]
    );
    // A renegotiated fee is a plan change too.
    let billed = desired::declared_modules(&upgraded);
    let mut cheaper = billed.clone();
    cheaper[0].monthly_fee_krw = 900_000;
    assert!(matches!(
        desired::billing_actions(&upgraded, &active(Plan::Custom, cheaper))[..],
        [BillingAction::ChangePlan { .. }]
    ));
    assert!(desired::billing_actions(&upgraded, &active(Plan::Custom, billed)).is_empty());
    // Downgrade custom → basic.
    assert!(matches!(
        desired::billing_actions(&basic, &active(Plan::Custom, vec![]))[..],
        [BillingAction::ChangePlan {
            from: Plan::Custom,
            plan: Plan::Basic,
            ..
        }]
    ));
    // A cancelled subscription is subscribed again.
    let mut cancelled = active(Plan::Basic, vec![]);
    if let Some(s) = cancelled.subscription.as_mut() {
        s.status = SubscriptionStatus::Cancelled;
    }
    assert_eq!(
        desired::billing_actions(&basic, &cancelled),
        [BillingAction::Subscribe {
            plan: Plan::Basic,
            modules: vec![]
        }]
    );
}

#[test]
fn plan_change_status_keeps_transition_times_of_unchanged_conditions() {
    let t = small_merchant();
    let o = observed(&t);
    let first = desired::status(&t, &o, &OperatorConfig::default(), true);
    let mut later = o.clone();
    later.now = "2026-12-05T00:00:00Z".into();
    let mut violating = t.clone().with_status(first.clone());
    violating.spec.expected_stores = 150;
    let second = desired::status(&violating, &later, &OperatorConfig::default(), true);
    let time = |s: &spharos_operator::MembershipTenantStatus, ty: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == ty)
            .and_then(|c| c.last_transition_time.clone())
    };
    assert_eq!(
        time(&second, "BillingActive"),
        time(&first, "BillingActive")
    );
    assert_eq!(
        time(&second, "PlanCompliant").as_deref(),
        Some("2026-12-05T00:00:00Z")
    );
}

#[test]
fn deletion_cancels_exports_and_backs_up_before_removing() {
    // Shared: billing only; the token Secret goes with its owner.
    let t = small_merchant()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    assert_eq!(
        desired::teardown(&t, false),
        [
            TeardownStep::CancelSubscription {
                tenant_id: TENANT_ID.into()
            },
            TeardownStep::ExportBilling {
                namespace: "merchants".into(),
                config_map: "hanbit-bakery-retention-export".into()
            },
        ]
    );
    // Dedicated on CloudNativePG: a backup before the namespace goes.
    let t = large_franchise()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    let steps = desired::teardown(&t, true);
    assert_eq!(
        steps[2..],
        [
            TeardownStep::BackupDatabase {
                namespace: "spharos-franchises-daehan-coffee".into(),
                backup: "spharos-db-retention".into(),
                cluster: "spharos-db".into()
            },
            // The backup's PII is readable only with the master key: it is kept too.
            TeardownStep::RetainMasterKey {
                namespace: "spharos-franchises-daehan-coffee".into(),
                copy_namespace: "franchises".into(),
                copy_name: "daehan-coffee-retention-master-key".into()
            },
            TeardownStep::DeleteNamespace {
                name: "spharos-franchises-daehan-coffee".into()
            }
        ]
    );
    // Dedicated on an external database: it is retained, never dropped.
    let steps = desired::teardown(&t, false);
    assert_eq!(
        steps[2],
        TeardownStep::RetainExternalDatabase {
            secret: "daehan-coffee-db".into()
        }
    );
    // Never registered (no tenant id anywhere): nothing to cancel or export.
    assert!(desired::teardown(&small_merchant().deleting(), false).is_empty());

    let cm = desired::retention_config_map(
        &t,
        TENANT_ID,
        "invoice_id\n",
        "line_no\n",
        "2026-12-04T00:00:00Z",
    )
    .expect("config map");
    let backup = desired::retention_backup(
        &t,
        TENANT_ID,
        "spharos-franchises-daehan-coffee",
        "spharos-db-retention",
        "spharos-db",
    )
    .expect("backup");
    // The export is not owned by the tenant: it must outlive it.
    assert!(cm.object.owner_references().is_empty());
    let key = desired::retained_master_key(
        &t,
        TENANT_ID,
        "franchises",
        "daehan-coffee-retention-master-key",
        &"ab".repeat(32),
    )
    .expect("key copy");
    assert!(key.object.owner_references().is_empty());
    assert_typed_round_trip(&[cm.clone(), key.clone()]);
    assert_snapshot("deletion.objects", &to_yaml(&[cm, backup, key]));
}

#[test]
fn dedicated_namespace_names_fit_kubernetes_limits() {
    let mut t = large_franchise();
    t.metadata.name = Some("a".repeat(60));
    let ns = desired::dedicated_namespace(&t);
    assert!(ns.len() <= 63 && !ns.ends_with('-'), "{ns}");
}

#[test]
fn a_layout_change_prunes_the_workloads_no_longer_wanted() {
    let ns_workloads = |t: &MembershipTenant| desired::workload_names(t, &observed(t));
    let micro = large_franchise();
    assert_eq!(
        ns_workloads(&micro),
        [
            "spharos-member",
            "spharos-points",
            "spharos-coupon",
            "spharos-privacy"
        ]
    );
    let status = desired::status(&micro, &observed(&micro), &OperatorConfig::default(), true);
    assert_eq!(status.workloads, ns_workloads(&micro));
    // Switched to monolithic: the four per-service workloads go, the monolith stays.
    let mut mono = micro.clone().with_status(status.clone());
    mono.spec.dedicated.as_mut().expect("sizing").mode = DeploymentMode::Monolithic;
    assert_eq!(ns_workloads(&mono), ["spharos"]);
    assert_eq!(
        desired::stale_workloads(&mono, &observed(&mono)),
        [
            "spharos-member",
            "spharos-points",
            "spharos-coupon",
            "spharos-privacy"
        ]
    );
    // Privacy dropped in microservices mode: only its workload goes.
    let mut fewer = micro.clone().with_status(status);
    fewer.spec.modules.retain(|m| m.name != ModuleName::Privacy);
    assert_eq!(
        desired::stale_workloads(&fewer, &observed(&fewer)),
        ["spharos-privacy"]
    );
    // Nothing recorded yet (first reconcile): nothing to prune.
    assert!(desired::stale_workloads(&micro, &observed(&micro)).is_empty());
}

#[test]
fn an_existing_master_key_is_never_replaced() {
    let t = large_franchise();
    let mut o = observed(&t);
    o.master_key = None;
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    assert!(
        !objects
            .iter()
            .any(|o| o.object.metadata.name.as_deref() == Some("spharos-master-key")),
        "{:?}",
        kinds(&objects)
    );
    // Every pod still mounts it.
    let deploy = objects
        .iter()
        .find(|o| o.api.kind == "Deployment")
        .expect("deployment");
    let volumes = &deploy.object.data["spec"]["template"]["spec"]["volumes"];
    assert!(
        volumes
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "spharos-master-key"),
        "{volumes}"
    );
}

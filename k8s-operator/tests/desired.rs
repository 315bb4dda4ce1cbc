//! Unit and snapshot tests of the sans-IO decisions: desired objects, billing calls, compliance,
//! status and teardown, for a shared Basic tenant, a dedicated Custom tenant in each mode, a
//! non-compliant Basic tenant, a plan change and a deletion; and the dedicated tenants' token
//! keys, down to kit's own signer and verifier loading what the pods are given.
mod common;

use common::{
    TenantExt, assert_snapshot, fixed_tenant_signing_key_pem, large_franchise, operator_config,
    small_merchant,
};
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
        signing_key: (tenant.spec.effective_placement() == Placement::Dedicated)
            .then(fixed_tenant_signing_key_pem),
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
    let s = desired::status(t, o, &operator_config(), true);
    serde_yaml::to_string(&s).expect("yaml")
}

#[test]
fn shared_basic_tenant_gets_only_its_token_secret() {
    let t = small_merchant();
    let o = observed(&t);
    assert_eq!(t.spec.effective_placement(), Placement::Shared);
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    assert_eq!(
        kinds(&objects),
        ["Secret/merchants/hanbit-bakery-spharos-api"]
    );
    let secret = &objects[0].object.data;
    assert_eq!(secret["stringData"]["token"], "eyJ.test.token");
    assert_eq!(secret["stringData"]["tenantId"], TENANT_ID);
    assert_eq!(
        secret["stringData"]["endpoint"],
        operator_config().shared_grpc_endpoint
    );
    // Owned by the tenant resource, so it goes with it (after the finalizer).
    let owners = objects[0].object.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "MembershipTenant");
    assert_typed_round_trip(&objects);
    assert_snapshot("shared-basic.objects", &to_yaml(&objects));
    let status = desired::status(&t, &o, &operator_config(), true);
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
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    assert!(objects.is_empty(), "{:?}", kinds(&objects));
}

#[test]
fn dedicated_custom_tenant_monolithic_on_cloudnativepg() {
    let mut t = large_franchise();
    t.spec.dedicated.as_mut().expect("sizing").mode = DeploymentMode::Monolithic;
    let o = observed(&t);
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    let ns = "spharos-franchises-daehan-coffee";
    assert_eq!(
        kinds(&objects),
        [
            "Secret/franchises/daehan-coffee-spharos-api".to_string(),
            format!("Namespace/{ns}"),
            format!("Secret/{ns}/spharos-master-key"),
            format!("Secret/{ns}/spharos-signing-key"),
            format!("ConfigMap/{ns}/spharos-trusted-keys"),
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
    let deploy = &objects[8].object.data["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        deploy["args"],
        serde_json::json!(["serve", "--target", "member,points,coupon,privacy"])
    );
    // The database URL comes from CloudNativePG's app secret.
    assert_eq!(
        deploy["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "spharos-db-app"
    );
    let hpa = &objects[11].object.data["spec"];
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
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
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
    let config = find(&objects, &format!("ConfigMap/{ns}/spharos-config")).expect("config");
    assert_eq!(
        config.object.data["data"]["SPHAROS__SERVICES__POINTS"],
        format!("http://spharos-points.{ns}.svc:50051")
    );
    assert_typed_round_trip(&objects);
    assert_snapshot("dedicated-microservices.objects", &to_yaml(&objects));
    let status = desired::status(&t, &o, &operator_config(), true);
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
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    assert!(
        !objects.iter().any(|o| o.api.kind == "Deployment"),
        "{:?}",
        kinds(&objects)
    );
    let status = desired::status(&t, &o, &operator_config(), true);
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
    let status = desired::status(&t, &o, &operator_config(), true);
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
    let first = desired::status(&t, &o, &operator_config(), true);
    let mut later = o.clone();
    later.now = "2026-12-05T00:00:00Z".into();
    let mut violating = t.clone().with_status(first.clone());
    violating.spec.expected_stores = 150;
    let second = desired::status(&violating, &later, &operator_config(), true);
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
fn deletion_cancels_exports_revokes_tokens_and_backs_up_before_removing() {
    // Shared: billing, the API tokens, then the notice that the data stays on the shared
    // deployment; the token Secret goes with its owner.
    let shared = small_merchant()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    let shared_steps = desired::teardown(&shared, false);
    assert_eq!(
        shared_steps,
        [
            TeardownStep::CancelSubscription {
                tenant_id: TENANT_ID.into()
            },
            TeardownStep::ExportBilling {
                namespace: "merchants".into(),
                config_map: "hanbit-bakery-retention-export".into()
            },
            // After the cancellation (billing then issues none) and the export.
            TeardownStep::RevokeTokens {
                tenant_id: TENANT_ID.into()
            },
            TeardownStep::RetainSharedData {
                tenant_id: TENANT_ID.into()
            },
        ]
    );
    // Dedicated on CloudNativePG: the same three, then a backup before the namespace goes.
    let t = large_franchise()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    let steps = desired::teardown(&t, true);
    assert_eq!(
        steps[2],
        TeardownStep::RevokeTokens {
            tenant_id: TENANT_ID.into()
        }
    );
    assert_eq!(
        steps[3..],
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
    assert_eq!(
        steps.iter().map(TeardownStep::action).collect::<Vec<_>>(),
        [
            "CancelSubscription",
            "ExportBilling",
            "RevokeTokens",
            "BackupDatabase",
            "RetainMasterKey",
            "DeleteNamespace"
        ]
    );
    // Its data lives in its own database, backed up: no shared-data notice.
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, TeardownStep::RetainSharedData { .. }))
    );
    // Dedicated on an external database: it is retained, never dropped.
    let external = desired::teardown(&t, false);
    assert_eq!(
        external[3],
        TeardownStep::RetainExternalDatabase {
            secret: "daehan-coffee-db".into()
        }
    );
    // Never registered (no tenant id anywhere): nothing to cancel, export or revoke.
    assert!(desired::teardown(&small_merchant().deleting(), false).is_empty());

    let shared_cm = desired::retention_config_map(
        &shared,
        TENANT_ID,
        "invoice_id\n",
        "line_no\n",
        "2026-12-04T00:00:00Z",
        &shared_steps,
    )
    .expect("config map");
    let cm = desired::retention_config_map(
        &t,
        TENANT_ID,
        "invoice_id\n",
        "line_no\n",
        "2026-12-04T00:00:00Z",
        &steps,
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
    assert!(shared_cm.object.owner_references().is_empty());
    let key = desired::retained_master_key(
        &t,
        TENANT_ID,
        "franchises",
        "daehan-coffee-retention-master-key",
        &"ab".repeat(32),
    )
    .expect("key copy");
    assert!(key.object.owner_references().is_empty());
    assert_typed_round_trip(&[shared_cm.clone(), cm.clone(), key.clone()]);
    assert_snapshot("deletion.objects", &to_yaml(&[shared_cm, cm, backup, key]));
}

#[test]
fn a_shared_deletion_says_the_data_stays_and_how_it_is_removed() {
    let shared = small_merchant()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    let readme = desired::retention_readme(&shared, TENANT_ID, &desired::teardown(&shared, false));
    // Korean first, English after; names the tenant id the data is kept under and the way out:
    // a token minted on the platform (billing issues none to a cancelled tenant), then the
    // privacy service's erasure per member.
    for needle in [
        "MembershipTenant merchants/hanbit-bakery",
        "회원·포인트·쿠폰 데이터는 삭제되지 않고",
        &format!("under tenant id {TENANT_ID}"),
        &format!("spharos tenant token --tenant {TENANT_ID}"),
        "pii:erase",
        "DATA_SUBJECT_REQUEST_KIND_ERASURE",
        "ProcessDataSubjectRequest",
        "every live API token billing issued for the tenant is revoked",
    ] {
        assert!(
            readme.contains(needle),
            "{needle:?} missing from:\n{readme}"
        );
    }
    // A dedicated tenant's README has no such paragraph: its data went into the backup.
    let t = large_franchise()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    let readme = desired::retention_readme(&t, TENANT_ID, &desired::teardown(&t, true));
    assert!(!readme.contains("shared deployment"), "{readme}");
    assert!(
        readme.contains("daehan-coffee-retention-master-key"),
        "{readme}"
    );

    // The Events: Korean first, then English, within the 1 kB an Event note may hold.
    let note = desired::shared_data_retained_note(TENANT_ID);
    assert!(
        note.starts_with("공유 배포의 데이터베이스에 있는 테넌트"),
        "{note}"
    );
    assert!(
        note.contains(&format!(
            "remain in the shared deployment's database under tenant id {TENANT_ID}"
        )),
        "{note}"
    );
    assert!(note.contains("privacy service's erasure"), "{note}");
    assert!(note.len() <= 1024, "{} bytes", note.len());
    let note = desired::tokens_revoked_note(TENANT_ID, 2);
    assert!(note.starts_with("API 토큰 2개를 폐기했습니다"), "{note}");
    assert!(note.contains("(2 API tokens revoked;"), "{note}");
    assert!(desired::tokens_revoked_note(TENANT_ID, 1).contains("(1 API token revoked;"));
    assert!(note.len() <= 1024);
}

#[test]
fn only_live_tokens_are_revoked() {
    let now = 1_800_000_000;
    let token = |id: &str, revoked: bool, expire_time: Option<i64>| desired::TokenRecord {
        token_id: id.into(),
        subject: format!("pos/{id}"),
        revoked,
        expire_time,
    };
    let tokens = [
        token("a", false, Some(now + 3600)),
        // Already revoked (a re-run of a half-done teardown, or by hand): nothing to do.
        token("b", true, Some(now + 3600)),
        // Expired: refused by every verifier already.
        token("c", false, Some(now)),
        token("d", false, None),
        token("e", false, Some(now + 1)),
    ];
    let live: Vec<&str> = desired::live_tokens(&tokens, now)
        .iter()
        .map(|t| t.token_id.as_str())
        .collect();
    assert_eq!(live, ["a", "d", "e"]);
    assert!(desired::live_tokens(&[], now).is_empty());
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
    let status = desired::status(&micro, &observed(&micro), &operator_config(), true);
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
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
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

// ---- the dedicated tenants' token keys ---------------------------------------------------

fn find<'a>(objects: &'a [DesiredObject], describe: &str) -> Option<&'a DesiredObject> {
    objects.iter().find(|o| o.describe() == describe)
}

fn deployments(objects: &[DesiredObject]) -> Vec<&DesiredObject> {
    objects
        .iter()
        .filter(|o| o.api.kind == "Deployment")
        .collect()
}

/// The volume named `volume` of a Deployment's pod and where its container mounts it.
fn volume_and_mount(deployment: &DesiredObject, volume: &str) -> Option<(Value, String)> {
    let pod = &deployment.object.data["spec"]["template"]["spec"];
    let v = pod["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == volume)?
        .clone();
    let path = pod["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)?["mountPath"]
        .as_str()?
        .to_string();
    Some((v, path))
}

fn config_env(objects: &[DesiredObject]) -> serde_json::Map<String, Value> {
    let ns = "spharos-franchises-daehan-coffee";
    find(objects, &format!("ConfigMap/{ns}/spharos-config"))
        .expect("spharos-config")
        .object
        .data["data"]
        .as_object()
        .expect("data")
        .clone()
}

#[test]
fn a_signing_key_is_generated_once_and_never_replaced() {
    let t = large_franchise();
    let ns = "spharos-franchises-daehan-coffee";
    // First reconcile: the generated key goes into its own Secret.
    let o = observed(&t);
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    let secret = find(&objects, &format!("Secret/{ns}/spharos-signing-key")).expect("secret");
    assert_eq!(
        secret.object.data["stringData"]["signing.pem"],
        fixed_tenant_signing_key_pem()
    );
    assert_eq!(
        secret.object.data["stringData"]
            .as_object()
            .map(|m| m.len()),
        Some(1)
    );
    // Its Secret exists (observed None): never applied again, but every pod still mounts it.
    let mut o = observed(&t);
    o.signing_key = None;
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    assert!(
        find(&objects, &format!("Secret/{ns}/spharos-signing-key")).is_none(),
        "{:?}",
        kinds(&objects)
    );
    for d in deployments(&objects) {
        let (v, _) = volume_and_mount(d, "signing-key").expect("signing key mounted");
        assert_eq!(v["secret"]["secretName"], "spharos-signing-key");
        // Not optional: a pod without it would generate a key no other pod trusts.
        assert!(v["secret"]["optional"].is_null(), "{v}");
    }
    // A tenant provisioned before signing keys existed: master key Secret present, signing key
    // Secret missing. Only the signing key is applied; the master key is not touched.
    let mut o = observed(&t);
    o.master_key = None;
    let objects = desired::desired_objects(&t, &o, &operator_config()).expect("objects");
    let names = kinds(&objects);
    assert!(
        names.contains(&format!("Secret/{ns}/spharos-signing-key")),
        "{names:?}"
    );
    assert!(
        !names.contains(&format!("Secret/{ns}/spharos-master-key")),
        "{names:?}"
    );
    // The signing key is not part of the retention: nothing needs it once the tenant is gone.
    let deleting = large_franchise()
        .finalized()
        .deleting()
        .with_tenant_id(TENANT_ID);
    assert!(
        !format!("{:?}", desired::teardown(&deleting, true)).contains("signing"),
        "the teardown keeps only the master key"
    );
}

#[test]
fn microservices_pods_all_mount_the_same_signing_key_and_trust_the_platform() {
    let t = large_franchise();
    let o = observed(&t);
    let config = operator_config();
    let objects = desired::desired_objects(&t, &o, &config).expect("objects");
    let ns = "spharos-franchises-daehan-coffee";
    let env = config_env(&objects);
    assert_eq!(
        env["SPHAROS__AUTH__SIGNING_KEY_FILE"],
        "/etc/spharos/signing/signing.pem"
    );
    assert_eq!(
        env["SPHAROS__AUTH__PUBLIC_KEY_FILES"],
        "/etc/spharos/trusted/platform.pem"
    );
    let platform = config.platform_public_key.as_ref().expect("platform key");
    let trusted = find(&objects, &format!("ConfigMap/{ns}/spharos-trusted-keys")).expect("cm");
    assert_eq!(trusted.object.data["data"]["platform.pem"], platform.pem());
    assert!(platform.pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    let pods = deployments(&objects);
    assert_eq!(pods.len(), 4);
    for d in pods {
        let what = d.describe();
        let (v, path) = volume_and_mount(d, "signing-key").expect("signing key");
        assert_eq!(v["secret"]["secretName"], "spharos-signing-key", "{what}");
        assert_eq!(path, "/etc/spharos/signing", "{what}");
        let (v, path) = volume_and_mount(d, "trusted-keys").expect("trusted keys");
        assert_eq!(v["configMap"]["name"], "spharos-trusted-keys", "{what}");
        assert_eq!(path, "/etc/spharos/trusted", "{what}");
        let pod = &d.object.data["spec"]["template"];
        assert_eq!(
            pod["spec"]["containers"][0]["envFrom"][0]["configMapRef"]["name"],
            "spharos-config"
        );
        // A new platform key changes the pod template, so the pods restart and read it.
        assert_eq!(
            pod["metadata"]["annotations"]["membership.spharos.io/platform-key-id"],
            platform.key_id(),
            "{what}"
        );
    }
}

/// Dedicated pods run on a NATS stream and namespace of their own, but billing publishes token
/// revocations on the platform's: every pod is told to hear them there too, or a token
/// billing revokes (tenant deletion, a rotated POS token) would keep working on the tenant.
#[test]
fn dedicated_pods_hear_token_revocations_on_the_platform_stream() {
    let t = large_franchise();
    let o = observed(&t);
    let defaults = OperatorConfig::default();
    assert_eq!(
        (
            defaults.platform_nats_stream.as_str(),
            defaults.platform_nats_namespace.as_str()
        ),
        ("SPHAROS", "spharos"),
        "the chart's nats.stream / nats.namespace defaults"
    );
    let config = OperatorConfig {
        platform_nats_stream: "MEMBERSHIP".into(),
        platform_nats_namespace: "membership".into(),
        ..operator_config()
    };
    for mode in [DeploymentMode::Monolithic, DeploymentMode::Microservices] {
        let mut t = t.clone();
        t.spec.dedicated.as_mut().expect("sizing").mode = mode;
        let objects = desired::desired_objects(&t, &o, &config).expect("objects");
        let env = config_env(&objects);
        assert_eq!(env["SPHAROS__AUTH__REVOCATIONS__STREAM"], "MEMBERSHIP");
        assert_eq!(env["SPHAROS__AUTH__REVOCATIONS__NAMESPACE"], "membership");
        // Their own bus stays their own.
        assert_eq!(
            env["SPHAROS__NATS__STREAM"],
            "T0190F2C46F1E70008000000000000001"
        );
        assert_eq!(
            env["SPHAROS__NATS__NAMESPACE"],
            "t0190f2c46f1e70008000000000000001"
        );
        // Every pod reads that ConfigMap.
        for d in deployments(&objects) {
            assert_eq!(
                d.object.data["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRef"]
                    ["name"],
                "spharos-config",
                "{}",
                d.describe()
            );
        }
    }
    // And kit accepts exactly that environment: both processes' sources are configured.
    let objects = desired::desired_objects(&t, &o, &config).expect("objects");
    let env = config_env(&objects);
    let var = |k: &str| env[k].as_str().expect("text").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("spharos.toml");
    std::fs::write(
        &file,
        format!(
            "[nats]\nurl = {:?}\nstream = {:?}\nnamespace = {:?}\n\
             [auth.revocations]\nstream = {:?}\nnamespace = {:?}\n",
            var("SPHAROS__NATS__URL"),
            var("SPHAROS__NATS__STREAM"),
            var("SPHAROS__NATS__NAMESPACE"),
            var("SPHAROS__AUTH__REVOCATIONS__STREAM"),
            var("SPHAROS__AUTH__REVOCATIONS__NAMESPACE"),
        ),
    )
    .expect("written");
    let settings = spharos_kit::config::Settings::load(Some(&file)).expect("kit loads it");
    assert_eq!(
        settings.auth.revocations.source(),
        Some(("MEMBERSHIP", "membership"))
    );
}

#[test]
fn without_a_platform_key_dedicated_tenants_say_tokens_will_not_verify() {
    let t = large_franchise();
    let o = observed(&t);
    let config = OperatorConfig::default();
    assert!(config.platform_public_key.is_none());
    let objects = desired::desired_objects(&t, &o, &config).expect("objects");
    let ns = "spharos-franchises-daehan-coffee";
    // The tenant still runs (its pods trust each other), but lists no key file it lacks.
    assert!(find(&objects, &format!("ConfigMap/{ns}/spharos-trusted-keys")).is_none());
    assert!(!config_env(&objects).contains_key("SPHAROS__AUTH__PUBLIC_KEY_FILES"));
    assert!(
        config_env(&objects).contains_key("SPHAROS__AUTH__SIGNING_KEY_FILE"),
        "the tenant's own key is set all the same"
    );
    for d in deployments(&objects) {
        assert!(volume_and_mount(d, "trusted-keys").is_none());
        let annotations = &d.object.data["spec"]["template"]["metadata"]["annotations"];
        assert!(annotations[desired::PLATFORM_KEY_ID_ANNOTATION].is_null());
        assert!(annotations[desired::CONFIG_HASH_ANNOTATION].is_string());
    }
    assert_typed_round_trip(&objects);
    let status = desired::status(&t, &o, &config, true);
    let prov = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Provisioned")
        .expect("Provisioned");
    assert_eq!(
        (prov.status.as_str(), prov.reason.as_str()),
        ("False", "PlatformPublicKeyMissing")
    );
    assert!(
        prov.message.contains("platform public key not configured")
            && prov.message.contains("daehan-coffee-spharos-api")
            && prov.message.contains("will not verify"),
        "{}",
        prov.message
    );
    assert_eq!(status.phase, Some(Phase::Provisioning));
    // A shared tenant is served by the platform itself: nothing to hand out.
    let s = small_merchant();
    assert_eq!(
        desired::status(&s, &observed(&s), &config, true).phase,
        Some(Phase::Ready)
    );
}

#[test]
fn the_platform_public_key_is_checked_and_a_private_key_refused() {
    use spharos_kit::auth::TokenSigner;
    use spharos_operator::keys::{KeyError, PlatformPublicKey};
    let signer = TokenSigner::generate();
    // Windows line endings and surrounding blank lines are fine; the PEM is re-encoded.
    let messy = format!("\n{}\n", signer.public_key_pem().replace('\n', "\r\n"));
    let key = PlatformPublicKey::from_pem(&messy).expect("parses");
    assert_eq!(key.pem(), signer.public_key_pem());
    // The key id is the `kid` of the tokens it verifies.
    assert_eq!(key.key_id(), signer.key_id());
    // What the README tells the platform team to run (`openssl pkey -in signing.pem -pubout`).
    let openssl = "-----BEGIN PUBLIC KEY-----\n\
                   MCowBQYDK2VwAyEAcv+MIlSsa59Ei+iYynMRmmWmJ40pvbux6asKclDKV10=\n\
                   -----END PUBLIC KEY-----\n";
    assert!(PlatformPublicKey::from_pem(openssl).is_ok());
    let private = spharos_operator::keys::generate_signing_key_pem();
    assert!(matches!(
        PlatformPublicKey::from_pem(&private),
        Err(KeyError::PrivateKeyGiven)
    ));
    assert!(matches!(
        PlatformPublicKey::from_pem("not a key"),
        Err(KeyError::Parse(_))
    ));
}

/// The files a pod of `deployment` sees, written under `root` (Secret and ConfigMap volumes
/// from the desired objects, each key a file in its mount path).
fn materialize(objects: &[DesiredObject], deployment: &DesiredObject, root: &std::path::Path) {
    let ns = deployment.object.metadata.namespace.clone().expect("ns");
    let pod = &deployment.object.data["spec"]["template"]["spec"];
    for m in pod["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
    {
        let name = m["name"].as_str().expect("name");
        let v = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == name)
            .expect("volume of the mount");
        let (source, field) = if let Some(s) = v["secret"]["secretName"].as_str() {
            (format!("Secret/{ns}/{s}"), "stringData")
        } else if let Some(c) = v["configMap"]["name"].as_str() {
            (format!("ConfigMap/{ns}/{c}"), "data")
        } else {
            continue; // emptyDir
        };
        let Some(object) = find(objects, &source) else {
            // The optional messaging copy may not exist; nothing else may be missing.
            assert_eq!(
                v["secret"]["optional"], true,
                "{source} is not in the objects"
            );
            continue;
        };
        let dir = root.join(
            m["mountPath"]
                .as_str()
                .expect("path")
                .trim_start_matches('/'),
        );
        std::fs::create_dir_all(&dir).expect("mount dir");
        for (key, value) in object.object.data[field].as_object().expect("data") {
            std::fs::write(dir.join(key), value.as_str().expect("text")).expect("written");
        }
    }
}

/// Kit's `load_keys` over a pod's files: its settings from the ConfigMap's environment (paths
/// moved under `root`, lists split on commas as kit splits `SPHAROS__AUTH__PUBLIC_KEY_FILES`).
fn pod_keys(
    objects: &[DesiredObject],
    root: &std::path::Path,
) -> (
    spharos_kit::auth::TokenSigner,
    spharos_kit::auth::TokenVerifier,
) {
    let env = config_env(objects);
    let moved = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();
    let var = |k: &str| env.get(k).and_then(Value::as_str).map(str::to_string);
    let public: Vec<String> = var("SPHAROS__AUTH__PUBLIC_KEY_FILES")
        .map(|l| l.split(',').map(&moved).collect())
        .unwrap_or_default();
    let toml = format!(
        "[database]\ndata_dir = {:?}\n[auth]\nsigning_key_file = {:?}\npublic_key_files = {:?}\n\
         [crypto]\nmaster_key_file = {:?}\n",
        moved(&var("SPHAROS__DATABASE__DATA_DIR").expect("data dir")),
        moved(&var("SPHAROS__AUTH__SIGNING_KEY_FILE").expect("signing key file")),
        public,
        moved(&var("SPHAROS__CRYPTO__MASTER_KEY_FILE").expect("master key file")),
    );
    let file = root.join("spharos.toml");
    std::fs::write(&file, toml).expect("settings written");
    let settings = spharos_kit::config::Settings::load(Some(&file)).expect("settings");
    let (signer, verifier, _master) =
        spharos_kit::platform::load_keys(&settings).expect("the pod's keys load");
    (signer, verifier)
}

/// The point of the keys: with kit's own signer and verifier, loaded from exactly the files and
/// settings the pods get, a token billing mints with the platform key verifies on every pod of
/// a dedicated tenant, and a token one module mints verifies on the others.
#[test]
fn the_keys_the_operator_hands_out_work_with_kit_auth() {
    use spharos_kit::{
        TenantId,
        auth::{AuthError, TokenSigner},
    };
    use spharos_operator::keys::{PlatformPublicKey, generate_signing_key_pem};
    let platform = TokenSigner::generate();
    let config = common::operator_config_trusting(
        &PlatformPublicKey::from_pem(&platform.public_key_pem()).expect("public key"),
    );
    let t = large_franchise();
    let mut o = observed(&t);
    // The key exactly as the reconciler generates it; kit reads it as a signing key.
    let pem = generate_signing_key_pem();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("generated.pem"), &pem).expect("written");
    let tenant_signer = TokenSigner::load_or_create(&dir.path().join("generated.pem"), false)
        .expect("the generated PEM is a PKCS#8 Ed25519 signing key");
    o.signing_key = Some(pem);
    let objects = desired::desired_objects(&t, &o, &config).expect("objects");

    let tenant: TenantId = TENANT_ID.parse().expect("uuid");
    // The tenant's API token, as billing issues it on the platform.
    let api_token = platform.mint(tenant, "operator/franchises/daehan-coffee", &[], 600);
    let mut pods = Vec::new();
    for d in deployments(&objects) {
        let root = dir
            .path()
            .join(d.object.metadata.name.clone().expect("name"));
        materialize(&objects, d, &root);
        let (signer, verifier) = pod_keys(&objects, &root);
        // Every pod signs with the tenant's key, not one it made up.
        assert_eq!(signer.key_id(), tenant_signer.key_id(), "{}", d.describe());
        let p = verifier
            .verify(&api_token)
            .unwrap_or_else(|e| panic!("billing's token refused by {}: {e}", d.describe()));
        assert_eq!(p.tenant, tenant);
        pods.push((
            d.object.metadata.name.clone().expect("name"),
            signer,
            verifier,
        ));
    }
    assert_eq!(pods.len(), 4);
    let pod = |name: &str| {
        pods.iter()
            .find(|(n, ..)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    // member → privacy (consent check) and privacy → member, points, coupon (data-subject
    // requests): tokens minted in one pod verify in the others.
    let (_, member, _) = pod("spharos-member");
    let (_, privacy, privacy_verifier) = pod("spharos-privacy");
    let consent = member.mint(tenant, "service/member", &[], 60);
    assert!(privacy_verifier.verify(&consent).is_ok());
    let dsr = privacy.mint(tenant, "service/privacy", &["pii:erase"], 60);
    for callee in ["spharos-member", "spharos-points", "spharos-coupon"] {
        let (_, _, v) = pod(callee);
        assert!(v.verify(&dsr).is_ok(), "{callee} refused privacy's token");
    }
    // What each pod did before: a key of its own, which no other pod trusts.
    let stray = TokenSigner::generate().mint(tenant, "service/member", &[], 60);
    assert_eq!(privacy_verifier.verify(&stray), Err(AuthError::UnknownKey));

    // And without the platform key (the old layout), billing's token is refused.
    let objects = desired::desired_objects(&t, &o, &OperatorConfig::default()).expect("objects");
    let d = deployments(&objects)[0];
    let root = dir.path().join("without-platform-key");
    materialize(&objects, d, &root);
    let (_, verifier) = pod_keys(&objects, &root);
    assert_eq!(verifier.verify(&api_token), Err(AuthError::UnknownKey));
}

/// The pod template carries a hash of the ConfigMap: pods read their environment only at
/// start, so a change of it must roll them, and nothing else in the spec may.
#[test]
fn pods_roll_when_their_config_changes_and_only_then() {
    fn hashes(t: &MembershipTenant) -> Vec<String> {
        let objects =
            desired::desired_objects(t, &observed(t), &operator_config()).expect("objects");
        deployments(&objects)
            .iter()
            .map(|d| {
                d.object.data["spec"]["template"]["metadata"]["annotations"]
                    [desired::CONFIG_HASH_ANNOTATION]
                    .as_str()
                    .expect("config hash")
                    .to_string()
            })
            .collect()
    }
    let t = large_franchise();
    let first = hashes(&t);
    assert_eq!(first.len(), 4);
    assert!(
        first.iter().all(|h| h == &first[0] && h.len() == 16),
        "{first:?}"
    );
    assert_eq!(hashes(&t), first, "the same spec, the same hash");

    let mut rescaled = t.clone();
    rescaled
        .spec
        .dedicated
        .as_mut()
        .expect("dedicated")
        .replicas += 1;
    assert_eq!(hashes(&rescaled), first, "scaling is no config change");

    let mut moved = t.clone();
    moved.spec.time_zone = "Asia/Tokyo".into();
    let changed = hashes(&moved);
    assert_ne!(changed[0], first[0], "a new time zone rolls the pods");
    assert!(changed.iter().all(|h| h == &changed[0]));
}

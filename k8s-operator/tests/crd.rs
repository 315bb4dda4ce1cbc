//! The CRD: the checked-in YAML is exactly what the Rust types generate (no drift), and the
//! generated schema carries the names, printer columns and validation rules the issue asks for.
mod common;

use kube::CustomResourceExt;
use serde_json::Value;
use spharos_operator::{
    crd::{MembershipTenant, Placement, Plan},
    crd_yaml,
};

const CRD_FILE: &str = "../charts/spharos/crds/membershiptenants.yaml";

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let path = common::crate_dir().join(CRD_FILE);
    let on_disk = std::fs::read_to_string(&path).expect("the CRD file exists");
    let generated = crd_yaml().expect("the CRD serialises");
    assert!(
        on_disk == generated,
        "{} drifted from the Rust types; regenerate it with \
         `cargo run -p spharos-operator --bin crdgen > charts/spharos/crds/membershiptenants.yaml`",
        path.display()
    );
}

fn schema() -> Value {
    let crd = serde_json::to_value(MembershipTenant::crd()).expect("json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn rules(v: &Value) -> Vec<String> {
    v["x-kubernetes-validations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["rule"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crd_names_scope_status_and_printer_columns() {
    let crd = serde_json::to_value(MembershipTenant::crd()).expect("json");
    assert_eq!(
        crd["metadata"]["name"],
        "membershiptenants.membership.spharos.io"
    );
    assert_eq!(crd["spec"]["group"], "membership.spharos.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Plan", "Placement", "Phase", "Age"]);
}

#[test]
fn schema_validates_plans_placement_and_immutability() {
    let spec = &schema()["properties"]["spec"];
    let rules = rules(spec);
    assert!(
        rules
            .iter()
            .any(|r| r.contains("self.plan == 'basic'") && r.contains("'dedicated'")),
        "basic cannot be dedicated: {rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.contains("oldSelf.tenantId")),
        "tenantId immutable: {rules:?}"
    );
    let props = &spec["properties"];
    assert_eq!(
        props["plan"]["enum"],
        serde_json::json!(["basic", "custom"])
    );
    assert_eq!(
        props["placement"]["enum"],
        serde_json::json!(["shared", "dedicated"])
    );
    assert_eq!(
        props["dedicated"]["properties"]["mode"]["enum"],
        serde_json::json!(["monolithic", "microservices"])
    );
    assert_eq!(props["timeZone"]["default"], "Asia/Seoul");
    assert!(props["businessNumber"]["pattern"].is_string());
    // The uniqueness rule over modules is bounded so the apiserver accepts its CEL cost.
    assert_eq!(props["modules"]["maxItems"], 6);
    let status = &schema()["properties"]["status"]["properties"];
    for field in [
        "phase",
        "conditions",
        "observedGeneration",
        "tenantId",
        "endpoints",
    ] {
        assert!(status[field].is_object(), "status.{field} missing");
    }
    // No enum may list null: the apiserver's structural check refuses it.
    let text = serde_json::to_string(&schema()).expect("json");
    assert!(
        !text.contains("null]") && !text.contains(",null"),
        "an enum lists null"
    );
}

#[test]
fn examples_are_valid_tenants_with_the_plan_defaults() {
    let small = common::example("small-merchant");
    assert_eq!(small.spec.plan, Plan::Basic);
    assert_eq!(small.spec.effective_placement(), Placement::Shared);
    assert!(small.spec.expected_members < 300_000 && small.spec.expected_stores < 100);
    let large = common::example("large-franchise");
    assert_eq!(large.spec.plan, Plan::Custom);
    assert_eq!(large.spec.effective_placement(), Placement::Dedicated);
    assert!(!large.spec.modules.is_empty());
    assert!(large.spec.database.is_some());
    // Defaults fill in what the example leaves out.
    let mut without = large.spec.clone();
    without.placement = None;
    assert_eq!(without.effective_placement(), Placement::Dedicated);
}

//! The CRD's CEL rules (`x-kubernetes-validations`), evaluated client-side by kube's CEL
//! validator against the generated schema, as the apiserver would on create and update.
mod common;

use kube::core::cel::{validate_cel, validate_cel_update};
use spharos_operator::crd::{MembershipTenant, ModuleName, ModuleSpec, Placement, Plan};

fn refused(t: &MembershipTenant, why: &str) {
    let err = validate_cel(t).expect_err("the apiserver would refuse this");
    let text = format!("{err:?}");
    assert!(text.contains(why), "expected {why:?} in {text}");
}

#[test]
fn the_examples_pass_every_rule() {
    for name in ["small-merchant", "large-franchise"] {
        let t = common::example(name);
        validate_cel(&t).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn basic_cannot_be_dedicated() {
    let mut t = common::example("small-merchant");
    t.spec.placement = Some(Placement::Dedicated);
    refused(&t, "placement dedicated needs the custom plan");
}

#[test]
fn plans_and_modules_must_agree() {
    let mut custom = common::example("large-franchise");
    custom.spec.modules.clear();
    refused(&custom, "at least one module");

    let mut basic = common::example("small-merchant");
    basic.spec.modules = vec![ModuleSpec {
        name: ModuleName::Campaign,
        monthly_fee_krw: 1,
    }];
    refused(&basic, "custom plan only");

    let mut twice = common::example("large-franchise");
    twice.spec.modules.push(ModuleSpec {
        name: ModuleName::Membership,
        monthly_fee_krw: 1,
    });
    refused(&twice, "each module at most once");
}

#[test]
fn dedicated_needs_a_database_even_when_placement_is_defaulted() {
    let mut t = common::example("large-franchise");
    t.spec.placement = None;
    t.spec.database = None;
    refused(&t, "needs a database");
    // Custom on the shared deployment needs none.
    t.spec.placement = Some(Placement::Shared);
    validate_cel(&t).expect("shared custom tenant");
    assert_eq!(t.spec.plan, Plan::Custom);
}

#[test]
fn tenant_id_is_immutable_once_set() {
    let mut old = common::example("small-merchant");
    old.spec.tenant_id = Some("0190f2c4-6f1e-7000-8000-000000000001".into());
    let mut changed = old.clone();
    changed.spec.tenant_id = Some("0190f2c4-6f1e-7000-8000-000000000002".into());
    let err = validate_cel_update(&changed, &old).expect_err("changing the id is refused");
    assert!(
        format!("{err:?}").contains("tenantId is immutable"),
        "{err:?}"
    );
    let mut removed = old.clone();
    removed.spec.tenant_id = None;
    assert!(
        validate_cel_update(&removed, &old).is_err(),
        "removing the id is refused"
    );
    // Setting it the first time, or keeping it, is fine; other fields may change.
    let unset = common::example("small-merchant");
    validate_cel_update(&old, &unset).expect("first assignment");
    let mut renamed = old.clone();
    renamed.spec.display_name = "한빛베이커리 본점".into();
    validate_cel_update(&renamed, &old).expect("other changes");
}

#[test]
fn a_dedicated_tenant_cannot_move_to_shared() {
    let old = common::example("large-franchise");
    let mut shared = old.clone();
    shared.spec.placement = Some(Placement::Shared);
    let err = validate_cel_update(&shared, &old).expect_err("dedicated to shared is refused");
    assert!(
        format!("{err:?}").contains("cannot move to the shared deployment"),
        "{err:?}"
    );
    // Shared to dedicated (growing into its own stack) is allowed.
    validate_cel_update(&old, &shared).expect("shared to dedicated");
}

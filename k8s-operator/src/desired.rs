//! The sans-IO core of the operator: from a tenant's spec and what was observed (billing's view,
//! whether CloudNativePG is installed, the referenced database secret) to the Kubernetes objects
//! that should exist, the billing calls that should be made, the status to report and, on
//! deletion, the ordered teardown. Nothing here talks to the network, so every decision is a
//! plain function with unit and snapshot tests; `reconcile` only executes what these return.
use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind},
};
use serde_json::{Value, json};

use crate::{
    crd::{
        Condition, DeploymentMode, Endpoint, MembershipTenant, MembershipTenantStatus, ModuleName,
        ModuleSpec, Phase, Placement, Plan,
    },
    keys::PlatformPublicKey,
};

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "spharos-operator";
/// Label naming the `MembershipTenant` an object belongs to (`<namespace>.<name>`).
pub const TENANT_LABEL: &str = "membership.spharos.io/tenant";
/// Label carrying the billing tenant id.
pub const TENANT_ID_LABEL: &str = "membership.spharos.io/tenant-id";
/// gRPC port of `spharos serve`.
pub const GRPC_PORT: i32 = 50051;
/// HTTP port of `spharos serve` (`/healthz`, `/readyz`, `/metrics`).
pub const HTTP_PORT: i32 = 8080;

/// Why a desired object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    #[error("the tenant resource has no namespace")]
    NoNamespace,
    #[error("object {0} is not a valid Kubernetes object: {1}")]
    Invalid(String, serde_json::Error),
}

/// How the operator is deployed: everything a tenant's objects need that is not in its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// The `spharos` image dedicated tenants run.
    pub image: String,
    /// NATS of the platform; dedicated tenants get their own subject namespace on it.
    pub nats_url: String,
    /// Client endpoint of the shared deployment (gRPC).
    pub shared_grpc_endpoint: String,
    /// Namespace of the platform (operator and shared deployment), allowed into dedicated
    /// namespaces by their NetworkPolicy.
    pub platform_namespace: String,
    /// The public half of the platform's signing key (the one billing signs tenant API tokens
    /// with), given to every dedicated tenant as a trusted key. `None`: dedicated tenants
    /// report `Provisioned=False` (`PlatformPublicKeyMissing`), since billing's tokens would
    /// not verify there.
    pub platform_public_key: Option<PlatformPublicKey>,
    /// The platform's JetStream stream and subject namespace (its `nats.stream` and
    /// `nats.namespace`), where billing publishes token revocations. Dedicated tenants run on a
    /// stream of their own and are told to hear revocations there too
    /// (`SPHAROS__AUTH__REVOCATIONS__STREAM` / `__NAMESPACE`), so a token billing revokes stops
    /// working on them as well.
    pub platform_nats_stream: String,
    pub platform_nats_namespace: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            image: "ghcr.io/spharos/spharos:0.1.0".into(),
            nats_url: "nats://nats.spharos-system.svc:4222".into(),
            shared_grpc_endpoint: "http://spharos.spharos-system.svc:50051".into(),
            platform_namespace: "spharos-system".into(),
            platform_public_key: None,
            // The chart's `nats.stream` / `nats.namespace` defaults (kit's too).
            platform_nats_stream: "SPHAROS".into(),
            platform_nats_namespace: "spharos".into(),
        }
    }
}

/// Billing's view of a tenant (from `GetTenant`), reduced to what decisions need.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BillingState {
    /// The tenant exists in the registry.
    pub registered: bool,
    pub subscription: Option<SubscriptionState>,
    pub member_count: i64,
    pub store_count: i64,
    /// Billing's own compliance verdict (counts from metering).
    pub compliant: bool,
    /// Billing's stable reason when not compliant (e.g. `BASIC_MEMBER_LIMIT_REACHED`).
    pub compliance_reason: String,
    pub compliance_message: String,
}

/// The subscription in force.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    pub plan: Plan,
    pub status: SubscriptionStatus,
    /// Custom only, sorted by module.
    pub modules: Vec<ModuleSpec>,
}

/// Subscription lifecycle as billing reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionStatus {
    Active,
    Suspended,
    Cancelled,
}

/// The Basic plan's limits (billing's catalogue): fewer than this many members and stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    pub basic_members: i64,
    pub basic_stores: i64,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            basic_members: 300_000,
            basic_stores: 100,
        }
    }
}

/// A call the reconciler makes to billing.
#[derive(Debug, Clone, PartialEq)]
pub enum BillingAction {
    CreateTenant,
    Subscribe {
        plan: Plan,
        modules: Vec<ModuleSpec>,
    },
    /// Applied immediately (prorated by billing), so the declared plan is the plan in force.
    ChangePlan {
        from: Plan,
        plan: Plan,
        modules: Vec<ModuleSpec>,
    },
}

/// What the reconciler found before deciding.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub tenant_id: String,
    /// The `clusters.postgresql.cnpg.io` CRD is installed.
    pub cnpg_available: bool,
    /// The value of `spec.database.existingSecret` (when named and found).
    pub database_url: Option<String>,
    /// The content of `spec.messaging.senderSecretRef` (dedicated tenants only), copied into
    /// the dedicated namespace because a pod cannot mount a Secret of another namespace.
    pub messaging_secret: Option<BTreeMap<String, String>>,
    /// A master key generated for a dedicated tenant whose key Secret does not exist yet (64
    /// hex characters). `None` when it exists: it wraps every data key, so it is never replaced.
    pub master_key: Option<String>,
    /// A token signing key (Ed25519, PKCS#8 PEM) generated for a dedicated tenant whose
    /// signing-key Secret does not exist yet. `None` when it exists: every pod of the tenant
    /// signs and verifies with it, so it is never replaced.
    pub signing_key: Option<String>,
    /// A token billing just issued, to be written into the token Secret. `None` when the
    /// Secret already holds one: billing shows a token once, so it is never re-issued blindly.
    pub issued_token: Option<String>,
    /// Billing after this reconcile's calls.
    pub billing: BillingState,
    pub limits: PlanLimits,
    /// RFC 3339 "now", for condition transition times (a parameter to keep this pure).
    pub now: String,
}

/// One object to server-side apply, with the API it lives in.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub api: ApiResource,
    pub object: DynamicObject,
}

impl DesiredObject {
    /// `Kind/namespace/name`, for events and logs.
    pub fn describe(&self) -> String {
        match self.object.namespace() {
            Some(ns) => format!("{}/{ns}/{}", self.api.kind, self.object.name_any()),
            None => format!("{}/{}", self.api.kind, self.object.name_any()),
        }
    }
}

/// The Secret holding the tenant's API token (in the tenant resource's namespace).
pub fn token_secret_name(tenant: &MembershipTenant) -> String {
    format!("{}-spharos-api", tenant.name_any())
}

/// The ConfigMap the retention export is written to (kept after the tenant is gone).
pub fn retention_config_map_name(tenant: &MembershipTenant) -> String {
    format!("{}-retention-export", tenant.name_any())
}

/// The namespace of a dedicated tenant: `spharos-<resource namespace>-<name>`, cut to 63.
pub fn dedicated_namespace(tenant: &MembershipTenant) -> String {
    let ns = tenant.namespace().unwrap_or_default();
    let mut name = format!("spharos-{ns}-{}", tenant.name_any());
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// The dedicated tenant's crypto master key (`master.key`), inside its namespace.
pub const MASTER_KEY_SECRET: &str = "spharos-master-key";

/// The dedicated tenant's token signing key (`signing.pem`), inside its namespace. A Secret of
/// its own, not a key added to the master key's: applying it can never touch the master key.
pub const SIGNING_KEY_SECRET: &str = "spharos-signing-key";

/// The public keys a dedicated tenant trusts besides its own (`platform.pem`: the platform's,
/// which signs the tokens billing issues).
pub const TRUSTED_KEYS_CONFIG_MAP: &str = "spharos-trusted-keys";

/// Where the pods of a dedicated tenant find their keys.
pub const MASTER_KEY_FILE: &str = "/etc/spharos/keys/master.key";
pub const SIGNING_KEY_FILE: &str = "/etc/spharos/signing/signing.pem";
pub const PLATFORM_PUBLIC_KEY_FILE: &str = "/etc/spharos/trusted/platform.pem";

/// Pod-template annotation naming the platform key id the pods trust: keys are read at start,
/// so a new platform key rolls the pods.
pub const PLATFORM_KEY_ID_ANNOTATION: &str = "membership.spharos.io/platform-key-id";
/// Pod-template annotation: a hash of the `spharos-config` ConfigMap's data. Pods read their
/// environment only at start, so a changed ConfigMap (a module enabled, an endpoint moved, an
/// operator upgrade adding a setting) rolls the Deployments; an unchanged one never does.
pub const CONFIG_HASH_ANNOTATION: &str = "membership.spharos.io/config-hash";

/// The first 16 hex digits of SHA-256 over the ConfigMap data (keys in order).
fn config_hash(env: &BTreeMap<String, String>) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in env {
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The copy of the messaging sender Secret inside a dedicated namespace.
pub const MESSAGING_SECRET: &str = "spharos-messaging";

/// CloudNativePG cluster name inside a dedicated namespace.
pub const CNPG_CLUSTER: &str = "spharos-db";

/// The `spharos serve` targets a dedicated tenant runs. Membership (members, points, coupons)
/// is the core every tenant has; privacy runs when the module is bought. The other catalogue
/// modules (app web, campaign, analytics, customer centre) have no service in the binary yet,
/// so they are only passed on in the ConfigMap.
pub fn service_targets(tenant: &MembershipTenant) -> Vec<&'static str> {
    let mut targets = vec!["member", "points", "coupon"];
    if tenant
        .spec
        .modules
        .iter()
        .any(|m| m.name == ModuleName::Privacy)
    {
        targets.push("privacy");
    }
    targets
}

fn labels(tenant: &MembershipTenant, tenant_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "spharos".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "spharos-operator".into(),
        ),
        (
            TENANT_LABEL.into(),
            format!(
                "{}.{}",
                tenant.namespace().unwrap_or_default(),
                tenant.name_any()
            ),
        ),
        (TENANT_ID_LABEL.into(), tenant_id.into()),
    ])
}

fn object(api: ApiResource, value: Value) -> Result<DesiredObject, DesiredError> {
    let name = format!(
        "{}/{}",
        api.kind,
        value["metadata"]["name"].as_str().unwrap_or("?")
    );
    let object: DynamicObject =
        serde_json::from_value(value).map_err(|e| DesiredError::Invalid(name, e))?;
    Ok(DesiredObject { api, object })
}

/// An `Opaque` Secret holding `string_data`.
fn opaque_secret(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    string_data: Value,
) -> Result<DesiredObject, DesiredError> {
    object(
        core("Secret", "secrets"),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name, "namespace": namespace, "labels": labels },
            "type": "Opaque",
            "stringData": string_data,
        }),
    )
}

fn core(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural)
}

fn gvk(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Everything that should exist for `tenant`: the token Secret (when a token was just issued)
/// and, for a dedicated tenant, its namespace and services.
pub fn desired_objects(
    tenant: &MembershipTenant,
    observed: &Observed,
    config: &OperatorConfig,
) -> Result<Vec<DesiredObject>, DesiredError> {
    let ns = tenant.namespace().ok_or(DesiredError::NoNamespace)?;
    let labels = labels(tenant, &observed.tenant_id);
    let mut out = Vec::new();
    if let Some(token) = &observed.issued_token {
        out.push(token_secret(tenant, &ns, &labels, observed, config, token)?);
    }
    if tenant.spec.effective_placement() == Placement::Dedicated {
        out.extend(dedicated_objects(tenant, observed, config, &labels)?);
    }
    Ok(out)
}

fn endpoint_of(tenant: &MembershipTenant, config: &OperatorConfig) -> String {
    match tenant.spec.effective_placement() {
        Placement::Shared => config.shared_grpc_endpoint.clone(),
        Placement::Dedicated => {
            let svc = match tenant.spec.dedicated.clone().unwrap_or_default().mode {
                DeploymentMode::Monolithic => "spharos".to_string(),
                // Clients talk to members first; the member service is the front door.
                DeploymentMode::Microservices => "spharos-member".to_string(),
            };
            format!(
                "http://{svc}.{}.svc:{GRPC_PORT}",
                dedicated_namespace(tenant)
            )
        }
    }
}

fn token_secret(
    tenant: &MembershipTenant,
    ns: &str,
    labels: &BTreeMap<String, String>,
    observed: &Observed,
    config: &OperatorConfig,
    token: &str,
) -> Result<DesiredObject, DesiredError> {
    let owner = owner_reference(tenant);
    object(
        core("Secret", "secrets"),
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": token_secret_name(tenant),
                "namespace": ns,
                "labels": labels,
                // Deleted with the tenant resource (after the finalizer ran).
                "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
            },
            "type": "Opaque",
            "stringData": {
                "token": token,
                "tenantId": observed.tenant_id,
                "endpoint": endpoint_of(tenant, config),
            },
        }),
    )
}

fn owner_reference(tenant: &MembershipTenant) -> Option<Value> {
    let uid = tenant.metadata.uid.clone()?;
    Some(json!({
        "apiVersion": format!("{}/v1alpha1", crate::crd::GROUP),
        "kind": "MembershipTenant",
        "name": tenant.name_any(),
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }))
}

fn dedicated_objects(
    tenant: &MembershipTenant,
    observed: &Observed,
    config: &OperatorConfig,
    labels: &BTreeMap<String, String>,
) -> Result<Vec<DesiredObject>, DesiredError> {
    let ns = dedicated_namespace(tenant);
    let sizing = tenant.spec.dedicated.clone().unwrap_or_default();
    let mut out = Vec::new();
    let mut ns_labels = labels.clone();
    // Pod Security "restricted": the services need nothing more.
    ns_labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    out.push(object(
        core("Namespace", "namespaces"),
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": ns, "labels": ns_labels },
        }),
    )?);

    if let Some(key) = &observed.master_key {
        out.push(opaque_secret(
            &ns,
            MASTER_KEY_SECRET,
            labels,
            json!({ "master.key": key }),
        )?);
    }
    if let Some(pem) = &observed.signing_key {
        out.push(opaque_secret(
            &ns,
            SIGNING_KEY_SECRET,
            labels,
            json!({ "signing.pem": pem }),
        )?);
    }
    if let Some(platform) = &config.platform_public_key {
        out.push(object(
            core("ConfigMap", "configmaps"),
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": TRUSTED_KEYS_CONFIG_MAP,
                    "namespace": ns,
                    "labels": labels,
                    "annotations": { PLATFORM_KEY_ID_ANNOTATION: platform.key_id() },
                },
                "data": { "platform.pem": platform.pem() },
            }),
        )?);
    }

    // Database: a CloudNativePG cluster when the operator can have one, else the existing
    // database, copied into the namespace (a Secret cannot be read across namespaces).
    let db = database_source(tenant, observed);
    match &db {
        DatabaseSource::CloudNativePg => out.push(cnpg_cluster(tenant, &ns, labels)?),
        DatabaseSource::Existing(url) => out.push(opaque_secret(
            &ns,
            "spharos-database",
            labels,
            json!({ "url": url }),
        )?),
        DatabaseSource::Unavailable => {}
    }
    if let Some(data) = &observed.messaging_secret {
        out.push(opaque_secret(&ns, MESSAGING_SECRET, labels, json!(data))?);
    }

    let targets = service_targets(tenant);
    let mut env = BTreeMap::from([
        ("SPHAROS__NATS__URL".to_string(), config.nats_url.clone()),
        // Own subject namespace and stream: events never cross tenants on the shared NATS.
        (
            "SPHAROS__NATS__NAMESPACE".to_string(),
            format!("t{}", observed.tenant_id.replace('-', "")),
        ),
        (
            "SPHAROS__NATS__STREAM".to_string(),
            format!("T{}", observed.tenant_id.replace('-', "").to_uppercase()),
        ),
        // ... but token revocations are billing's, published on the platform's stream: heard
        // there too (only read; kit never creates or changes that stream).
        (
            "SPHAROS__AUTH__REVOCATIONS__STREAM".to_string(),
            config.platform_nats_stream.clone(),
        ),
        (
            "SPHAROS__AUTH__REVOCATIONS__NAMESPACE".to_string(),
            config.platform_nats_namespace.clone(),
        ),
        (
            "SPHAROS__TENANT__DEFAULT_TIME_ZONE".to_string(),
            tenant.spec.time_zone.clone(),
        ),
        (
            "SPHAROS__GRPC__LISTEN".to_string(),
            format!("0.0.0.0:{GRPC_PORT}"),
        ),
        (
            "SPHAROS__HTTP__LISTEN".to_string(),
            format!("0.0.0.0:{HTTP_PORT}"),
        ),
        ("SPHAROS__TELEMETRY__LOG_FORMAT".to_string(), "json".into()),
        (
            "SPHAROS__DATABASE__DATA_DIR".to_string(),
            "/var/lib/spharos".into(),
        ),
        (
            "SPHAROS__CRYPTO__MASTER_KEY_FILE".to_string(),
            MASTER_KEY_FILE.into(),
        ),
        // One key for every pod of the tenant: what one module mints, the others verify.
        (
            "SPHAROS__AUTH__SIGNING_KEY_FILE".to_string(),
            SIGNING_KEY_FILE.into(),
        ),
        ("SPHAROS_TENANT_ID".to_string(), observed.tenant_id.clone()),
        (
            "SPHAROS_ENABLED_MODULES".to_string(),
            tenant
                .spec
                .modules
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]);
    if let Some(m) = &tenant.spec.messaging {
        if let Some(n) = &m.sms_sender_number {
            env.insert("SPHAROS_MESSAGING_SMS_SENDER".into(), n.clone());
        }
        if let Some(f) = &m.email_from {
            env.insert("SPHAROS_MESSAGING_EMAIL_FROM".into(), f.clone());
        }
    }
    if config.platform_public_key.is_some() {
        // Comma-separated list (kit parses `auth.public_key_files` from the environment so).
        env.insert(
            "SPHAROS__AUTH__PUBLIC_KEY_FILES".into(),
            PLATFORM_PUBLIC_KEY_FILE.into(),
        );
    }
    if sizing.mode == DeploymentMode::Microservices {
        for t in &targets {
            env.insert(
                format!("SPHAROS__SERVICES__{}", t.to_uppercase()),
                format!("http://spharos-{t}.{ns}.svc:{GRPC_PORT}"),
            );
        }
    }
    let env_hash = config_hash(&env);
    out.push(object(
        core("ConfigMap", "configmaps"),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "spharos-config", "namespace": ns, "labels": labels },
            "data": env,
        }),
    )?);

    // A dedicated tenant without a database gets no workloads: they would only crash-loop.
    if db != DatabaseSource::Unavailable {
        let workloads: Vec<(String, String)> = match sizing.mode {
            DeploymentMode::Monolithic => vec![("spharos".into(), targets.join(","))],
            DeploymentMode::Microservices => targets
                .iter()
                .map(|t| (format!("spharos-{t}"), (*t).to_string()))
                .collect(),
        };
        for (name, target) in workloads {
            out.extend(workload(
                tenant, &ns, labels, &name, &target, &sizing, &db, config, &env_hash,
            )?);
        }
    }
    out.push(network_policy(&ns, labels, config)?);
    Ok(out)
}

/// The Deployments (each with its Service, PodDisruptionBudget and autoscaler of the same
/// name) a dedicated tenant runs; none when shared or while its database is unavailable.
pub fn workload_names(tenant: &MembershipTenant, observed: &Observed) -> Vec<String> {
    if tenant.spec.effective_placement() != Placement::Dedicated
        || database_source(tenant, observed) == DatabaseSource::Unavailable
    {
        return Vec::new();
    }
    match tenant.spec.dedicated.clone().unwrap_or_default().mode {
        DeploymentMode::Monolithic => vec!["spharos".into()],
        DeploymentMode::Microservices => service_targets(tenant)
            .iter()
            .map(|t| format!("spharos-{t}"))
            .collect(),
    }
}

/// Workloads the last reconcile applied that the spec no longer wants (a mode switch, a
/// module dropped): the reconciler deletes them after applying the new ones.
pub fn stale_workloads(tenant: &MembershipTenant, observed: &Observed) -> Vec<String> {
    let wanted = workload_names(tenant, observed);
    tenant
        .status
        .as_ref()
        .map(|s| s.workloads.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|w| !wanted.contains(w))
        .collect()
}

/// Where a dedicated tenant's database comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseSource {
    CloudNativePg,
    Existing(String),
    Unavailable,
}

/// CloudNativePG when asked for and installed; else the existing secret when given and found.
pub fn database_source(tenant: &MembershipTenant, observed: &Observed) -> DatabaseSource {
    let Some(db) = &tenant.spec.database else {
        return DatabaseSource::Unavailable;
    };
    if db.cloud_native_pg.is_some() && observed.cnpg_available {
        return DatabaseSource::CloudNativePg;
    }
    match (&db.existing_secret, &observed.database_url) {
        (Some(_), Some(url)) => DatabaseSource::Existing(url.clone()),
        _ => DatabaseSource::Unavailable,
    }
}

fn cnpg_cluster(
    tenant: &MembershipTenant,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> Result<DesiredObject, DesiredError> {
    let spec = tenant
        .spec
        .database
        .as_ref()
        .and_then(|d| d.cloud_native_pg.clone())
        .unwrap_or(crate::crd::CloudNativePgSpec {
            instances: 3,
            storage_size: "20Gi".into(),
            storage_class: None,
        });
    let mut storage = json!({ "size": spec.storage_size });
    if let Some(class) = &spec.storage_class {
        storage["storageClass"] = json!(class);
    }
    object(
        gvk("postgresql.cnpg.io", "v1", "Cluster", "clusters"),
        json!({
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": { "name": CNPG_CLUSTER, "namespace": ns, "labels": labels },
            "spec": {
                "instances": spec.instances,
                "storage": storage,
                // CloudNativePG writes `<cluster>-app` with a `uri` key for this owner.
                "bootstrap": { "initdb": { "database": "spharos", "owner": "spharos" } },
            },
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn workload(
    tenant: &MembershipTenant,
    ns: &str,
    labels: &BTreeMap<String, String>,
    name: &str,
    target: &str,
    sizing: &crate::crd::DedicatedSpec,
    db: &DatabaseSource,
    config: &OperatorConfig,
    env_hash: &str,
) -> Result<Vec<DesiredObject>, DesiredError> {
    let mut pod_labels = labels.clone();
    pod_labels.insert("app.kubernetes.io/component".into(), name.into());
    let selector = json!({
        "app.kubernetes.io/name": "spharos",
        "app.kubernetes.io/component": name,
    });
    let db_secret = match db {
        DatabaseSource::CloudNativePg => {
            json!({ "name": format!("{CNPG_CLUSTER}-app"), "key": "uri" })
        }
        _ => json!({ "name": "spharos-database", "key": "url" }),
    };
    let mut env = vec![json!({
        "name": "SPHAROS__DATABASE__URL",
        "valueFrom": { "secretKeyRef": db_secret },
    })];
    let messaging = tenant.spec.messaging.is_some();
    if messaging {
        env.push(json!({
            "name": "SPHAROS_MESSAGING_SECRET_DIR",
            "value": "/etc/spharos/messaging",
        }));
    }
    // The root filesystem is read-only; SQLite is never used here, but the data dir must exist.
    let mut mounts = vec![
        json!({ "name": "data", "mountPath": "/var/lib/spharos" }),
        json!({ "name": "keys", "mountPath": "/etc/spharos/keys", "readOnly": true }),
        json!({ "name": "signing-key", "mountPath": "/etc/spharos/signing", "readOnly": true }),
    ];
    // Not optional: without its master key a pod must not start (it would not read PII), nor
    // without the tenant's signing key (it would make up its own, which no other pod trusts).
    let mut volumes = vec![
        json!({ "name": "data", "emptyDir": {} }),
        json!({ "name": "keys", "secret": { "secretName": MASTER_KEY_SECRET } }),
        json!({ "name": "signing-key", "secret": { "secretName": SIGNING_KEY_SECRET } }),
    ];
    let mut template_metadata = json!({
        "labels": pod_labels,
        "annotations": { CONFIG_HASH_ANNOTATION: env_hash },
    });
    if let Some(platform) = &config.platform_public_key {
        mounts.push(
            json!({ "name": "trusted-keys", "mountPath": "/etc/spharos/trusted", "readOnly": true }),
        );
        volumes.push(
            json!({ "name": "trusted-keys", "configMap": { "name": TRUSTED_KEYS_CONFIG_MAP } }),
        );
        template_metadata["annotations"][PLATFORM_KEY_ID_ANNOTATION] = json!(platform.key_id());
    }
    if messaging {
        mounts.push(
            json!({ "name": "messaging", "mountPath": "/etc/spharos/messaging", "readOnly": true }),
        );
        // Optional: the pods start (and serve everything but messages) before the copy exists.
        volumes.push(json!({ "name": "messaging", "secret": { "secretName": MESSAGING_SECRET, "optional": true } }));
    }
    let probe = |path: &str, delay: i32| {
        json!({
            "httpGet": { "path": path, "port": "http" },
            "initialDelaySeconds": delay,
            "periodSeconds": 10,
        })
    };
    let deployment = object(
        gvk("apps", "v1", "Deployment", "deployments"),
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": name, "namespace": ns, "labels": pod_labels },
            "spec": {
                "replicas": sizing.replicas,
                "selector": { "matchLabels": selector },
                "template": {
                    "metadata": template_metadata,
                    "spec": {
                        // The same non-root user as the chart's platform pods.
                        "securityContext": {
                            "runAsNonRoot": true,
                            "runAsUser": 10001,
                            "fsGroup": 10001,
                            "seccompProfile": { "type": "RuntimeDefault" },
                        },
                        "containers": [{
                            "name": "spharos",
                            "image": config.image,
                            "args": ["serve", "--target", target],
                            "ports": [
                                { "name": "grpc", "containerPort": GRPC_PORT },
                                { "name": "http", "containerPort": HTTP_PORT },
                            ],
                            "envFrom": [{ "configMapRef": { "name": "spharos-config" } }],
                            "env": env,
                            "readinessProbe": probe("/readyz", 2),
                            "livenessProbe": probe("/healthz", 10),
                            "resources": {
                                "requests": {
                                    "cpu": sizing.resources.requests.cpu,
                                    "memory": sizing.resources.requests.memory,
                                },
                                "limits": {
                                    "cpu": sizing.resources.limits.cpu,
                                    "memory": sizing.resources.limits.memory,
                                },
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": { "drop": ["ALL"] },
                            },
                            "volumeMounts": mounts,
                        }],
                        "volumes": volumes,
                    },
                },
            },
        }),
    )?;
    let service = object(
        core("Service", "services"),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            "spec": {
                "selector": selector,
                "ports": [
                    { "name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "kubernetes.io/h2c" },
                    { "name": "http", "port": HTTP_PORT, "targetPort": "http" },
                ],
            },
        }),
    )?;
    let pdb = object(
        gvk(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
        ),
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            // One replica may go at a time; with a single replica a drain still proceeds.
            "spec": { "maxUnavailable": 1, "selector": { "matchLabels": selector } },
        }),
    )?;
    let max = sizing
        .max_replicas
        .unwrap_or(sizing.replicas.saturating_mul(3));
    let hpa = object(
        gvk(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
        ),
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": { "name": name, "namespace": ns, "labels": labels },
            "spec": {
                "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": name },
                "minReplicas": sizing.replicas,
                "maxReplicas": max.max(sizing.replicas),
                "metrics": [{
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": { "type": "Utilization", "averageUtilization": 70 },
                    },
                }],
            },
        }),
    )?;
    Ok(vec![deployment, service, pdb, hpa])
}

fn network_policy(
    ns: &str,
    labels: &BTreeMap<String, String>,
    config: &OperatorConfig,
) -> Result<DesiredObject, DesiredError> {
    object(
        gvk(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
        ),
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": { "name": "spharos-isolate", "namespace": ns, "labels": labels },
            "spec": {
                // Ingress only from this namespace and the platform's; egress stays open for
                // the database, NATS and the messaging providers.
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{
                    "from": [
                        { "podSelector": {} },
                        { "namespaceSelector": { "matchLabels": {
                            "kubernetes.io/metadata.name": config.platform_namespace,
                        } } },
                    ],
                }],
            },
        }),
    )
}

/// The billing calls that bring billing to the declared plan, in order.
pub fn billing_actions(tenant: &MembershipTenant, billing: &BillingState) -> Vec<BillingAction> {
    let plan = tenant.spec.plan;
    let modules = declared_modules(tenant);
    let mut out = Vec::new();
    if !billing.registered {
        out.push(BillingAction::CreateTenant);
    }
    match &billing.subscription {
        None
        | Some(SubscriptionState {
            status: SubscriptionStatus::Cancelled,
            ..
        }) => out.push(BillingAction::Subscribe { plan, modules }),
        Some(s) if s.plan != plan || s.modules != modules => out.push(BillingAction::ChangePlan {
            from: s.plan,
            plan,
            modules,
        }),
        Some(_) => {}
    }
    out
}

/// The spec's modules as billing sees them: sorted, and none on the Basic plan.
pub fn declared_modules(tenant: &MembershipTenant) -> Vec<ModuleSpec> {
    if tenant.spec.plan == Plan::Basic {
        return Vec::new();
    }
    let mut m = tenant.spec.modules.clone();
    m.sort_by_key(|m| m.name);
    m
}

/// The `PlanCompliant` verdict: the declared size against the Basic limits, then billing's
/// metered counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Compliance {
    pub compliant: bool,
    pub reason: String,
    pub message: String,
}

/// Whether the tenant fits its plan.
pub fn compliance(tenant: &MembershipTenant, observed: &Observed) -> Compliance {
    let spec = &tenant.spec;
    let limits = observed.limits;
    if spec.plan == Plan::Basic {
        if spec.expected_members >= limits.basic_members {
            return Compliance {
                compliant: false,
                reason: "BasicMemberLimitDeclared".into(),
                message: format!(
                    "expectedMembers {} reaches the basic plan's limit of fewer than {}; \
                     베이직 요금제는 회원 {}명 미만까지 제공됩니다. move to the custom plan",
                    spec.expected_members, limits.basic_members, limits.basic_members
                ),
            };
        }
        if spec.expected_stores >= limits.basic_stores {
            return Compliance {
                compliant: false,
                reason: "BasicStoreLimitDeclared".into(),
                message: format!(
                    "expectedStores {} reaches the basic plan's limit of fewer than {}; \
                     베이직 요금제는 매장 {}개 미만까지 제공됩니다. move to the custom plan",
                    spec.expected_stores, limits.basic_stores, limits.basic_stores
                ),
            };
        }
    }
    let b = &observed.billing;
    if b.registered && b.subscription.is_some() && !b.compliant {
        return Compliance {
            compliant: false,
            reason: pascal(&b.compliance_reason, "BillingReportsOverLimit"),
            message: if b.compliance_message.is_empty() {
                format!(
                    "billing counts {} members and {} stores, over the plan's limits",
                    b.member_count, b.store_count
                )
            } else {
                b.compliance_message.clone()
            },
        };
    }
    Compliance {
        compliant: true,
        reason: "WithinPlanLimits".into(),
        message: format!(
            "declared {} members and {} stores; billing counts {} and {}",
            spec.expected_members, spec.expected_stores, b.member_count, b.store_count
        ),
    }
}

/// `BASIC_MEMBER_LIMIT_REACHED` → `BasicMemberLimitReached` (condition reasons are CamelCase).
fn pascal(s: &str, fallback: &str) -> String {
    let out: String = s
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut c = lower.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect();
    if out.is_empty() { fallback.into() } else { out }
}

/// What applying the desired objects achieved, as the status reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioning {
    pub provisioned: bool,
    pub reason: String,
    pub message: String,
}

/// Whether the tenant's infrastructure is in place (after a successful apply).
pub fn provisioning(
    tenant: &MembershipTenant,
    observed: &Observed,
    config: &OperatorConfig,
    token_present: bool,
) -> Provisioning {
    if !token_present {
        return Provisioning {
            provisioned: false,
            reason: "TokenMissing".into(),
            message: "the API token Secret is not written yet".into(),
        };
    }
    match tenant.spec.effective_placement() {
        Placement::Shared => Provisioning {
            provisioned: true,
            reason: "RegisteredOnSharedDeployment".into(),
            message: "served by the shared deployment".into(),
        },
        Placement::Dedicated => match database_source(tenant, observed) {
            DatabaseSource::Unavailable => Provisioning {
                provisioned: false,
                reason: "DatabaseUnavailable".into(),
                message: if observed.cnpg_available {
                    "the existing database secret was not found".into()
                } else {
                    "CloudNativePG is not installed and no existing database secret was found"
                        .into()
                },
            },
            // The objects are applied all the same (the pods run and trust each other), but
            // nothing billing signed verifies there: say so instead of failing at the client.
            _ if config.platform_public_key.is_none() => Provisioning {
                provisioned: false,
                reason: "PlatformPublicKeyMissing".into(),
                message: format!(
                    "platform public key not configured (chart value keys.publicKey, operator \
                     --platform-public-key-file); tokens issued by billing, the one in Secret \
                     {} among them, will not verify on the dedicated deployment",
                    token_secret_name(tenant)
                ),
            },
            _ => Provisioning {
                provisioned: true,
                reason: "DedicatedObjectsApplied".into(),
                message: format!(
                    "{} deployment in namespace {}",
                    match tenant.spec.dedicated.clone().unwrap_or_default().mode {
                        DeploymentMode::Monolithic => "monolithic",
                        DeploymentMode::Microservices => "microservices",
                    },
                    dedicated_namespace(tenant)
                ),
            },
        },
    }
}

/// The status after a reconcile.
pub fn status(
    tenant: &MembershipTenant,
    observed: &Observed,
    config: &OperatorConfig,
    token_present: bool,
) -> MembershipTenantStatus {
    let generation = tenant.metadata.generation;
    let previous = tenant.status.clone().unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: &str| {
        let status = if ok { "True" } else { "False" };
        // The transition time moves only when the condition flips.
        let since = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| observed.now.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Some(since),
            observed_generation: generation,
        }
    };
    let prov = provisioning(tenant, observed, config, token_present);
    let comp = compliance(tenant, observed);
    let (billing_ok, billing_reason, billing_msg) = match &observed.billing.subscription {
        Some(s) if s.status == SubscriptionStatus::Active => (
            true,
            "SubscriptionActive",
            format!("subscribed to the {} plan", s.plan),
        ),
        Some(s) if s.status == SubscriptionStatus::Suspended => (
            false,
            "SubscriptionSuspended",
            "billing suspended the subscription".to_string(),
        ),
        Some(_) => (
            false,
            "SubscriptionCancelled",
            "the subscription is cancelled".to_string(),
        ),
        None => (false, "NotSubscribed", "no subscription yet".to_string()),
    };
    let failing = [
        (prov.provisioned, prov.reason.as_str()),
        (billing_ok, billing_reason),
        (comp.compliant, comp.reason.as_str()),
    ]
    .into_iter()
    .find(|(ok, _)| !ok)
    .map(|(_, r)| r.to_string());
    let ready = failing.is_none();
    let phase = if ready {
        Phase::Ready
    } else if !prov.provisioned && billing_ok && comp.compliant {
        Phase::Provisioning
    } else {
        Phase::Degraded
    };
    let mut endpoints = vec![Endpoint {
        name: "grpc".into(),
        url: endpoint_of(tenant, config),
    }];
    if tenant.spec.effective_placement() == Placement::Dedicated {
        endpoints.push(Endpoint {
            name: "http".into(),
            url: endpoint_of(tenant, config)
                .replace(&format!(":{GRPC_PORT}"), &format!(":{HTTP_PORT}")),
        });
    }
    MembershipTenantStatus {
        phase: Some(phase),
        conditions: vec![
            condition(
                "Ready",
                ready,
                failing.as_deref().unwrap_or("AllConditionsMet"),
                if ready {
                    "the tenant is provisioned, subscribed and within its plan"
                } else {
                    "see the other conditions"
                },
            ),
            condition("Provisioned", prov.provisioned, &prov.reason, &prov.message),
            condition("BillingActive", billing_ok, billing_reason, &billing_msg),
            condition("PlanCompliant", comp.compliant, &comp.reason, &comp.message),
        ],
        observed_generation: generation,
        tenant_id: Some(observed.tenant_id.clone()),
        placement: Some(tenant.spec.effective_placement()),
        endpoints,
        workloads: workload_names(tenant, observed),
        token_secret: token_present.then(|| token_secret_name(tenant)),
    }
}

/// One step of deprovisioning, executed in order; a failing step stops the teardown (and
/// keeps the finalizer), so nothing is removed before the data is safe. Every step is
/// idempotent: a teardown that stopped half-way is run again from the first step.
#[derive(Debug, Clone, PartialEq)]
pub enum TeardownStep {
    /// Billed through today; a tenant that never subscribed is skipped.
    CancelSubscription { tenant_id: String },
    /// Billing's invoices and lines as CSV into a ConfigMap in the tenant resource's namespace
    /// that is not owned by the tenant, so it outlives it; its `README.txt` says what else was
    /// kept and where ([`retention_readme`]).
    ExportBilling {
        namespace: String,
        config_map: String,
    },
    /// Revokes every live API token billing holds for the tenant (`ListTokens`, then
    /// `RevokeToken` each). The token Secret goes with the resource, but the token itself
    /// would stay valid until it expires (a year), and a platform-signed token verifies on the
    /// shared deployment whatever the placement. After the cancellation, so billing issues or
    /// rotates none any more; already revoked or expired tokens, and a tenant billing does not
    /// know, are nothing to do.
    RevokeTokens { tenant_id: String },
    /// Shared tenants: their member, points and coupon data stay in the shared deployment's
    /// database under the tenant id (the operator drops nothing there); the event and the
    /// retention README say so and how it is removed.
    RetainSharedData { tenant_id: String },
    /// A CloudNativePG `Backup` of the dedicated database, waited for until completed.
    BackupDatabase {
        namespace: String,
        backup: String,
        cluster: String,
    },
    /// An external database is never dropped by the operator; the event says so.
    RetainExternalDatabase { secret: String },
    /// Copies the dedicated master key out of the namespace before it goes: the database
    /// backup's PII is readable only with it.
    RetainMasterKey {
        namespace: String,
        copy_namespace: String,
        copy_name: String,
    },
    /// Removes the dedicated namespace with everything in it.
    DeleteNamespace { name: String },
}

impl TeardownStep {
    /// The step's name, as its Events' `action`.
    pub fn action(&self) -> &'static str {
        match self {
            TeardownStep::CancelSubscription { .. } => "CancelSubscription",
            TeardownStep::ExportBilling { .. } => "ExportBilling",
            TeardownStep::RevokeTokens { .. } => "RevokeTokens",
            TeardownStep::RetainSharedData { .. } => "RetainSharedData",
            TeardownStep::BackupDatabase { .. } => "BackupDatabase",
            TeardownStep::RetainExternalDatabase { .. } => "RetainDatabase",
            TeardownStep::RetainMasterKey { .. } => "RetainMasterKey",
            TeardownStep::DeleteNamespace { .. } => "DeleteNamespace",
        }
    }
}

/// The ordered teardown of `tenant`: cancel, export, revoke the API tokens; then for a shared
/// tenant the notice that its data stays on the shared deployment, for a dedicated one the
/// database backup (or the external database left alone), the master key copy and the
/// namespace's removal.
pub fn teardown(tenant: &MembershipTenant, observed_cnpg: bool) -> Vec<TeardownStep> {
    let tenant_id = tenant
        .status
        .as_ref()
        .and_then(|s| s.tenant_id.clone())
        .or_else(|| tenant.spec.tenant_id.clone());
    let mut steps = Vec::new();
    if let Some(id) = &tenant_id {
        steps.push(TeardownStep::CancelSubscription {
            tenant_id: id.clone(),
        });
        steps.push(TeardownStep::ExportBilling {
            namespace: tenant.namespace().unwrap_or_default(),
            config_map: retention_config_map_name(tenant),
        });
        steps.push(TeardownStep::RevokeTokens {
            tenant_id: id.clone(),
        });
    }
    match tenant.spec.effective_placement() {
        Placement::Shared => {
            // Without a tenant id billing never issued a token, so nothing was written there.
            if let Some(id) = tenant_id {
                steps.push(TeardownStep::RetainSharedData { tenant_id: id });
            }
        }
        Placement::Dedicated => {
            let ns = dedicated_namespace(tenant);
            if let Some(db) = &tenant.spec.database {
                if db.cloud_native_pg.is_some() && observed_cnpg {
                    steps.push(TeardownStep::BackupDatabase {
                        namespace: ns.clone(),
                        backup: format!("{CNPG_CLUSTER}-retention"),
                        cluster: CNPG_CLUSTER.into(),
                    });
                } else if let Some(secret) = &db.existing_secret {
                    steps.push(TeardownStep::RetainExternalDatabase {
                        secret: secret.name.clone(),
                    });
                }
            }
            steps.push(TeardownStep::RetainMasterKey {
                namespace: ns.clone(),
                copy_namespace: tenant.namespace().unwrap_or_default(),
                copy_name: format!("{}-retention-master-key", tenant.name_any()),
            });
            steps.push(TeardownStep::DeleteNamespace { name: ns });
        }
    }
    steps
}

/// An API token as billing lists it, reduced to what the revocation decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's `jti`.
    pub token_id: String,
    pub subject: String,
    pub revoked: bool,
    /// Unix seconds; `None` when billing gave none (treated as never expiring).
    pub expire_time: Option<i64>,
}

/// The tokens [`TeardownStep::RevokeTokens`] revokes: neither revoked nor expired at `now`
/// (unix seconds), in billing's order.
pub fn live_tokens(tokens: &[TokenRecord], now: i64) -> Vec<&TokenRecord> {
    tokens
        .iter()
        .filter(|t| !t.revoked && t.expire_time.is_none_or(|e| e > now))
        .collect()
}

/// The note of the `TokensRevoked` Event.
pub fn tokens_revoked_note(tenant_id: &str, revoked: usize) -> String {
    let noun = if revoked == 1 { "token" } else { "tokens" };
    format!(
        "API 토큰 {revoked}개를 폐기했습니다. 테넌트 {tenant_id}에 유효한 토큰이 남아 있지 \
         않습니다 ({revoked} API {noun} revoked; tenant {tenant_id} has no live token left)"
    )
}

/// The note of the `SharedDataRetained` Event (an Event note is at most 1 kB).
pub fn shared_data_retained_note(tenant_id: &str) -> String {
    format!(
        "공유 배포의 데이터베이스에 있는 테넌트 {tenant_id}의 회원·포인트·쿠폰 데이터는 삭제하지 \
         않고 그대로 둡니다. 회원 개인정보는 privacy 서비스의 삭제 요구(ERASURE)로 파기하세요 \
         (the tenant's member, points and coupon data remain in the shared deployment's \
         database under tenant id {tenant_id}: nothing is dropped. A platform engineer erases \
         members' PII with the privacy service's erasure requests; see the retention \
         ConfigMap's README.txt and k8s-operator/README.md, Deletion)"
    )
}

/// The `README.txt` of the retention ConfigMap: what the teardown keeps and where, one
/// paragraph per step, Korean first. Shared tenants learn that their data stays on the
/// shared deployment and how a platform engineer removes it.
pub fn retention_readme(
    tenant: &MembershipTenant,
    tenant_id: &str,
    steps: &[TeardownStep],
) -> String {
    let mut out = format!(
        "Spharos 테넌트 삭제 기록 (tenant deletion record)\n\
         리소스 (resource): MembershipTenant {}/{}\n\
         테넌트 ID (tenant id): {tenant_id}\n\
         삭제 단계와 보존 항목, 순서대로; 모든 단계가 끝나야 리소스가 삭제됩니다 (the teardown \
         steps in order and what they keep; the resource goes only after every step \
         succeeded):\n",
        tenant.namespace().unwrap_or_default(),
        tenant.name_any()
    );
    for step in steps {
        let text = match step {
            TeardownStep::CancelSubscription { .. } => {
                "- 구독: 해지, 해지일까지 청구 (subscription cancelled; billed through the day of \
                 cancellation)."
                    .to_string()
            }
            TeardownStep::ExportBilling { .. } => {
                "- invoices.csv, invoice-lines.csv: billing의 청구서와 청구 항목 (billing's \
                 invoices and invoice lines), exported at the time in the annotation \
                 membership.spharos.io/exported-at."
                    .to_string()
            }
            TeardownStep::RevokeTokens { .. } => {
                "- API 토큰: billing이 이 테넌트에 발급한 유효한 토큰을 모두 폐기 (every live API \
                 token billing issued for the tenant is revoked)."
                    .to_string()
            }
            TeardownStep::RetainSharedData { tenant_id } => format!(
                "- 공유 배포에 남은 데이터 (retained on the shared deployment): 회원·포인트·쿠폰 \
                 데이터는 삭제되지 않고 공유 배포의 데이터베이스에 테넌트 ID {tenant_id}로 \
                 남아 있습니다 (the tenant's member, points and coupon data are not dropped: \
                 they remain in the shared deployment's database under tenant id {tenant_id}).\n  \
                 제거 방법 (to remove it, a platform engineer):\n  \
                 1. 플랫폼 파드에서 토큰 발급 (in a platform pod; billing issues no token to a \
                 cancelled tenant): spharos tenant token --tenant {tenant_id} --subject \
                 offboarding --permission pii:erase --ttl-seconds 3600\n  \
                 2. 회원마다 privacy 서비스의 삭제 요구 (for each member, the privacy service's \
                 erasure): CreateDataSubjectRequest (kind DATA_SUBJECT_REQUEST_KIND_ERASURE), \
                 then ProcessDataSubjectRequest; the member's PII is erased everywhere.\n  \
                 3. 개인정보가 없는 나머지 기록(포인트 원장, 쿠폰, 익명화된 회원 등)은 보존 기간이 \
                 끝나면 공유 데이터베이스에서 tenant_id = {tenant_id} 로 직접 삭제 (what remains \
                 holds no PII, e.g. the points ledger, coupons and anonymised members: delete it \
                 by tenant_id from the shared database by hand when its retention ends)."
            ),
            TeardownStep::BackupDatabase {
                namespace,
                backup,
                cluster,
            } => format!(
                "- 데이터베이스 백업 (database backup): CloudNativePG Backup {namespace}/{backup} \
                 of cluster {cluster}, waited for until completed, before the namespace goes."
            ),
            TeardownStep::RetainExternalDatabase { secret } => format!(
                "- 외부 데이터베이스 (external database): Secret {secret}의 데이터베이스는 \
                 그대로 둠 (not touched; drop it by hand when its retention ends)."
            ),
            TeardownStep::RetainMasterKey {
                copy_namespace,
                copy_name,
                ..
            } => format!(
                "- 마스터 키 사본 (master key copy): Secret {copy_namespace}/{copy_name}; 백업의 \
                 개인정보는 이 키로만 읽을 수 있음 (the backup's PII is readable only with it)."
            ),
            TeardownStep::DeleteNamespace { name } => format!(
                "- 전용 네임스페이스 {name}: 삭제 (the dedicated namespace is deleted with \
                 everything in it)."
            ),
        };
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// The retention ConfigMap holding billing's CSV export and the README of what `steps` keep.
pub fn retention_config_map(
    tenant: &MembershipTenant,
    tenant_id: &str,
    invoices_csv: &str,
    lines_csv: &str,
    exported_at: &str,
    steps: &[TeardownStep],
) -> Result<DesiredObject, DesiredError> {
    let ns = tenant.namespace().ok_or(DesiredError::NoNamespace)?;
    let mut labels = labels(tenant, tenant_id);
    labels.insert("membership.spharos.io/retention".into(), "true".into());
    object(
        core("ConfigMap", "configmaps"),
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": retention_config_map_name(tenant),
                "namespace": ns,
                "labels": labels,
                "annotations": { "membership.spharos.io/exported-at": exported_at },
            },
            "data": {
                "invoices.csv": invoices_csv,
                "invoice-lines.csv": lines_csv,
                "README.txt": retention_readme(tenant, tenant_id, steps),
            },
        }),
    )
}

/// The CloudNativePG on-demand `Backup` taken before a dedicated tenant is removed.
pub fn retention_backup(
    tenant: &MembershipTenant,
    tenant_id: &str,
    namespace: &str,
    backup: &str,
    cluster: &str,
) -> Result<DesiredObject, DesiredError> {
    object(
        gvk("postgresql.cnpg.io", "v1", "Backup", "backups"),
        json!({
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Backup",
            "metadata": { "name": backup, "namespace": namespace, "labels": labels(tenant, tenant_id) },
            "spec": { "cluster": { "name": cluster } },
        }),
    )
}

/// The retained copy of a dedicated tenant's master key (not owned: it outlives the tenant).
pub fn retained_master_key(
    tenant: &MembershipTenant,
    tenant_id: &str,
    copy_namespace: &str,
    copy_name: &str,
    key: &str,
) -> Result<DesiredObject, DesiredError> {
    let mut labels = labels(tenant, tenant_id);
    labels.insert("membership.spharos.io/retention".into(), "true".into());
    opaque_secret(
        copy_namespace,
        copy_name,
        &labels,
        json!({ "master.key": key }),
    )
}

//! The `MembershipTenant` custom resource (`membership.spharos.io/v1alpha1`): what a platform
//! operator declares about one tenant, and what the operator reports back in its status.
//!
//! The CRD YAML is generated from these types (`crdgen`), so the Rust types are the single
//! source of truth; `tests/crd.rs` fails when the checked-in YAML drifts from them. Validation
//! that the apiserver can do by itself lives in the schema (ranges, patterns and CEL rules), so
//! an invalid tenant is refused at `kubectl apply` time instead of failing in the reconciler.
use std::fmt;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every Spharos custom resource.
pub const GROUP: &str = "membership.spharos.io";
/// Finalizer that holds deletion until billing is cancelled and the retention export ran.
pub const FINALIZER: &str = "membership.spharos.io/deprovision";

/// One tenant of the membership platform.
// Clippy reads the repeated `type_ = "string"` of the printer columns as duplicate attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "membership.spharos.io",
    version = "v1alpha1",
    kind = "MembershipTenant",
    plural = "membershiptenants",
    shortname = "mtenant",
    category = "spharos",
    namespaced,
    status = "MembershipTenantStatus",
    derive = "PartialEq",
    doc = "A tenant of Spharos Cloud Membership: registered with billing, subscribed to its plan and, when dedicated, given its own namespace and services.",
    printcolumn(name = "Plan", type_ = "string", json_path = ".spec.plan"),
    printcolumn(name = "Placement", type_ = "string", json_path = ".status.placement"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
// Each rule names the field it is about, so `kubectl apply` points at the right line.
#[x_kube(
    validation = Rule::new("!(self.plan == 'basic' && has(self.placement) && self.placement == 'dedicated')")
        .message("a basic plan runs on the shared deployment; placement dedicated needs the custom plan")
        .field_path(".placement"),
    validation = Rule::new("self.plan != 'custom' || size(self.modules) > 0")
        .message("a custom plan needs at least one module with its negotiated fee")
        .field_path(".modules"),
    validation = Rule::new("self.plan != 'basic' || size(self.modules) == 0")
        .message("the basic plan has a fixed module set; modules are priced on the custom plan only")
        .field_path(".modules"),
    validation = Rule::new("(has(self.placement) ? self.placement : (self.plan == 'custom' ? 'dedicated' : 'shared')) != 'dedicated' || has(self.database)")
        .message("a dedicated tenant needs a database (cloudNativePg or existingSecret)")
        .field_path(".database"),
    // Moving back from dedicated would strand the tenant's own database: export and recreate.
    validation = Rule::new("(has(oldSelf.placement) ? oldSelf.placement : (oldSelf.plan == 'custom' ? 'dedicated' : 'shared')) != 'dedicated' || (has(self.placement) ? self.placement : (self.plan == 'custom' ? 'dedicated' : 'shared')) == 'dedicated'")
        .message("a dedicated tenant cannot move to the shared deployment (its data lives in its own database); export it and create a new tenant")
        .field_path(".placement"),
    validation = Rule::new("!has(oldSelf.tenantId) || (has(self.tenantId) && self.tenantId == oldSelf.tenantId)")
        .message("tenantId is immutable once set")
        .field_path(".tenantId")
)]
pub struct MembershipTenantSpec {
    /// The merchant's name as shown to people (상호).
    #[schemars(length(min = 1, max = 100))]
    pub display_name: String,
    /// 사업자등록번호, 10 digits with or without dashes (`123-45-67890`); billing verifies the
    /// check digit.
    #[schemars(regex(pattern = r"^[0-9]{3}-?[0-9]{2}-?[0-9]{5}$"))]
    pub business_number: String,
    /// Who billing contacts about this tenant.
    pub contact: Contact,
    /// The tenant's id in the registry (UUID). Leave it empty and the operator assigns one and
    /// reports it in `status.tenantId`; set it to adopt a tenant billing already knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    ))]
    pub tenant_id: Option<String>,
    /// `basic` (fixed monthly fee, fewer than 300,000 members and 100 stores) or `custom`.
    pub plan: Plan,
    /// Custom plan only: the modules and their negotiated monthly fees.
    #[serde(default)]
    // maxItems bounds the CEL cost of the uniqueness rule (the catalogue has six modules).
    #[schemars(length(max = 6))]
    #[x_kube(validation = Rule::new("self.all(m, self.exists_one(n, n.name == m.name))").message("each module at most once"))]
    pub modules: Vec<ModuleSpec>,
    /// Members the tenant expects to serve; a basic tenant declaring 300,000 or more is not
    /// plan compliant.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub expected_members: i64,
    /// Stores the tenant expects to run; a basic tenant declaring 100 or more is not plan
    /// compliant.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub expected_stores: i64,
    /// `shared` (the platform's deployment) or `dedicated` (own namespace and services).
    /// Defaults from the plan: basic is shared, custom is dedicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "placement_schema")]
    pub placement: Option<Placement>,
    /// Sizing of the dedicated deployment (ignored when shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedicated: Option<DedicatedSpec>,
    /// The dedicated tenant's database (ignored when shared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseSpec>,
    /// Sender settings for SMS / KakaoTalk / e-mail, by secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<MessagingSpec>,
    /// IANA time zone of the tenant's business dates and billing months.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
}

/// `placement` as a plain optional string enum: the derived schema of `Option<Placement>`
/// lists `null` among the enum values, which the apiserver's structural schema check rejects.
fn placement_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["shared", "dedicated"],
        "description": "`shared` (the platform's deployment) or `dedicated` (own namespace and services); when not given in the spec, basic is shared and custom is dedicated.",
    })
}

fn phase_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Pending", "Provisioning", "Ready", "Degraded", "Deprovisioning"],
        "description": "Lifecycle phase, as `kubectl get` shows it.",
    })
}

fn default_time_zone() -> String {
    "Asia/Seoul".into()
}

/// Billing contact.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    #[schemars(regex(pattern = r"^[^@\s]+@[^@\s]+$"))]
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The billing plan.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Plan {
    Basic,
    Custom,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Plan::Basic => "basic",
            Plan::Custom => "custom",
        })
    }
}

/// Where the tenant's services run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Placement {
    Shared,
    Dedicated,
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Shared => "shared",
            Placement::Dedicated => "dedicated",
        })
    }
}

/// A module of the Custom plan (the billing catalogue's modules).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ModuleName {
    Membership,
    AppWeb,
    Campaign,
    Analytics,
    CustomerCentre,
    Privacy,
}

impl ModuleName {
    /// The name used in config and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ModuleName::Membership => "membership",
            ModuleName::AppWeb => "appWeb",
            ModuleName::Campaign => "campaign",
            ModuleName::Analytics => "analytics",
            ModuleName::CustomerCentre => "customerCentre",
            ModuleName::Privacy => "privacy",
        }
    }
}

/// One priced module.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModuleSpec {
    pub name: ModuleName,
    /// Negotiated monthly fee in KRW (integer won).
    #[schemars(range(min = 0))]
    pub monthly_fee_krw: i64,
}

/// How a dedicated tenant's services are laid out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeploymentMode {
    /// One `spharos serve` process hosting every enabled service.
    #[default]
    Monolithic,
    /// One Deployment per service.
    Microservices,
}

/// Sizing of a dedicated tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.maxReplicas) || self.maxReplicas >= self.replicas").message("maxReplicas must be at least replicas").field_path(".maxReplicas"))]
pub struct DedicatedSpec {
    #[serde(default)]
    pub mode: DeploymentMode,
    /// Replicas of each Deployment (the autoscaler's minimum).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// The autoscaler's maximum; default three times `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub max_replicas: Option<i32>,
    /// Requests and limits of each service container.
    #[serde(default)]
    pub resources: Resources,
}

fn default_replicas() -> i32 {
    2
}

impl Default for DedicatedSpec {
    fn default() -> Self {
        Self {
            mode: DeploymentMode::default(),
            replicas: default_replicas(),
            max_replicas: None,
            resources: Resources::default(),
        }
    }
}

/// Container requests and limits (Kubernetes quantities).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    #[serde(default = "default_requests")]
    pub requests: ResourceAmounts,
    #[serde(default = "default_limits")]
    pub limits: ResourceAmounts,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            requests: default_requests(),
            limits: default_limits(),
        }
    }
}

fn default_requests() -> ResourceAmounts {
    ResourceAmounts {
        cpu: "250m".into(),
        memory: "256Mi".into(),
    }
}

fn default_limits() -> ResourceAmounts {
    ResourceAmounts {
        cpu: "1".into(),
        memory: "512Mi".into(),
    }
}

/// CPU and memory quantities.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAmounts {
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?m?$"))]
    pub cpu: String,
    #[schemars(regex(pattern = r"^[0-9]+(Ki|Mi|Gi|Ti|K|M|G|T)?$"))]
    pub memory: String,
}

/// The dedicated database: a CloudNativePG cluster when that operator is installed, else the
/// existing database named by the secret. Both may be given: the secret is the fallback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.cloudNativePg) || has(self.existingSecret)").message("name cloudNativePg, existingSecret or both"))]
pub struct DatabaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_native_pg: Option<CloudNativePgSpec>,
    /// A secret in the tenant resource's namespace holding a `postgres://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_secret: Option<SecretKeyRef>,
}

/// A CloudNativePG `Cluster` owned by the tenant.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudNativePgSpec {
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 9))]
    pub instances: i32,
    #[serde(default = "default_storage")]
    #[schemars(regex(pattern = r"^[0-9]+(Mi|Gi|Ti)$"))]
    pub storage_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

fn default_instances() -> i32 {
    3
}

fn default_storage() -> String {
    "20Gi".into()
}

/// A key of a secret in the tenant resource's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_url_key")]
    pub key: String,
}

fn default_url_key() -> String {
    "url".into()
}

/// Messaging sender settings. Credentials stay in the secret; the operator only passes its name
/// on, never its content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagingSpec {
    /// Secret (in the tenant resource's namespace) with the provider credentials, e.g.
    /// `sms-api-key`, `kakao-sender-key`, `smtp-password`.
    pub sender_secret_ref: LocalObjectRef,
    /// Registered SMS caller number (발신번호).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9-]{8,20}$"))]
    pub sms_sender_number: Option<String>,
    /// E-mail `From:` address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_from: Option<String>,
}

/// A named object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// What the operator observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipTenantStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "phase_schema")]
    pub phase: Option<Phase>,
    /// `Ready`, `Provisioned`, `BillingActive`, `PlanCompliant`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The tenant's id in the billing registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The effective placement (the spec's, or the plan's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "placement_schema")]
    pub placement: Option<Placement>,
    /// Where the tenant's clients connect.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Deployments applied in the dedicated namespace, so a layout change (mode, modules) can
    /// remove the ones no longer wanted.
    #[serde(default)]
    pub workloads: Vec<String>,
    /// Name of the Secret holding the tenant's API token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
}

/// Lifecycle phase, as `kubectl get` shows it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Provisioning,
    Ready,
    Degraded,
    Deprovisioning,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A Kubernetes-style condition (the shape of `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// RFC 3339; kept when the status did not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A named client endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `grpc` or `http`.
    pub name: String,
    pub url: String,
}

impl MembershipTenantSpec {
    /// The placement in force: the declared one, else basic → shared, custom → dedicated.
    pub fn effective_placement(&self) -> Placement {
        self.placement.unwrap_or(match self.plan {
            Plan::Basic => Placement::Shared,
            Plan::Custom => Placement::Dedicated,
        })
    }
}

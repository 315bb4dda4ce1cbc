//! The reconciler: observes (billing, the token Secret, CloudNativePG, the database secret),
//! asks [`crate::desired`] what should be, and executes it: billing calls over gRPC, server-side
//! apply of every object, a Kubernetes Event per step, then the status. Deletion runs behind
//! the finalizer: cancel billing, export, revoke the API tokens, back up, and only then remove.
//!
//! Shaped after kube-rs controller-rs: a `Context`, `reconcile` wrapped in `finalizer(..)`,
//! status written by server-side apply, Events through a `Recorder`, an `error_policy` that
//! counts the failure and requeues.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        autoscaling::v2::HorizontalPodAutoscaler,
        core::v1::{Namespace, Secret, Service},
        policy::v1::PodDisruptionBudget,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams},
    runtime::{
        controller::{Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        finalizer::{Event as Finalizer, finalizer},
        watcher,
    },
};
use serde_json::json;
use tracing::{info, warn};

use crate::{
    billing::{Billing, BillingError},
    crd::{FINALIZER, MembershipTenant, Placement},
    desired::{
        self, BillingAction, DesiredError, DesiredObject, FIELD_MANAGER, Observed, OperatorConfig,
        SubscriptionStatus, TeardownStep,
    },
    metrics::Metrics,
};

/// CRD whose presence means CloudNativePG is installed.
pub const CNPG_CRD: &str = "clusters.postgresql.cnpg.io";
/// How often a healthy tenant is looked at again (billing's metered counts move by themselves).
pub const RESYNC: Duration = Duration::from_secs(5 * 60);

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("billing: {0}")]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("secret {0} has no key {1} with UTF-8 content")]
    SecretKey(String, String),
    #[error("the retention backup {0} is not completed yet (phase {1:?}); the tenant is kept")]
    BackupPending(String, String),
    #[error("the retention backup {0} failed; the tenant is kept until it succeeds")]
    BackupFailed(String),
}

impl Error {
    /// The error's kind for the failure metric.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(_) => "kube".into(),
            Error::Billing(b) => format!("billing_{}", b.label()),
            Error::Desired(_) => "desired".into(),
            Error::Finalizer(f) => match f.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e) => {
                    format!("apply_{}", e.metric_label())
                }
                kube::runtime::finalizer::Error::CleanupFailed(e) => {
                    format!("cleanup_{}", e.metric_label())
                }
                _ => "finalizer".into(),
            },
            Error::SecretKey(..) => "secret_key".into(),
            Error::BackupPending(..) => "backup_pending".into(),
            Error::BackupFailed(_) => "backup_failed".into(),
        }
    }

    fn is_backup_pending(&self) -> bool {
        match self {
            Error::BackupPending(..) => true,
            Error::Finalizer(f) => matches!(
                f.as_ref(),
                kube::runtime::finalizer::Error::CleanupFailed(Error::BackupPending(..))
            ),
            _ => false,
        }
    }
}

/// What every reconciliation shares.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub billing: Billing,
    pub config: OperatorConfig,
    pub metrics: Metrics,
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: Client, billing: Billing, config: OperatorConfig, metrics: Metrics) -> Self {
        let reporter = Reporter {
            controller: "spharos-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            billing,
            config,
            metrics,
        }
    }

    async fn event(
        &self,
        tenant: &MembershipTenant,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), Error> {
        self.recorder
            .publish(
                &Event {
                    type_,
                    reason: reason.into(),
                    note: Some(note),
                    action: action.into(),
                    secondary: None,
                },
                &tenant.object_ref(&()),
            )
            .await?;
        Ok(())
    }

    async fn apply(&self, d: &DesiredObject) -> Result<(), Error> {
        let api: Api<DynamicObject> = match d.object.namespace() {
            Some(ns) => Api::namespaced_with(self.client.clone(), &ns, &d.api),
            None => Api::all_with(self.client.clone(), &d.api),
        };
        api.patch(
            &d.object.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&d.object),
        )
        .await?;
        Ok(())
    }

    /// Deletes a Deployment and its Service, PodDisruptionBudget and autoscaler; what is
    /// already gone is fine.
    async fn remove_workload(&self, ns: &str, name: &str) -> Result<(), Error> {
        let apis = [
            ApiResource::erase::<Deployment>(&()),
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<PodDisruptionBudget>(&()),
            ApiResource::erase::<HorizontalPodAutoscaler>(&()),
        ];
        for ar in apis {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn cnpg_available(&self, tenant: &MembershipTenant) -> Result<bool, Error> {
        let wants = tenant.spec.effective_placement() == Placement::Dedicated
            && tenant
                .spec
                .database
                .as_ref()
                .is_some_and(|d| d.cloud_native_pg.is_some());
        if !wants {
            return Ok(false);
        }
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        Ok(crds.get_opt(CNPG_CRD).await?.is_some())
    }
}

/// Reconciles one tenant (the controller's entry point).
pub async fn reconcile(tenant: Arc<MembershipTenant>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.count_and_measure();
    let ns = tenant.namespace().ok_or(DesiredError::NoNamespace)?;
    let api: Api<MembershipTenant> = Api::namespaced(ctx.client.clone(), &ns);
    info!(tenant = %tenant.name_any(), namespace = %ns, "reconciling");
    finalizer(&api, FINALIZER, tenant, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Counts the failure and retries: soon while a backup is running, else after a minute.
pub fn error_policy(tenant: Arc<MembershipTenant>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(tenant = %tenant.name_any(), %error, "reconcile failed");
    let instance = format!(
        "{}/{}",
        tenant.namespace().unwrap_or_default(),
        tenant.name_any()
    );
    ctx.metrics
        .reconcile_failure(&instance, &error.metric_label());
    if error.is_backup_pending() {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::requeue(Duration::from_secs(60))
    }
}

fn status_patch(status: &crate::crd::MembershipTenantStatus) -> Patch<serde_json::Value> {
    Patch::Apply(json!({
        "apiVersion": format!("{}/v1alpha1", crate::crd::GROUP),
        "kind": "MembershipTenant",
        "status": status,
    }))
}

async fn apply(tenant: &MembershipTenant, ctx: &Context) -> Result<Action, Error> {
    let ns = tenant.namespace().ok_or(DesiredError::NoNamespace)?;
    let name = tenant.name_any();
    let tenants: Api<MembershipTenant> = Api::namespaced(ctx.client.clone(), &ns);
    let ssa = PatchParams::apply(FIELD_MANAGER).force();

    // 1. The tenant id. A new one is written to the status before billing hears of it, so a
    //    retry after a crash reuses it (billing answers ALREADY_EXISTS) instead of registering
    //    the merchant twice.
    let known = tenant
        .spec
        .tenant_id
        .clone()
        .or_else(|| tenant.status.as_ref().and_then(|s| s.tenant_id.clone()));
    let tenant_id = match known {
        Some(id) => id,
        None => {
            let id = uuid::Uuid::now_v7().to_string();
            let mut status = tenant.status.clone().unwrap_or_default();
            status.tenant_id = Some(id.clone());
            status.phase = Some(crate::crd::Phase::Provisioning);
            status.placement = Some(tenant.spec.effective_placement());
            tenants
                .patch_status(&name, &ssa, &status_patch(&status))
                .await?;
            id
        }
    };

    // 2. Billing: register, subscribe, follow plan changes.
    let limits = ctx.billing.limits().await?;
    let mut billing = ctx.billing.state(&tenant_id).await?;
    let actions = desired::billing_actions(tenant, &billing);
    for action in &actions {
        match action {
            BillingAction::CreateTenant => {
                ctx.billing.create_tenant(tenant, &tenant_id).await?;
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "TenantRegistered",
                    "RegisterTenant",
                    format!("registered tenant {tenant_id} with billing"),
                )
                .await?;
            }
            BillingAction::Subscribe { plan, modules } => {
                ctx.billing.subscribe(&tenant_id, *plan, modules).await?;
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "Subscribed",
                    "Subscribe",
                    format!("subscribed to the {plan} plan"),
                )
                .await?;
            }
            BillingAction::ChangePlan {
                from,
                plan,
                modules,
            } => {
                ctx.billing.change_plan(&tenant_id, *plan, modules).await?;
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "PlanChanged",
                    "ChangePlan",
                    format!("changed the plan from {from} to {plan}, effective today"),
                )
                .await?;
            }
        }
    }
    if !actions.is_empty() {
        billing = ctx.billing.state(&tenant_id).await?;
    }

    // 3. The API token: issued once, when its Secret does not exist.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let token_name = desired::token_secret_name(tenant);
    let issued_token = match secrets.get_opt(&token_name).await? {
        Some(_) => None,
        None => {
            let token = ctx
                .billing
                .issue_token(&tenant_id, &format!("operator/{ns}/{name}"))
                .await?;
            Some(token)
        }
    };

    // 4. What the dedicated placement needs to know about the cluster.
    let cnpg_available = ctx.cnpg_available(tenant).await?;
    let database_url = match (&tenant.spec.database, tenant.spec.effective_placement()) {
        (Some(db), Placement::Dedicated) if !(db.cloud_native_pg.is_some() && cnpg_available) => {
            match &db.existing_secret {
                Some(r) => match secrets.get_opt(&r.name).await? {
                    Some(s) => Some(secret_value(&s, &r.name, &r.key)?),
                    None => None,
                },
                None => None,
            }
        }
        _ => None,
    };

    // The messaging credentials are copied as they are; the operator never logs them.
    let messaging_secret = match (&tenant.spec.messaging, tenant.spec.effective_placement()) {
        (Some(m), Placement::Dedicated) => {
            match secrets.get_opt(&m.sender_secret_ref.name).await? {
                Some(s) => Some(secret_strings(&s, &m.sender_secret_ref.name)?),
                None => None,
            }
        }
        _ => None,
    };

    // The dedicated master key and token signing key: each generated once, when its Secret
    // does not exist (a tenant provisioned before signing keys existed gets one added; its
    // master key is not touched).
    let (master_key, signing_key) = if tenant.spec.effective_placement() == Placement::Dedicated {
        let keys: Api<Secret> =
            Api::namespaced(ctx.client.clone(), &desired::dedicated_namespace(tenant));
        let master_key = match keys.get_opt(desired::MASTER_KEY_SECRET).await? {
            Some(_) => None,
            None => Some(hex::encode(rand::random::<[u8; 32]>())),
        };
        let signing_key = match keys.get_opt(desired::SIGNING_KEY_SECRET).await? {
            Some(_) => None,
            None => Some(crate::keys::generate_signing_key_pem()),
        };
        (master_key, signing_key)
    } else {
        (None, None)
    };

    let observed = Observed {
        tenant_id: tenant_id.clone(),
        cnpg_available,
        database_url,
        messaging_secret,
        master_key,
        signing_key,
        issued_token,
        billing,
        limits,
        now: Timestamp::now().to_string(),
    };

    // 5. Server-side apply of everything desired.
    let objects = desired::desired_objects(tenant, &observed, &ctx.config)?;
    for o in &objects {
        ctx.apply(o).await?;
    }
    // One Event for the whole prune: the recorder folds same-reason Events into a series and
    // would keep only the first note.
    let stale = desired::stale_workloads(tenant, &observed);
    for name in &stale {
        ctx.remove_workload(&desired::dedicated_namespace(tenant), name)
            .await?;
    }
    if !stale.is_empty() {
        ctx.event(
            tenant,
            EventType::Normal,
            "WorkloadsRemoved",
            "Prune",
            format!(
                "removed {}, no longer part of the tenant's layout",
                stale.join(", ")
            ),
        )
        .await?;
    }
    if observed.issued_token.is_some() {
        ctx.event(
            tenant,
            EventType::Normal,
            "TokenIssued",
            "IssueToken",
            format!("wrote the API token into Secret {token_name}"),
        )
        .await?;
    }

    // 6. Status, with an Event for each condition that changed.
    let status = desired::status(tenant, &observed, &ctx.config, true);
    let before = tenant.status.clone().unwrap_or_default();
    // Ready is announced last, after the conditions it sums up.
    let ordered = status
        .conditions
        .iter()
        .filter(|c| c.type_ != "Ready")
        .chain(status.conditions.iter().filter(|c| c.type_ == "Ready"));
    for c in ordered {
        let was = before.conditions.iter().find(|p| p.type_ == c.type_);
        if was.map(|p| p.status.as_str()) == Some(c.status.as_str()) {
            continue;
        }
        let (type_, reason) = match (c.type_.as_str(), c.status.as_str()) {
            ("PlanCompliant", "False") => (EventType::Warning, "PlanViolation"),
            ("Provisioned", "True") => (EventType::Normal, "Provisioned"),
            ("Provisioned", _) => (EventType::Warning, c.reason.as_str()),
            ("Ready", "True") => (EventType::Normal, "Ready"),
            _ => continue,
        };
        ctx.event(tenant, type_, reason, "Reconcile", c.message.clone())
            .await?;
    }
    tenants
        .patch_status(&name, &ssa, &status_patch(&status))
        .await?;
    let provisioned = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Provisioned" && c.status == "True");
    Ok(if provisioned {
        Action::requeue(RESYNC)
    } else {
        Action::requeue(Duration::from_secs(60))
    })
}

fn secret_strings(secret: &Secret, name: &str) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.clone().unwrap_or_default() {
        let text = String::from_utf8(v.0).map_err(|_| Error::SecretKey(name.into(), k.clone()))?;
        out.insert(k, text);
    }
    Ok(out)
}

fn secret_value(secret: &Secret, name: &str, key: &str) -> Result<String, Error> {
    let missing = || Error::SecretKey(name.into(), key.into());
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(missing)?;
    String::from_utf8(bytes.0.clone()).map_err(|_| missing())
}

async fn cleanup(tenant: &MembershipTenant, ctx: &Context) -> Result<Action, Error> {
    let cnpg = ctx.cnpg_available(tenant).await?;
    let steps = desired::teardown(tenant, cnpg);
    let tenant_id = tenant
        .status
        .as_ref()
        .and_then(|s| s.tenant_id.clone())
        .or_else(|| tenant.spec.tenant_id.clone())
        .unwrap_or_default();
    ctx.event(
        tenant,
        EventType::Normal,
        "Deprovisioning",
        "Deprovision",
        format!(
            "{} steps: {}",
            steps.len(),
            steps
                .iter()
                .map(TeardownStep::action)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .await?;
    for step in &steps {
        match step {
            TeardownStep::CancelSubscription { tenant_id } => {
                let state = ctx.billing.state(tenant_id).await?;
                let live = state
                    .subscription
                    .as_ref()
                    .is_some_and(|s| s.status != SubscriptionStatus::Cancelled);
                if live {
                    ctx.billing.cancel(tenant_id).await?;
                    ctx.event(
                        tenant,
                        EventType::Normal,
                        "SubscriptionCancelled",
                        "CancelSubscription",
                        format!("cancelled the subscription of {tenant_id}; billed through today"),
                    )
                    .await?;
                }
            }
            TeardownStep::ExportBilling { config_map, .. } => {
                if !ctx.billing.state(&tenant_id).await?.registered {
                    continue;
                }
                let export = ctx.billing.export_invoices(&tenant_id).await?;
                let cm = desired::retention_config_map(
                    tenant,
                    &tenant_id,
                    &export.invoices_csv,
                    &export.lines_csv,
                    &Timestamp::now().to_string(),
                    &steps,
                )?;
                ctx.apply(&cm).await?;
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "RetentionExported",
                    "ExportBilling",
                    format!(
                        "billing records exported to ConfigMap {config_map}, kept after deletion"
                    ),
                )
                .await?;
            }
            TeardownStep::RevokeTokens { tenant_id } => {
                // Billing does not know the tenant: it never issued it a token.
                let Some(tokens) = ctx.billing.list_tokens(tenant_id).await? else {
                    continue;
                };
                let live = desired::live_tokens(&tokens, Timestamp::now().as_second());
                for t in &live {
                    ctx.billing.revoke_token(tenant_id, &t.token_id).await?;
                    info!(tenant_id = %tenant_id, token_id = %t.token_id, subject = %t.subject, "API token revoked");
                }
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "TokensRevoked",
                    step.action(),
                    desired::tokens_revoked_note(tenant_id, live.len()),
                )
                .await?;
            }
            TeardownStep::RetainSharedData { tenant_id } => {
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "SharedDataRetained",
                    step.action(),
                    desired::shared_data_retained_note(tenant_id),
                )
                .await?;
            }
            TeardownStep::BackupDatabase {
                namespace,
                backup,
                cluster,
            } => {
                let b = desired::retention_backup(tenant, &tenant_id, namespace, backup, cluster)?;
                ctx.apply(&b).await?;
                let api: Api<DynamicObject> =
                    Api::namespaced_with(ctx.client.clone(), namespace, &b.api);
                let phase = api
                    .get_opt(backup)
                    .await?
                    .and_then(|o| o.data["status"]["phase"].as_str().map(str::to_string))
                    .unwrap_or_default();
                match phase.as_str() {
                    "completed" => {
                        ctx.event(
                            tenant,
                            EventType::Normal,
                            "DatabaseBackedUp",
                            "BackupDatabase",
                            format!("CloudNativePG backup {namespace}/{backup} completed"),
                        )
                        .await?;
                    }
                    "failed" => return Err(Error::BackupFailed(backup.clone())),
                    _ => return Err(Error::BackupPending(backup.clone(), phase)),
                }
            }
            TeardownStep::RetainExternalDatabase { secret } => {
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "ExternalDatabaseRetained",
                    "RetainDatabase",
                    format!("the external database of secret {secret} is not touched; drop it by hand when its retention ends"),
                )
                .await?;
            }
            TeardownStep::RetainMasterKey {
                namespace,
                copy_namespace,
                copy_name,
            } => {
                let keys: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
                if let Some(s) = keys.get_opt(desired::MASTER_KEY_SECRET).await? {
                    let key = secret_value(&s, desired::MASTER_KEY_SECRET, "master.key")?;
                    let copy = desired::retained_master_key(
                        tenant,
                        &tenant_id,
                        copy_namespace,
                        copy_name,
                        &key,
                    )?;
                    ctx.apply(&copy).await?;
                    ctx.event(
                        tenant,
                        EventType::Normal,
                        "MasterKeyRetained",
                        "RetainMasterKey",
                        format!("copied the master key to Secret {copy_namespace}/{copy_name}; the backup needs it"),
                    )
                    .await?;
                }
            }
            TeardownStep::DeleteNamespace { name } => {
                let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
                match namespaces.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                ctx.event(
                    tenant,
                    EventType::Normal,
                    "NamespaceDeleted",
                    "DeleteNamespace",
                    format!("deleted the dedicated namespace {name}"),
                )
                .await?;
            }
        }
    }
    ctx.event(
        tenant,
        EventType::Normal,
        "Deprovisioned",
        "Deprovision",
        "billing cancelled and exported, API tokens revoked; the tenant resource may go".into(),
    )
    .await?;
    Ok(Action::await_change())
}

/// Runs the controller until `shutdown` resolves (the caller holds the leader lease). Owned
/// objects are not watched (that would need a cluster-wide Secret watch); the periodic resync
/// repairs drift instead.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let tenants: Api<MembershipTenant> = Api::all(ctx.client.clone());
    Controller::new(tenants, watcher::Config::default().any_semantic())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                warn!(error = %e, "reconcile loop");
            }
        })
        .await;
}

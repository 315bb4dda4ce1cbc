//! Template use cases: create (idempotent), get, update by mask (status transitions, quantity
//! never below what was issued), list.
use spharos_kit::{
    ServiceError, TenantId, Violations,
    idempotency::{self, Claim, fingerprint},
    paging::PageRequest,
};
use uuid::Uuid;

use super::{CouponApp, from_json, json, now, template_not_found, violations_error};
use crate::{
    domain::{
        reasons,
        template::{Template, TemplateForm, TemplatePatch, TemplateStatus},
    },
    store::{templates, tenants},
};

const CREATE_SCOPE: &str = "coupon.create_template";

impl CouponApp {
    /// Creates a template (DRAFT unless ACTIVE is asked for) after checking every field.
    pub async fn create_template(
        &self,
        tenant: TenantId,
        form: TemplateForm,
        idempotency_key: &str,
    ) -> Result<Template, ServiceError> {
        let fp = fingerprint(&json(&form)?);
        let mut v = Violations::new();
        let checked = form.validate(self.today(), &mut v);
        let Some(new) = checked else {
            return Err(violations_error(v));
        };
        let t = now();
        let template = Template {
            id: Uuid::now_v7(),
            name: new.name,
            description: new.description,
            discount: new.discount,
            min_purchase_krw: new.min_purchase_krw,
            store_codes: new.store_codes,
            categories: new.categories,
            validity: new.validity,
            total_quantity: new.total_quantity,
            issued_count: 0,
            per_member_limit: new.per_member_limit,
            issue_methods: new.issue_methods,
            stackable: new.stackable,
            status: new.status,
            created_time: t,
            updated_time: t,
        };
        let tx = self.db.begin(tenant).await?;
        if let Claim::Replay(stored) =
            idempotency::claim(&tx, tenant, CREATE_SCOPE, idempotency_key, &fp).await?
        {
            tx.commit().await?;
            return from_json(&stored);
        }
        templates::insert(&tx, tenant, &template).await?;
        tenants::register(&tx, tenant, t).await?;
        idempotency::complete(
            &tx,
            tenant,
            CREATE_SCOPE,
            idempotency_key,
            &json(&template)?,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, template_id = %template.id, "coupon template created");
        Ok(template)
    }

    pub async fn get_template(&self, tenant: TenantId, id: Uuid) -> Result<Template, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let t = templates::get(&tx, tenant, id)
            .await?
            .ok_or_else(template_not_found)?;
        tx.commit().await?;
        Ok(t)
    }

    /// Changes name, description, status or total quantity. The row is locked while the
    /// patch is checked (claims wait), and the write re-checks the quantity against the
    /// issued count anyway.
    pub async fn update_template(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: TemplatePatch,
    ) -> Result<Template, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let current = templates::get_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(template_not_found)?;
        let updated = patch.apply(current, now())?;
        if !templates::update(&tx, tenant, &updated).await? {
            return Err(ServiceError::precondition(
                reasons::QUANTITY_BELOW_ISSUED,
                "이미 발급된 수량보다 적게 줄일 수 없습니다 (total_quantity is below the number already issued)",
            ));
        }
        tx.commit().await?;
        Ok(updated)
    }

    /// One page of templates, optionally of one status; returns the next page token.
    pub async fn list_templates(
        &self,
        tenant: TenantId,
        status: Option<TemplateStatus>,
        page: PageRequest,
    ) -> Result<(Vec<Template>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = templates::list(&tx, tenant, status, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |t| t.id))
    }
}

//! Notices (create, edit, publish / unpublish, pin and order, soft delete, list) and terms
//! and policies (versions with effective dates, the version in force on a date, history).
use chrono::NaiveDate;
use spharos_kit::{ServiceError, TenantId, db::is_unique_violation, paging::PageRequest};
use uuid::Uuid;

use super::{PrivacyApp, now};
use crate::{
    domain::{
        notice::{self, Notice, NoticeCursor, NoticePatch},
        policy::{PolicyForm, PolicyKind, PolicyVersion},
    },
    store::content,
};

fn notice_not_found() -> ServiceError {
    ServiceError::not_found("공지사항을 찾을 수 없습니다 (notice not found)")
}

impl PrivacyApp {
    /// Creates a notice, unpublished.
    pub async fn create_notice(
        &self,
        tenant: TenantId,
        patch: NoticePatch,
    ) -> Result<Notice, ServiceError> {
        let patch = patch.validate_new()?;
        let t = now();
        let n = Notice {
            id: Uuid::now_v7(),
            title: patch.title.unwrap_or_default(),
            body: patch.body.unwrap_or_default(),
            pinned: patch.pinned.unwrap_or(false),
            sort_order: patch.sort_order.unwrap_or(0),
            published: false,
            publish_time: None,
            created_time: t,
            updated_time: t,
        };
        let tx = self.db.begin(tenant).await?;
        content::insert_notice(&tx, tenant, &n).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Changes the fields the patch names (title, body, pinned, sort order).
    pub async fn update_notice(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: NoticePatch,
    ) -> Result<Notice, ServiceError> {
        let patch = patch.validate("notice.")?;
        self.change_notice(tenant, id, |n| patch.apply(n)).await
    }

    /// Publishes a notice (the member app shows it from now on). Publishing a published
    /// notice keeps its first publish time.
    pub async fn publish_notice(&self, tenant: TenantId, id: Uuid) -> Result<Notice, ServiceError> {
        let t = now();
        self.change_notice(tenant, id, |n| {
            if n.published {
                return false;
            }
            n.published = true;
            n.publish_time = Some(t);
            true
        })
        .await
    }

    pub async fn unpublish_notice(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Notice, ServiceError> {
        self.change_notice(tenant, id, |n| {
            let changed = n.published;
            n.published = false;
            changed
        })
        .await
    }

    async fn change_notice(
        &self,
        tenant: TenantId,
        id: Uuid,
        change: impl FnOnce(&mut Notice) -> bool,
    ) -> Result<Notice, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let mut n = content::notice_for_update(&tx, tenant, id)
            .await?
            .ok_or_else(notice_not_found)?;
        if change(&mut n) {
            n.updated_time = now();
            content::update_notice(&tx, tenant, &n).await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Soft delete: gone from every list and Get, kept in the table.
    pub async fn delete_notice(&self, tenant: TenantId, id: Uuid) -> Result<(), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        if !content::delete_notice(&tx, tenant, id, now()).await? {
            return Err(notice_not_found());
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_notice(&self, tenant: TenantId, id: Uuid) -> Result<Notice, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let n = content::get_notice(&tx, tenant, id).await?;
        tx.commit().await?;
        n.ok_or_else(notice_not_found)
    }

    /// One page in list order (pinned, sort order, newest); `published_only` for the member
    /// app. `page_token` is this method's own cursor.
    pub async fn list_notices(
        &self,
        tenant: TenantId,
        published_only: bool,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<Notice>, String), ServiceError> {
        // The kit's PageRequest validates the size; the token is this list's own cursor.
        let size = PageRequest::parse(page_size, "")?.size;
        let after = NoticeCursor::decode(page_token)?;
        let tx = self.db.begin(tenant).await?;
        let mut rows = content::list_notices(&tx, tenant, published_only, after, size + 1).await?;
        tx.commit().await?;
        notice::sort(&mut rows);
        let next = if rows.len() as u64 > size {
            rows.truncate(size as usize);
            rows.last()
                .map(|n| NoticeCursor::of(n).encode())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok((rows, next))
    }

    /// Adds a policy version. Labels and effective dates are unique per kind; once a kind has
    /// versions, a new one starts today or later.
    pub async fn create_policy_version(
        &self,
        tenant: TenantId,
        form: PolicyForm,
    ) -> Result<PolicyVersion, ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let has = match form.kind {
            Some(k) => content::has_policy(&tx, tenant, k).await?,
            None => false,
        };
        let new = form.validate(self.today(), has)?;
        let p = PolicyVersion {
            id: Uuid::now_v7(),
            kind: new.kind,
            version: new.version,
            title: new.title,
            body: new.body,
            effective_date: new.effective_date,
            created_time: now(),
        };
        content::insert_policy(&tx, tenant, &p).await.map_err(|e| {
            if is_unique_violation(&e) {
                ServiceError::already_exists(
                    "POLICY_VERSION_EXISTS",
                    "같은 버전이나 시행일의 약관이 이미 있습니다 (a version with this label or effective date exists)",
                )
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, kind = p.kind.as_str(), version = %p.version, "policy version created");
        Ok(p)
    }

    /// The version of `kind` in force on `at` (default today).
    pub async fn policy_in_force(
        &self,
        tenant: TenantId,
        kind: PolicyKind,
        at: Option<NaiveDate>,
    ) -> Result<PolicyVersion, ServiceError> {
        let date = at.unwrap_or_else(|| self.today());
        let tx = self.db.begin(tenant).await?;
        let p = content::policy_in_force(&tx, tenant, kind, date).await?;
        tx.commit().await?;
        p.ok_or_else(|| {
            ServiceError::not_found(format!(
                "{date}에 시행 중인 약관이 없습니다 (no {} version in force on {date})",
                kind.as_str()
            ))
        })
    }

    pub async fn list_policy_versions(
        &self,
        tenant: TenantId,
        kind: PolicyKind,
        page: PageRequest,
    ) -> Result<(Vec<PolicyVersion>, String), ServiceError> {
        let tx = self.db.begin(tenant).await?;
        let rows = content::list_policies(&tx, tenant, kind, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |p| p.id))
    }
}

//! API token use cases: issue (the kit's signed JWT; billing keeps only its record), list,
//! rotate and revoke. A revocation writes `billing.token_revoked` to the outbox in the same
//! transaction, and every process's revocation listener refuses the token from then on.
use chrono::{SubsecRound, TimeDelta, Utc};
use spharos_kit::{ServiceError, TenantId, paging::PageRequest};
use uuid::Uuid;

use super::{BillingApp, emit};
use crate::{
    domain::{
        subscription::SubscriptionStatus,
        token::{ApiToken, TokenRequest},
    },
    events,
    store::{subscriptions, tokens},
};

/// A newly minted token: its record and the bearer token itself (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

fn token_not_found() -> ServiceError {
    ServiceError::not_found("토큰을 찾을 수 없습니다 (token not found)")
}

impl BillingApp {
    /// Mints a token for `tenant` and records it (in the caller's transaction).
    async fn mint(
        &self,
        tx: &spharos_kit::db::Tx,
        tenant: TenantId,
        subject: &str,
        permissions: &[String],
        ttl_seconds: u64,
    ) -> Result<IssuedToken, ServiceError> {
        let perms: Vec<&str> = permissions.iter().map(String::as_str).collect();
        // Token validity is wall-clock time (the JWT's iat/exp), not the business clock.
        let issued = Utc::now().trunc_subsecs(0);
        let secret = self.signer.mint(tenant, subject, &perms, ttl_seconds);
        let id = self
            .verifier
            .verify(&secret)
            .map_err(|e| {
                ServiceError::internal(format!("a token just minted does not verify: {e}"))
            })
            .and_then(|p| {
                Uuid::parse_str(&p.token_id)
                    .map_err(|_| ServiceError::internal("the kit's token id (jti) is not a UUID"))
            })?;
        let expire_time = i64::try_from(ttl_seconds)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .and_then(|d| issued.checked_add_signed(d))
            .ok_or_else(|| ServiceError::internal("token lifetime out of range"))?;
        let token = ApiToken {
            id,
            tenant,
            subject: subject.to_string(),
            permissions: permissions.to_vec(),
            issue_time: issued,
            expire_time,
            revoke_time: None,
            replaced_by: None,
        };
        tokens::insert(tx, &token).await?;
        Ok(IssuedToken { token, secret })
    }

    /// Refuses tokens for a suspended or cancelled subscription (a tenant without one may get
    /// tokens: the operator provisions before the first invoice).
    async fn check_may_hold_tokens(
        &self,
        tx: &spharos_kit::db::Tx,
        tenant: TenantId,
    ) -> Result<(), ServiceError> {
        match subscriptions::get(tx, tenant).await?.map(|s| s.status) {
            Some(SubscriptionStatus::Suspended) => Err(ServiceError::precondition(
                "SUBSCRIPTION_SUSPENDED",
                "정지된 구독에는 토큰을 발급할 수 없습니다 (the subscription is suspended)",
            )),
            Some(SubscriptionStatus::Cancelled) => Err(ServiceError::precondition(
                "SUBSCRIPTION_CANCELLED",
                "해지된 구독에는 토큰을 발급할 수 없습니다 (the subscription is cancelled)",
            )),
            _ => Ok(()),
        }
    }

    pub async fn issue_token(
        &self,
        tenant: TenantId,
        request: TokenRequest,
    ) -> Result<IssuedToken, ServiceError> {
        let (tx, _) = self.begin_known(tenant).await?;
        self.check_may_hold_tokens(&tx, tenant).await?;
        let issued = self
            .mint(
                &tx,
                tenant,
                &request.subject,
                &request.permissions,
                request.ttl_seconds,
            )
            .await?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, token_id = %issued.token.id, "token issued");
        Ok(issued)
    }

    pub async fn list_tokens(
        &self,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<(Vec<ApiToken>, String), ServiceError> {
        let (tx, _) = self.begin_known(tenant).await?;
        let rows = tokens::list(&tx, tenant, &page).await?;
        tx.commit().await?;
        Ok(page.finish(rows, |t| t.id))
    }

    /// Issues a successor with the same subject, permissions and lifetime, and revokes the
    /// old token at once. Returns the new token and the old record.
    pub async fn rotate_token(
        &self,
        tenant: TenantId,
        token_id: Uuid,
    ) -> Result<(IssuedToken, ApiToken), ServiceError> {
        let (tx, _) = self.begin_known(tenant).await?;
        self.check_may_hold_tokens(&tx, tenant).await?;
        let old = tokens::get_for_update(&tx, tenant, token_id)
            .await?
            .ok_or_else(token_not_found)?;
        if old.revoke_time.is_some() {
            return Err(ServiceError::precondition(
                "TOKEN_REVOKED",
                "폐기된 토큰은 교체할 수 없습니다 (a revoked token cannot be rotated)",
            ));
        }
        if old.expire_time <= Utc::now() {
            return Err(ServiceError::precondition(
                "TOKEN_EXPIRED",
                "만료된 토큰은 교체할 수 없습니다. 새로 발급하세요 (an expired token cannot be rotated; issue a new one)",
            ));
        }
        let issued = self
            .mint(
                &tx,
                tenant,
                &old.subject,
                &old.permissions,
                old.ttl_seconds(),
            )
            .await?;
        let now = self.now();
        if !tokens::revoke(&tx, tenant, old.id, Some(issued.token.id), now).await? {
            return Err(ServiceError::internal(
                "a locked token was revoked concurrently",
            ));
        }
        emit(&tx, events::token_revoked(tenant, &old, now)).await?;
        let rotated = tokens::get(&tx, tenant, old.id)
            .await?
            .ok_or_else(token_not_found)?;
        tx.commit().await?;
        tracing::info!(tenant_id = %tenant, token_id = %old.id, successor = %issued.token.id, "token rotated");
        Ok((issued, rotated))
    }

    /// Revokes the token. Revoking a revoked token returns it unchanged (no second event).
    pub async fn revoke_token(
        &self,
        tenant: TenantId,
        token_id: Uuid,
    ) -> Result<ApiToken, ServiceError> {
        let (tx, _) = self.begin_known(tenant).await?;
        let now = self.now();
        let revoked_now = tokens::revoke(&tx, tenant, token_id, None, now).await?;
        let token = tokens::get(&tx, tenant, token_id)
            .await?
            .ok_or_else(token_not_found)?;
        if revoked_now {
            emit(&tx, events::token_revoked(tenant, &token, now)).await?;
        }
        tx.commit().await?;
        if revoked_now {
            tracing::info!(tenant_id = %tenant, token_id = %token_id, "token revoked");
        }
        Ok(token)
    }
}

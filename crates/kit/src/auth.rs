//! Tenant tokens: EdDSA (Ed25519) JWTs holding the tenant id, key id, subject and permissions,
//! minted with the platform's signing key and verified locally by every service with the public
//! key, so no service needs another's tables to authenticate a call.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{Arc, Mutex, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey,
        spki::der::pem::LineEnding,
    },
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use crate::tenancy::TenantId;

/// Permission to see members' PII in clear (every use is logged).
pub const PERM_PII_UNMASK: &str = "pii:unmask";

/// Permission to erase a member's PII for good (data-subject erasure, end of retention).
pub const PERM_PII_ERASE: &str = "pii:erase";

/// Permission of the platform team (and its operator) to act on any tenant: create tenants,
/// change subscriptions, issue tokens.
pub const PERM_PLATFORM_ADMIN: &str = "platform:admin";

/// Who is calling: verified from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    /// Staff id, POS id or API key name.
    pub subject: String,
    pub key_id: String,
    pub token_id: String,
    pub permissions: Vec<String>,
}

impl Principal {
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission || p == "*")
    }

    /// `Ok` when the token carries `permission`, else `PermissionDenied` naming it.
    pub fn require(&self, permission: &str) -> Result<(), crate::ServiceError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(crate::ServiceError::PermissionDenied(format!(
                "권한이 없습니다 (this operation needs the {permission} permission)"
            )))
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// Tenant id.
    tid: String,
    sub: String,
    #[serde(default)]
    perms: Vec<String>,
    iat: u64,
    exp: u64,
    jti: String,
    iss: String,
}

const ISSUER: &str = "spharos";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a valid Ed25519 {what} in PEM: {detail}")]
    Parse {
        path: String,
        what: &'static str,
        detail: String,
    },
}

/// Mints tenant tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: EncodingKey,
    key_id: String,
    verifying: VerifyingKey,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn key_id_of(v: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(v.as_bytes())[..8])
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenSigner {
    /// A fresh random key (tests, first start of the embedded default).
    pub fn generate() -> Self {
        let sk = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_signing_key(&sk)
    }

    fn from_signing_key(sk: &SigningKey) -> Self {
        let der = sk
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        Self {
            key: EncodingKey::from_ed_der(der.as_bytes()),
            key_id: key_id_of(&sk.verifying_key()),
            verifying: sk.verifying_key(),
        }
    }

    /// Loads a PKCS#8 PEM private key, or creates one (mode 0600) when `create` and missing.
    pub fn load_or_create(path: &Path, create: bool) -> Result<Self, KeyError> {
        let p = path.display().to_string();
        if !path.exists() && create {
            let sk = SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = sk
                .to_pkcs8_pem(LineEnding::LF)
                .expect("an Ed25519 key always encodes as PEM");
            write_secret_file(path, pem.as_bytes())
                .map_err(|source| KeyError::Write { path: p, source })?;
            return Ok(Self::from_signing_key(&sk));
        }
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        let sk = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Parse {
            path: p,
            what: "private key (PKCS#8)",
            detail: e.to_string(),
        })?;
        Ok(Self::from_signing_key(&sk))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key that verifies this signer's tokens.
    pub fn public_key(&self) -> VerifyingKey {
        self.verifying
    }

    /// The public key as SPKI PEM (for other services' `auth.public_key_files`).
    pub fn public_key_pem(&self) -> String {
        self.verifying
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key always encodes as PEM")
    }

    /// Mints a token for `tenant`, valid for `ttl_seconds`.
    pub fn mint(
        &self,
        tenant: TenantId,
        subject: &str,
        permissions: &[&str],
        ttl_seconds: u64,
    ) -> String {
        let now = now_secs();
        let claims = Claims {
            tid: tenant.to_string(),
            sub: subject.to_string(),
            perms: permissions.iter().map(|p| p.to_string()).collect(),
            iat: now,
            exp: now + ttl_seconds,
            jti: uuid::Uuid::now_v7().to_string(),
            iss: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
            .expect("EdDSA signing of plain claims cannot fail")
    }
}

fn write_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Why a token was refused. All map to `Unauthenticated`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing authorization: send `authorization: Bearer <token>`")]
    Missing,
    #[error("authorization must be `Bearer <token>`")]
    Malformed,
    #[error("token signed by an unknown key")]
    UnknownKey,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Seconds of clock skew a token's expiry is allowed.
const LEEWAY_SECS: u64 = 30;
/// Tokens remembered as verified; the memory is emptied when it fills (a burst of signature
/// checks is all that costs).
const VERIFIED_CAPACITY: usize = 10_000;

/// Verifies tokens with the platform's public keys (several during a rotation). A till sends
/// the same token with every call, so a token whose signature checked out once is remembered
/// until it expires: later calls cost a lookup instead of an Ed25519 verification (the largest
/// share of a small call's CPU). Revocation and expiry are checked on every call.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<HashMap<String, DecodingKey>>,
    revoked: Arc<RwLock<HashSet<String>>>,
    verified: Arc<Mutex<HashMap<String, Verified>>>,
}

/// A token whose signature and claims checked out, and when it expires.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    expires: u64,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(public_keys: impl IntoIterator<Item = VerifyingKey>) -> Self {
        let keys = public_keys
            .into_iter()
            .map(|v| {
                let der = v
                    .to_public_key_der()
                    .expect("an Ed25519 public key always encodes");
                // jsonwebtoken's Ed25519 decoding key takes the raw 32-byte key; SPKI DER ends with it.
                let raw = &der.as_bytes()[der.as_bytes().len() - 32..];
                (key_id_of(&v), DecodingKey::from_ed_der(raw))
            })
            .collect();
        Self {
            keys: Arc::new(keys),
            revoked: Arc::default(),
            verified: Arc::default(),
        }
    }

    /// Reads SPKI PEM public keys.
    pub fn public_key_from_pem_file(path: &Path) -> Result<VerifyingKey, KeyError> {
        let p = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: p.clone(),
            source,
        })?;
        VerifyingKey::from_public_key_pem(&pem).map_err(|e| KeyError::Parse {
            path: p,
            what: "public key (SPKI)",
            detail: e.to_string(),
        })
    }

    /// Refuses the token with this id from now on (revocations arrive as events).
    pub fn revoke(&self, token_id: &str) {
        if let Ok(mut set) = self.revoked.write() {
            set.insert(token_id.to_string());
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        let verified = match remembered {
            Some(v) => v,
            None => {
                let v = self.verify_signed(token)?;
                let mut memory = self.verified.lock().unwrap_or_else(|p| p.into_inner());
                if memory.len() >= VERIFIED_CAPACITY {
                    memory.clear();
                }
                memory.insert(token.to_string(), v.clone());
                v
            }
        };
        if now_secs() > verified.expires + LEEWAY_SECS {
            return Err(AuthError::Expired);
        }
        if self
            .revoked
            .read()
            .map(|s| s.contains(&verified.principal.token_id))
            .unwrap_or(false)
        {
            return Err(AuthError::Revoked);
        }
        Ok(verified.principal)
    }

    /// Checks the signature and claims (revocation is the caller's).
    fn verify_signed(&self, token: &str) -> Result<Verified, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let kid = header.kid.ok_or(AuthError::UnknownKey)?;
        let key = self.keys.get(&kid).ok_or(AuthError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let c = data.claims;
        let tenant = c
            .tid
            .parse()
            .map_err(|_| AuthError::Invalid("tid is not a UUID".into()))?;
        Ok(Verified {
            principal: Principal {
                tenant,
                subject: c.sub,
                key_id: kid,
                token_id: c.jti,
                permissions: c.perms,
            },
            expires: c.exp,
        })
    }
}

/// Topic of token revocations (published by billing, payload `spharos.billing.v1.TokenRevoked`).
pub const TOKEN_REVOKED_TOPIC: &str = "billing.token_revoked";

/// Applies one `billing.token_revoked` event to `verifier` (a malformed one is logged and
/// skipped).
fn apply_revocation(verifier: &TokenVerifier, envelope: &crate::bus::Envelope, source: &str) {
    match envelope.decode::<spharos_proto::billing::TokenRevoked>() {
        Ok(revoked) => {
            verifier.revoke(&revoked.token_id);
            tracing::info!(token_id = %revoked.token_id, tenant_id = %revoked.tenant_id, source, "token revoked");
        }
        Err(e) => {
            tracing::warn!(event_id = %envelope.id, source, error = %e, "malformed token revocation skipped")
        }
    }
}

/// Keeps `verifier`'s revocation list in step with `billing.token_revoked` events: replays every
/// revocation on the bus at start, then applies new ones as they arrive (within milliseconds
/// on NATS), so a revoked token is refused by every service of every process. Re-subscribes
/// after the bus drops the subscription.
///
/// This hears the process's own stream and namespace only; a process whose revocations are
/// published elsewhere (a dedicated tenant: billing runs on the platform's stream) also runs
/// [`spawn_stream_revocation_listener`] (see [`crate::platform::Platform::spawn_revocation_listeners`]).
pub async fn spawn_revocation_listener(
    bus: crate::bus::Bus,
    verifier: TokenVerifier,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, crate::bus::BusError> {
    let mut subscription = bus.subscribe_broadcast(TOKEN_REVOKED_TOPIC).await?;
    Ok(tokio::spawn(async move {
        let mut backoff = std::time::Duration::from_millis(200);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = subscription.next() => next,
            };
            match next {
                Some(Ok(delivery)) => {
                    apply_revocation(&verifier, &delivery.envelope, "own bus");
                    let _ = delivery.ack().await;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "token revocation stream error"),
                None => loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    match bus.subscribe_broadcast(TOKEN_REVOKED_TOPIC).await {
                        Ok(s) => {
                            subscription = s;
                            backoff = std::time::Duration::from_millis(200);
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "re-subscribing to token revocations failed");
                            backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                        }
                    }
                },
            }
        }
    }))
}

/// First and longest wait between attempts of [`spawn_stream_revocation_listener`].
const STREAM_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const STREAM_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Like [`spawn_revocation_listener`], for revocations on another JetStream stream of the same
/// NATS server (`stream`, subject `<namespace>.billing.token_revoked`), over `bus`'s
/// connection: how a dedicated tenant, whose own bus is a stream of its own, hears the
/// revocations billing publishes on the platform's.
///
/// The stream is only read: the listener looks it up and adds an ephemeral consumer (replaying
/// every revocation from the stream's start, forgotten by the server a minute after this
/// process stops pulling), and never creates or changes the stream, which belongs to the
/// platform. It never fails either: while the stream is missing (the platform not deployed
/// yet) or NATS refuses, it warns and retries with backoff (200 ms doubling to 30 s), and
/// after any error on the message stream it subscribes afresh, replaying (revoking is
/// idempotent).
pub fn spawn_stream_revocation_listener(
    bus: &crate::bus::NatsBus,
    stream: &str,
    namespace: &str,
    verifier: TokenVerifier,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use futures::StreamExt;
    let js = bus.jetstream().clone();
    let stream = stream.to_string();
    let subject = format!("{namespace}.{TOKEN_REVOKED_TOPIC}");
    tokio::spawn(async move {
        let mut backoff = STREAM_RETRY_FIRST;
        let source = format!("stream {stream}");
        loop {
            match subscribe_stream(&js, &stream, &subject).await {
                Ok(mut messages) => {
                    tracing::info!(%stream, %subject, "listening for token revocations");
                    loop {
                        let next = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            next = messages.next() => next,
                        };
                        match next {
                            Some(Ok(message)) => {
                                backoff = STREAM_RETRY_FIRST;
                                match crate::bus::Envelope::from_headers(
                                    message.headers.as_ref(),
                                    &message.payload,
                                ) {
                                    Ok(envelope) => apply_revocation(&verifier, &envelope, &source),
                                    Err(reason) => tracing::warn!(
                                        %stream,
                                        subject = %message.subject,
                                        %reason,
                                        "malformed token revocation skipped"
                                    ),
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!(%stream, %subject, error = %e, "token revocation stream error; subscribing again");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(SubscribeStreamError::StreamMissing) => tracing::warn!(
                    %stream,
                    %subject,
                    retry_in_ms = backoff.as_millis() as u64,
                    "the JetStream stream {stream} with the token revocations does not exist \
                     (yet): tokens revoked there are still accepted by this process until it \
                     does; it is never created from here"
                ),
                Err(SubscribeStreamError::Other(e)) => tracing::warn!(
                    %stream,
                    %subject,
                    retry_in_ms = backoff.as_millis() as u64,
                    error = %e,
                    "cannot subscribe to token revocations; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(STREAM_RETRY_MAX);
        }
    })
}

enum SubscribeStreamError {
    StreamMissing,
    Other(String),
}

/// An ephemeral pull consumer of `subject` on the existing `stream` (as
/// `Bus::subscribe_broadcast` makes on the process's own stream), without touching the stream.
async fn subscribe_stream(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: &str,
) -> Result<async_nats::jetstream::consumer::pull::Stream, SubscribeStreamError> {
    use async_nats::jetstream::{
        ErrorCode,
        consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
        context::GetStreamErrorKind,
    };
    let handle = js.get_stream(stream).await.map_err(|e| match e.kind() {
        GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
            SubscribeStreamError::StreamMissing
        }
        _ => SubscribeStreamError::Other(format!("stream {stream}: {e}")),
    })?;
    let consumer: PullConsumer = handle
        .create_consumer(pull::Config {
            filter_subject: subject.to_string(),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            inactive_threshold: std::time::Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| SubscribeStreamError::Other(e.to_string()))?;
    consumer
        .messages()
        .await
        .map_err(|e| SubscribeStreamError::Other(e.to_string()))
}

/// tonic interceptor: verifies `authorization: Bearer <token>` and puts the [`Principal`] into
/// the request extensions. Every tenant-facing service is wrapped in it.
#[derive(Clone)]
pub struct AuthInterceptor {
    verifier: TokenVerifier,
}

impl AuthInterceptor {
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl tonic::service::Interceptor for AuthInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated(AuthError::Malformed.to_string()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated(AuthError::Malformed.to_string()))?;
        let principal = self
            .verifier
            .verify(token.trim())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        tracing::Span::current().record(
            "spharos.tenant_id",
            tracing::field::display(principal.tenant),
        );
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The verified caller of a request that went through [`AuthInterceptor`].
pub fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated(AuthError::Missing.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_carries_the_tenant() {
        let signer = TokenSigner::generate();
        let verifier = TokenVerifier::new([signer.public_key()]);
        let tenant = TenantId::generate();
        let token = signer.mint(tenant, "pos-1", &[PERM_PII_UNMASK], 60);
        let p = verifier.verify(&token).expect("valid token");
        assert_eq!(p.tenant, tenant);
        assert_eq!(p.subject, "pos-1");
        assert!(p.has(PERM_PII_UNMASK));
        assert_eq!(p.key_id, signer.key_id());
    }

    #[test]
    fn another_key_expiry_tampering_and_revocation_are_refused() {
        let signer = TokenSigner::generate();
        let other = TokenSigner::generate();
        let verifier = TokenVerifier::new([signer.public_key()]);
        let tenant = TenantId::generate();
        assert_eq!(
            verifier.verify(&other.mint(tenant, "x", &[], 60)),
            Err(AuthError::UnknownKey)
        );

        // Expired beyond the leeway: mint with claims in the past by hand.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.key_id().to_string());
        let old = Claims {
            tid: tenant.to_string(),
            sub: "x".into(),
            perms: vec![],
            iat: 1,
            exp: 2,
            jti: "j".into(),
            iss: ISSUER.into(),
        };
        let expired = jsonwebtoken::encode(&header, &old, &signer.key).expect("sign");
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));

        let token = signer.mint(tenant, "x", &[], 60);
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(matches!(
            verifier.verify(&parts.join(".")),
            Err(AuthError::Invalid(_))
        ));

        let p = verifier.verify(&token).expect("valid");
        verifier.revoke(&p.token_id);
        assert_eq!(verifier.verify(&token), Err(AuthError::Revoked));
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_expired_or_revoked() {
        let signer = TokenSigner::generate();
        let verifier = TokenVerifier::new([signer.public_key()]);
        let tenant = TenantId::generate();
        let token = signer.mint(tenant, "pos-1", &["points:admin"], 60);
        let first = verifier.verify(&token).expect("valid");
        assert_eq!(verifier.verify(&token).expect("remembered"), first);
        assert_eq!(verifier.verified.lock().expect("lock").len(), 1);

        // The memory says when it expires; past it (and the leeway) the token is refused
        // without a new signature check.
        verifier
            .verified
            .lock()
            .expect("lock")
            .get_mut(&token)
            .expect("remembered")
            .expires = now_secs() - LEEWAY_SECS - 1;
        assert_eq!(verifier.verify(&token), Err(AuthError::Expired));

        let other = signer.mint(tenant, "pos-2", &[], 60);
        let p = verifier.verify(&other).expect("valid");
        verifier.revoke(&p.token_id);
        assert_eq!(verifier.verify(&other), Err(AuthError::Revoked));
        // A token that fails its checks is never remembered.
        let mut parts: Vec<String> = other.split('.').map(str::to_string).collect();
        parts[2] = parts[2].chars().rev().collect();
        assert!(verifier.verify(&parts.join(".")).is_err());
        assert_eq!(verifier.verified.lock().expect("lock").len(), 2);
    }

    #[test]
    fn keys_round_trip_through_pem_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/signing.pem");
        let a = TokenSigner::load_or_create(&path, true).expect("created");
        let b = TokenSigner::load_or_create(&path, false).expect("loaded");
        assert_eq!(a.key_id(), b.key_id());
        let pub_path = dir.path().join("pub.pem");
        std::fs::write(&pub_path, a.public_key_pem()).expect("write");
        let v = TokenVerifier::public_key_from_pem_file(&pub_path).expect("parse");
        assert_eq!(v, a.public_key());
        assert!(TokenSigner::load_or_create(&dir.path().join("missing.pem"), false).is_err());
    }
}

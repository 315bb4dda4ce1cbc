//! Field-level PII protection: AES-256-GCM with a data key per tenant, wrapped by the platform
//! master key; a keyed HMAC-SHA256 blind index for equality lookups (phone); display masking.
use std::{collections::HashMap, path::Path, sync::Arc};

use aes_gcm::{
    Aes256Gcm, Key, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use tokio::sync::RwLock;

use crate::tenancy::TenantId;

const NONCE_LEN: usize = 12;
/// Version byte in front of every ciphertext, so the format can change later.
const FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key file {path}: {detail}")]
    MasterKey { path: String, detail: String },
    #[error("decryption failed (wrong key or tampered data)")]
    Decrypt,
    #[error("stored data key is corrupt")]
    CorruptKey,
    #[error("key store: {0}")]
    Store(#[from] DbErr),
}

/// The platform master key. It only wraps tenant data keys; it never encrypts PII directly.
///
/// During a rotation it also holds the previous keys: data keys are always wrapped with the
/// primary key and unwrapped with whichever key wrapped them, so processes that know both keep
/// serving while `spharos keys rotate` re-wraps every stored data key.
pub struct MasterKey {
    primary: SecretBox<[u8; 32]>,
    previous: Vec<SecretBox<[u8; 32]>>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey([REDACTED], {} previous)", self.previous.len())
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self::from_bytes(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            primary: SecretBox::new(Box::new(bytes)),
            previous: Vec::new(),
        }
    }

    /// This key as the primary, still accepting data keys wrapped by `previous` (their own
    /// previous keys included).
    pub fn with_previous(mut self, previous: impl IntoIterator<Item = MasterKey>) -> Self {
        for p in previous {
            self.previous.push(p.primary);
            self.previous.extend(p.previous);
        }
        self
    }

    /// Writes a new random key as 64 hex characters to `path` (mode 0600); refuses to
    /// overwrite an existing file, which may be a key still in use.
    pub fn generate_file(path: &Path) -> Result<(), CryptoError> {
        let err = |detail: String| CryptoError::MasterKey {
            path: path.display().to_string(),
            detail,
        };
        if path.exists() {
            return Err(err("already exists; choose a new file name".into()));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        options
            .open(path)
            .and_then(|mut f| f.write_all(hex::encode(key.primary.expose_secret()).as_bytes()))
            .map_err(|e| err(e.to_string()))
    }

    /// Reads 32 bytes as 64 hex characters (or raw), creating the file (0600) when `create`.
    pub fn load_or_create(path: &Path, create: bool) -> Result<Self, CryptoError> {
        let p = path.display().to_string();
        let err = |detail: String| CryptoError::MasterKey {
            path: p.clone(),
            detail,
        };
        if !path.exists() && create {
            let key = Self::generate();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            std::fs::write(path, hex::encode(key.primary.expose_secret()))
                .map_err(|e| err(e.to_string()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| err(e.to_string()))?;
            }
            return Ok(key);
        }
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let bytes = match hex::decode(text.trim()) {
            Ok(b) => b,
            Err(_) => raw,
        };
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| err("must hold 32 bytes (64 hex characters)".into()))?;
        Ok(Self::from_bytes(arr))
    }

    fn cipher(key: &SecretBox<[u8; 32]>) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose_secret()))
    }

    /// Wraps a data key for storage with the primary key, bound to its tenant.
    fn wrap(&self, tenant: TenantId, dk: &DataKey) -> Vec<u8> {
        let mut plain = Vec::with_capacity(64);
        plain.extend_from_slice(dk.enc.expose_secret());
        plain.extend_from_slice(dk.index.expose_secret());
        seal(
            &Self::cipher(&self.primary),
            &plain,
            tenant.as_uuid().as_bytes(),
        )
    }

    /// Unwraps with the primary key, else with a previous one; `true` when the primary did.
    fn unwrap_any(&self, tenant: TenantId, wrapped: &[u8]) -> Result<(DataKey, bool), CryptoError> {
        let id = tenant.as_uuid();
        let aad = id.as_bytes();
        // AES-GCM authenticates: a wrong key fails cleanly, so trying each key is safe.
        let mut keys = std::iter::once(&self.primary).chain(&self.previous);
        let mut is_primary = true;
        let plain = loop {
            let Some(key) = keys.next() else {
                return Err(CryptoError::Decrypt);
            };
            if let Ok(p) = open(&Self::cipher(key), wrapped, aad) {
                break p;
            }
            is_primary = false;
        };
        Ok((Self::data_key_from(&plain)?, is_primary))
    }

    fn unwrap(&self, tenant: TenantId, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        Ok(self.unwrap_any(tenant, wrapped)?.0)
    }

    fn data_key_from(plain: &[u8]) -> Result<DataKey, CryptoError> {
        if plain.len() != 64 {
            return Err(CryptoError::CorruptKey);
        }
        let mut enc = [0u8; 32];
        let mut index = [0u8; 32];
        enc.copy_from_slice(&plain[..32]);
        index.copy_from_slice(&plain[32..]);
        Ok(DataKey {
            enc: SecretBox::new(Box::new(enc)),
            index: SecretBox::new(Box::new(index)),
        })
    }
}

fn seal(cipher: &Aes256Gcm, plain: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

fn open(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != FORMAT_V1 {
        return Err(CryptoError::Decrypt);
    }
    cipher
        .decrypt(
            Nonce::from_slice(&sealed[1..1 + NONCE_LEN]),
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| CryptoError::Decrypt)
}

/// A tenant's data key: one half encrypts fields, the other keys the blind index.
pub struct DataKey {
    enc: SecretBox<[u8; 32]>,
    index: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        let mut enc = [0u8; 32];
        let mut index = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut enc);
        rand::rngs::OsRng.fill_bytes(&mut index);
        Self {
            enc: SecretBox::new(Box::new(enc)),
            index: SecretBox::new(Box::new(index)),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.enc.expose_secret()))
    }

    /// Encrypts one field. `context` (e.g. the field name and row id) is bound as associated
    /// data, so a ciphertext copied to another field or row does not decrypt.
    pub fn encrypt(&self, plain: &str, context: &str) -> Vec<u8> {
        seal(&self.cipher(), plain.as_bytes(), context.as_bytes())
    }

    pub fn decrypt(&self, sealed: &[u8], context: &str) -> Result<String, CryptoError> {
        let bytes = open(&self.cipher(), sealed, context.as_bytes())?;
        String::from_utf8(bytes).map_err(|_| CryptoError::Decrypt)
    }

    /// Keyed HMAC-SHA256 of a normalised value, hex: equal inputs give equal indexes within the
    /// tenant, and nothing can be learned from the index without the key.
    pub fn blind_index(&self, normalized: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.index.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(normalized.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Tenant data keys stored (wrapped) in the service's `data_keys` table, cached in memory.
/// The table is created by [`DataKeysMigration`].
#[derive(Clone)]
pub struct KeyRing {
    master: Arc<MasterKey>,
    cache: Arc<RwLock<HashMap<TenantId, Arc<DataKey>>>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing")
    }
}

impl KeyRing {
    pub fn new(master: Arc<MasterKey>) -> Self {
        Self {
            master,
            cache: Arc::default(),
        }
    }

    /// The tenant's data key, created on first use. Pass the caller's tenant transaction (the
    /// insert then commits with the first row it protects).
    pub async fn data_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        tenant: TenantId,
    ) -> Result<Arc<DataKey>, CryptoError> {
        if let Some(k) = self.cache.read().await.get(&tenant) {
            return Ok(k.clone());
        }
        let backend = conn.get_database_backend();
        let select = match backend {
            DatabaseBackend::Postgres => "SELECT wrapped_key FROM data_keys WHERE tenant_id = $1",
            _ => "SELECT wrapped_key FROM data_keys WHERE tenant_id = ?",
        };
        let row = conn
            .query_one_raw(Statement::from_sql_and_values(
                backend,
                select,
                [tenant.as_uuid().into()],
            ))
            .await?;
        let key = match row {
            Some(row) => {
                let wrapped: Vec<u8> = row.try_get("", "wrapped_key")?;
                self.master.unwrap(tenant, &wrapped)?
            }
            None => {
                let dk = DataKey::generate();
                let wrapped = self.master.wrap(tenant, &dk);
                let insert = match backend {
                    DatabaseBackend::Postgres => {
                        "INSERT INTO data_keys (tenant_id, wrapped_key, created_time) VALUES ($1, $2, $3) ON CONFLICT (tenant_id) DO NOTHING"
                    }
                    _ => {
                        "INSERT INTO data_keys (tenant_id, wrapped_key, created_time) VALUES (?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING"
                    }
                };
                let res = conn
                    .execute_raw(Statement::from_sql_and_values(
                        backend,
                        insert,
                        [
                            tenant.as_uuid().into(),
                            wrapped.into(),
                            chrono::Utc::now().into(),
                        ],
                    ))
                    .await?;
                if res.rows_affected() == 0 {
                    // Another transaction created it first: use theirs.
                    let row = conn
                        .query_one_raw(Statement::from_sql_and_values(
                            backend,
                            select,
                            [tenant.as_uuid().into()],
                        ))
                        .await?
                        .ok_or(CryptoError::CorruptKey)?;
                    let wrapped: Vec<u8> = row.try_get("", "wrapped_key")?;
                    self.master.unwrap(tenant, &wrapped)?
                } else {
                    // Not cached until the caller's transaction commits; a rollback must not
                    // leave us with a key nobody stored.
                    return Ok(Arc::new(dk));
                }
            }
        };
        let key = Arc::new(key);
        self.cache.write().await.insert(tenant, key.clone());
        Ok(key)
    }
}

/// Creates `data_keys (tenant_id uuid primary key, wrapped_key bytes, created_time)` with the
/// tenant RLS policy. Services that store PII include it in their migrator.
pub struct DataKeysMigration;

impl sea_orm_migration::MigrationName for DataKeysMigration {
    fn name(&self) -> &str {
        "m20261203_000002_kit_data_keys"
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for DataKeysMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::{prelude::*, schema::*};
        manager
            .create_table(
                Table::create()
                    .table("data_keys")
                    .if_not_exists()
                    .col(uuid("tenant_id").primary_key())
                    .col(blob("wrapped_key"))
                    .col(timestamp_with_time_zone("created_time"))
                    .to_owned(),
            )
            .await?;
        crate::db::enable_tenant_rls(manager, "data_keys").await
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::prelude::*;
        manager
            .drop_table(Table::drop().table("data_keys").to_owned())
            .await
    }
}

/// Lets platform transactions (`Db::begin_system`) list the tenants of `data_keys`, so a key
/// rotation can find every data key; reading or changing one still needs the tenant's own
/// transaction. Services that include [`DataKeysMigration`] include this after it.
pub struct DataKeysRotationMigration;

impl sea_orm_migration::MigrationName for DataKeysRotationMigration {
    fn name(&self) -> &str {
        "m20261211_000001_kit_data_keys_rotation"
    }
}

#[async_trait::async_trait]
impl sea_orm_migration::MigrationTrait for DataKeysRotationMigration {
    async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE POLICY key_rotation_listing ON data_keys FOR SELECT
                   USING (current_setting('spharos.system', true) = 'on')",
            )
            .await
            .map(|_| ())
    }

    async fn down(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        manager
            .get_connection()
            .execute_unprepared("DROP POLICY IF EXISTS key_rotation_listing ON data_keys")
            .await
            .map(|_| ())
    }
}

/// What a re-wrap did to one service's `data_keys`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Data keys that were wrapped by a previous master key and now are by the primary.
    pub rewrapped: u64,
    /// Data keys the primary master key wrapped already.
    pub current: u64,
}

/// Re-wraps every tenant data key stored in `db` with the primary master key, one short
/// tenant transaction (row locked) per key, so running services are never blocked for long
/// and a concurrent first use of a key is never lost. Safe to run again: keys already wrapped
/// by the primary are left alone. The data keys themselves do not change, so no PII is
/// re-encrypted. A key that no configured master key opens is an error naming its tenant.
pub async fn rewrap_data_keys(
    db: &crate::db::Db,
    master: &MasterKey,
) -> Result<RewrapReport, CryptoError> {
    let backend = db.db_backend();
    let tenants: Vec<uuid::Uuid> = {
        let tx = db.begin_system().await?;
        let rows = tx
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT tenant_id FROM data_keys ORDER BY tenant_id",
            ))
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| r.try_get::<uuid::Uuid>("", "tenant_id"))
            .collect::<Result<_, _>>()?
    };
    let (select, update) = match backend {
        DatabaseBackend::Postgres => (
            "SELECT wrapped_key FROM data_keys WHERE tenant_id = $1 FOR UPDATE",
            "UPDATE data_keys SET wrapped_key = $1 WHERE tenant_id = $2",
        ),
        _ => (
            "SELECT wrapped_key FROM data_keys WHERE tenant_id = ?",
            "UPDATE data_keys SET wrapped_key = ? WHERE tenant_id = ?",
        ),
    };
    let mut report = RewrapReport::default();
    for id in tenants {
        let tenant = TenantId::from(id);
        let tx = db.begin(tenant).await?;
        let Some(row) = tx
            .query_one_raw(Statement::from_sql_and_values(backend, select, [id.into()]))
            .await?
        else {
            tx.commit().await?;
            continue;
        };
        let wrapped: Vec<u8> = row.try_get("", "wrapped_key")?;
        let (dk, is_primary) =
            master
                .unwrap_any(tenant, &wrapped)
                .map_err(|_| CryptoError::MasterKey {
                    path: format!("{}.data_keys", db.schema()),
                    detail: format!(
                        "the data key of tenant {id} opens with none of the configured master keys"
                    ),
                })?;
        if is_primary {
            report.current += 1;
            tx.commit().await?;
            continue;
        }
        tx.execute_raw(Statement::from_sql_and_values(
            backend,
            update,
            [master.wrap(tenant, &dk).into(), id.into()],
        ))
        .await?;
        tx.commit().await?;
        report.rewrapped += 1;
    }
    Ok(report)
}

/// Display masking for PII (Korean conventions).
pub mod mask {
    /// `홍길동` → `홍*동`, `홍길` → `홍*`, `남궁민수` → `남**수`, `John Smith` → `J********h`.
    pub fn name(name: &str) -> String {
        let chars: Vec<char> = name.trim().chars().collect();
        match chars.len() {
            0 => String::new(),
            1 => "*".into(),
            2 => format!("{}*", chars[0]),
            n => {
                let mut s = String::new();
                s.push(chars[0]);
                s.extend(std::iter::repeat_n('*', n - 2));
                s.push(chars[n - 1]);
                s
            }
        }
    }

    /// `010-1234-5678` → `010-****-5678`.
    pub fn phone(normalized: &str) -> String {
        let digits: String = normalized.chars().filter(char::is_ascii_digit).collect();
        match digits.len() {
            11 => format!("{}-****-{}", &digits[..3], &digits[7..]),
            10 => format!("{}-***-{}", &digits[..3], &digits[6..]),
            n if n > 4 => format!("{}{}", "*".repeat(n - 4), &digits[n - 4..]),
            _ => "*".repeat(digits.len()),
        }
    }

    /// `hong@example.com` → `ho**@example.com`.
    pub fn email(email: &str) -> String {
        match email.split_once('@') {
            Some((local, domain)) => {
                let keep: String = local.chars().take(2).collect();
                let hidden = local.chars().count().saturating_sub(2).max(1);
                format!("{keep}{}@{domain}", "*".repeat(hidden))
            }
            None if email.is_empty() => String::new(),
            None => "***".into(),
        }
    }

    /// `1990-05-17` → `1990-**-**` (the year stays for age-band analytics).
    pub fn birth_date(date: &str) -> String {
        match date.get(..4) {
            Some(year) if date.len() == 10 => format!("{year}-**-**"),
            _ if date.is_empty() => String::new(),
            _ => "****-**-**".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_are_bound_to_their_context() {
        let dk = DataKey::generate();
        let ct = dk.encrypt("010-1234-5678", "phone:m1");
        assert_eq!(
            dk.decrypt(&ct, "phone:m1").expect("decrypts"),
            "010-1234-5678"
        );
        assert!(
            dk.decrypt(&ct, "phone:m2").is_err(),
            "copied to another row"
        );
        assert!(
            DataKey::generate().decrypt(&ct, "phone:m1").is_err(),
            "another tenant's key"
        );
        let mut tampered = ct.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(dk.decrypt(&tampered, "phone:m1").is_err());
        assert_ne!(
            dk.encrypt("x", "c"),
            dk.encrypt("x", "c"),
            "fresh nonce each time"
        );
    }

    #[test]
    fn blind_index_is_deterministic_per_key() {
        let a = DataKey::generate();
        let b = DataKey::generate();
        assert_eq!(a.blind_index("01012345678"), a.blind_index("01012345678"));
        assert_ne!(a.blind_index("01012345678"), a.blind_index("01012345679"));
        assert_ne!(a.blind_index("01012345678"), b.blind_index("01012345678"));
    }

    #[test]
    fn data_keys_wrap_per_tenant() {
        let mk = MasterKey::generate();
        let t1 = TenantId::generate();
        let dk = DataKey::generate();
        let wrapped = mk.wrap(t1, &dk);
        let back = mk.unwrap(t1, &wrapped).expect("unwraps");
        assert_eq!(back.blind_index("x"), dk.blind_index("x"));
        assert!(
            mk.unwrap(TenantId::generate(), &wrapped).is_err(),
            "bound to the tenant"
        );
        assert!(MasterKey::generate().unwrap(t1, &wrapped).is_err());
    }

    #[test]
    fn master_key_file_is_created_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/master.key");
        let a = MasterKey::load_or_create(&path, true).expect("created");
        let b = MasterKey::load_or_create(&path, false).expect("reloaded");
        let t = TenantId::generate();
        let dk = DataKey::generate();
        assert!(b.unwrap(t, &a.wrap(t, &dk)).is_ok());
        std::fs::write(&path, "too short").expect("write");
        let err = MasterKey::load_or_create(&path, false).expect_err("bad key");
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }

    #[test]
    fn masks_follow_korean_conventions() {
        assert_eq!(mask::name("홍길동"), "홍*동");
        assert_eq!(mask::name("홍길"), "홍*");
        assert_eq!(mask::name("남궁민수"), "남**수");
        assert_eq!(mask::phone("01012345678"), "010-****-5678");
        assert_eq!(mask::phone("010-1234-5678"), "010-****-5678");
        assert_eq!(mask::email("hong@example.com"), "ho**@example.com");
        assert_eq!(mask::email("a@b.kr"), "a*@b.kr");
        assert_eq!(mask::birth_date("1990-05-17"), "1990-**-**");
        assert_eq!(mask::birth_date(""), "");
    }
}

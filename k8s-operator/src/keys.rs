//! Token keys of dedicated tenants, in the formats kit's `auth` reads.
//!
//! - Each dedicated tenant gets its own Ed25519 signing key (PKCS#8 PEM, what
//!   `auth.signing_key_file` loads), generated once by the operator and shared by every pod of
//!   the tenant, so a token one module mints for another (member → privacy consent checks,
//!   privacy's data-subject requests → member, points, coupon) verifies everywhere.
//! - The platform's public key (SPKI PEM, what `auth.public_key_files` loads) is handed to every
//!   dedicated tenant, so the tokens billing signs with the platform key (the tenant's API token
//!   among them) verify there. The operator holds only this public half, never the platform's
//!   private key.
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding},
};
use sha2::{Digest, Sha256};

/// Why the platform public key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the platform public key is a PRIVATE key; give the operator only the public half \
         (`openssl pkey -in signing.pem -pubout -out public.pem`)"
    )]
    PrivateKeyGiven,
    #[error(
        "the platform public key is not an Ed25519 public key in SPKI PEM \
         (-----BEGIN PUBLIC KEY-----; `openssl pkey -in signing.pem -pubout`): {0}"
    )]
    Parse(String),
}

/// A fresh Ed25519 signing key as PKCS#8 PEM, as kit's `TokenSigner::load_or_create` writes
/// and reads it.
pub fn generate_signing_key_pem() -> String {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    signing_key_pem(&key)
}

/// `key` as PKCS#8 PEM (LF line endings).
pub fn signing_key_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes as PKCS#8 PEM")
        .to_string()
}

/// The key id kit puts into a token's `kid` header: the first 8 bytes of SHA-256 over the raw
/// public key, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The platform's token-verifying key, checked and re-encoded when the operator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformPublicKey {
    pem: String,
    key_id: String,
}

impl PlatformPublicKey {
    /// Parses an SPKI PEM public key; a private key is refused with a message saying so.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        if text.contains("PRIVATE KEY-----") {
            return Err(KeyError::PrivateKeyGiven);
        }
        let key = VerifyingKey::from_public_key_pem(text.trim())
            .map_err(|e| KeyError::Parse(e.to_string()))?;
        Ok(Self::from_key(&key))
    }

    /// From the key itself.
    pub fn from_key(key: &VerifyingKey) -> Self {
        Self {
            pem: key
                .to_public_key_pem(LineEnding::LF)
                .expect("an Ed25519 public key always encodes as PEM"),
            key_id: key_id(key),
        }
    }

    /// The key as canonical SPKI PEM, as the dedicated pods get it.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The `kid` of the tokens this key verifies.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

//! What a service module gets from the process that hosts it (`spharos serve --target ...` or a
//! test): settings, the bus, token verification, the master key and the shutdown signal, plus
//! the keys' bootstrap for the embedded default.
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    auth::{TokenSigner, TokenVerifier},
    bus::Bus,
    config::Settings,
    crypto::MasterKey,
};

/// Shared by every module of one process.
#[derive(Clone)]
pub struct Platform {
    pub settings: Arc<Settings>,
    pub bus: Bus,
    pub verifier: TokenVerifier,
    /// Mints tenant tokens (the billing module issues API keys with it).
    pub signer: TokenSigner,
    pub master_key: Arc<MasterKey>,
    /// Cancelled when the process shuts down; background tasks stop on it.
    pub shutdown: CancellationToken,
}

/// A module as built: its background tasks and a readiness probe.
pub struct Module {
    pub name: &'static str,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    pub db: Option<crate::db::Db>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyBootstrapError {
    #[error(transparent)]
    Auth(#[from] crate::auth::KeyError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Loads the signing key and master key from their configured files, or, when not configured,
/// from (or newly into) `<data_dir>/keys/`, so the embedded default needs no setup.
pub fn load_keys(
    settings: &Settings,
) -> Result<(TokenSigner, TokenVerifier, MasterKey), KeyBootstrapError> {
    let keys_dir = settings.database.data_dir.join("keys");
    let signer = match &settings.auth.signing_key_file {
        Some(path) => TokenSigner::load_or_create(path, false)?,
        None => TokenSigner::load_or_create(&keys_dir.join("signing.pem"), true)?,
    };
    let mut public = vec![signer.public_key()];
    for path in &settings.auth.public_key_files {
        public.push(TokenVerifier::public_key_from_pem_file(path)?);
    }
    let verifier = TokenVerifier::new(public);
    let master = match &settings.crypto.master_key_file {
        Some(path) => MasterKey::load_or_create(path, false)?,
        None => MasterKey::load_or_create(&keys_dir.join("master.key"), true)?,
    };
    let previous = settings
        .crypto
        .previous_master_key_files
        .iter()
        .map(|p| MasterKey::load_or_create(p, false))
        .collect::<Result<Vec<_>, _>>()?;
    let master = master.with_previous(previous);
    Ok((signer, verifier, master))
}

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

impl Platform {
    /// Starts the statistics keeper of a module's database ([`crate::statistics`]), every
    /// `database.statistics_interval_seconds` until `shutdown`; `None` on SQLite or when the
    /// interval is 0. Modules add it to their [`Module::tasks`].
    pub fn keep_statistics(&self, db: &crate::db::Db) -> Option<tokio::task::JoinHandle<()>> {
        crate::statistics::spawn(
            db,
            std::time::Duration::from_secs(self.settings.database.statistics_interval_seconds),
            self.shutdown.clone(),
        )
    }

    /// The token revocation listeners of this process, one task that ends when they all have
    /// (on `shutdown`): [`crate::auth::spawn_revocation_listener`] on the own bus, and, with
    /// `auth.revocations` set, [`crate::auth::spawn_stream_revocation_listener`] on that stream
    /// and namespace over the same NATS connection. Both feed [`Platform::verifier`]. Fails
    /// only when the own bus refuses the subscription; the other source is retried in the
    /// background while its stream does not exist.
    ///
    /// With the in-process bus the setting cannot be honoured (configuration validation refuses
    /// it with `nats.url` unset; a bus built apart from the settings gets a warning here).
    pub async fn spawn_revocation_listeners(
        &self,
    ) -> Result<tokio::task::JoinHandle<()>, crate::bus::BusError> {
        let own = crate::auth::spawn_revocation_listener(
            self.bus.clone(),
            self.verifier.clone(),
            self.shutdown.clone(),
        )
        .await?;
        let other = match (&self.bus, self.settings.auth.revocations.source()) {
            (_, None) => None,
            (Bus::Nats(nats), Some((stream, namespace))) => {
                if stream == nats.stream() && namespace == nats.namespace() {
                    tracing::debug!(
                        stream,
                        namespace,
                        "auth.revocations is the own bus: one listener is enough"
                    );
                    None
                } else {
                    tracing::info!(
                        stream,
                        namespace,
                        "also hearing token revocations from another stream (auth.revocations)"
                    );
                    Some(crate::auth::spawn_stream_revocation_listener(
                        nats,
                        stream,
                        namespace,
                        self.verifier.clone(),
                        self.shutdown.clone(),
                    ))
                }
            }
            (Bus::InProcess(_), Some((stream, namespace))) => {
                tracing::warn!(
                    stream,
                    namespace,
                    "auth.revocations ignored: the in-process bus cannot hear another stream, so \
                     tokens revoked there are still accepted by this process"
                );
                None
            }
        };
        Ok(tokio::spawn(async move {
            let _ = own.await;
            if let Some(other) = other {
                let _ = other.await;
            }
        }))
    }
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

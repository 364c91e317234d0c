//! The keyring: the TLS certificate, the DKIM keys and the return-path
//! keys (see `ferry_core::return_path`), the settings that
//! change while the node runs. It looks at the certificate files and at the
//! store's directory version every `server.reload_secs`, and publishes
//! immutable snapshots on watch channels that sessions read without a round
//! trip: a certificate rotated on disk (cert-manager in Kubernetes) is served
//! to the next TLS client, and a DKIM key activated or retired — on this
//! node or any other — signs (or stops signing) the next message.
//!
//! A new certificate or key set that does not load is logged and the one in
//! use stays: a half-written rotation never takes TLS or signing away.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_store::Store;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use ferry_core::return_path::BounceKey;

use crate::dkim::DkimSigners;
use crate::tls;

/// What the keyring watches, and where it publishes.
#[derive(Clone)]
pub struct KeyringArgs {
    /// (certificate chain, private key) PEM files; None without TLS.
    pub certificate: Option<(PathBuf, PathBuf)>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn ferry_core::Clock>,
    pub relay_domain: Option<String>,
    pub every: Duration,
    pub tls: Arc<watch::Sender<Option<TlsAcceptor>>>,
    pub dkim: Arc<watch::Sender<Arc<DkimSigners>>>,
    pub bounce_keys: Arc<watch::Sender<Arc<Vec<BounceKey>>>>,
    /// The files' bytes and the directory version the published snapshots were made from.
    pub loaded: Loaded,
}

/// The sources of the snapshots in use.
#[derive(Clone, Default)]
pub struct Loaded {
    pub files: Option<(Vec<u8>, Vec<u8>)>,
    pub directory_version: Option<u64>,
}

#[derive(Clone)]
pub struct Keyring;

/// Time to look again.
pub struct Check;

impl Actor for Keyring {
    type Msg = Check;
    type State = KeyringArgs;
    type Arguments = KeyringArgs;

    /// Started after the store's writer and before the listeners: the
    /// first return-path key is made here, before any session needs it.
    async fn pre_start(&self, myself: ActorRef<Check>, args: KeyringArgs) -> Result<KeyringArgs, ActorProcessingErr> {
        if args.bounce_keys.borrow().is_empty() {
            match first_bounce_key(args.store.as_ref(), args.now_ms()).await {
                Ok(keys) => {
                    args.bounce_keys.send_replace(Arc::new(keys));
                }
                Err(e) => tracing::warn!(error = %e, "cannot make the first return-path key; trying at the next look"),
            }
        }
        myself.send_after(args.every, || Check);
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Check>,
        _: Check,
        state: &mut KeyringArgs,
    ) -> Result<(), ActorProcessingErr> {
        state.check_certificate().await;
        state.check_dkim().await;
        myself.send_after(state.every, || Check);
        Ok(())
    }
}

/// DKIM signers for every active key in the store, and the directory
/// version they were read at (read first, so a change in between is seen
/// at the next look).
pub async fn load_dkim(store: &dyn Store, relay_domain: Option<String>) -> Result<(DkimSigners, u64), String> {
    let version = store.directory_version().await.map_err(|e| e.to_string())?;
    let keys = store.dkim_keys().await.map_err(|e| e.to_string())?;
    let signers = DkimSigners::load(&keys, relay_domain)?;
    let active: Vec<String> = keys.iter().filter(|k| k.active).map(|k| k.dns_name()).collect();
    tracing::info!(keys = %active.join(", "), "DKIM signing keys");
    Ok((signers, version))
}

/// The return-path keys, after making the first one if the store has
/// none (every node may try at once; the store keeps one).
async fn first_bounce_key(store: &dyn Store, now_ms: u64) -> Result<Vec<BounceKey>, String> {
    let first = BounceKey::generate(&[], now_ms);
    if store.add_bounce_key(first, None).await.map_err(|e| e.to_string())? {
        tracing::info!("made the first return-path key");
    }
    store.bounce_keys().await.map_err(|e| e.to_string())
}

impl KeyringArgs {
    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    async fn check_certificate(&mut self) {
        let Some((cert, key)) = &self.certificate else { return };
        let files = match tls::read_pem(cert, key) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the TLS certificate; keeping the one in use");
                return;
            }
        };
        if self.loaded.files.as_ref() == Some(&files) {
            return;
        }
        match tls::server_config_from_pem(cert, key, &files) {
            Ok(config) => {
                self.tls.send_replace(Some(TlsAcceptor::from(config)));
                tracing::info!(certificate = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::warn!(error = %e, "the new TLS certificate does not load; keeping the one in use"),
        }
        self.loaded.files = Some(files);
    }

    async fn check_dkim(&mut self) {
        let version = match self.store.directory_version().await {
            Ok(version) => version,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the directory version; DKIM keys unchanged");
                return;
            }
        };
        if self.loaded.directory_version == Some(version) {
            return;
        }
        let keys = match self.store.bounce_keys().await {
            Ok(keys) if keys.is_empty() => first_bounce_key(self.store.as_ref(), self.now_ms()).await,
            other => other.map_err(|e| e.to_string()),
        };
        match keys {
            Ok(keys) => {
                self.bounce_keys.send_replace(Arc::new(keys));
            }
            Err(e) => tracing::warn!(error = %e, "the return-path keys do not load; keeping the ones in use"),
        }
        match load_dkim(self.store.as_ref(), self.relay_domain.clone()).await {
            Ok((signers, version)) => {
                self.dkim.send_replace(Arc::new(signers));
                self.loaded.directory_version = Some(version);
            }
            Err(e) => tracing::warn!(error = %e, "the DKIM keys do not load; keeping the ones in use"),
        }
    }
}

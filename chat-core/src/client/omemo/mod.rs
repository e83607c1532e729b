//! The client's side of OMEMO (XEP-0384; the protocol is
//! `protocol::omemo`): end-to-end encryption of chat messages, so that the
//! server (its database, its archive, its operator) and anyone who relays
//! the TLS connection carry messages they cannot read.
//!
//! - [`store`]: the state kept between runs (keys, sessions, the trusted
//!   contacts' keys), in files only the user can read;
//! - [`engine`]: who gets a key, encrypting and decrypting, trust;
//! - `jobs`: what the worker is asked to do, by the reader and the API;
//! - `worker`: the task that publishes our keys, fetches the contacts',
//!   and sends and opens messages, one job at a time.
//!
//! The API below is what the front ends call: `/fingerprints`, `/verify`,
//! `/e2e`. Sending goes through [`Client::send_message`], which hands a
//! message to the worker when the conversation is end to end.

pub mod engine;
pub(crate) mod jobs;
pub mod store;
pub(crate) mod worker;

use std::future::Future;
use std::path::PathBuf;

use protocol::Jid;

use super::api::Client;
use super::error::{ClientError, Lost};
use super::state::lock;
use jobs::Job;
use store::Trust;
use tokio::sync::oneshot;

/// When messages are encrypted end to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum E2eMode {
    /// Never: no OMEMO at all (the client neither publishes keys nor reads
    /// encrypted messages).
    Off,
    /// To every contact who has an OMEMO device; in the clear, with a
    /// warning, to one who has none.
    On,
    /// Only end to end: a message to a contact without a trusted device is
    /// not sent.
    Require,
}

/// End-to-end options of a connection.
#[derive(Debug, Clone)]
pub struct E2eOptions {
    /// When to encrypt.
    pub mode: E2eMode,
    /// The account's OMEMO folder.
    pub dir: PathBuf,
}

/// One device as `/fingerprints` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device id.
    pub id: u32,
    /// Its fingerprint (hex in groups of eight).
    pub fingerprint: String,
    /// How it is trusted; `None` for this device.
    pub trust: Option<Trust>,
}

/// The devices of `jid` as `/fingerprints` shows them (this device first
/// when `jid` is our own account).
fn device_infos(e: &engine::Engine, jid: &Jid, me: &Jid) -> Vec<DeviceInfo> {
    let own = (jid == me).then(|| DeviceInfo {
        id: e.device_id(),
        fingerprint: e.own_fingerprint(),
        trust: None,
    });
    own.into_iter()
        .chain(
            e.devices(jid)
                .into_iter()
                .map(|(id, fingerprint, trust)| DeviceInfo {
                    id,
                    fingerprint,
                    trust: Some(trust),
                }),
        )
        .collect()
}

impl Client {
    fn engine(&self) -> Result<&std::sync::Arc<std::sync::Mutex<engine::Engine>>, ClientError> {
        self.e2e
            .as_ref()
            .map(|e| &e.engine)
            .ok_or(ClientError::E2eOff)
    }

    /// Whether end-to-end encryption is on in this client.
    pub fn e2e_enabled(&self) -> bool {
        self.e2e.is_some()
    }

    /// Fetches the device lists and bundles of `jid` (sessions start with
    /// the devices that have none); done when the future is.
    fn learn(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static + use<> {
        let (tx, rx) = oneshot::channel();
        let queued = match &self.e2e {
            None => Err(ClientError::E2eOff),
            Some(e) => e
                .jobs
                .try_send(Job::Learn {
                    jid: jid.to_bare(),
                    done: tx,
                })
                .map_err(|_| ClientError::Congested),
        };
        async move {
            queued?;
            rx.await.map_err(|_| Lost::ClosedWhileWaiting.into())
        }
    }

    /// The devices of `jid` with their fingerprints, fetched from the
    /// server first; for our own account, this device first.
    pub fn fingerprints(
        &self,
        jid: &Jid,
    ) -> impl Future<Output = Result<Vec<DeviceInfo>, ClientError>> + Send + 'static + use<> {
        let learned = self.learn(jid);
        let engine = self.engine().cloned();
        let (jid, me) = (jid.to_bare(), self.jid.to_bare());
        async move {
            let engine = engine?;
            learned.await?;
            Ok(device_infos(&lock(&engine), &jid, &me))
        }
    }

    /// Marks the device of `jid` with fingerprint `fp` verified (compared
    /// out of band; the keys are fetched first); its id and the devices of
    /// `jid` no longer trusted blindly, `None` when no device of `jid` has
    /// that fingerprint.
    pub fn verify(
        &self,
        jid: &Jid,
        fp: &str,
    ) -> impl Future<Output = Result<Option<(u32, Vec<u32>)>, ClientError>> + Send + 'static + use<>
    {
        let learned = self.learn(jid);
        let engine = self.engine().cloned();
        let (jid, fp) = (jid.to_bare(), fp.to_string());
        async move {
            let engine = engine?;
            learned.await?;
            lock(&engine)
                .verify(&jid, &fp)
                .map_err(|e| engine::E2eError::Store(e).into())
        }
    }

    /// `/e2e on|off JID`.
    pub fn set_e2e(&self, jid: &Jid, on: bool) -> Result<(), ClientError> {
        lock(self.engine()?).switch(jid, on);
        Ok(())
    }

    /// The end-to-end state of the conversation with `jid`, in a few
    /// words (`None` when OMEMO is off in this client).
    pub fn e2e_state(&self, jid: &Jid) -> Option<engine::E2eState> {
        Some(lock(&self.e2e.as_ref()?.engine).state(jid))
    }

    /// Whether a message to `jid` goes end to end (to the worker).
    pub(super) fn e2e_for(&self, jid: &Jid) -> bool {
        self.e2e
            .as_ref()
            .is_some_and(|e| lock(&e.engine).enabled_for(jid))
    }
}

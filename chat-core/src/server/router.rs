//! Who is online: bound resources per account, their presence, and the queue
//! that feeds each session's socket.
//!
//! Each session has a bounded outbound queue. A recipient that stops reading
//! (a slow or malicious client) fills its queue; instead of making every
//! sender wait for it, or buffering without bound, the router disconnects it
//! (`policy-violation`) and reports the stanza as undelivered, so the caller
//! can fall back to offline storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::StreamErrorCondition;
use tokio::sync::{Notify, mpsc};

/// How long a sender waits for room in a recipient's full queue before the
/// recipient counts as stuck and is disconnected. A burst (a fast sender, a
/// busy room) only slows its sender down, which is TCP's own backpressure
/// carried through the server; a client that stops reading is still cut off.
pub const STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Stanzas queued for one session before it counts as stuck. Deep enough for
/// bursts (a room message fan-out, offline delivery of the whole store at
/// sign-in), shallow enough that a stuck client holds little memory.
pub const OUTBOUND_QUEUE: usize = 4096;

/// One delivery to make: the session's queue, its kill switch, the XML.
type Recipient = (mpsc::Sender<Outbound>, Arc<Notify>, Arc<str>);

/// What a session's writer task is asked to do.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Write this serialized XML.
    Xml(Arc<str>),
    /// Send a stream error (if any), close the stream, end the connection.
    Close(Option<StreamErrorCondition>, Option<String>),
}

/// One bound resource.
#[derive(Debug)]
struct Resource {
    id: u64,
    resource: String,
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Notify>,
    /// Sent initial presence and not yet unavailable.
    available: bool,
    priority: i8,
    /// Last broadcast presence, serialized with its `from`.
    presence: Option<Arc<str>>,
    /// Asked for the roster, so gets roster pushes (RFC 6121 2.1.6).
    interested: bool,
}

/// What happened to a stanza handed to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for the session.
    Queued,
    /// No such session online.
    Offline,
    /// The session's queue was full; the session is being disconnected.
    Overflow,
}

/// A handle a session keeps to be woken when the router disconnects it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique id of the session.
    pub id: u64,
    /// Notified when the session must end (queue overflow, account removed).
    pub kill: Arc<Notify>,
}

/// The online sessions, keyed by user name (the localpart).
#[derive(Debug, Default)]
pub struct Router {
    users: Mutex<HashMap<String, Vec<Resource>>>,
}

/// Presence of one online resource, as seen by others.
#[derive(Debug, Clone)]
pub struct OnlineResource {
    /// The resource name.
    pub resource: String,
    /// Its priority.
    pub priority: i8,
    /// Its last broadcast presence, serialized.
    pub presence: Option<Arc<str>>,
}

impl Router {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Resource>>> {
        // Every critical section leaves the map consistent, so a panic in one
        // (a bug) must not take the whole server down with a poisoned lock.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds a session. If `wanted` is taken by another session of the same
    /// account, a suffix makes it unique (RFC 6120 7.7.2.2 allows the server
    /// to override). Returns the bound resource.
    pub fn bind(
        &self,
        user: &str,
        wanted: String,
        id: u64,
        tx: mpsc::Sender<Outbound>,
    ) -> (String, SessionHandle) {
        let mut users = self.lock();
        let list = users.entry(user.to_string()).or_default();
        let mut resource = wanted.clone();
        let mut n = 1;
        while list.iter().any(|r| r.resource == resource) {
            n += 1;
            resource = format!("{wanted}-{n}");
        }
        let kill = Arc::new(Notify::new());
        list.push(Resource {
            id,
            resource: resource.clone(),
            tx,
            kill: kill.clone(),
            available: false,
            priority: 0,
            presence: None,
            interested: false,
        });
        (resource, SessionHandle { id, kill })
    }

    /// Removes a session. Returns whether it was available (so the caller
    /// broadcasts unavailable presence for it).
    pub fn unbind(&self, user: &str, id: u64) -> bool {
        let mut users = self.lock();
        let Some(list) = users.get_mut(user) else {
            return false;
        };
        let was_available = list.iter().any(|r| r.id == id && r.available);
        list.retain(|r| r.id != id);
        if list.is_empty() {
            users.remove(user);
        }
        was_available
    }

    /// Records a session's broadcast presence. Returns true when this was its
    /// first available presence (the "initial presence" of RFC 6121 4.2).
    pub fn set_presence(
        &self,
        user: &str,
        id: u64,
        available: bool,
        priority: i8,
        xml: Option<Arc<str>>,
    ) -> bool {
        let mut users = self.lock();
        let Some(r) = users
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|r| r.id == id))
        else {
            return false;
        };
        let initial = available && !r.available;
        r.available = available;
        r.priority = priority;
        r.presence = if available { xml } else { None };
        initial
    }

    /// Marks a session as interested in roster pushes.
    pub fn set_interested(&self, user: &str, id: u64) {
        if let Some(r) = self
            .lock()
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|r| r.id == id))
        {
            r.interested = true;
        }
    }

    /// True when the account has any bound session.
    pub fn is_online(&self, user: &str) -> bool {
        self.lock().contains_key(user)
    }

    /// The available resources of an account.
    pub fn available(&self, user: &str) -> Vec<OnlineResource> {
        self.lock()
            .get(user)
            .map(|l| {
                l.iter()
                    .filter(|r| r.available)
                    .map(|r| OnlineResource {
                        resource: r.resource.clone(),
                        priority: r.priority,
                        presence: r.presence.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// User names of every account with an available resource.
    pub fn online_users(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, l)| l.iter().any(|r| r.available))
            .map(|(u, _)| u.clone())
            .collect()
    }

    fn push(r: &Resource, out: Outbound) -> Delivery {
        match r.tx.try_send(out) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(resource = %r.resource, "outbound queue full: disconnecting a client that does not read");
                r.kill.notify_one();
                Delivery::Overflow
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Offline,
        }
    }

    /// Queues XML for one resource, waiting (up to [`STALL_TIMEOUT`]) for
    /// room when its queue is full: the path of messages, where a burst must
    /// slow the sender down rather than cost the recipient its session.
    pub async fn send_to_resource_wait(
        &self,
        user: &str,
        resource: &str,
        xml: &Arc<str>,
    ) -> Delivery {
        let target = {
            let users = self.lock();
            users
                .get(user)
                .and_then(|l| l.iter().find(|r| r.resource == resource))
                .map(|r| (r.tx.clone(), r.kill.clone()))
        };
        match target {
            Some((tx, kill)) => Self::push_wait(&tx, &kill, xml).await,
            None => Delivery::Offline,
        }
    }

    /// [`Router::send_to_available`] that waits for room like
    /// [`Router::send_to_resource_wait`]. Returns how many got it.
    pub async fn send_to_available_wait(
        &self,
        user: &str,
        xml: &Arc<str>,
        min_priority: Option<i8>,
    ) -> usize {
        let targets: Vec<_> = {
            let users = self.lock();
            users
                .get(user)
                .map(|l| {
                    l.iter()
                        .filter(|r| r.available && min_priority.is_none_or(|p| r.priority >= p))
                        .map(|r| Some((r.tx.clone(), r.kill.clone(), xml.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self::push_all_wait(targets)
            .await
            .iter()
            .filter(|d| **d == Delivery::Queued)
            .count()
    }

    /// [`Router::send_to_resource_wait`] for many recipients at once (a
    /// room's occupants, each with its own copy of the stanza). Full queues
    /// are waited for together, against one deadline: however many occupants
    /// have stopped reading, the sender waits [`STALL_TIMEOUT`] at most, not
    /// that long for each of them in turn (a room with a few stuck clients
    /// would otherwise stall its every speaker for a minute per message).
    /// Returns each recipient's delivery, in order.
    pub async fn send_to_resources_wait(&self, items: &[(&str, &str, Arc<str>)]) -> Vec<Delivery> {
        let targets = {
            let users = self.lock();
            items
                .iter()
                .map(|(user, resource, xml)| {
                    users
                        .get(*user)
                        .and_then(|l| l.iter().find(|r| r.resource == *resource))
                        .map(|r| (r.tx.clone(), r.kill.clone(), xml.clone()))
                })
                .collect()
        };
        Self::push_all_wait(targets).await
    }

    /// Queues each item, then waits for the full queues concurrently until
    /// one shared deadline; whoever is still full then is cut off.
    /// `None` stands for a recipient who is not online.
    async fn push_all_wait(items: Vec<Option<Recipient>>) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
        let mut out = vec![Delivery::Queued; items.len()];
        let mut waiting = tokio::task::JoinSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some((tx, kill, xml)) = item else {
                out[i] = Delivery::Offline;
                continue;
            };
            match tx.try_send(Outbound::Xml(xml)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => out[i] = Delivery::Offline,
                Err(mpsc::error::TrySendError::Full(item)) => {
                    waiting.spawn(async move {
                        (i, Self::wait_for_room(&tx, &kill, item, deadline).await)
                    });
                }
            }
        }
        while let Some(done) = waiting.join_next().await {
            if let Ok((i, d)) = done {
                out[i] = d;
            }
        }
        out
    }

    async fn push_wait(tx: &mpsc::Sender<Outbound>, kill: &Notify, xml: &Arc<str>) -> Delivery {
        match tx.try_send(Outbound::Xml(xml.clone())) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Offline,
            Err(mpsc::error::TrySendError::Full(item)) => {
                let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
                Self::wait_for_room(tx, kill, item, deadline).await
            }
        }
    }

    /// Waits until `deadline` for room in a full queue; a recipient still
    /// full then has stopped reading and is told to end its session.
    async fn wait_for_room(
        tx: &mpsc::Sender<Outbound>,
        kill: &Notify,
        item: Outbound,
        deadline: tokio::time::Instant,
    ) -> Delivery {
        match tokio::time::timeout_at(deadline, tx.send(item)).await {
            Ok(Ok(())) => Delivery::Queued,
            Ok(Err(_)) => Delivery::Offline,
            Err(_) => {
                tracing::warn!(
                    "outbound queue full for {} s: disconnecting a client that does not read",
                    STALL_TIMEOUT.as_secs()
                );
                kill.notify_one();
                Delivery::Overflow
            }
        }
    }

    /// Queues XML for one resource.
    pub fn send_to_resource(&self, user: &str, resource: &str, xml: &Arc<str>) -> Delivery {
        let users = self.lock();
        match users
            .get(user)
            .and_then(|l| l.iter().find(|r| r.resource == resource))
        {
            Some(r) => Self::push(r, Outbound::Xml(xml.clone())),
            None => Delivery::Offline,
        }
    }

    /// Queues XML for every available resource with at least `min_priority`
    /// (messages to a bare JID skip negative-priority resources, RFC 6121
    /// 8.5.2.1.1). Returns how many got it.
    pub fn send_to_available(
        &self,
        user: &str,
        xml: &Arc<str>,
        min_priority: Option<i8>,
        skip: Option<u64>,
    ) -> usize {
        let users = self.lock();
        let Some(list) = users.get(user) else {
            return 0;
        };
        list.iter()
            .filter(|r| r.available && min_priority.is_none_or(|p| r.priority >= p))
            .filter(|r| Some(r.id) != skip)
            .filter(|r| Self::push(r, Outbound::Xml(xml.clone())) == Delivery::Queued)
            .count()
    }

    /// Queues XML for every bound session of an account (or only those that
    /// asked for the roster), except `skip`.
    pub fn send_to_sessions(
        &self,
        user: &str,
        xml: &Arc<str>,
        interested_only: bool,
        skip: Option<u64>,
    ) {
        let users = self.lock();
        if let Some(list) = users.get(user) {
            for r in list {
                if (!interested_only || r.interested) && Some(r.id) != skip {
                    Self::push(r, Outbound::Xml(xml.clone()));
                }
            }
        }
    }

    /// Asks every session of an account except `skip` to close.
    pub fn close_sessions(&self, user: &str, skip: u64, cond: StreamErrorCondition, text: &str) {
        let users = self.lock();
        if let Some(list) = users.get(user) {
            for r in list.iter().filter(|r| r.id != skip) {
                if Self::push(r, Outbound::Close(Some(cond), Some(text.to_string())))
                    != Delivery::Queued
                {
                    r.kill.notify_one();
                }
            }
        }
    }

    /// Asks every session to close (server shutdown).
    pub fn close_all(&self, cond: StreamErrorCondition) {
        let users = self.lock();
        for r in users.values().flatten() {
            if Self::push(r, Outbound::Close(Some(cond), None)) != Delivery::Queued {
                r.kill.notify_one();
            }
        }
    }

    /// Number of bound sessions.
    pub fn session_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn xml(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_for_room_and_a_reader_that_never_reads_is_cut_off() {
        let r = Router::default();
        let (tx, mut rx) = mpsc::channel(1);
        let (_, handle) = r.bind("dave", "x".into(), 7, tx);
        assert_eq!(
            r.send_to_resource_wait("dave", "x", &xml("<a/>")).await,
            Delivery::Queued
        );
        // The queue is full: the second send waits until the reader reads.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let first = rx.recv().await;
            (first, rx)
        });
        assert_eq!(
            r.send_to_resource_wait("dave", "x", &xml("<b/>")).await,
            Delivery::Queued
        );
        let (first, _rx) = reader.await.unwrap();
        assert!(matches!(first, Some(Outbound::Xml(x)) if &*x == "<a/>"));
        // Nobody reads any more: after STALL_TIMEOUT the session is killed.
        let killed = handle.kill.notified();
        assert_eq!(
            r.send_to_resource_wait("dave", "x", &xml("<c/>")).await,
            Delivery::Overflow
        );
        tokio::time::timeout(Duration::from_millis(1), killed)
            .await
            .expect("the stuck session was told to end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_room_waits_for_all_stuck_occupants_together() {
        let r = Router::default();
        // Two occupants whose queues are full and who never read, one who
        // reads, and one who left.
        let (tx1, _rx1) = mpsc::channel(1);
        let (tx2, _rx2) = mpsc::channel(1);
        let (tx3, mut rx3) = mpsc::channel(1);
        let (_, h1) = r.bind("ann", "r".into(), 1, tx1.clone());
        let (_, h2) = r.bind("ben", "r".into(), 2, tx2.clone());
        r.bind("cat", "r".into(), 3, tx3.clone());
        for tx in [&tx1, &tx2, &tx3] {
            tx.try_send(Outbound::Xml(xml("<old/>"))).unwrap();
        }
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let old = rx3.recv().await;
            let new = rx3.recv().await;
            (old, new)
        });
        let (k1, k2) = (h1.kill.notified(), h2.kill.notified());
        let started = tokio::time::Instant::now();
        let items = [
            ("ann", "r", xml("<m n='1'/>")),
            ("ben", "r", xml("<m n='2'/>")),
            ("cat", "r", xml("<m n='3'/>")),
            ("dan", "r", xml("<m n='4'/>")),
        ];
        let got = r.send_to_resources_wait(&items).await;
        let waited = started.elapsed();
        assert_eq!(
            got,
            [
                Delivery::Overflow,
                Delivery::Overflow,
                Delivery::Queued,
                Delivery::Offline
            ]
        );
        // One deadline for everyone, not one per stuck occupant.
        assert!(
            waited >= STALL_TIMEOUT && waited < STALL_TIMEOUT * 2,
            "{waited:?}"
        );
        let (_, new) = reader.await.unwrap();
        assert!(matches!(new, Some(Outbound::Xml(x)) if &*x == "<m n='3'/>"));
        for killed in [k1, k2] {
            tokio::time::timeout(Duration::from_millis(1), killed)
                .await
                .expect("each stuck occupant was told to end");
        }
    }

    #[test]
    fn resources_are_unique_per_account() {
        let r = Router::default();
        let (tx, _rx) = mpsc::channel(4);
        let (a, _) = r.bind("alice", "phone".into(), 1, tx.clone());
        let (b, _) = r.bind("alice", "phone".into(), 2, tx.clone());
        let (c, _) = r.bind("bob", "phone".into(), 3, tx);
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("phone", "phone-2", "phone")
        );
        assert_eq!(r.session_count(), 3);
        assert!(!r.unbind("alice", 1));
        assert_eq!(r.session_count(), 2);
    }

    #[test]
    fn bare_delivery_goes_to_available_non_negative_resources() {
        let r = Router::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (tx3, mut rx3) = mpsc::channel(4);
        r.bind("bob", "a".into(), 1, tx1);
        r.bind("bob", "b".into(), 2, tx2);
        r.bind("bob", "c".into(), 3, tx3);
        assert!(r.set_presence("bob", 1, true, 0, None));
        assert!(
            !r.set_presence("bob", 1, true, 5, None),
            "not initial twice"
        );
        r.set_presence("bob", 2, true, -1, None);
        // 3 never sent presence.
        assert_eq!(r.send_to_available("bob", &xml("<m/>"), Some(0), None), 1);
        assert!(rx1.try_recv().is_ok());
        assert!(rx2.try_recv().is_err());
        assert!(rx3.try_recv().is_err());
        assert_eq!(
            r.send_to_available("nobody", &xml("<m/>"), Some(0), None),
            0
        );
    }

    #[test]
    fn a_full_queue_disconnects_the_stuck_reader() {
        let r = Router::default();
        let (tx, _rx) = mpsc::channel(2);
        let (_, handle) = r.bind("carol", "x".into(), 9, tx);
        let notified = handle.kill.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert_eq!(
            r.send_to_resource("carol", "x", &xml("<a/>")),
            Delivery::Queued
        );
        assert_eq!(
            r.send_to_resource("carol", "x", &xml("<a/>")),
            Delivery::Queued
        );
        assert_eq!(
            r.send_to_resource("carol", "x", &xml("<a/>")),
            Delivery::Overflow
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), notified)
                .await
                .expect("the stuck session is told to close");
        });
        assert_eq!(
            r.send_to_resource("carol", "nope", &xml("<a/>")),
            Delivery::Offline
        );
    }
}

//! Who is online: bound resources per account, their presence, and
//! delivery to their outbound queues ([`super::outbound`]).
//!
//! Senders of messages wait (up to [`STALL_TIMEOUT`]) for room in a
//! recipient's full queue; presence, roster pushes and a session's own
//! answers never wait. A recipient that stopped reading is cut off rather
//! than allowed to hold its senders back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use protocol::StreamErrorCondition;
use tokio::sync::Notify;

pub use super::outbound::STALL_TIMEOUT;
use super::outbound::{Delivery, OutboundTx};

/// One delivery to make: the session's queue, its kill switch, the XML.
type Recipient = (OutboundTx, Arc<Notify>, Arc<str>);

/// One bound resource.
#[derive(Debug)]
struct Resource {
    id: u64,
    resource: String,
    tx: OutboundTx,
    kill: Arc<Notify>,
    /// See [`SessionHandle::offline`].
    offline: Arc<Notify>,
    /// Sent initial presence and not yet unavailable.
    available: bool,
    priority: i8,
    /// Last broadcast presence, serialized with its `from`.
    presence: Option<Arc<str>>,
    /// Asked for the roster, so gets roster pushes (RFC 6121 2.1.6).
    interested: bool,
    /// Enabled message carbons (XEP-0280): gets copies of the account's
    /// chat messages that went to, or came from, its other sessions.
    carbons: bool,
    /// The capabilities version its client announced, and the id of the
    /// disco#info query the server sent about it (XEP-0115).
    caps: Option<(String, String)>,
    /// The PEP nodes it wants notifications for (`NODE+notify`).
    notify: Vec<String>,
}

/// A handle a session keeps to be woken when the router disconnects it.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Unique id of the session.
    pub id: u64,
    /// Notified when the session must end (queue overflow, account removed).
    pub kill: Arc<Notify>,
    /// Notified when stored messages another session of the account was
    /// delivering went back to storage (that session ended before its
    /// client confirmed them): an available session delivers them now,
    /// instead of at the account's next sign-in.
    pub offline: Arc<Notify>,
}

/// Why a session could not be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// The account already has [`MAX_SESSIONS_PER_ACCOUNT`] sessions.
    TooManySessions,
}

/// Sessions one account may have bound at once. People sign in from a
/// phone, a laptop and a few more; without a bound, one account can take
/// every connection slot of the server and lock everyone else out with
/// `resource-constraint` (measured before this limit: one account held all
/// 10,000). It also bounds the per-account work of every bare-JID delivery.
pub const MAX_SESSIONS_PER_ACCOUNT: usize = 10;

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
    /// account, a random suffix makes it unique (RFC 6120 7.7.2.2 lets the
    /// server override the resource). Counting up `-2`, `-3`... until a free
    /// one turned up made n binds of one name cost O(n^2) under the lock
    /// every session shares; one random suffix is one more scan. Returns the
    /// bound resource.
    pub fn bind(
        &self,
        user: &str,
        wanted: String,
        id: u64,
        tx: OutboundTx,
    ) -> Result<(String, SessionHandle), BindError> {
        let mut users = self.lock();
        let list = users.entry(user.to_string()).or_default();
        if list.len() >= MAX_SESSIONS_PER_ACCOUNT {
            return Err(BindError::TooManySessions);
        }
        let mut resource = wanted.clone();
        while list.iter().any(|r| r.resource == resource) {
            // 48 random bits: a clash is astronomically rare, and a clash
            // only costs another pass of this loop. The wanted name is cut
            // so the suffix still fits a resource's 1,023 bytes.
            let mut end = wanted.len().min(protocol::jid::MAX_PART_BYTES - 13);
            while !wanted.is_char_boundary(end) {
                end -= 1;
            }
            resource = format!("{}-{}", &wanted[..end], crate::util::random_id(6));
        }
        let kill = Arc::new(Notify::new());
        let offline = Arc::new(Notify::new());
        list.push(Resource {
            id,
            resource: resource.clone(),
            tx,
            kill: kill.clone(),
            offline: offline.clone(),
            available: false,
            priority: 0,
            presence: None,
            interested: false,
            carbons: false,
            caps: None,
            notify: Vec::new(),
        });
        Ok((resource, SessionHandle { id, kill, offline }))
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

    /// Tells the account's available sessions that stored messages are
    /// free to deliver again (see [`SessionHandle::offline`]).
    pub fn offline_released(&self, user: &str) {
        if let Some(list) = self.lock().get(user) {
            for r in list.iter().filter(|r| r.available) {
                r.offline.notify_one();
            }
        }
    }

    /// Runs `f` on session `id` of `user`, if it is bound.
    fn with_session<T>(
        &self,
        user: &str,
        id: u64,
        f: impl FnOnce(&mut Resource) -> T,
    ) -> Option<T> {
        self.lock()
            .get_mut(user)
            .and_then(|l| l.iter_mut().find(|r| r.id == id))
            .map(f)
    }

    /// Turns message carbons on or off for a session (XEP-0280).
    pub fn set_carbons(&self, user: &str, id: u64, on: bool) {
        self.with_session(user, id, |r| r.carbons = on);
    }

    /// Sends each of `user`'s sessions with carbons on, other than the
    /// resources in `except` (the sender's own, the message's recipients),
    /// the copy `make` builds for its resource. Best effort, like presence:
    /// a session whose queue is full is cut off as for any stanza.
    pub fn send_carbons(&self, user: &str, except: &[&str], make: impl Fn(&str) -> Arc<str>) {
        let users = self.lock();
        let Some(list) = users.get(user) else { return };
        for r in list
            .iter()
            .filter(|r| r.carbons && r.available && !except.contains(&r.resource.as_str()))
        {
            Self::push(r, make(&r.resource));
        }
    }

    /// Notes that a session announced capabilities `ver` and is being
    /// asked about them with query `id`; `false` (ask nothing) when that
    /// version was asked about already.
    pub fn caps_asked(&self, user: &str, id: u64, ver: &str, query: &str) -> bool {
        self.with_session(user, id, |r| {
            if r.caps.as_ref().is_some_and(|(v, _)| v == ver) {
                return false;
            }
            r.caps = Some((ver.to_string(), query.to_string()));
            true
        })
        .unwrap_or(false)
    }

    /// The answer to query `query`: the PEP nodes the session wants.
    /// An answer to another query (an old one, a guessed id) is ignored.
    /// Whether it was the answer awaited.
    pub fn caps_answered(&self, user: &str, id: u64, query: &str, nodes: Vec<String>) -> bool {
        self.with_session(user, id, |r| {
            let awaited = r.caps.as_ref().is_some_and(|(_, q)| q == query);
            if awaited {
                r.notify = nodes;
                // Answered: a second answer to the same query counts for
                // nothing.
                if let Some((_, q)) = r.caps.as_mut() {
                    q.clear();
                }
            }
            awaited
        })
        .unwrap_or(false)
    }

    /// Sends each available session of `user` that wants `node`'s
    /// notifications the message `make` builds for its resource.
    pub fn send_to_interested(&self, user: &str, node: &str, make: impl Fn(&str) -> Arc<str>) {
        let users = self.lock();
        let Some(list) = users.get(user) else { return };
        for r in list
            .iter()
            .filter(|r| r.available && r.notify.iter().any(|n| n == node))
        {
            Self::push(r, make(&r.resource));
        }
    }

    /// Marks a session as interested in roster pushes.
    pub fn set_interested(&self, user: &str, id: u64) {
        self.with_session(user, id, |r| r.interested = true);
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

    fn push(r: &Resource, xml: Arc<str>) -> Delivery {
        match r.tx.try_send(xml) {
            Delivery::Overflow => {
                Self::overflowed(&r.tx, &r.kill);
                Delivery::Overflow
            }
            Delivery::TooLarge => {
                tracing::warn!(resource = %r.resource, "not sent: a stanza longer than the stanza limit");
                Delivery::TooLarge
            }
            d => d,
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
                .map(|r| (r.tx.clone(), r.kill.clone(), xml.clone()))
        };
        // One recipient, the hot path of every chat message: no lists, no
        // tasks unless its queue is full.
        let Some((tx, kill, xml)) = target else {
            return Delivery::Offline;
        };
        match tx.try_send_budget(xml.clone()) {
            Delivery::Overflow => {
                let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
                Self::wait_for_room(&tx, &kill, xml, deadline).await
            }
            Delivery::TooLarge => {
                tracing::warn!("not sent: a stanza longer than the stanza limit");
                Delivery::TooLarge
            }
            d => d,
        }
    }

    /// [`Router::send_to_available`] that waits for room like
    /// [`Router::send_to_resource_wait`]. Returns each available resource's
    /// delivery.
    pub async fn send_to_available_wait(
        &self,
        user: &str,
        xml: &Arc<str>,
        min_priority: Option<i8>,
    ) -> Vec<Delivery> {
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
        Self::push_all_wait(targets).await
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
    /// one shared deadline; whoever is still full then is not delivered (and
    /// cut off if it stopped reading). `None` stands for a recipient who is
    /// not online. Once one stanza to a recipient has to wait, every later
    /// one to that recipient waits behind it, in order, in one task: a
    /// joiner gets the occupants, itself, the history and the subject in
    /// the order XEP-0045 gives, and what waits for one recipient is one
    /// list, not a task per stanza.
    async fn push_all_wait(items: Vec<Option<Recipient>>) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + STALL_TIMEOUT;
        let mut out = vec![Delivery::Queued; items.len()];
        type Waiting = (OutboundTx, Arc<Notify>, Vec<(usize, Arc<str>)>);
        let mut waiting: HashMap<usize, Waiting> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let Some((tx, kill, xml)) = item else {
                out[i] = Delivery::Offline;
                continue;
            };
            if let Some(w) = waiting.get_mut(&tx.id()) {
                w.2.push((i, xml));
                continue;
            }
            match tx.try_send_budget(xml.clone()) {
                Delivery::Overflow => {
                    waiting.insert(tx.id(), (tx, kill, vec![(i, xml)]));
                }
                Delivery::TooLarge => {
                    tracing::warn!("not sent: a stanza longer than the stanza limit");
                    out[i] = Delivery::TooLarge;
                }
                d => out[i] = d,
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (_, (tx, kill, list)) in waiting {
            tasks.spawn(async move {
                let mut done = Vec::with_capacity(list.len());
                let mut gave_up = false;
                for (i, xml) in list {
                    if gave_up {
                        done.push((i, Delivery::Overflow));
                        continue;
                    }
                    let d = Self::wait_for_room(&tx, &kill, xml, deadline).await;
                    gave_up = d != Delivery::Queued && d != Delivery::TooLarge;
                    done.push((i, d));
                }
                done
            });
        }
        while let Some(finished) = tasks.join_next().await {
            for (i, d) in finished.unwrap_or_default() {
                out[i] = d;
            }
        }
        out
    }

    /// Waits until `deadline` for room in a full queue. Still full then:
    /// not delivered, and the recipient is cut off if it has stopped
    /// reading (see [`Router::overflowed`]).
    async fn wait_for_room(
        tx: &OutboundTx,
        kill: &Notify,
        xml: Arc<str>,
        deadline: tokio::time::Instant,
    ) -> Delivery {
        let d = tx.send_until(xml, deadline).await;
        if d == Delivery::Overflow {
            Self::overflowed(tx, kill);
        }
        d
    }

    /// A stanza did not fit in a recipient's queue. A recipient whose writer
    /// has made no progress for [`STALL_TIMEOUT`] has stopped reading and is
    /// told to end its session; one that reads, only slower than it is sent
    /// to, keeps its session and misses this stanza (a message then goes to
    /// offline storage). Cutting off on a full queue alone would let anyone
    /// disconnect anyone: flood them, then send one presence.
    pub fn overflowed(tx: &OutboundTx, kill: &Notify) {
        if tx.stalled() {
            if tx.cut_off_once() {
                tracing::warn!(
                    "nothing written for {} s with a full queue: disconnecting a client that does not read",
                    STALL_TIMEOUT.as_secs()
                );
            }
            kill.notify_one();
        } else {
            tracing::debug!("queue full: a stanza to a slow reader was not sent");
        }
    }

    /// Queues XML for one resource.
    pub fn send_to_resource(&self, user: &str, resource: &str, xml: &Arc<str>) -> Delivery {
        let users = self.lock();
        match users
            .get(user)
            .and_then(|l| l.iter().find(|r| r.resource == resource))
        {
            Some(r) => Self::push(r, xml.clone()),
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
            .filter(|r| Self::push(r, xml.clone()) == Delivery::Queued)
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
                    Self::push(r, xml.clone());
                }
            }
        }
    }

    /// Asks every session of an account except `skip` to close.
    pub fn close_sessions(&self, user: &str, skip: u64, cond: StreamErrorCondition, text: &str) {
        let users = self.lock();
        if let Some(list) = users.get(user) {
            for r in list.iter().filter(|r| r.id != skip) {
                r.tx.close(Some(cond), Some(text.to_string()), false);
            }
        }
    }

    /// Asks every session to close (server shutdown).
    pub fn close_all(&self, cond: StreamErrorCondition) {
        let users = self.lock();
        for r in users.values().flatten() {
            r.tx.close(Some(cond), None, false);
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

    use protocol::Limits;

    use super::*;
    use crate::server::outbound::{
        Outbound, OutboundRx, QUEUED_STANZA_OVERHEAD, outbound_queue, queue,
    };

    fn xml(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// A queue with room for exactly one of the small stanzas below, and
    /// no reserve.
    fn one_stanza_queue() -> (OutboundTx, OutboundRx) {
        queue(1024, 16 + QUEUED_STANZA_OVERHEAD, 0)
    }

    fn text(item: Option<Outbound>) -> Option<String> {
        match item {
            Some(Outbound::Xml(x, _)) => Some(x.to_string()),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_waits_for_room_and_a_reader_that_never_reads_is_cut_off() {
        let r = Router::default();
        let (tx, mut rx) = one_stanza_queue();
        let (_, handle) = r.bind("dave", "x".into(), 7, tx).unwrap();
        assert_eq!(
            r.send_to_resource_wait("dave", "x", &xml("<a/>")).await,
            Delivery::Queued
        );
        // The queue is full: the second send waits until the reader reads.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            // Written: the item, and its share of the budget, is gone.
            let first = text(rx.recv().await);
            (first, rx)
        });
        assert_eq!(
            r.send_to_resource_wait("dave", "x", &xml("<b/>")).await,
            Delivery::Queued
        );
        let (first, _rx) = reader.await.unwrap();
        assert_eq!(first.as_deref(), Some("<a/>"));
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
        let (tx1, _rx1) = one_stanza_queue();
        let (tx2, _rx2) = one_stanza_queue();
        let (tx3, mut rx3) = one_stanza_queue();
        let (_, h1) = r.bind("ann", "r".into(), 1, tx1.clone()).unwrap();
        let (_, h2) = r.bind("ben", "r".into(), 2, tx2.clone()).unwrap();
        r.bind("cat", "r".into(), 3, tx3.clone()).unwrap();
        for tx in [&tx1, &tx2, &tx3] {
            assert_eq!(tx.try_send(xml("<old/>")), Delivery::Queued);
        }
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let old = text(rx3.recv().await);
            let new = text(rx3.recv().await);
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
        assert_eq!(new.as_deref(), Some("<m n='3'/>"));
        for killed in [k1, k2] {
            tokio::time::timeout(Duration::from_millis(1), killed)
                .await
                .expect("each stuck occupant was told to end");
        }
    }

    #[test]
    fn resources_are_unique_per_account() {
        let r = Router::default();
        let (tx, _rx) = outbound_queue(&Limits::default());
        let (a, _) = r.bind("alice", "phone".into(), 1, tx.clone()).unwrap();
        let (b, _) = r.bind("alice", "phone".into(), 2, tx.clone()).unwrap();
        let (c, _) = r.bind("bob", "phone".into(), 3, tx.clone()).unwrap();
        assert_eq!((a.as_str(), c.as_str()), ("phone", "phone"));
        assert!(b.starts_with("phone-") && b != a, "{b}");
        assert_eq!(r.session_count(), 3);
        assert!(!r.unbind("alice", 1));
        assert_eq!(r.session_count(), 2);
        // One account cannot take every connection slot.
        for id in 10..(10 + MAX_SESSIONS_PER_ACCOUNT as u64 - 1) {
            r.bind("alice", "phone".into(), id, tx.clone()).unwrap();
        }
        assert_eq!(
            r.bind("alice", "other".into(), 99, tx.clone()).err(),
            Some(BindError::TooManySessions)
        );
        assert!(r.bind("bob", "laptop".into(), 100, tx).is_ok());
    }

    #[test]
    fn binding_one_resource_many_times_is_not_quadratic() {
        // Before: the n-th bind of one name tried "-2" to "-n" in turn, each
        // a scan of the list, under the lock every session shares.
        let r = Router::default();
        let (tx, _rx) = outbound_queue(&Limits::default());
        let mut seen = std::collections::HashSet::new();
        for id in 0..MAX_SESSIONS_PER_ACCOUNT as u64 {
            let (res, _) = r.bind("eve", "same".into(), id, tx.clone()).unwrap();
            // At most one suffix: never "same-x-y".
            assert!(res.matches('-').count() <= 1, "{res}");
            assert!(seen.insert(res));
        }
    }

    #[test]
    fn bare_delivery_goes_to_available_non_negative_resources() {
        let r = Router::default();
        let (tx1, mut rx1) = outbound_queue(&Limits::default());
        let (tx2, mut rx2) = outbound_queue(&Limits::default());
        let (tx3, mut rx3) = outbound_queue(&Limits::default());
        r.bind("bob", "a".into(), 1, tx1).unwrap();
        r.bind("bob", "b".into(), 2, tx2).unwrap();
        r.bind("bob", "c".into(), 3, tx3).unwrap();
        assert!(r.set_presence("bob", 1, true, 0, None));
        assert!(
            !r.set_presence("bob", 1, true, 5, None),
            "not initial twice"
        );
        r.set_presence("bob", 2, true, -1, None);
        // 3 never sent presence.
        assert_eq!(r.send_to_available("bob", &xml("<m/>"), Some(0), None), 1);
        assert!(rx1.try_recv().is_some());
        assert!(rx2.try_recv().is_none());
        assert!(rx3.try_recv().is_none());
        assert_eq!(
            r.send_to_available("nobody", &xml("<m/>"), Some(0), None),
            0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_cuts_off_a_reader_that_stopped_not_one_that_is_slow() {
        let r = Router::default();
        let small = 2 * ("<a/>".len() + QUEUED_STANZA_OVERHEAD);
        let (tx, rx) = queue(1024, small, 0);
        let (_, handle) = r.bind("carol", "x".into(), 9, tx).unwrap();
        let notified = handle.kill.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        for _ in 0..2 {
            assert_eq!(
                r.send_to_resource("carol", "x", &xml("<a/>")),
                Delivery::Queued
            );
        }
        // Full, but the writer wrote a moment ago: a slow reader, not a
        // stuck one. The stanza is not sent and the session stays.
        tokio::time::advance(STALL_TIMEOUT / 2).await;
        rx.wrote();
        tokio::time::advance(STALL_TIMEOUT / 2).await;
        assert_eq!(
            r.send_to_resource("carol", "x", &xml("<a/>")),
            Delivery::Overflow
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(1), notified.as_mut())
                .await
                .is_err(),
            "a reader that reads is not cut off"
        );
        // Nothing written for STALL_TIMEOUT: stuck, cut off.
        tokio::time::advance(STALL_TIMEOUT).await;
        assert_eq!(
            r.send_to_resource("carol", "x", &xml("<a/>")),
            Delivery::Overflow
        );
        tokio::time::timeout(Duration::from_millis(1), notified)
            .await
            .expect("the stuck session is told to close");
        assert_eq!(
            r.send_to_resource("carol", "nope", &xml("<a/>")),
            Delivery::Offline
        );
    }

    #[test]
    fn waiting_senders_leave_the_reserve_to_presence_and_answers() {
        let (tx, _rx) = queue(1024, 100, 100);
        let big: Arc<str> = Arc::from("x".repeat(100 - QUEUED_STANZA_OVERHEAD));
        assert_eq!(tx.try_send(big.clone()), Delivery::Queued, "budget");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(10);
            assert_eq!(
                tx.send_until(big.clone(), deadline).await,
                Delivery::Overflow,
                "a waiting sender never takes the reserve"
            );
        });
        assert_eq!(tx.try_send(big.clone()), Delivery::Queued, "reserve");
        assert_eq!(tx.try_send(big), Delivery::Overflow);
    }
}

//! A bound session's life: read a stanza, hand it to [`super::dispatch`],
//! repeat; then end it cleanly.
//!
//! Two tasks per connection: this reader, which owns all session logic, and
//! a writer ([`super::outbound::writer_task`]) fed by the session's bounded
//! queue. Ending a session leaves its rooms, tells its contacts it went
//! away, lets the writer finish, and deletes the offline messages it
//! delivered only if the client closed its stream itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::parser::Event;
use protocol::{Element, Jid, StanzaErrorCondition, StreamErrorCondition, ns};
use tokio::sync::mpsc;

use super::context::{Close, Failure, Session};
use super::negotiate::Bound;
use super::shared::Shared;
use super::sm::{self, Attach, Resumption, SmOut};
use super::{dispatch, message, outbound, presence, rooms};
use crate::storage;
use crate::xmpp_io::ReadError;

/// What an error reply to a stanza needs, kept while the stanza is handled
/// in case storage fails: its name, id, type and `to`. Short strings stay
/// inline (no allocation), so keeping it for every stanza costs next to
/// nothing; the reply itself is only built on failure.
struct Origin {
    name: protocol::CompactString,
    id: Option<protocol::CompactString>,
    kind: Option<protocol::CompactString>,
    to: Option<protocol::CompactString>,
}

impl Origin {
    fn of(el: &Element) -> Origin {
        let attr = |n: &str| el.get_attr(n).map(protocol::CompactString::from);
        Origin {
            name: el.name.clone(),
            id: attr("id"),
            kind: attr("type"),
            to: attr("to"),
        }
    }

    /// The stanza, without its content, as `from` sent it.
    fn element(&self, from: &Jid) -> Element {
        Element::new(self.name.as_str(), ns::CLIENT)
            .attr("from", from.to_string())
            .attr_opt("to", self.to.as_deref())
            .attr_opt("id", self.id.as_deref())
            .attr_opt("type", self.kind.as_deref())
    }
}

/// How reading one connection of a session stopped.
enum Stopped {
    /// The session ends.
    Close {
        close: Close,
        /// The client closed its stream itself (RFC 6120 4.4): it has read
        /// everything sent before our closing tag.
        clean: bool,
        /// Cut off for not reading.
        cut_off: bool,
    },
    /// The connection dropped (or went silent) without a closing tag: a
    /// resumable session waits for its client to come back.
    Lost(Close),
    /// The client resumed the session on a new connection while this one
    /// was still open.
    Resumed(Box<Resumption>),
}

/// A session's stream management state, beyond what its writer shares.
struct Sm {
    /// Shared with the writer: what was sent and not acknowledged, and
    /// where a new connection is handed to it.
    out: Arc<SmOut>,
    /// Stanzas handled from the client since it enabled stream management.
    handled: u32,
    /// The resumption id and where resumptions arrive, once enabled.
    resume: Option<(String, mpsc::Receiver<Resumption>)>,
}

/// Runs a bound session until it ends. `bound` comes boxed: an async
/// fn keeps its arguments for its whole life besides the locals moved out
/// of them, and every idle session would carry its `Bound` twice.
pub async fn run(shared: Arc<Shared>, bound: Box<Bound>, mut peer: SocketAddr) {
    let Bound {
        stream,
        mut reader,
        user,
        jid,
        handle,
        tx,
        rx,
    } = *bound;
    let (mut rd, wr) = tokio::io::split(stream);
    let out = Arc::new(SmOut::default());
    let writer = tokio::spawn(outbound::writer_task(wr, rx, out.clone()));
    let mut sm = Sm {
        out,
        handled: 0,
        resume: None,
    };
    let mut s = Session {
        bare: jid.to_bare(),
        shared: shared.clone(),
        user,
        jid,
        handle: handle.clone(),
        tx: tx.clone(),
        offline_delivered: Vec::new(),
    };
    let (close, clean_close, cut_off) = loop {
        let resumption = match Box::pin(read(&mut s, &mut sm, &mut rd, &mut reader, peer)).await {
            Stopped::Close {
                close,
                clean,
                cut_off,
            } => break (close, clean, cut_off),
            Stopped::Resumed(r) => *r,
            Stopped::Lost(close) => {
                if !sm.out.resumable() {
                    break (close, false, false);
                }
                tracing::info!(%peer, jid = %s.jid, "connection lost: the session waits to be resumed");
                match Box::pin(hibernate(&mut s, &mut sm, &writer)).await {
                    Some(r) => r,
                    None => break (close, false, false),
                }
            }
        };
        // The session moves to the new connection: its reading half is
        // read here from now on, its writing half goes to the writer.
        let (new_rd, new_wr) = tokio::io::split(resumption.stream);
        rd = new_rd;
        reader = resumption.reader;
        peer = resumption.peer;
        let previd = sm
            .resume
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        sm.out.attach(Attach {
            wr: new_wr,
            client_h: resumption.h,
            server_h: sm.handled,
            previd,
        });
        tracing::info!(%peer, jid = %s.jid, "session resumed on a new connection");
    };
    if let Some((id, _)) = &sm.resume {
        shared.resumable.remove(id);
    }
    // The end runs in a box of its own: it is large (rooms, presence,
    // storage) and only needed once, so no idle session carries it.
    Box::pin(end(
        s,
        tx,
        writer,
        sm.out,
        close,
        cut_off,
        clean_close,
        peer,
    ))
    .await;
    tracing::info!(%peer, "session ended");
}

/// Reads and handles stanzas from one connection of the session until it
/// closes, drops, or the session moves to another connection.
async fn read(
    s: &mut Session,
    sm: &mut Sm,
    rd: &mut tokio::io::ReadHalf<crate::transport::BoxStream>,
    reader: &mut crate::xmpp_io::XmppReader,
    peer: SocketAddr,
) -> Stopped {
    let handle = s.handle.clone();
    let close = |close| Stopped::Close {
        close,
        clean: false,
        cut_off: false,
    };
    // Liveness: silence for `ping_after` earns a ping (XEP-0199); silence
    // for `ping_timeout` after it ends the session. Anything the client
    // sends counts as an answer.
    let (ping_after, ping_timeout) = (s.shared.config.ping_after, s.shared.config.ping_timeout);
    let mut deadline = tokio::time::Instant::now() + ping_after;
    let mut pinged = false;
    loop {
        tokio::select! {
            ev = reader.next(rd) => {
                deadline = tokio::time::Instant::now() + ping_after;
                pinged = false;
                match ev {
                Ok(Event::Element(el)) if el.ns == ns::SM => {
                    if let Err(c) = stream_management(s, sm, &el) {
                        return close(c);
                    }
                }
                Ok(Event::Element(el)) => {
                    // What an error reply needs, kept in case storage fails.
                    let origin = Origin::of(&el);
                    // Counted as handled once handled (XEP-0198 `h`).
                    if sm.out.enabled() {
                        sm.handled = sm.handled.wrapping_add(1);
                    }
                    // Boxed: handling a stanza is a large state machine
                    // (storage, rooms, routing), needed only while one is
                    // handled. Inline, every idle session would carry its
                    // size (BENCHMARKS.md, memory per idle connection).
                    match Box::pin(dispatch::stanza(s, el)).await {
                        Ok(()) => {}
                        Err(Failure::Storage) => {
                            // A full disk (or any database failure) costs
                            // this stanza, not the session: the sender
                            // hears it was not kept and can try again.
                            s.bounce(
                                &origin.element(&s.jid),
                                StanzaErrorCondition::ResourceConstraint,
                                "the server could not store this: try again later",
                            );
                        }
                        Err(Failure::Close(c)) => return close(c),
                    }
                }
                Ok(Event::StreamClose) => {
                    return Stopped::Close { close: Close::Clean, clean: true, cut_off: false };
                }
                Ok(Event::StreamOpen(_)) => {
                    return close(Close::Error(StreamErrorCondition::NotWellFormed, "unexpected stream header".into()));
                }
                Err(ReadError::Parse(p)) => {
                    tracing::info!(%peer, jid = %s.jid, "stream error: {p}");
                    return close(Close::Error(p.condition(), p.to_string()));
                }
                Err(ReadError::Io(e)) => {
                    // A reset, or a TLS record that did not decrypt (changed
                    // in flight): said, so an attack does not pass unseen.
                    tracing::info!(%peer, jid = %s.jid, "connection failed: {e}");
                    return Stopped::Lost(Close::Clean);
                }
                Err(ReadError::Eof) => return Stopped::Lost(Close::Clean),
            }},
            _ = tokio::time::sleep_until(deadline) => {
                if pinged {
                    tracing::info!(%peer, jid = %s.jid, "no answer to a ping in {} s", ping_timeout.as_secs());
                    return Stopped::Lost(Close::Error(
                        StreamErrorCondition::ConnectionTimeout,
                        format!("silent for {} s, and no answer to a ping", (ping_after + ping_timeout).as_secs()),
                    ));
                }
                let ping = Element::new("iq", ns::CLIENT)
                    .attr("type", "get")
                    .attr("id", format!("ping-{}", crate::util::random_id(6)))
                    .attr("from", s.domain().to_string())
                    .attr("to", s.jid.to_string())
                    .child(Element::new("ping", ns::PING));
                s.to_self_el(&ping);
                pinged = true;
                deadline = tokio::time::Instant::now() + ping_timeout;
            }
            Some(r) = next_resumption(&mut sm.resume) => return Stopped::Resumed(Box::new(r)),
            _ = handle.offline.notified() => {
                // Another session of the account ended before its client
                // confirmed the stored messages it was sent: they are ours
                // to deliver now (a client that drops and signs in again at
                // once would otherwise wait for its next sign-in).
                match message::deliver_offline(s).await {
                    Ok(()) | Err(Failure::Storage) => {}
                    Err(Failure::Close(c)) => return close(c),
                }
            }
            _ = handle.kill.notified() => {
                return Stopped::Close {
                    close: Close::Error(StreamErrorCondition::PolicyViolation, "too much data waiting: the client does not read".into()),
                    clean: false,
                    cut_off: true,
                };
            }
        }
    }
}

/// The next resumption of a resumable session (never, for one that is
/// not).
async fn next_resumption(
    resume: &mut Option<(String, mpsc::Receiver<Resumption>)>,
) -> Option<Resumption> {
    match resume {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A stream management element from the client (XEP-0198): `<enable/>`,
/// an ack request `<r/>`, or an ack `<a h='N'/>`.
fn stream_management(s: &mut Session, sm: &mut Sm, el: &Element) -> Result<(), Close> {
    match el.name.as_str() {
        "enable" if !sm.out.enabled() => {
            let timeout = s.shared.config.resume_timeout;
            let wants = matches!(el.get_attr("resume"), Some("true" | "1"));
            let registered = (wants && !timeout.is_zero())
                .then(|| s.shared.resumable.register(&s.user))
                .flatten();
            let mut enabled = Element::new("enabled", ns::SM);
            if let Some((id, _)) = &registered {
                enabled = enabled
                    .attr("id", id.clone())
                    .attr("resume", "true")
                    .attr("max", timeout.as_secs().to_string());
            }
            sm.out.enable(registered.is_some());
            sm.resume = registered;
            s.to_self_el(&enabled);
        }
        "enable" | "resume" => {
            s.to_self_el(&sm::failed(
                StanzaErrorCondition::UnexpectedRequest,
                "stream management is already on",
            ));
        }
        "r" if sm.out.enabled() => {
            s.to_self_el(&Element::new("a", ns::SM).attr("h", sm.handled.to_string()));
        }
        "a" if sm.out.enabled() => {
            let h = protocol::sm::h_of(el);
            match h.map(|h| sm.out.ack(h)) {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Close::Error(
                        StreamErrorCondition::UndefinedCondition,
                        format!(
                            "handled-count-too-high: you acknowledged {} stanzas, and were sent {}",
                            e.h, e.sent
                        ),
                    ));
                }
                None => {
                    return Err(Close::Error(
                        StreamErrorCondition::BadFormat,
                        "an <a/> without a count (h)".into(),
                    ));
                }
            }
        }
        _ => {
            s.to_self_el(&sm::failed(
                StanzaErrorCondition::UnexpectedRequest,
                "enable stream management first",
            ));
        }
    }
    Ok(())
}

/// A resumable session whose connection dropped: it stays signed in (its
/// contacts still see it, messages to it are kept by its writer) until
/// its client resumes it, or the resumption timeout passes, or the writer
/// gives up (too much unacknowledged). `None`: the session ends.
async fn hibernate(
    s: &mut Session,
    sm: &mut Sm,
    writer: &tokio::task::JoinHandle<bool>,
) -> Option<Resumption> {
    let deadline = tokio::time::Instant::now() + s.shared.config.resume_timeout;
    let handle = s.handle.clone();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            Some(r) = next_resumption(&mut sm.resume) => return Some(r),
            _ = tokio::time::sleep_until(deadline) => {
                tracing::info!(jid = %s.jid, "not resumed in time: the session ends");
                return None;
            }
            _ = check.tick() => {
                if writer.is_finished() {
                    return None;
                }
            }
            _ = handle.offline.notified() => {
                // Kept by the writer, like everything else sent now.
                if let Err(Failure::Close(_)) = message::deliver_offline(s).await {
                    return None;
                }
            }
            _ = handle.kill.notified() => return None,
        }
    }
}

/// Ends a session: leaves its rooms, tells its contacts, lets the writer
/// finish, and deletes the offline messages it delivered if the client
/// read them all (a clean close).
#[allow(clippy::too_many_arguments)]
async fn end(
    mut s: Session,
    tx: outbound::OutboundTx,
    mut writer: tokio::task::JoinHandle<bool>,
    out: Arc<SmOut>,
    close: Close,
    cut_off: bool,
    clean_close: bool,
    peer: SocketAddr,
) {
    let shared = s.shared.clone();
    rooms::leave_all(&s).await;
    if shared.router.unbind(&s.user, s.handle.id) {
        presence::broadcast_unavailable(&s).await;
    }
    // Ask the writer to finish; give a stuck socket a bounded time. A
    // client cut off for not reading gets its stream error before the
    // backlog (which is dropped), so a slow reader still learns why.
    let (cond, text) = match close {
        Close::Clean => (None, None),
        Close::Error(cond, text) => (Some(cond), Some(text)),
    };
    tx.close(cond, text, cut_off);
    drop(tx);
    let delivered = std::mem::take(&mut s.offline_delivered);
    let user = std::mem::take(&mut s.user);
    drop(s);
    let written = match tokio::time::timeout(Duration::from_secs(5), &mut writer).await {
        Ok(Ok(all_written)) => all_written,
        _ => {
            writer.abort();
            false
        }
    };
    let unacked = out.take();
    if !unacked.is_empty() {
        keep_unacknowledged(&shared, &user, &unacked, peer).await;
    }
    if !delivered.is_empty() {
        let ids = delivered.clone();
        let delete = clean_close && written;
        let sh = shared.clone();
        // Deleted and released in one storage call (see claim_offline).
        let done = shared
            .storage
            .run(move |c| {
                let deleted = if delete {
                    storage::delete_offline(c, &ids)
                } else {
                    Ok(())
                };
                sh.release_offline(&ids);
                deleted
            })
            .await;
        if let Err(e) = done {
            // Kept, so delivered again: a duplicate, not a loss.
            tracing::error!("{e}");
            shared.release_offline(&delivered);
            shared.router.offline_released(&user);
        } else if !delete {
            tracing::info!(%peer, kept = delivered.len(), "session ended uncleanly: its offline messages stay stored");
            shared.router.offline_released(&user);
        }
    }
}

/// Messages the session sent and its client never acknowledged (stream
/// management): they may never have arrived, so they go to offline storage
/// and reach the account's next session. At worst a duplicate, never a
/// loss. Not kept: what has no body (chat states, receipts), room messages
/// (the room keeps its history), and what came from offline storage in the
/// first place (its delay stamp is ours; it is still stored unless the
/// client closed cleanly).
async fn keep_unacknowledged(
    shared: &Arc<Shared>,
    user: &str,
    unacked: &[Arc<str>],
    peer: SocketAddr,
) {
    let domain = shared.config.domain.clone();
    let keep: Vec<String> = unacked
        .iter()
        .filter_map(|xml| protocol::parser::parse_element(xml))
        .filter(|el| el.name == "message" && el.has_child("body", ns::CLIENT))
        .filter(|el| {
            !matches!(
                el.get_attr("type"),
                Some("groupchat" | "error" | "headline")
            )
        })
        .filter(|el| {
            !el.children.iter().any(|n| {
                matches!(n, protocol::Node::Element(d)
                    if d.is("delay", ns::DELAY) && d.get_attr("from") == Some(domain.as_str()))
            })
        })
        .map(|mut el| {
            el.children.push(protocol::Node::Element(
                Element::new("delay", ns::DELAY)
                    .attr("from", domain.as_str())
                    .attr("stamp", crate::util::xmpp_datetime(crate::util::unix_now())),
            ));
            el.to_xml()
        })
        .collect();
    if keep.is_empty() {
        return;
    }
    let owner = user.to_string();
    let count = keep.len();
    let stored = shared
        .storage
        .run(move |c| {
            let mut n = 0;
            for xml in &keep {
                if storage::store_offline(c, &owner, xml)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await;
    match stored {
        Ok(n) => {
            tracing::info!(%peer, user, unacknowledged = count, stored = n, "messages never acknowledged were kept for the next sign-in");
            shared.router.offline_released(user);
        }
        Err(e) => tracing::error!(%peer, user, "unacknowledged messages lost: {e}"),
    }
}

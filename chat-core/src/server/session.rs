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

use super::context::{Close, Failure, Session};
use super::negotiate::Bound;
use super::shared::Shared;
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

/// Runs a bound session until it ends. `bound` comes boxed: an async
/// fn keeps its arguments for its whole life besides the locals moved out
/// of them, and every idle session would carry its `Bound` twice.
pub async fn run(shared: Arc<Shared>, bound: Box<Bound>, peer: SocketAddr) {
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
    let writer = tokio::spawn(outbound::writer_task(wr, rx));
    let mut s = Session {
        bare: jid.to_bare(),
        shared: shared.clone(),
        user,
        jid,
        handle: handle.clone(),
        tx: tx.clone(),
        offline_delivered: Vec::new(),
    };
    // Whether the client closed its stream itself (RFC 6120 4.4): a client
    // that does so has read everything sent before our closing tag.
    let mut clean_close = false;
    let mut cut_off = false;
    // Liveness: silence for `ping_after` earns a ping (XEP-0199); silence
    // for `ping_timeout` after it ends the session. Anything the client
    // sends counts as an answer.
    let (ping_after, ping_timeout) = (shared.config.ping_after, shared.config.ping_timeout);
    let mut deadline = tokio::time::Instant::now() + ping_after;
    let mut pinged = false;
    let close: Close = loop {
        tokio::select! {
            ev = reader.next(&mut rd) => {
                deadline = tokio::time::Instant::now() + ping_after;
                pinged = false;
                match ev {
                Ok(Event::Element(el)) => {
                    // What an error reply needs, kept in case storage fails.
                    let origin = Origin::of(&el);
                    // Boxed: handling a stanza is a large state machine
                    // (storage, rooms, routing), needed only while one is
                    // handled. Inline, every idle session would carry its
                    // size (BENCHMARKS.md, memory per idle connection).
                    match Box::pin(dispatch::stanza(&mut s, el)).await {
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
                        Err(Failure::Close(close)) => break close,
                    }
                }
                Ok(Event::StreamClose) => {
                    clean_close = true;
                    break Close::Clean;
                }
                Ok(Event::StreamOpen(_)) => {
                    break Close::Error(StreamErrorCondition::NotWellFormed, "unexpected stream header".into())
                }
                Err(ReadError::Parse(p)) => {
                    tracing::info!(%peer, jid = %s.jid, "stream error: {p}");
                    break Close::Error(p.condition(), p.to_string());
                }
                Err(ReadError::Io(e)) => {
                    // A reset, or a TLS record that did not decrypt (changed
                    // in flight): said, so an attack does not pass unseen.
                    tracing::info!(%peer, jid = %s.jid, "connection failed: {e}");
                    break Close::Clean;
                }
                Err(ReadError::Eof) => break Close::Clean,
            }},
            _ = tokio::time::sleep_until(deadline) => {
                if pinged {
                    tracing::info!(%peer, jid = %s.jid, "no answer to a ping in {} s: closing", ping_timeout.as_secs());
                    break Close::Error(
                        StreamErrorCondition::ConnectionTimeout,
                        format!("silent for {} s, and no answer to a ping", (ping_after + ping_timeout).as_secs()),
                    );
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
            _ = handle.offline.notified() => {
                // Another session of the account ended before its client
                // confirmed the stored messages it was sent: they are ours
                // to deliver now (a client that drops and signs in again at
                // once would otherwise wait for its next sign-in).
                match message::deliver_offline(&mut s).await {
                    Ok(()) | Err(Failure::Storage) => {}
                    Err(Failure::Close(close)) => break close,
                }
            }
            _ = handle.kill.notified() => {
                cut_off = true;
                break Close::Error(StreamErrorCondition::PolicyViolation, "too much data waiting: the client does not read".into())
            }
        }
    };
    // The end runs in a box of its own: it is large (rooms, presence,
    // storage) and only needed once, so no idle session carries it.
    Box::pin(end(s, tx, writer, close, cut_off, clean_close, peer)).await;
    tracing::info!(%peer, "session ended");
}

/// Ends a session: leaves its rooms, tells its contacts, lets the writer
/// finish, and deletes the offline messages it delivered if the client
/// read them all (a clean close).
async fn end(
    mut s: Session,
    tx: outbound::OutboundTx,
    mut writer: tokio::task::JoinHandle<bool>,
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

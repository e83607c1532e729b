//! The chat server: accepts connections, negotiates streams, routes stanzas.
//!
//! # A stanza's path, reading downward
//!
//! 1. [`serve`] (this file) accepts a TCP connection and hands it to the
//!    [`crate::transport`] (TLS, or nothing on the plaintext twin).
//! 2. [`negotiate`] runs the stream up to a bound resource: header,
//!    STARTTLS, SASL, registration, bind. Binding registers the session in
//!    the [`router`] with a fresh [`outbound`] queue.
//! 3. [`session::run`] reads stanzas off the socket (through
//!    [`crate::xmpp_io`], which feeds the `protocol` parser) and hands each
//!    to [`dispatch::stanza`].
//! 4. [`dispatch`] stamps the sender's JID and sends the stanza to the one
//!    module that owns it: [`message`], [`presence`], [`roster`],
//!    [`rooms`], [`directory`], [`account`] or [`service`]. Each takes the
//!    session's [`context::Session`] and returns [`context::Handled`].
//! 5. A handler answers its own session through the context (queued on its
//!    own outbound queue), and reaches other sessions through the
//!    [`router`], which pushes the XML onto their [`outbound`] queues.
//! 6. Each session's writer task ([`outbound::writer_task`]) drains its
//!    queue into its socket.
//!
//! Modules depend downward only: `session` -> `dispatch` -> handlers ->
//! `context` -> `router` -> `outbound`; `shared` and `config` hold state
//! and settings and depend on none of the handlers but [`rooms`]' state.
//!
//! # Modules
//! - [`config`]: settings and their defaults.
//! - [`shared`]: the state every session shares.
//! - [`negotiate`]: stream negotiation up to resource binding.
//! - [`session`]: a bound session's read loop and its end.
//! - [`dispatch`]: the one place each stanza is routed to its owner.
//! - [`context`]: the session context handlers work through.
//! - [`message`]: one-to-one messages and offline storage.
//! - [`presence`]: presence broadcast, probes, directed presence.
//! - [`roster`]: the roster, its pushes and the subscription handshake.
//! - [`rooms`]: group rooms on `conference.<domain>` (XEP-0045 subset).
//! - [`directory`]: profiles, user search, who is online, announcements.
//! - [`account`]: registration form, password change, account removal.
//! - [`service`]: what the server says about itself (disco, version).
//! - [`upload`]: HTTP file upload slots on `upload.<domain>` (XEP-0363),
//!   and [`http`], the listener that takes and serves their files.
//! - [`router`]: who is online, and delivery to their queues.
//! - [`outbound`]: each session's bounded queue and its writer task.
//! - [`sm`]: stream management (XEP-0198): what the writer sent and the
//!   client has not acknowledged, and the sessions waiting to be resumed.
//! - [`throttle`]: slowing down password guessing and mass registration.

mod account;
mod archive;
pub mod config;
mod context;
mod directory;
mod dispatch;
pub mod http;
mod message;
mod negotiate;
mod outbound;
mod pep;
mod presence;
mod rooms;
mod roster;
mod router;
mod service;
mod session;
mod shared;
mod sm;
pub mod throttle;
mod upload;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocol::StreamErrorCondition;
use tokio::net::TcpListener;

use crate::transport::ServerTransport;
pub use config::{
    DEFAULT_AUTH_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PING_AFTER, DEFAULT_PING_TIMEOUT,
    DEFAULT_RESUME_TIMEOUT, DEFAULT_UPLOAD_MAX_SIZE, DEFAULT_UPLOAD_QUOTA, KERNEL_SEND_BUFFER,
    MAX_AUTH_ATTEMPTS, ServerConfig, UPLOAD_SLOT_EXPIRY, UploadConfig,
};
pub use shared::Shared;

/// Accepts connections on `listener` until `shutdown` completes, serving each
/// through `transport`. Several listeners (STARTTLS and direct TLS ports) can
/// share one [`Shared`].
pub async fn serve<T: ServerTransport>(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Arc<T>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // The kernel's send buffer is the queue after ours: left to grow,
        // a client that stops reading pins up to 4 MB of kernel memory
        // (50 in a room: 184 MB). A fixed size bounds it.
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(KERNEL_SEND_BUFFER);
        let permit = shared.connections.clone().try_acquire_owned();
        let shared = shared.clone();
        let transport = transport.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permit else {
                tracing::warn!(%peer, "connection refused: {} connections open", shared.config.max_connections);
                negotiate::refuse(
                    tcp,
                    &shared.config.domain,
                    StreamErrorCondition::ResourceConstraint,
                )
                .await;
                return;
            };
            handle_connection(shared, transport, tcp, peer).await;
        });
    }
    shared
        .router
        .close_all(StreamErrorCondition::SystemShutdown);
}

async fn handle_connection<T: ServerTransport>(
    shared: Arc<Shared>,
    transport: Arc<T>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    tracing::debug!(%peer, "connection opened");
    let deadline = shared.config.auth_timeout;
    let accepted = tokio::time::timeout(deadline, transport.accept(tcp, peer)).await;
    let (stream, security) = match accepted {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, "connection setup failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "connection setup timed out");
            return;
        }
    };
    serve_stream(shared, transport.as_ref(), stream, security, peer).await;
    tracing::debug!(%peer, "connection closed");
}

/// Serves one connection's stream, already set up by the transport, from
/// negotiation to the end of its session. Any byte stream will do: the
/// in-memory tests ([`tests`]) hand it one end of a `tokio::io::duplex`
/// pipe and play the client on the other.
async fn serve_stream<T: ServerTransport>(
    shared: Arc<Shared>,
    transport: &T,
    stream: crate::transport::BoxStream,
    security: crate::transport::Security,
    peer: SocketAddr,
) {
    // Boxed, as the session's handlers are: negotiation's state machine
    // (SASL, registration) is large and over once the session is bound.
    let negotiated = Box::pin(negotiate::negotiate(
        &shared, transport, stream, security, peer,
    ))
    .await;
    match negotiated {
        Some(negotiate::Negotiated::Bound(bound)) => session::run(shared, bound, peer).await,
        Some(negotiate::Negotiated::Resume(session, r)) => {
            if let Err(lost) = session.send(*r).await {
                // The session ended between the lookup and now.
                let mut r = lost.0;
                let failed = sm::failed(
                    protocol::StanzaErrorCondition::ItemNotFound,
                    "the session ended: bind a new one",
                );
                let _ = crate::xmpp_io::write_str(
                    &mut r.stream,
                    &format!("{}{}", failed.to_xml(), protocol::stream::CLOSE),
                )
                .await;
            }
        }
        None => {}
    }
}

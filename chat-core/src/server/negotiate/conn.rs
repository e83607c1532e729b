//! The connection under negotiation: its stream, parser and progress, and
//! the ways the negotiation steps read from it and answer on it. Before a
//! resource is bound there is no outbound queue and no writer task: each
//! step writes its answer directly and waits for the next element.

use std::net::SocketAddr;
use std::sync::Arc;

use protocol::stanza::Iq;
use protocol::{
    Element, Jid, StanzaErrorCondition, StreamErrorCondition, StreamHeader, ns, stream,
};

use crate::server::outbound::{OutboundRx, OutboundTx};
use crate::server::router::SessionHandle;
use crate::server::shared::Shared;
use crate::transport::{BoxStream, Security, ServerTransport, StartTls};
use crate::util::random_id;
use crate::xmpp_io::{ReadError, XmppReader, write_element, write_str};

/// Why negotiation ended without a bound session.
pub(super) enum Unbound {
    /// The peer closed the stream or the connection.
    Closed,
    /// Send this stream error and close.
    Error(StreamErrorCondition, String),
    /// Reading failed: a reset, or a TLS record that did not decrypt (one
    /// an attacker changed in flight). Logged; nothing more can be sent.
    Failed(String),
}

impl From<ReadError> for Unbound {
    fn from(e: ReadError) -> Unbound {
        match e {
            ReadError::Eof => Unbound::Closed,
            ReadError::Io(e) => Unbound::Failed(e.to_string()),
            ReadError::Parse(p) => Unbound::Error(p.condition(), p.to_string()),
        }
    }
}

impl From<std::io::Error> for Unbound {
    fn from(_: std::io::Error) -> Unbound {
        Unbound::Closed
    }
}

/// A connection being negotiated.
pub(super) struct Conn<'a, T> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) transport: &'a T,
    pub(super) stream: BoxStream,
    pub(super) reader: XmppReader,
    /// Plain TCP, or TLS with this end's channel-binding values.
    pub(super) security: Security,
    pub(super) peer: SocketAddr,
    pub(super) header_sent: bool,
    pub(super) user: Option<String>,
    /// The account the current SASL attempt names, for the throttle.
    pub(super) attempted: Option<String>,
    pub(super) auth_failures: u32,
    pub(super) bound: Option<(Jid, SessionHandle, OutboundTx, OutboundRx)>,
    /// A resumption (XEP-0198) instead of a bound resource: the session to
    /// hand this connection to, and the client's `h`.
    pub(super) resume: Option<(
        tokio::sync::mpsc::Sender<crate::server::sm::Resumption>,
        u32,
    )>,
}

pub(super) fn server_header(domain: &str, to: Option<String>) -> String {
    StreamHeader {
        from: Some(domain.to_string()),
        to,
        id: Some(random_id(8)),
        version: Some("1.0".into()),
        lang: Some("en".into()),
        default_ns: ns::CLIENT.into(),
    }
    .to_xml()
}

impl<T: ServerTransport> Conn<'_, T> {
    pub(super) fn domain(&self) -> &str {
        &self.shared.config.domain
    }

    pub(super) async fn send_error(&mut self, cond: StreamErrorCondition, text: &str) {
        // RFC 6120 4.9.1.2: even an error before the header needs a header.
        if !self.header_sent {
            let h = server_header(&self.shared.config.domain, None);
            let _ = write_str(&mut self.stream, &h).await;
        }
        let xml = format!("{}{}", cond.to_element(Some(text)).to_xml(), stream::CLOSE);
        let _ = write_str(&mut self.stream, &xml).await;
    }

    pub(super) async fn send(&mut self, el: &Element) -> Result<(), Unbound> {
        write_element(&mut self.stream, el).await?;
        Ok(())
    }

    pub(super) async fn read_element(&mut self) -> Result<Element, Unbound> {
        match self.reader.next_element(&mut self.stream).await? {
            Some(e) => Ok(e),
            None => Err(Unbound::Closed),
        }
    }

    pub(super) fn starttls_required_now(&self) -> bool {
        !self.security.is_tls() && self.transport.starttls() == StartTls::Required
    }

    pub(super) async fn reply(&mut self, iq: &Iq, payload: Option<Element>) -> Result<(), Unbound> {
        let mut r = iq.result(payload);
        r.from = None;
        self.send(&r.to_element()).await
    }

    pub(super) async fn reply_error(
        &mut self,
        iq: &Iq,
        cond: StanzaErrorCondition,
        text: &str,
    ) -> Result<(), Unbound> {
        let mut r = iq.error_reply(cond, Some(text));
        r.from = None;
        self.send(&r.to_element()).await
    }
}

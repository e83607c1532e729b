//! Typed views of the three stanzas (RFC 6120 8): `<message/>`, `<presence/>`
//! and `<iq/>`.
//!
//! Each type converts from an [`Element`] (checking what RFC 6120 requires:
//! valid JIDs, known `type` values, an `id` and exactly one payload for an iq)
//! and back. Children this crate does not model stay in `payloads`, so a
//! stanza survives a round trip through a router that does not understand it.

use crate::element::Element;
use crate::error::StanzaErrorCondition;
use crate::jid::{Jid, JidError};
use crate::ns;

/// Why an element is not a valid stanza.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StanzaError {
    /// The element is not a stanza of the expected kind.
    #[error("<{found}> is not a <{expected}> stanza")]
    WrongElement {
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A `to` or `from` attribute is not a valid JID.
    #[error("invalid '{attr}' address: {source}")]
    BadJid {
        /// Which attribute.
        attr: &'static str,
        /// Why.
        source: JidError,
    },
    /// An unknown `type` value.
    #[error("unknown {kind} type '{value}'")]
    BadType {
        /// Which stanza kind.
        kind: &'static str,
        /// The value.
        value: String,
    },
    /// An iq without the `id` RFC 6120 8.2.3 requires.
    #[error("iq stanza without an id")]
    MissingId,
    /// An iq get or set without exactly one payload child (RFC 6120 8.2.3).
    #[error("iq {kind} with {count} payload elements (exactly one is required)")]
    BadPayload {
        /// get or set.
        kind: &'static str,
        /// How many children it had.
        count: usize,
    },
    /// A presence priority that is not an integer from -128 to 127.
    #[error("invalid presence priority '{0}'")]
    BadPriority(String),
}

impl StanzaError {
    /// The stanza error condition to answer with.
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            StanzaError::BadJid { .. } => StanzaErrorCondition::JidMalformed,
            _ => StanzaErrorCondition::BadRequest,
        }
    }
}

fn jid_attr(el: &Element, attr: &'static str) -> Result<Option<Jid>, StanzaError> {
    el.get_attr(attr)
        .map(|s| Jid::parse(s).map_err(|source| StanzaError::BadJid { attr, source }))
        .transpose()
}

fn expect(el: &Element, name: &'static str) -> Result<(), StanzaError> {
    if el.name != name || (el.ns != ns::CLIENT && el.ns != ns::SERVER) {
        return Err(StanzaError::WrongElement {
            expected: name,
            found: el.name.to_string(),
        });
    }
    Ok(())
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident, $kind:literal { $($(#[$vm:meta])* $var:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var,)* }
        impl $name {
            /// The attribute value.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s,)* }
            }
            /// Parses an attribute value.
            pub fn parse(s: &str) -> Result<Self, StanzaError> {
                match s {
                    $($s => Ok($name::$var),)*
                    _ => Err(StanzaError::BadType { kind: $kind, value: s.to_string() }),
                }
            }
        }
    };
}

string_enum! {
    /// `type` of a message (RFC 6121 5.2.2).
    MessageType, "message" {
        /// One-to-one chat.
        Chat = "chat",
        /// Reports an error about a message sent earlier.
        Error = "error",
        /// Multi-user chat.
        Groupchat = "groupchat",
        /// Alerts and notices that expect no reply.
        Headline = "headline",
        /// A standalone message (the default).
        Normal = "normal",
    }
}

string_enum! {
    /// `type` of a presence (RFC 6121 4.7.1), `Available` when absent.
    PresenceType, "presence" {
        /// No type attribute: the sender is available.
        Available = "available",
        /// An error about presence sent earlier.
        Error = "error",
        /// The server asks for the current presence.
        Probe = "probe",
        /// The sender asks to subscribe to the recipient's presence.
        Subscribe = "subscribe",
        /// The sender allowed the recipient to subscribe.
        Subscribed = "subscribed",
        /// The sender is going offline.
        Unavailable = "unavailable",
        /// The sender unsubscribes from the recipient's presence.
        Unsubscribe = "unsubscribe",
        /// The sender cancelled the recipient's subscription.
        Unsubscribed = "unsubscribed",
    }
}

string_enum! {
    /// `<show/>` of an available presence (RFC 6121 4.7.2.1).
    Show, "show" {
        /// Away for a short time.
        Away = "away",
        /// Free to chat.
        Chat = "chat",
        /// Do not disturb.
        Dnd = "dnd",
        /// Away for a long time.
        Xa = "xa",
    }
}

string_enum! {
    /// `type` of an iq (RFC 6120 8.2.3).
    IqType, "iq" {
        /// Asks for information.
        Get = "get",
        /// Provides data or asks for a change.
        Set = "set",
        /// A successful answer.
        Result = "result",
        /// A failed answer.
        Error = "error",
    }
}

impl MessageType {
    /// The type of a `<message/>` element. A missing or unknown `type` is
    /// `normal` (RFC 6121 5.2.2: a receiver that does not understand the
    /// value "MUST consider the message to be of type normal").
    pub fn of(el: &Element) -> MessageType {
        el.get_attr("type")
            .and_then(|t| MessageType::parse(t).ok())
            .unwrap_or(MessageType::Normal)
    }
}

/// A `<message/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender, stamped by the server.
    pub from: Option<Jid>,
    /// Recipient.
    pub to: Option<Jid>,
    /// Identifier chosen by the sender.
    pub id: Option<String>,
    /// Kind of message.
    pub kind: MessageType,
    /// The human text.
    pub body: Option<String>,
    /// Other children (receipts, delay stamps, chat states, ...).
    pub payloads: Vec<Element>,
}

impl Message {
    /// A chat message with a body.
    pub fn chat(to: Jid, body: impl Into<String>) -> Self {
        Message {
            from: None,
            to: Some(to),
            id: None,
            kind: MessageType::Chat,
            body: Some(body.into()),
            payloads: Vec::new(),
        }
    }

    /// Reads a message from an element.
    pub fn from_element(el: &Element) -> Result<Self, StanzaError> {
        expect(el, "message")?;
        let kind = el
            .get_attr("type")
            .map_or(Ok(MessageType::Normal), MessageType::parse)?;
        let body = el.get_child("body", &el.ns).map(Element::text_content);
        let payloads = el
            .elements()
            .filter(|c| !c.is("body", &el.ns))
            .cloned()
            .collect();
        Ok(Message {
            from: jid_attr(el, "from")?,
            to: jid_attr(el, "to")?,
            id: el.get_attr("id").map(str::to_string),
            kind,
            body,
            payloads,
        })
    }

    /// Builds the element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("message", ns::CLIENT)
            .attr_opt("from", self.from.as_ref().map(Jid::to_string))
            .attr_opt("to", self.to.as_ref().map(Jid::to_string))
            .attr_opt("id", self.id.clone());
        if self.kind != MessageType::Normal {
            e = e.attr("type", self.kind.as_str());
        }
        if let Some(b) = &self.body {
            e = e.text_child("body", ns::CLIENT, b.clone());
        }
        for p in &self.payloads {
            e = e.child(p.clone());
        }
        e
    }

    /// True when the sender asks for a delivery receipt (XEP-0184).
    pub fn requests_receipt(&self) -> bool {
        self.payloads.iter().any(|p| p.is("request", ns::RECEIPTS))
    }

    /// When a delayed message was first sent (XEP-0203 `<delay stamp>`):
    /// offline storage and room history carry it.
    pub fn delay_stamp(&self) -> Option<&str> {
        self.payloads
            .iter()
            .find(|p| p.is("delay", ns::DELAY))
            .and_then(|d| d.get_attr("stamp"))
    }

    /// The id of the message this one acknowledges (XEP-0184), if it is a receipt.
    pub fn receipt_for(&self) -> Option<&str> {
        self.payloads
            .iter()
            .find(|p| p.is("received", ns::RECEIPTS))
            .and_then(|p| p.get_attr("id"))
    }
}

/// A `<presence/>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// Sender, stamped by the server.
    pub from: Option<Jid>,
    /// Recipient; none for a broadcast.
    pub to: Option<Jid>,
    /// Identifier chosen by the sender.
    pub id: Option<String>,
    /// Kind of presence.
    pub kind: PresenceType,
    /// Availability sub-state.
    pub show: Option<Show>,
    /// Status message.
    pub status: Option<String>,
    /// Resource priority, -128 to 127.
    pub priority: i8,
    /// Other children.
    pub payloads: Vec<Element>,
}

impl Presence {
    /// A presence of a given type with nothing else set.
    pub fn new(kind: PresenceType) -> Self {
        Presence {
            from: None,
            to: None,
            id: None,
            kind,
            show: None,
            status: None,
            priority: 0,
            payloads: Vec::new(),
        }
    }

    /// Reads a presence from an element.
    pub fn from_element(el: &Element) -> Result<Self, StanzaError> {
        expect(el, "presence")?;
        let kind = el
            .get_attr("type")
            .map_or(Ok(PresenceType::Available), PresenceType::parse)?;
        let show = el
            .child_text("show", &el.ns)
            .map(|s| Show::parse(s.trim()))
            .transpose()?;
        let priority = match el.child_text("priority", &el.ns) {
            Some(p) => p
                .trim()
                .parse::<i8>()
                .map_err(|_| StanzaError::BadPriority(p.clone()))?,
            None => 0,
        };
        let known = |c: &Element| {
            c.ns == el.ns && matches!(c.name.as_str(), "show" | "status" | "priority")
        };
        Ok(Presence {
            from: jid_attr(el, "from")?,
            to: jid_attr(el, "to")?,
            id: el.get_attr("id").map(str::to_string),
            kind,
            show,
            status: el.child_text("status", &el.ns),
            priority,
            payloads: el.elements().filter(|c| !known(c)).cloned().collect(),
        })
    }

    /// Builds the element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("presence", ns::CLIENT)
            .attr_opt("from", self.from.as_ref().map(Jid::to_string))
            .attr_opt("to", self.to.as_ref().map(Jid::to_string))
            .attr_opt("id", self.id.clone());
        if self.kind != PresenceType::Available {
            e = e.attr("type", self.kind.as_str());
        }
        if let Some(s) = self.show {
            e = e.text_child("show", ns::CLIENT, s.as_str());
        }
        if let Some(s) = &self.status {
            e = e.text_child("status", ns::CLIENT, s.clone());
        }
        if self.priority != 0 {
            e = e.text_child("priority", ns::CLIENT, self.priority.to_string());
        }
        for p in &self.payloads {
            e = e.child(p.clone());
        }
        e
    }
}

/// An `<iq/>` stanza: a request (get, set) or its answer (result, error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iq {
    /// Sender, stamped by the server.
    pub from: Option<Jid>,
    /// Recipient; none means the sender's own account or server.
    pub to: Option<Jid>,
    /// Identifier, echoed in the answer.
    pub id: String,
    /// Kind of iq.
    pub kind: IqType,
    /// The request or result payload (at most one element).
    pub payload: Option<Element>,
    /// The `<error/>` child of an error answer.
    pub error: Option<Element>,
}

impl Iq {
    /// A get or set request.
    pub fn request(kind: IqType, id: impl Into<String>, to: Option<Jid>, payload: Element) -> Self {
        Iq {
            from: None,
            to,
            id: id.into(),
            kind,
            payload: Some(payload),
            error: None,
        }
    }

    /// Reads an iq from an element, enforcing RFC 6120 8.2.3.
    pub fn from_element(el: &Element) -> Result<Self, StanzaError> {
        expect(el, "iq")?;
        let id = el.get_attr("id").ok_or(StanzaError::MissingId)?.to_string();
        let kind = IqType::parse(el.get_attr("type").unwrap_or(""))?;
        let error = el.get_child("error", &el.ns).cloned();
        let payloads: Vec<&Element> = el.elements().filter(|c| !c.is("error", &el.ns)).collect();
        if matches!(kind, IqType::Get | IqType::Set) && payloads.len() != 1 {
            return Err(StanzaError::BadPayload {
                kind: kind.as_str(),
                count: payloads.len(),
            });
        }
        Ok(Iq {
            from: jid_attr(el, "from")?,
            to: jid_attr(el, "to")?,
            id,
            kind,
            payload: payloads.first().map(|p| (*p).clone()),
            error,
        })
    }

    /// Builds the element.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("iq", ns::CLIENT)
            .attr_opt("from", self.from.as_ref().map(Jid::to_string))
            .attr_opt("to", self.to.as_ref().map(Jid::to_string))
            .attr("id", self.id.clone())
            .attr("type", self.kind.as_str());
        if let Some(p) = &self.payload {
            e = e.child(p.clone());
        }
        if let Some(err) = &self.error {
            e = e.child(err.clone());
        }
        e
    }

    /// The success answer to this request, from its recipient.
    pub fn result(&self, payload: Option<Element>) -> Iq {
        Iq {
            from: self.to.clone(),
            to: self.from.clone(),
            id: self.id.clone(),
            kind: IqType::Result,
            payload,
            error: None,
        }
    }

    /// The error answer to this request.
    pub fn error_reply(&self, cond: StanzaErrorCondition, text: Option<&str>) -> Iq {
        Iq {
            from: self.to.clone(),
            to: self.from.clone(),
            id: self.id.clone(),
            kind: IqType::Error,
            payload: self.payload.clone(),
            error: Some(cond.to_element(text)),
        }
    }

    /// The error condition of an error answer.
    pub fn error_condition(&self) -> Option<StanzaErrorCondition> {
        self.error
            .as_ref()
            .and_then(StanzaErrorCondition::from_error_element)
    }
}

/// Turns any stanza into an error reply addressed back to its sender (RFC 6120
/// 8.3.1): the addresses are swapped, `type='error'` is set and the condition
/// is appended. Returns `None` for a stanza that is itself an error, because
/// answering errors with errors can loop between two entities forever.
pub fn error_reply(
    stanza: &Element,
    cond: StanzaErrorCondition,
    text: Option<&str>,
) -> Option<Element> {
    if stanza.get_attr("type") == Some("error") {
        return None;
    }
    let mut e = stanza.clone();
    let from = e.remove_attr("from");
    let to = e.remove_attr("to");
    if let Some(t) = to {
        e.set_attr("from", t);
    }
    if let Some(f) = from {
        e.set_attr("to", f);
    }
    e.set_attr("type", "error");
    e.children
        .push(crate::element::Node::Element(cond.to_element(text)));
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::{Event, Mode, StreamParser};

    fn parse(xml: &str) -> Element {
        let mut p = StreamParser::new(Mode::Lenient);
        p.feed(xml.as_bytes());
        match p.next_event() {
            Ok(Some(pe)) => match pe.event {
                Event::Element(e) => e,
                other => panic!("not an element: {other:?}"),
            },
            other => panic!("no element in {xml}: {other:?}"),
        }
    }

    #[test]
    fn message_round_trip_keeps_unknown_payloads() {
        let el = parse(
            "<message to='bob@localhost' type='chat' id='1'><body>hi</body>\
             <request xmlns='urn:xmpp:receipts'/><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        let m = Message::from_element(&el).unwrap();
        assert_eq!(m.kind, MessageType::Chat);
        assert_eq!(m.body.as_deref(), Some("hi"));
        assert!(m.requests_receipt());
        assert_eq!(m.payloads.len(), 2);
        assert_eq!(Message::from_element(&m.to_element()).unwrap(), m);
    }

    #[test]
    fn receipt_is_recognised() {
        let el = parse("<message to='a@b'><received xmlns='urn:xmpp:receipts' id='m7'/></message>");
        assert_eq!(
            Message::from_element(&el).unwrap().receipt_for(),
            Some("m7")
        );
    }

    #[test]
    fn presence_fields() {
        let el = parse(
            "<presence><show>dnd</show><status>in a meeting</status><priority>-1</priority></presence>",
        );
        let p = Presence::from_element(&el).unwrap();
        assert_eq!(p.kind, PresenceType::Available);
        assert_eq!(p.show, Some(Show::Dnd));
        assert_eq!(p.status.as_deref(), Some("in a meeting"));
        assert_eq!(p.priority, -1);
        assert_eq!(Presence::from_element(&p.to_element()).unwrap(), p);
        let bad = parse("<presence><priority>300</priority></presence>");
        assert!(matches!(
            Presence::from_element(&bad),
            Err(StanzaError::BadPriority(_))
        ));
        let bad = parse("<presence type='sleepy'/>");
        assert!(matches!(
            Presence::from_element(&bad),
            Err(StanzaError::BadType { .. })
        ));
    }

    #[test]
    fn iq_rules_of_rfc_6120() {
        let ok = parse("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>");
        let iq = Iq::from_element(&ok).unwrap();
        assert!(iq.payload.as_ref().unwrap().is("ping", ns::PING));
        let no_id = parse("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>");
        assert_eq!(Iq::from_element(&no_id), Err(StanzaError::MissingId));
        let two = parse("<iq type='set' id='1'><a xmlns='x'/><b xmlns='x'/></iq>");
        assert!(matches!(
            Iq::from_element(&two),
            Err(StanzaError::BadPayload { count: 2, .. })
        ));
        let bad_to = parse("<iq type='get' id='1' to='a@'><a xmlns='x'/></iq>");
        let e = Iq::from_element(&bad_to).unwrap_err();
        assert_eq!(e.condition(), StanzaErrorCondition::JidMalformed);
    }

    #[test]
    fn error_replies_swap_addresses_and_never_answer_errors() {
        let el = parse("<message from='a@b/c' to='d@b' id='9'><body>x</body></message>");
        let r = error_reply(&el, StanzaErrorCondition::ServiceUnavailable, None).unwrap();
        assert_eq!(r.get_attr("to"), Some("a@b/c"));
        assert_eq!(r.get_attr("from"), Some("d@b"));
        assert_eq!(r.get_attr("type"), Some("error"));
        assert!(error_reply(&r, StanzaErrorCondition::BadRequest, None).is_none());
    }
}

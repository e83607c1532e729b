//! The stream header (RFC 6120 4.7) and the opening and closing tags.
//!
//! An XMPP session is one long XML document per direction: it opens with
//! `<stream:stream ...>`, carries stanzas as top-level children, and ends with
//! `</stream:stream>`. After STARTTLS and after SASL both sides start a fresh
//! document ("stream restart").

use crate::element::escape;
use crate::ns;

/// The attributes of a `<stream:stream>` opening tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The domain the initiator wants to reach (client to server), or the
    /// client's JID (server to client, optional).
    pub to: Option<String>,
    /// Who opened this stream.
    pub from: Option<String>,
    /// Stream id, chosen by the receiving entity.
    pub id: Option<String>,
    /// Protocol version; `1.0` for RFC 6120 streams.
    pub version: Option<String>,
    /// Default language (`xml:lang`).
    pub lang: Option<String>,
    /// Default namespace of the stream content (`jabber:client`).
    pub default_ns: String,
}

impl StreamHeader {
    /// A client-to-server header addressed to `domain`.
    pub fn client_to(domain: &str) -> Self {
        StreamHeader {
            to: Some(domain.to_string()),
            version: Some("1.0".into()),
            lang: Some("en".into()),
            default_ns: ns::CLIENT.into(),
            ..Default::default()
        }
    }

    /// The XML declaration and the opening tag, ready to send.
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<?xml version='1.0'?><stream:stream");
        for (name, value) in [
            ("from", &self.from),
            ("to", &self.to),
            ("id", &self.id),
            ("version", &self.version),
            ("xml:lang", &self.lang),
        ] {
            if let Some(v) = value {
                s.push_str(&format!(" {name}='{}'", escape(v)));
            }
        }
        s.push_str(&format!(
            " xmlns='{}' xmlns:stream='{}'>",
            escape(&self.default_ns),
            ns::STREAM
        ));
        s
    }
}

/// The closing tag of a stream.
pub const CLOSE: &str = "</stream:stream>";

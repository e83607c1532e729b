//! Namespace URIs of the protocols this kit speaks.

use compact_str::CompactString;

/// The stream element and stream errors (RFC 6120 4.8.1).
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// Default namespace of client-to-server streams.
pub const CLIENT: &str = "jabber:client";
/// Default namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// Stream error conditions.
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Stanza error conditions.
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS negotiation (RFC 6120 5).
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL negotiation (RFC 6120 6).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// The channel-binding types a server supports (XEP-0440).
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// Resource binding (RFC 6120 7).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// Legacy session establishment (RFC 3921, kept for old clients).
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// Roster management (RFC 6121 2).
pub const ROSTER: &str = "jabber:iq:roster";
/// In-band registration (XEP-0077).
pub const REGISTER: &str = "jabber:iq:register";
/// The in-band registration stream feature (XEP-0077).
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
/// Service discovery, info (XEP-0030).
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// Service discovery, items (XEP-0030).
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XMPP ping (XEP-0199).
pub const PING: &str = "urn:xmpp:ping";
/// Software version (XEP-0092).
pub const VERSION: &str = "jabber:iq:version";
/// Message delivery receipts (XEP-0184).
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// Publish-subscribe (XEP-0060), and PEP on it (XEP-0163).
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// Pubsub's owner requests (configure, delete).
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// Pubsub's notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// Pubsub's own error conditions (`precondition-not-met`).
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// The FORM_TYPE of a pubsub node configuration.
pub const PUBSUB_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// Entity capabilities (XEP-0115).
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// The message archive (XEP-0313, version 2).
pub const MAM: &str = "urn:xmpp:mam:2";
/// Message carbons (XEP-0280): copies of a user's messages to the user's
/// other clients.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// Unique and stable stanza ids (XEP-0359): the archive id a message was
/// kept under.
pub const SID: &str = "urn:xmpp:sid:0";
/// Stream management (XEP-0198): acknowledgements and resumption.
pub const SM: &str = "urn:xmpp:sm:3";
/// HTTP File Upload (XEP-0363).
pub const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// Out-of-band data (XEP-0066): the URL of a shared file, next to the
/// same URL as the body, as clients send what they uploaded.
pub const OOB: &str = "jabber:x:oob";
/// Stanza forwarding (XEP-0297): a stanza wrapped in another.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// Chat state notifications (XEP-0085): typing, paused...
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// Message processing hints (XEP-0334).
pub const HINTS: &str = "urn:xmpp:hints";
/// Delayed delivery stamps (XEP-0203).
pub const DELAY: &str = "urn:xmpp:delay";
/// Data forms (XEP-0004).
pub const DATA_FORMS: &str = "jabber:x:data";
/// The XML namespace, bound to the `xml:` prefix by definition.
pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
/// Multi-user chat, joining a room (XEP-0045).
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// Multi-user chat, occupant information in presences and messages.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Multi-user chat, room configuration by its owner.
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// Jabber Search, the user directory (XEP-0055).
pub const SEARCH: &str = "jabber:iq:search";
/// vCards, a user's display name and email (XEP-0054).
pub const VCARD: &str = "vcard-temp";
/// Stream Initiation (XEP-0095).
pub const SI: &str = "http://jabber.org/protocol/si";
/// The SI file-transfer profile (XEP-0096).
pub const SI_FILE: &str = "http://jabber.org/protocol/si/profile/file-transfer";
/// Feature negotiation, used by SI to pick a stream method (XEP-0020).
pub const FEATURE_NEG: &str = "http://jabber.org/protocol/feature-neg";
/// In-Band Bytestreams (XEP-0047).
pub const IBB: &str = "http://jabber.org/protocol/ibb";
/// Hashes of files (XEP-0300).
pub const HASHES: &str = "urn:xmpp:hashes:2";
/// Explicit Message Encryption (XEP-0380): names the encryption a
/// message uses, so that a client without it can say so.
pub const EME: &str = "urn:xmpp:eme:0";

/// The namespace as a [`CompactString`] that does not allocate when it is
/// one of the constants above (most of them are longer than a compact string
/// holds inline): it points at the constant.
///
/// The type is named from `compact_str` itself, the same type
/// [`crate::element`] re-exports, so that this leaf module of constants does
/// not depend on the element tree that depends on it.
pub fn interned(uri: &str) -> CompactString {
    const KNOWN: &[&str] = &[
        STREAM,
        CLIENT,
        SERVER,
        STREAM_ERRORS,
        STANZA_ERRORS,
        TLS,
        SASL,
        SASL_CB,
        BIND,
        SESSION,
        ROSTER,
        REGISTER,
        REGISTER_FEATURE,
        DISCO_INFO,
        DISCO_ITEMS,
        PING,
        VERSION,
        RECEIPTS,
        CHATSTATES,
        HINTS,
        CARBONS,
        FORWARD,
        MAM,
        PUBSUB,
        PUBSUB_OWNER,
        PUBSUB_EVENT,
        PUBSUB_ERRORS,
        CAPS,
        DELAY,
        DATA_FORMS,
        XML,
        MUC,
        MUC_USER,
        MUC_OWNER,
        SEARCH,
        VCARD,
        SI,
        SI_FILE,
        FEATURE_NEG,
        IBB,
        HASHES,
    ];
    // Short ones are stored inline anyway; skip the search for them.
    if uri.len() > 24
        && let Some(k) = KNOWN.iter().find(|k| **k == uri)
    {
        return CompactString::const_new(k);
    }
    CompactString::new(uri)
}

/// Result Set Management (XEP-0059): paging through long lists.
pub const RSM: &str = "http://jabber.org/protocol/rsm";

/// Stream Limits Advertisement (XEP-0478): the stanza size a server accepts,
/// announced in its stream features.
pub const STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";

//! What the server says about itself: service discovery (XEP-0030) of the
//! server and of accounts, and its software version (XEP-0092).

use protocol::{Element, ns};

/// Server software name reported by XEP-0092. The OS is deliberately not
/// reported: version and OS details help an attacker pick an exploit.
const SOFTWARE_NAME: &str = "chat-core";

/// The server's features and identity (`disco#info` to the domain).
pub(crate) fn server_info() -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", "server")
            .attr("type", "im")
            .attr("name", SOFTWARE_NAME),
    );
    for f in [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        ns::PING,
        ns::VERSION,
        ns::REGISTER,
        ns::ROSTER,
        ns::SEARCH,
        ns::VCARD,
        ns::CARBONS,
        "msgoffline",
    ] {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
    }
    q
}

/// The services next to the server (`disco#items` to the domain): the
/// room service, and the upload service when there is one.
pub(crate) fn server_items(muc_domain: &str, upload: Option<&str>) -> Element {
    let mut q = Element::new("query", ns::DISCO_ITEMS).child(
        Element::new("item", ns::DISCO_ITEMS)
            .attr("jid", muc_domain)
            .attr("name", "Chat rooms"),
    );
    if let Some(u) = upload {
        q = q.child(
            Element::new("item", ns::DISCO_ITEMS)
                .attr("jid", u)
                .attr("name", "HTTP file upload"),
        );
    }
    q
}

/// The software version answer (XEP-0092).
pub(crate) fn version() -> Element {
    Element::new("query", ns::VERSION)
        .text_child("name", ns::VERSION, SOFTWARE_NAME)
        .text_child("version", ns::VERSION, env!("CARGO_PKG_VERSION"))
}

/// An account's identity (`disco#info` to a bare JID, answered by the
/// server on the account's behalf).
pub(crate) fn account_info(archive: bool) -> Element {
    let mut q = Element::new("query", ns::DISCO_INFO)
        .child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "account")
                .attr("type", "registered"),
        )
        // Every account is a PEP service (XEP-0163 section 4).
        .child(
            Element::new("identity", ns::DISCO_INFO)
                .attr("category", "pubsub")
                .attr("type", "pep"),
        );
    for f in [
        ns::PUBSUB,
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#retrieve-items",
        "http://jabber.org/protocol/pubsub#retract-items",
        "http://jabber.org/protocol/pubsub#delete-nodes",
        "http://jabber.org/protocol/pubsub#config-node",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#access-open",
        "http://jabber.org/protocol/pubsub#access-presence",
        "http://jabber.org/protocol/pubsub#persistent-items",
    ] {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
    }
    if archive {
        q = q
            .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::MAM))
            .child(Element::new("feature", ns::DISCO_INFO).attr("var", ns::SID));
    }
    q
}

//! What this client can do, as other entities ask it (XEP-0030
//! disco#info) and as its presence announces it (XEP-0115 entity
//! capabilities: a hash of the same list), and the PEP nicknames
//! (XEP-0172) that list makes the server send.

use base64::Engine as _;
use protocol::{Element, ns};
use sha1::{Digest, Sha1};

/// The capabilities node: who made this client.
pub(crate) const NODE: &str = "https://github.com/twin-chat/toolkit";

/// User nicknames (XEP-0172), published over PEP.
pub(crate) const NICK: &str = "http://jabber.org/protocol/nick";

/// The identity: a client on a computer.
const IDENTITY: (&str, &str, &str) = ("client", "pc", "twin-chat");

/// Every feature, sorted as XEP-0115 5.1 needs them. `NICK+notify` asks
/// the server for contacts' nickname updates (XEP-0163), and the OMEMO
/// device lists' `+notify` for their devices.
fn features() -> Vec<String> {
    let mut f: Vec<String> = [
        ns::DISCO_INFO,
        ns::PING,
        ns::RECEIPTS,
        ns::CHATSTATES,
        ns::CARBONS,
        ns::SI,
        ns::SI_FILE,
        ns::IBB,
        NICK,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    f.push(format!("{NICK}+notify"));
    // OMEMO device lists (both versions): a contact's new device reaches
    // us as it is published.
    for v in protocol::omemo::Version::ALL {
        f.push(format!("{}+notify", protocol::omemo::xml::devices_node(v)));
    }
    f.sort();
    f
}

/// The verification string's SHA-1, base64 (XEP-0115 5.1): identities
/// `category/type/lang/name<`, then each feature and `<`.
pub(crate) fn ver() -> String {
    let (category, kind, name) = IDENTITY;
    let mut s = format!("{category}/{kind}//{name}<");
    for f in features() {
        s.push_str(&f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

/// The `<c/>` for this client's presence.
pub(crate) fn element() -> Element {
    Element::new("c", ns::CAPS)
        .attr("hash", "sha-1")
        .attr("node", NODE)
        .attr("ver", ver())
}

/// The answer to disco#info, for `node` if the asker named one.
pub(crate) fn info(node: Option<&str>) -> Element {
    let (category, kind, name) = IDENTITY;
    let mut q = Element::new("query", ns::DISCO_INFO).child(
        Element::new("identity", ns::DISCO_INFO)
            .attr("category", category)
            .attr("type", kind)
            .attr("name", name),
    );
    if let Some(n) = node {
        q = q.attr("node", n);
    }
    for f in features() {
        q = q.child(Element::new("feature", ns::DISCO_INFO).attr("var", f));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 5.2's own example: the method gives its published hash.
    #[test]
    fn the_verification_string_hash_is_xep_0115s() {
        let s = "client/pc//Exodus 0.9.1<http://jabber.org/protocol/caps<http://jabber.org/protocol/disco#info<http://jabber.org/protocol/disco#items<http://jabber.org/protocol/muc<";
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes())),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
        assert_eq!(ver(), ver());
        let i = info(Some("n#v"));
        assert_eq!(i.get_attr("node"), Some("n#v"));
        assert!(
            i.elements()
                .any(|f| f.get_attr("var") == Some("http://jabber.org/protocol/nick+notify"))
        );
    }
}

//! Result Set Management (XEP-0059): paging through long lists.
//!
//! A list a server builds from what users created (rooms, accounts, search
//! hits) can be longer than any one stanza may be. XEP-0059 lets the
//! requester ask for a page (`<max/>`, `<after/>`) and lets the responder
//! return a limited page on its own, saying where it ended (`<last/>`) and
//! how many items there are in all (`<count/>`), so the requester can ask
//! for the next one. Items are identified by a key that sorts them (here:
//! the room or user name).

use crate::{Element, ns};

/// Most items one page carries, whatever the requester asks for.
///
/// A page is also cut short by bytes (see the server), so this bound is
/// mostly about work per request: 100 is what XEP-0059's examples page by
/// and what clients ask for.
pub const MAX_PAGE_ITEMS: usize = 100;

/// A paging request, from the `<set/>` in a query. An absent `<set/>` is
/// the first page with the responder's own size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Items wanted, at most [`MAX_PAGE_ITEMS`].
    pub max: usize,
    /// Start after the item with this key.
    pub after: Option<String>,
}

impl Request {
    /// The request carried by `query` (its `<set/>` child, if any).
    pub fn from_query(query: &Element) -> Request {
        let set = query.get_child("set", ns::RSM);
        let max = set
            .and_then(|s| s.child_text("max", ns::RSM))
            .and_then(|m| m.trim().parse::<usize>().ok())
            .map_or(MAX_PAGE_ITEMS, |m| m.min(MAX_PAGE_ITEMS));
        let after = set
            .and_then(|s| s.child_text("after", ns::RSM))
            .filter(|a| !a.is_empty());
        Request { max, after }
    }
}

/// The `<set/>` describing a page: its first and last keys (with the index
/// of the first item in the whole list) and the total count.
pub fn reply_set(first: Option<(&str, usize)>, last: Option<&str>, count: usize) -> Element {
    let mut set = Element::new("set", ns::RSM);
    if let Some((key, index)) = first {
        set = set.child(
            Element::new("first", ns::RSM)
                .attr("index", index.to_string())
                .text(key),
        );
    }
    if let Some(key) = last {
        set = set.text_child("last", ns::RSM, key);
    }
    set.text_child("count", ns::RSM, count.to_string())
}

/// The keys of a reply's `<set/>`: (last key, total count).
pub fn parse_reply(query: &Element) -> (Option<String>, Option<usize>) {
    let set = query.get_child("set", ns::RSM);
    (
        set.and_then(|s| s.child_text("last", ns::RSM)),
        set.and_then(|s| s.child_text("count", ns::RSM))
            .and_then(|c| c.trim().parse().ok()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_capped_and_default_to_a_full_page() {
        let q = Element::new("query", ns::DISCO_ITEMS);
        assert_eq!(
            Request::from_query(&q),
            Request {
                max: MAX_PAGE_ITEMS,
                after: None
            }
        );
        let q = Element::new("query", ns::DISCO_ITEMS).child(
            Element::new("set", ns::RSM)
                .text_child("max", ns::RSM, "100000")
                .text_child("after", ns::RSM, "room7"),
        );
        let r = Request::from_query(&q);
        assert_eq!((r.max, r.after.as_deref()), (MAX_PAGE_ITEMS, Some("room7")));
    }

    #[test]
    fn a_reply_set_round_trips() {
        let set = reply_set(Some(("a", 0)), Some("c"), 12);
        assert_eq!(
            set.to_xml(),
            "<set xmlns='http://jabber.org/protocol/rsm'><first index='0'>a</first><last>c</last><count>12</count></set>"
        );
        let q = Element::new("query", ns::DISCO_ITEMS).child(set);
        assert_eq!(parse_reply(&q), (Some("c".into()), Some(12)));
    }
}

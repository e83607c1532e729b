//! A small XML element tree with resolved namespaces, and its serializer.
//!
//! Elements come out of [`crate::parser`] already checked against the limits,
//! so code that walks a tree may recurse: depth is bounded by
//! [`crate::limits::MAX_DEPTH`]. The serializer escapes every text and attribute
//! value, which is what stops a chat message containing `</message><iq ...>`
//! from being injected as a stanza of its own (XML injection).

use std::fmt::Write as _;

pub use compact_str::CompactString;

/// A child of an element: another element or a run of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, with entities already resolved.
    Text(String),
}

/// An XML element whose namespace has been resolved from prefixes and defaults.
///
/// Names, namespaces and attributes are [`CompactString`]s: the short ones
/// (`message`, `jabber:client`, a JID, an id) live inside the element, and the
/// long namespace URIs the kit knows point at their constant in [`crate::ns`]
/// (see [`crate::ns::interned`]). Parsing a stanza then allocates for its
/// lists and text, not for every name: a third of a busy sniffer's time went to
/// those small allocations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name, without prefix (`message`, `features`).
    pub name: CompactString,
    /// Namespace URI the element belongs to.
    pub ns: CompactString,
    /// Attributes other than namespace declarations, in document order.
    /// Names keep their prefix (`xml:lang`).
    pub attrs: Vec<(CompactString, CompactString)>,
    /// Child elements and text, in document order.
    pub children: Vec<Node>,
}

impl Element {
    /// A new element with no attributes or children.
    pub fn new(name: impl Into<CompactString>, ns: impl AsRef<str>) -> Self {
        Element {
            name: name.into(),
            ns: crate::ns::interned(ns.as_ref()),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder: sets an attribute (replacing an earlier value) and returns self.
    pub fn attr(mut self, name: &str, value: impl Into<CompactString>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder: sets an attribute when `value` is `Some`.
    pub fn attr_opt(mut self, name: &str, value: Option<impl Into<CompactString>>) -> Self {
        if let Some(v) = value {
            self.set_attr(name, v);
        }
        self
    }

    /// Builder: appends a child element.
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends text.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Builder: appends `<name xmlns=ns>text</name>`, the common "text child" shape.
    pub fn text_child(self, name: &str, ns: &str, text: impl Into<String>) -> Self {
        let c = Element::new(name, ns).text(text);
        self.child(c)
    }

    /// Value of an attribute, by its (possibly prefixed) name.
    pub fn get_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets an attribute, replacing an earlier value of the same name.
    pub fn set_attr(&mut self, name: &str, value: impl Into<CompactString>) {
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.attrs.push((name.into(), value)),
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(n, _)| n == name)?;
        Some(self.attrs.remove(i).1.into())
    }

    /// Moves an attribute's value out, leaving it empty: cheaper than
    /// [`Element::remove_attr`] for a reader that is done with the element.
    pub fn take_attr(&mut self, name: &str) -> Option<String> {
        let (_, v) = self.attrs.iter_mut().find(|(n, _)| n == name)?;
        Some(std::mem::take(v).into())
    }

    /// True when the element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Child elements, in order.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// First child element with this name and namespace.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.elements().find(|e| e.is(name, ns))
    }

    /// Mutable first child element with this name and namespace.
    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.is(name, ns) => Some(e),
            _ => None,
        })
    }

    /// True when a child element with this name and namespace exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// Concatenated direct text children.
    pub fn text_content(&self) -> String {
        let mut s = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                s.push_str(t);
            }
        }
        s
    }

    /// Text of the first child element with this name and namespace.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.get_child(name, ns).map(Element::text_content)
    }

    /// Like [`Element::child_text`], but moves the text out instead of
    /// copying it when it is a single run (the usual case): for readers that
    /// are done with the element, such as the sniffer on a busy capture.
    pub fn take_child_text(&mut self, name: &str, ns: &str) -> Option<String> {
        let child = self.get_child_mut(name, ns)?;
        match child.children.as_mut_slice() {
            [Node::Text(t)] => Some(std::mem::take(t)),
            _ => Some(child.text_content()),
        }
    }

    /// Serializes the element as it appears inside a stream whose default
    /// namespace is `parent_ns` (`jabber:client` for stanzas): an `xmlns` is
    /// written only where the namespace changes, and elements of the stream
    /// namespace get the `stream:` prefix the stream header declared.
    pub fn to_xml_in(&self, parent_ns: &str) -> String {
        let mut out = String::with_capacity(128);
        self.write_xml(&mut out, parent_ns);
        out
    }

    /// Serializes as a top-level element of a `jabber:client` stream.
    pub fn to_xml(&self) -> String {
        self.to_xml_in(crate::ns::CLIENT)
    }

    fn write_xml(&self, out: &mut String, parent_ns: &str) {
        let stream_prefixed = self.ns == crate::ns::STREAM;
        out.push('<');
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        if !stream_prefixed && self.ns != parent_ns {
            out.push_str(" xmlns='");
            escape_into(out, &self.ns);
            out.push('\'');
        }
        for (k, v) in &self.attrs {
            let _ = write!(out, " {k}='");
            escape_into(out, v);
            out.push('\'');
        }
        if self.children.is_empty() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        // Children of a stream-namespace element (features, error) inherit the
        // stream's default namespace, not the stream namespace itself.
        let inherited = if stream_prefixed { parent_ns } else { &self.ns };
        for n in &self.children {
            match n {
                Node::Element(e) => e.write_xml(out, inherited),
                Node::Text(t) => escape_text_into(out, t),
            }
        }
        out.push_str("</");
        if stream_prefixed {
            out.push_str("stream:");
        }
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escapes text for use in XML character data or a single- or double-quoted
/// attribute value. All five predefined entities are escaped, so the output is
/// safe in every context; control characters that XML 1.0 cannot carry at all
/// are dropped rather than emitted as a document the peer must reject.
pub fn escape_into(out: &mut String, s: &str) {
    escape_chars(out, s, true);
}

/// Escapes character data (text between tags): only `&`, `<` and `>` need
/// it there. Quotes are written as they are: escaping them too made a body
/// of 11 KB of `"` six times larger once the server relayed it (66 KB of
/// `&quot;`), past the recipient's stanza limit. Characters XML cannot carry
/// are dropped as in [`escape_into`].
pub fn escape_text_into(out: &mut String, s: &str) {
    escape_chars(out, s, false);
}

fn escape_chars(out: &mut String, s: &str, quotes: bool) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' if quotes => out.push_str("&apos;"),
            '"' if quotes => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            '\u{FFFE}' | '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// Escapes `s` into a new string; see [`escape_into`].
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns;

    #[test]
    fn serializes_with_namespaces_only_where_they_change() {
        let e = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "a1")
            .child(Element::new("query", ns::ROSTER));
        assert_eq!(
            e.to_xml(),
            "<iq type='get' id='a1'><query xmlns='jabber:iq:roster'/></iq>"
        );
    }

    #[test]
    fn escapes_text_and_attributes_against_injection() {
        let e = Element::new("message", ns::CLIENT)
            .attr("to", "a'b\"c")
            .text_child("body", ns::CLIENT, "</body></message><iq type='set'>&");
        assert_eq!(
            e.to_xml(),
            "<message to='a&apos;b&quot;c'><body>&lt;/body&gt;&lt;/message&gt;&lt;iq type='set'&gt;&amp;</body></message>"
        );
        // Quotes in text stay one byte each: a relayed body does not grow.
        let quotes = "\"'".repeat(1000);
        let e = Element::new("body", ns::CLIENT).text(quotes.clone());
        assert_eq!(e.to_xml(), format!("<body>{quotes}</body>"));
    }

    #[test]
    fn stream_namespace_elements_get_the_stream_prefix() {
        let f = Element::new("features", ns::STREAM).child(Element::new("bind", ns::BIND));
        assert_eq!(
            f.to_xml(),
            "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
    }

    #[test]
    fn drops_characters_xml_cannot_carry() {
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "abc\td");
    }

    #[test]
    fn attribute_helpers() {
        let mut e = Element::new("x", "y").attr("a", "1").attr("a", "2");
        assert_eq!(e.get_attr("a"), Some("2"));
        assert_eq!(e.attrs.len(), 1);
        assert_eq!(e.remove_attr("a").as_deref(), Some("2"));
        assert_eq!(e.get_attr("a"), None);
    }
}

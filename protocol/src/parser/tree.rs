//! The steps both element builders share (the quick-xml reader's in
//! `simple.rs`, the tag builder's in `fast.rs`): XML name rules, namespace
//! scopes, a start tag turned into an [`Element`] with its attributes checked
//! and its namespace resolved, and text or a finished child attached to the
//! element that is open around it.
//!
//! Keeping these in one place is what makes the two builders agree on the
//! hard parts (repeated attributes, unbound prefixes, entities in values).

use quick_xml::XmlVersion;
use quick_xml::events::BytesStart;

use super::error::ParseError;
use crate::element::{CompactString, Element, Node};
use crate::ns;

/// A byte that may start an XML name (ASCII letters, `_`, `:`, and any
/// byte of a multi-byte UTF-8 character).
pub(super) fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// The length of the qualified name at the start of a tag's content.
pub(super) fn name_len(tag: &str) -> usize {
    tag.find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .unwrap_or(tag.len())
}

/// `prefix:local` into its prefix (if any) and local name.
pub(super) fn split_qname(q: &str) -> (Option<&str>, &str) {
    // A plain byte search: names are a few bytes long, too short for the
    // general substring search `split_once` sets up.
    match q.bytes().position(|b| b == b':') {
        Some(i) => (Some(&q[..i]), &q[i + 1..]),
        None => (None, q),
    }
}

/// The namespace bound to `prefix`, the innermost binding first.
pub(super) fn lookup<'a>(
    scope: &'a [(CompactString, CompactString)],
    prefix: &str,
) -> Option<&'a CompactString> {
    scope
        .iter()
        .rev()
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u)
}

/// Namespace bindings while building one element: the stream's (borrowed,
/// not copied for every stanza) under those the element itself declares.
pub(super) struct Scope<'a> {
    pub(super) stream: &'a [(CompactString, CompactString)],
    pub(super) local: Vec<(CompactString, CompactString)>,
}

impl Scope<'_> {
    fn lookup(&self, prefix: &str) -> Option<&CompactString> {
        lookup(&self.local, prefix).or_else(|| lookup(self.stream, prefix))
    }
}

/// quick-xml's description of a failure, at the element's offset.
pub(super) fn xml_error(offset: u64, e: impl std::fmt::Display) -> ParseError {
    ParseError::Xml {
        offset,
        message: e.to_string(),
    }
}

/// Appends character data to the open element, merging it with the text
/// before it (quick-xml reports text and entities as separate events).
pub(super) fn push_text(stack: &mut [OpenElement], text: &str) {
    // Text outside the root cannot occur: the scanner cut the element exactly.
    if let Some(open) = stack.last_mut() {
        let el = &mut open.el;
        if let Some(Node::Text(prev)) = el.children.last_mut() {
            prev.push_str(text);
        } else if !text.is_empty() {
            el.children.push(Node::Text(text.to_string()));
        }
    }
}

/// Adds a finished element to the one open around it; returns it when it is
/// the stanza itself (nothing open around it), which ends the build.
pub(super) fn attach(stack: &mut [OpenElement], el: Element) -> Option<Element> {
    match stack.last_mut() {
        Some(parent) => {
            parent.el.children.push(Node::Element(el));
            None
        }
        None => Some(el),
    }
}

/// An element being built: the element, the length of the namespace scope
/// before its own declarations, and where its qualified name is in the
/// stanza's text (to match its end tag against).
#[derive(Debug)]
pub(super) struct OpenElement {
    pub(super) el: Element,
    pub(super) mark: usize,
    pub(super) qname: std::ops::Range<usize>,
}

/// Turns a start tag into an element: namespace declarations go to `scope`,
/// attributes are checked for repeats and unbound prefixes, and the
/// element's own prefix is resolved.
pub(super) fn open_element(
    start: &BytesStart<'_>,
    scope: &mut Scope<'_>,
    offset: u64,
) -> Result<Element, ParseError> {
    let mark = scope.local.len();
    let mut attrs: Vec<(CompactString, CompactString)> = Vec::new();
    for a in checked_attributes(start) {
        let a = a.map_err(|e| xml_error(offset, e))?;
        let key = a.key.as_ref();
        let value = attr_value(&a, offset)?;
        if key == "xmlns" {
            scope
                .local
                .push((CompactString::default(), ns::interned(&value)));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            scope.local.push((p.into(), ns::interned(&value)));
        } else {
            attrs.push((key.into(), value));
        }
    }
    // Namespace declarations and plain attributes were split above, so a
    // repeated name can only repeat within one of the two lists.
    if has_duplicate(attrs.iter().map(|(k, _)| k.as_str()))
        || has_duplicate(scope.local[mark..].iter().map(|(p, _)| p.as_str()))
    {
        return Err(ParseError::Syntax {
            offset,
            what: "an attribute is repeated",
        });
    }
    let qname = start.name();
    let (prefix, local) = split_qname(qname.as_ref());
    let ns = match scope.lookup(prefix.unwrap_or("")) {
        Some(u) => u.clone(),
        None => {
            return Err(ParseError::UnboundPrefix {
                prefix: prefix.unwrap_or("").to_string(),
            });
        }
    };
    for (k, _) in &attrs {
        if let (Some(p), _) = split_qname(k)
            && scope.lookup(p).is_none()
        {
            return Err(ParseError::UnboundPrefix {
                prefix: p.to_string(),
            });
        }
    }
    Ok(Element {
        name: local.into(),
        ns,
        attrs,
        children: Vec::new(),
    })
}

/// The attributes of a start tag, without quick-xml's own duplicate check:
/// that check keeps a list of positions per tag, and [`has_duplicate`] over
/// the handful of names a stanza carries does the same without allocating.
/// (Repeated attributes are still refused: see the callers.)
pub(super) fn checked_attributes<'a>(
    start: &'a BytesStart<'_>,
) -> quick_xml::events::attributes::Attributes<'a> {
    let mut attrs = start.attributes();
    attrs.with_checks(false);
    attrs
}

/// True when a name occurs twice. Quadratic, but bounded by
/// [`Limits::max_attributes`](crate::limits::Limits::max_attributes), which
/// the scanner enforced before we got here.
pub(super) fn has_duplicate<'a>(names: impl Iterator<Item = &'a str> + Clone) -> bool {
    names
        .clone()
        .enumerate()
        .any(|(i, a)| names.clone().skip(i + 1).any(|b| a == b))
}

/// An attribute's value with entities resolved and white space normalised
/// (XML 1.0 section 3.3.3). Most values (JIDs, ids, types) contain neither
/// `&` nor a tab or line break, and are then taken as they are.
pub(super) fn attr_value(
    a: &quick_xml::events::attributes::Attribute<'_>,
    offset: u64,
) -> Result<CompactString, ParseError> {
    if !a
        .value
        .bytes()
        .any(|b| matches!(b, b'&' | b'\t' | b'\n' | b'\r'))
    {
        return Ok(CompactString::new(&a.value));
    }
    a.normalized_value(XmlVersion::Implicit1_0)
        .map(CompactString::from)
        .map_err(|e| xml_error(offset, e))
}

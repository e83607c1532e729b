//! **An optimisation for readers that look at a few parts of each stanza**
//! (the sniffer). Nothing here is needed to parse XMPP correctly.
//!
//! Building an [`Element`] tree costs an allocation for every element,
//! attribute list and run of text, and quick-xml's attribute parser for
//! every start tag, even for the children nobody reads: a disco result of
//! forty `<feature/>`s is forty elements. On a capture of real clients that
//! was most of the sniffer's time. [`StreamParser::next_ref`] hands out an
//! [`ElementRef`] instead: a view of the stanza's own bytes and of the tags
//! [`whole_element`](super::fast::whole_element) found in it, which answers
//! name, namespace, attribute, child and text questions when asked, and
//! allocates only for text with entities in it.
//!
//! As with the fast path, being conservative is what keeps it right. [`skim`]
//! checks every tag and run of text of the stanza before the view is made
//! (end tags match, attributes are well formed and not repeated, entities
//! are known), and accepts only what it is certain the tree builder accepts
//! *and reads the same way*. Everything else, including every unusual
//! stanza (a namespace prefix, a character reference, a carriage return,
//! CDATA), is built as a tree by the usual builders and handed out as
//! [`ElementRef::Tree`]: same answers, same errors, same offsets.
//!
//! Checked by `skim::tests::*` (the view of each fixture stanza, turned
//! back into a tree with [`ElementRef::to_element`], is the tree the
//! builders make; `next_ref` and `next_event` give the same events whole or
//! one byte at a time) and by the `element_builders` fuzz target
//! (`scripts/fuzz.sh element_builders`), which compares the view with both
//! builders on any stanza. Change this file only with them running.
//!
//! [`StreamParser::next_ref`]: super::StreamParser::next_ref

use std::borrow::Cow;

use super::fast::{Tag, TagKind};
use crate::element::{Element, Node};
use crate::stream::StreamHeader;

/// No tag: the parent of the root, or the owner of text after it.
const NONE: usize = usize::MAX;

/// Most attributes on one tag the skim checks for repeats; a tag with more
/// is left to the tree builder.
const MAX_SKIM_ATTRIBUTES: usize = 16;

/// What [`skim`] learnt about one tag of a stanza. Positions are byte
/// indexes into the stanza's text.
#[derive(Debug, Clone, Copy)]
pub(super) struct SkimTag {
    /// The `<`.
    at: usize,
    /// Just after the `>`.
    end: usize,
    /// Start and empty tags: the end of the name (it starts at `at + 1`).
    name_end: usize,
    /// Start and empty tags: where the attributes end (the `/>` or `>`).
    attrs_end: usize,
    kind: TagKind,
    /// Start and empty tags: the element's namespace, a range of the text
    /// (from its own or an ancestor's `xmlns`), or `None` for the stream's.
    ns: Option<(usize, usize)>,
    /// The start tag of the element around this tag, or [`NONE`].
    parent: usize,
    /// Start tags: the index of their end tag; empty tags: their own.
    close: usize,
    /// The element whose text follows this tag, or [`NONE`] after the root.
    owner: usize,
}

/// Checks a whole stanza (`text`, whose tags `whole_element` found in the
/// buffer at `base`) and records its tags in `out`. `None` when anything is
/// unusual: the caller then builds a tree, which reports any error.
/// Otherwise whether the stanza has entities to resolve anywhere.
pub(super) fn skim(text: &str, tags: &[Tag], base: usize, out: &mut Vec<SkimTag>) -> Option<bool> {
    out.clear();
    let bytes = text.as_bytes();
    // Two questions for the whole stanza at once, not per run of text: a
    // carriage return would be normalised (a line end in text, a space in
    // a value), and every `&` must start one of the five predefined
    // entities. Entities are then resolved only where they are read.
    let entities = memchr::memchr(b'&', bytes).is_some();
    if memchr::memchr(b'\r', bytes).is_some() || entities && !entities_ok(bytes) {
        return None;
    }
    let spaced = memchr::memchr2(b'\t', b'\n', bytes).is_some();
    let mut open = NONE;
    for (k, t) in tags.iter().enumerate() {
        let (at, end) = (t.at - base, t.end - base);
        match t.kind {
            TagKind::Start | TagKind::Empty => {
                let empty = t.kind == TagKind::Empty;
                let inner_end = if empty { end - 2 } else { end - 1 };
                // The name, as `name_len` reads it; a prefix is the tree's.
                let mut name_end = at + 1;
                while name_end < inner_end && !is_space(bytes[name_end]) {
                    if bytes[name_end] == b':' {
                        return None;
                    }
                    name_end += 1;
                }
                let xmlns = attrs_ok(&bytes[name_end..inner_end], spaced)?;
                let ns = match xmlns {
                    Some((a, b)) => Some((name_end + a, name_end + b)),
                    None if open == NONE => None,
                    None => out[open].ns,
                };
                out.push(SkimTag {
                    at,
                    end,
                    name_end,
                    attrs_end: inner_end,
                    kind: t.kind,
                    ns,
                    parent: open,
                    close: if empty { k } else { NONE },
                    owner: if empty { open } else { k },
                });
                if !empty {
                    open = k;
                }
            }
            TagKind::End => {
                if open == NONE {
                    return None;
                }
                let o = out[open];
                let mut name_end = end - 1;
                while is_space(bytes[name_end - 1]) {
                    name_end -= 1;
                }
                if bytes[at + 2..name_end] != bytes[o.at + 1..o.name_end] {
                    return None;
                }
                out[open].close = k;
                out.push(SkimTag {
                    at,
                    end,
                    name_end: at,
                    attrs_end: at,
                    kind: TagKind::End,
                    ns: None,
                    parent: open,
                    close: open,
                    owner: o.parent,
                });
                open = o.parent;
            }
        }
    }
    // The root closed with the last tag, at the end of the text.
    let whole = open == NONE
        && !out.is_empty()
        && out[0].close == out.len() - 1
        && out[out.len() - 1].end == text.len();
    whole.then_some(entities)
}

/// White space between attributes, as XML and quick-xml read it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Every `&` starts one of the five predefined entities.
fn entities_ok(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(j) = memchr::memchr(b'&', &b[i..]) {
        let rest = &b[i + j + 1..];
        let Some(n) = ENTITIES
            .iter()
            .find(|(e, _)| rest.starts_with(e.as_bytes()))
        else {
            return false;
        };
        i += j + 1 + n.0.len();
    }
    true
}

/// The predefined entities, with their `;`, and what they stand for.
const ENTITIES: [(&str, &str); 5] = [
    ("amp;", "&"),
    ("lt;", "<"),
    ("gt;", ">"),
    ("quot;", "\""),
    ("apos;", "'"),
];

/// Text or an attribute value with its (checked) entities resolved.
fn unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(j) = rest.find('&') {
        out.push_str(&rest[..j]);
        rest = &rest[j + 1..];
        match ENTITIES.iter().find(|(e, _)| rest.starts_with(e)) {
            Some((e, v)) => {
                out.push_str(v);
                rest = &rest[e.len()..];
            }
            // Not reached for checked text; kept as written otherwise.
            None => out.push('&'),
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One attribute of a start tag, by position.
struct Attr {
    name: (usize, usize),
    value: (usize, usize),
    /// The name has a `:`.
    prefixed: bool,
}

/// The next attribute in `s` (a start tag after its name) from `i`:
/// `Some(None)` at the end, `None` at the first thing that is not
/// `S name S? = S? quoted-value` with an ASCII name.
fn next_attr(s: &[u8], i: &mut usize) -> Option<Option<Attr>> {
    let spaced = *i;
    while *i < s.len() && is_space(s[*i]) {
        *i += 1;
    }
    if *i == s.len() {
        return Some(None);
    }
    if *i == spaced || !(s[*i].is_ascii_alphabetic() || s[*i] == b'_') {
        return None;
    }
    let n0 = *i;
    let mut prefixed = false;
    while *i < s.len() {
        match s[*i] {
            b':' => prefixed = true,
            c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-') => {}
            _ => break,
        }
        *i += 1;
    }
    let name = (n0, *i);
    while *i < s.len() && is_space(s[*i]) {
        *i += 1;
    }
    if s.get(*i) != Some(&b'=') {
        return None;
    }
    *i += 1;
    while *i < s.len() && is_space(s[*i]) {
        *i += 1;
    }
    let q = *s.get(*i)?;
    if q != b'"' && q != b'\'' {
        return None;
    }
    let v0 = *i + 1;
    let v1 = v0 + memchr::memchr(q, &s[v0..])?;
    *i = v1 + 1;
    Some(Some(Attr {
        name,
        value: (v0, v1),
        prefixed,
    }))
}

/// Checks a start tag's attributes (`s` follows the name). `None` when the
/// tree builder must judge them; otherwise the `xmlns` value's range, if any.
/// `spaced`: the stanza has a tab or line feed somewhere, so values are
/// looked at for them (a tree would turn them into spaces).
fn attrs_ok(s: &[u8], spaced: bool) -> Option<Option<(usize, usize)>> {
    let mut names = [(0usize, 0usize); MAX_SKIM_ATTRIBUTES];
    let mut n = 0;
    let mut xmlns = None;
    let mut i = 0;
    while let Some(a) = next_attr(s, &mut i)? {
        let name = &s[a.name.0..a.name.1];
        let value = &s[a.value.0..a.value.1];
        // Only the prefix every document has, once; values as written.
        let foreign = |n: &[u8]| {
            n.strip_prefix(b"xml:")
                .is_none_or(|rest| rest.contains(&b':'))
        };
        if a.prefixed && foreign(name) || spaced && memchr::memchr2(b'\t', b'\n', value).is_some() {
            return None;
        }
        if name == b"xmlns" {
            if value.contains(&b'&') {
                return None;
            }
            xmlns = Some(a.value);
        }
        if n == MAX_SKIM_ATTRIBUTES || names[..n].iter().any(|&(x, y)| &s[x..y] == name) {
            return None;
        }
        names[n] = a.name;
        n += 1;
    }
    Some(xmlns)
}

/// A stanza's element, as a view of its bytes: see the module header.
#[derive(Debug, Clone, Copy)]
pub struct Skimmed<'a> {
    text: &'a str,
    tags: &'a [SkimTag],
    /// The stream's default namespace.
    stream_ns: &'a str,
    /// The stanza has an entity somewhere (else nothing is unescaped).
    entities: bool,
    /// This element's start (or empty) tag.
    i: usize,
}

/// An element handed out by [`StreamParser::next_ref`](super::StreamParser::next_ref):
/// a view of the stanza's bytes, or a tree when the stanza was unusual.
/// Both answer alike; see the module header.
#[derive(Debug, Clone, Copy)]
pub enum ElementRef<'a> {
    /// Built as a tree.
    Tree(&'a Element),
    /// Read from the bytes.
    Skim(Skimmed<'a>),
}

/// What [`StreamParser::next_ref`](super::StreamParser::next_ref) found.
#[derive(Debug)]
pub enum EventRef<'a> {
    /// A stream header.
    StreamOpen(StreamHeader),
    /// A complete top-level element.
    Element(ElementRef<'a>),
    /// The stream's close.
    StreamClose,
}

impl<'a> Skimmed<'a> {
    /// The view of the root of a stanza [`skim`] accepted.
    pub(super) fn root(
        text: &'a str,
        tags: &'a [SkimTag],
        stream_ns: &'a str,
        entities: bool,
    ) -> Self {
        Skimmed {
            text,
            tags,
            stream_ns,
            entities,
            i: 0,
        }
    }

    /// `s` (text or a value of this stanza) with entities resolved.
    fn unescape(&self, s: &'a str) -> Cow<'a, str> {
        if self.entities {
            unescape(s)
        } else {
            Cow::Borrowed(s)
        }
    }

    fn tag(&self) -> &'a SkimTag {
        &self.tags[self.i]
    }

    fn at(&self, i: usize) -> Self {
        Skimmed { i, ..*self }
    }

    /// The raw (name, value) pairs, `xmlns` included.
    fn raw_attrs(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let t = self.tag();
        let s = &self.text[t.name_end..t.attrs_end];
        let mut i = 0;
        std::iter::from_fn(move || {
            // Boundaries are ASCII bytes, so the slices are whole characters.
            let a = next_attr(s.as_bytes(), &mut i)??;
            Some((&s[a.name.0..a.name.1], &s[a.value.0..a.value.1]))
        })
    }

    /// The text runs directly inside this element, in order.
    fn texts(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let (tags, text, me) = (self.tags, self.text, self.i);
        let close = tags[me].close;
        (me..close)
            .filter(move |&j| tags[j].owner == me && tags[j + 1].at > tags[j].end)
            .map(move |j| &text[tags[j].end..tags[j + 1].at])
    }
}

/// The child elements of an [`ElementRef`].
pub struct Children<'a>(ChildrenOf<'a>);

enum ChildrenOf<'a> {
    Tree(std::slice::Iter<'a, Node>),
    Skim { of: Skimmed<'a>, next: usize },
}

impl<'a> Iterator for Children<'a> {
    type Item = ElementRef<'a>;

    fn next(&mut self) -> Option<ElementRef<'a>> {
        match &mut self.0 {
            ChildrenOf::Tree(it) => it.find_map(|n| match n {
                Node::Element(e) => Some(ElementRef::Tree(e)),
                Node::Text(_) => None,
            }),
            ChildrenOf::Skim { of, next } => {
                let j = *next;
                let t = of.tags.get(j)?;
                if t.kind == TagKind::End {
                    // The element's own end tag (children are skipped whole).
                    return None;
                }
                *next = t.close + 1;
                Some(ElementRef::Skim(of.at(j)))
            }
        }
    }
}

impl<'a> ElementRef<'a> {
    /// The local name.
    pub fn name(&self) -> &'a str {
        match self {
            ElementRef::Tree(e) => &e.name,
            ElementRef::Skim(s) => &s.text[s.tag().at + 1..s.tag().name_end],
        }
    }

    /// The namespace.
    pub fn ns(&self) -> &'a str {
        match self {
            ElementRef::Tree(e) => &e.ns,
            ElementRef::Skim(s) => s.tag().ns.map_or(s.stream_ns, |(a, b)| &s.text[a..b]),
        }
    }

    /// True when the element has this local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name() == name && self.ns() == ns
    }

    /// An attribute's value, entities resolved (`xmlns` is not one).
    pub fn attr(&self, name: &str) -> Option<Cow<'a, str>> {
        match self {
            ElementRef::Tree(e) => e.get_attr(name).map(Cow::Borrowed),
            ElementRef::Skim(s) => {
                if name == "xmlns" {
                    return None;
                }
                s.raw_attrs()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| s.unescape(v))
            }
        }
    }

    /// The child elements, in order.
    pub fn elements(&self) -> Children<'a> {
        Children(match self {
            ElementRef::Tree(e) => ChildrenOf::Tree(e.children.iter()),
            ElementRef::Skim(s) => ChildrenOf::Skim {
                of: *s,
                // An empty tag has no children: start at its own index,
                // which `next` reads as the end.
                next: if s.tag().kind == TagKind::Empty {
                    s.tags.len()
                } else {
                    s.i + 1
                },
            },
        })
    }

    /// The first child with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<ElementRef<'a>> {
        self.elements().find(|c| c.is(name, ns))
    }

    /// True when a child has this name and namespace.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.child(name, ns).is_some()
    }

    /// The text directly inside the element, concatenated: borrowed when it
    /// is one run without entities (the usual case).
    pub fn text(&self) -> Cow<'a, str> {
        match self {
            ElementRef::Tree(e) => match e.children.as_slice() {
                [] => Cow::Borrowed(""),
                [Node::Text(t)] => Cow::Borrowed(t),
                _ => Cow::Owned(e.text_content()),
            },
            ElementRef::Skim(s) => {
                let mut runs = s.texts();
                let Some(first) = runs.next() else {
                    return Cow::Borrowed("");
                };
                let mut text = s.unescape(first);
                for r in runs {
                    text.to_mut().push_str(&s.unescape(r));
                }
                text
            }
        }
    }

    /// The text of the first child with this name and namespace.
    pub fn child_text(&self, name: &str, ns: &str) -> Option<Cow<'a, str>> {
        self.child(name, ns).map(|c| c.text())
    }

    /// The element as a tree, as the parser's builders would have made it.
    pub fn to_element(&self) -> Element {
        match self {
            ElementRef::Tree(e) => (*e).clone(),
            ElementRef::Skim(s) => {
                let mut el = Element::new(self.name(), self.ns());
                for (n, v) in s.raw_attrs().filter(|(n, _)| *n != "xmlns") {
                    el.attrs.push((n.into(), s.unescape(v).as_ref().into()));
                }
                let close = s.tag().close;
                if close == s.i {
                    return el;
                }
                // Text after the start tag, then each child followed by the
                // text after it, up to the end tag.
                let mut j = s.i;
                loop {
                    let (t, next) = (&s.tags[j], &s.tags[j + 1]);
                    if t.owner == s.i && next.at > t.end {
                        let run = s.unescape(&s.text[t.end..next.at]);
                        el.children.push(Node::Text(run.into_owned()));
                    }
                    if j + 1 == close {
                        break;
                    }
                    el.children
                        .push(Node::Element(ElementRef::Skim(s.at(j + 1)).to_element()));
                    j = next.close;
                }
                el
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{HEADER, fixture};
    use super::super::{Event, Mode, ParseError, StreamParser};
    use super::{ElementRef, EventRef};

    /// Every event or error, read with `next_event`, or with `next_ref`
    /// and each view turned into a tree; `chunk` bytes fed at a time.
    fn run(input: &[u8], mode: Mode, chunk: usize, by_ref: bool) -> Vec<Result<Event, ParseError>> {
        let mut p = StreamParser::new(mode);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            p.feed(piece);
            for _ in 0..10_000 {
                let r = if by_ref {
                    p.next_ref().map(|o| {
                        o.map(|e| match e {
                            EventRef::StreamOpen(h) => Event::StreamOpen(h),
                            EventRef::StreamClose => Event::StreamClose,
                            EventRef::Element(el) => Event::Element(el.to_element()),
                        })
                    })
                } else {
                    p.next_event().map(|o| o.map(|p| p.event))
                };
                match r {
                    Ok(None) => break,
                    Ok(Some(ev)) => out.push(Ok(ev)),
                    Err(e) => {
                        let again = out.last().is_some_and(|l| l.as_ref().err() == Some(&e));
                        out.push(Err(e));
                        if again {
                            break;
                        }
                    }
                }
            }
        }
        out
    }

    /// Stanzas the view takes, and every kind it leaves to the tree.
    fn stanzas() -> Vec<&'static str> {
        vec![
            "<message from='a@x/r' to='b@x' type='chat' id='1'><body>hi</body></message>",
            "<message to='b@x'><body>a &amp; b &lt;c&gt; &quot;d&apos;</body><delay xmlns='urn:xmpp:delay' stamp='2026-01-01T00:00:00Z'/></message>",
            "<message to=\"q&amp;a\" xml:lang='en'><body>one<b/>two<c>x</c>three</body></message>",
            "<presence><show>away</show><status>out</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/></presence>",
            "<iq type='result' id='d'><query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc'/><feature var='a'/><feature var='b'/></query></iq>",
            "<iq type='set'><query xmlns='jabber:iq:register'><username>u</username><password>p&amp;w</password></query></iq>",
            "<presence/>",
            "<presence />",
            "<a xmlns=''><b/></a>",
            "<a  b = 'c' ></a >",
            // Left to the tree:
            "<message><body>line\r\nend</body></message>",
            "<message><body>&#65;&#x42;</body></message>",
            "<message><body><![CDATA[<x>]]></body></message>",
            "<message a='x\ty'/>",
            "<message a='&#65;'/>",
            "<message xmlns:p='urn:p'><p:x/></message>",
            "<p:x xmlns:p='urn:p'/>",
            "<message a='1' b='2' c='3' d='4' e='5' f='6' g='7' h='8' i='9' j='10' k='11' l='12' m='13' n='14' o='15' p='16' q='17'/>",
            "<message xmlns='&amp;'/>",
            // Errors, which the tree reports:
            "<message p:a='1'/>",
            "<message a='1' a='2'/>",
            "<message><body>x</bod></message>",
            "<message><body>&nbsp;</body></message>",
            "<message a='&bogus;'/>",
            "<message b/>",
            "<message b='1'c='2'/>",
            "<message xmlns='x' xmlns='y'/>",
            "<message><x:y/></message>",
            "<message>\u{e9}t\u{e9}</message>",
        ]
    }

    #[test]
    fn views_give_the_events_and_errors_trees_give() {
        let mut inputs = vec![fixture()];
        for s in stanzas() {
            inputs.push(format!("{HEADER}{s}<presence/></stream:stream>"));
            inputs.push(format!("{s}<presence/>"));
        }
        // Invalid UTF-8 inside a stanza.
        let mut bad = format!("{HEADER}<message><body>").into_bytes();
        bad.extend_from_slice(b"\xff\xfe</body></message><presence/>");
        for input in inputs.iter().map(|s| s.as_bytes()).chain([bad.as_slice()]) {
            for mode in [Mode::Strict, Mode::Lenient] {
                for chunk in [input.len(), 1, 7] {
                    assert_eq!(
                        run(input, mode, chunk, true),
                        run(input, mode, chunk, false),
                        "{mode:?}, {chunk}-byte reads: {}",
                        String::from_utf8_lossy(input)
                    );
                }
            }
        }
    }

    fn first_ref<T>(stanza: &str, f: impl FnOnce(ElementRef<'_>) -> T) -> T {
        let mut p = StreamParser::new(Mode::Lenient);
        p.feed(HEADER.as_bytes());
        p.feed(stanza.as_bytes());
        assert!(matches!(p.next_ref(), Ok(Some(EventRef::StreamOpen(_)))));
        match p.next_ref() {
            Ok(Some(EventRef::Element(el))) => f(el),
            other => panic!("no element: {other:?}"),
        }
    }

    #[test]
    fn usual_stanzas_are_read_without_a_tree() {
        for s in &stanzas()[..10] {
            first_ref(s, |el| assert!(matches!(el, ElementRef::Skim(_)), "{s}"));
        }
        for s in &stanzas()[10..19] {
            first_ref(s, |el| assert!(matches!(el, ElementRef::Tree(_)), "{s}"));
        }
    }

    #[test]
    fn a_view_answers_what_the_sniffer_asks() {
        let s = "<message from='a@x/r' to=\"q&amp;a\" type='chat'>\
                 <body>one &lt;<b/>two<c>x</c>three</body>\
                 <delay xmlns='urn:xmpp:delay' stamp='T'><inner/></delay>text</message>";
        first_ref(s, |m| {
            assert!(matches!(m, ElementRef::Skim(_)));
            assert!(m.is("message", "jabber:client"));
            assert_eq!(m.attr("from").as_deref(), Some("a@x/r"));
            assert_eq!(m.attr("to").as_deref(), Some("q&a"));
            assert_eq!(m.attr("id"), None);
            assert_eq!(m.text(), "text");
            assert_eq!(
                m.child_text("body", "jabber:client").as_deref(),
                Some("one <twothree")
            );
            let names: Vec<_> = m.elements().map(|c| (c.name(), c.ns())).collect();
            assert_eq!(
                names,
                [("body", "jabber:client"), ("delay", "urn:xmpp:delay")]
            );
            let delay = m.child("delay", "urn:xmpp:delay").unwrap();
            assert_eq!(delay.attr("stamp").as_deref(), Some("T"));
            assert_eq!(delay.attr("xmlns"), None);
            assert!(delay.has_child("inner", "urn:xmpp:delay"));
            assert_eq!(
                delay
                    .child("inner", "urn:xmpp:delay")
                    .unwrap()
                    .elements()
                    .count(),
                0
            );
            assert!(!m.has_child("body", "urn:other"));
        });
    }
}

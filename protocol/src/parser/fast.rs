//! **An optimisation.** Nothing here is needed to parse XMPP correctly: the
//! simple path in `simple.rs` (the byte-by-byte scanner and quick-xml's
//! reader) does it all on its own. This file makes the usual case cheap:
//!
//! - [`whole_element`]: when a whole stanza is already in the buffer (the
//!   usual case for a server reading a socket and for a sniffer reading a
//!   capture), jump from tag to tag with memchr instead of stepping the
//!   scanner's state machine byte by byte, and record where each tag is.
//! - [`build_tagged`]: build the element from those tags, so that quick-xml's
//!   reader does not search for them again (quick-xml still parses each start
//!   tag and resolves entities, through `tree.rs`, as the simple path does).
//! - the `STOP_*` tables: the bytes that end a run the scanner may skip in
//!   one loop (text, quoted values, names).
//!
//! An optimisation of a parser for untrusted bytes is only acceptable if it
//! can never change what is parsed: a server or the sniffer must not see
//! different stanzas depending on how TCP cut the bytes. Whatever is unusual
//! is therefore left to the simple path, and the two are checked against each
//! other by
//!
//! - the differential unit tests below, `fast::tests::*`:
//!   `whole_stanza_fast_path_agrees_with_the_byte_path_on_errors` (the same
//!   events and errors whole or one byte at a time) and
//!   `both_element_builders_agree` (both builders on the same stanzas), with
//!   `simple::tests::split_at_every_offset_parses_the_same_as_whole` and
//!   `one_byte_at_a_time_parses_the_same_as_whole` on the good fixture;
//! - two fuzz targets (`scripts/fuzz.sh`): `fuzz/fuzz_targets/stream_parser.rs`
//!   (the same events whatever the split of the input) and
//!   `fuzz/fuzz_targets/element_builders.rs` (both builders through
//!   [`both_builders`](super::both_builders)).
//!
//! Change this file only with both running.

use quick_xml::events::BytesStart;

use super::error::ParseError;
use super::tree::{
    OpenElement, Scope, attach, is_name_start, name_len, open_element, push_text, xml_error,
};
use crate::element::{CompactString, Element};
use crate::limits::Limits;

// Runs of bytes that change nothing. Inside an element, the scanner's
// byte path (`StreamParser::scan`) skips character data and quoted values
// in one tight loop up to the next byte in these tables; `whole_element`
// reads names with `STOP_NAME`. The byte that stops a run goes through the
// byte path, so errors and offsets are those of the simple path.

/// A table of the bytes that end a fast-path run: those given, and every
/// control byte XML forbids (so the byte path reports it with its offset).
const fn stop_table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        if b != 0x09 && b != 0x0a && b != 0x0d {
            t[b] = true;
        }
        b += 1;
    }
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// Character data inside an element.
pub(super) static STOP_TEXT: [bool; 256] = stop_table(b"<");
/// A value in double quotes.
pub(super) static STOP_DQUOTE: [bool; 256] = stop_table(b"\"<");
/// A value in single quotes.
pub(super) static STOP_SQUOTE: [bool; 256] = stop_table(b"'<");
/// A start tag after its name.
pub(super) static STOP_TAG: [bool; 256] = stop_table(b"\"'=></");
/// An end tag.
pub(super) static STOP_CLOSE: [bool; 256] = stop_table(b"><");
/// The name of a start tag: white space, `/` and `>` end it, and the bytes
/// that would be errors or state changes in it go through the byte path.
pub(super) static STOP_NAME: [bool; 256] = stop_table(b" \t\r\n/>\"'=<");

/// A tag [`whole_element`] found: `buf[at..end]` runs from `<` to `>`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tag {
    pub(super) at: usize,
    pub(super) end: usize,
    pub(super) kind: TagKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TagKind {
    Start,
    Empty,
    End,
}

/// The end of the top-level element whose `<` is at `buf[s]`, if the byte
/// path of [`StreamParser::scan`](super::simple::StreamParser::scan) would find exactly that element there with
/// no error; `None` in every other case, including "not complete yet", and
/// the byte path then takes over from `s` as if this had never run.
///
/// Being conservative is what keeps the two paths equal: anything unusual
/// (`<!`, `<?`, a quote or `=` in a name, `<` in a tag, a stream restart, a
/// forbidden control byte, a limit reached) is left to the byte path, which
/// reports it with its exact offset. The unit tests and the `stream_parser`
/// fuzz target check that both paths give the same events: a stanza split
/// across two reads takes the byte path, a whole one this path.
pub(super) fn whole_element(
    buf: &[u8],
    s: usize,
    limits: &Limits,
    tags: &mut Vec<Tag>,
) -> Option<usize> {
    tags.clear();
    // The byte path fails once a byte at `s + max_stanza_bytes` or later is
    // part of the element: look no further than that.
    let b = &buf[..buf.len().min(s.saturating_add(limits.max_stanza_bytes))];
    let mut i = s;
    let mut depth = 0usize;
    let end = loop {
        // Here b[i] == b'<'.
        match *b.get(i + 1)? {
            b'/' => {
                if depth == 0 {
                    return None;
                }
                let gt = i + 2 + memchr::memchr2(b'>', b'<', &b[i + 2..])?;
                if b[gt] != b'>' {
                    return None;
                }
                depth -= 1;
                tags.push(Tag {
                    at: i,
                    end: gt + 1,
                    kind: TagKind::End,
                });
                i = gt + 1;
                if depth == 0 {
                    break i;
                }
            }
            c if is_name_start(c) => {
                let name_start = i + 1;
                let mut j = name_start + 1;
                while !STOP_NAME[usize::from(*b.get(j)?)] {
                    j += 1;
                }
                let name = &b[name_start..j];
                if name.len() > limits.max_name_bytes
                    || !matches!(b[j], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
                    || (depth == 0 && (name == b"stream" || name.ends_with(b":stream")))
                {
                    return None;
                }
                // The rest of the start tag: attributes, in quotes.
                let mut attrs = 0usize;
                let mut slash = false;
                loop {
                    let c = *b.get(j)?;
                    if slash && c != b'>' {
                        // `/` belongs only just before `>`; quick-xml's
                        // reader and ours would read `<a/ >` differently.
                        return None;
                    }
                    match c {
                        b'>' => break,
                        b'"' | b'\'' => {
                            let close = j + 1 + memchr::memchr2(c, b'<', &b[j + 1..])?;
                            if b[close] != c {
                                return None;
                            }
                            j = close;
                            slash = false;
                        }
                        b'=' => {
                            attrs += 1;
                            if attrs > limits.max_attributes {
                                return None;
                            }
                            slash = false;
                        }
                        b'<' => return None,
                        _ => slash = c == b'/',
                    }
                    j += 1;
                }
                tags.push(Tag {
                    at: i,
                    end: j + 1,
                    kind: if slash {
                        TagKind::Empty
                    } else {
                        TagKind::Start
                    },
                });
                i = j + 1;
                if slash {
                    if depth == 0 {
                        break i;
                    }
                } else {
                    depth += 1;
                    if depth > limits.max_depth {
                        return None;
                    }
                }
            }
            _ => return None,
        }
        // Character data up to the next tag.
        i += memchr::memchr(b'<', &b[i..])?;
    };
    // The jumps above did not look at every byte; this pass does, for the
    // control bytes XML forbids (written without early exit per chunk so
    // the compiler can vectorise it).
    let forbidden = b[s..end].chunks(64).any(|chunk| {
        chunk.iter().fold(false, |acc, &c| {
            acc | ((c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r'))
        })
    });
    (!forbidden).then_some(end)
}

/// Builds one element from its text and the tags [`whole_element`] found in
/// it (`base` is where the text starts in the buffer those tags index).
///
/// This is [`build_element`](super::simple::build_element) without quick-xml's reader, whose work of
/// finding the tags `whole_element` has already done: quick-xml still reads
/// each start tag's name and attributes, and resolves entities in text. A
/// unit test and the `stream_parser` fuzz target check that both builders
/// give the same element, or both an error, for the same stanza.
pub(super) fn build_tagged(
    text: &str,
    base: usize,
    tags: &[Tag],
    stream_scope: &[(CompactString, CompactString)],
    offset: u64,
    stack: &mut Vec<OpenElement>,
) -> Result<Element, ParseError> {
    stack.clear();
    let mut scope = Scope {
        stream: stream_scope,
        local: Vec::new(),
    };
    let mut prev = 0;
    for t in tags {
        let (at, end) = (t.at - base, t.end - base);
        if at > prev {
            // Character data: line ends normalised, then entities resolved.
            let raw = quick_xml::events::BytesText::from_escaped(&text[prev..at]);
            let content = raw.xml10_content();
            let resolved = quick_xml::escape::unescape(&content).map_err(|e| match e {
                quick_xml::escape::EscapeError::UnrecognizedEntity(_, name) => {
                    ParseError::UndefinedEntity { name }
                }
                e => xml_error(offset, e),
            })?;
            push_text(stack, &resolved);
        }
        prev = end;
        match t.kind {
            TagKind::Start | TagKind::Empty => {
                let inner_end = if t.kind == TagKind::Empty {
                    end - 2
                } else {
                    end - 1
                };
                let inner = &text[at + 1..inner_end];
                let name_end = at + 1 + name_len(inner);
                let start = BytesStart::from_content(inner, name_end - at - 1);
                let mark = scope.local.len();
                let el = open_element(&start, &mut scope, offset)?;
                if t.kind == TagKind::Empty {
                    scope.local.truncate(mark);
                    if let Some(root) = attach(stack, el) {
                        return Ok(root);
                    }
                } else {
                    stack.push(OpenElement {
                        el,
                        mark,
                        qname: at + 1..name_end,
                    });
                }
            }
            TagKind::End => {
                let Some(OpenElement { el, mark, qname }) = stack.pop() else {
                    return Err(ParseError::Syntax {
                        offset,
                        what: "unexpected end tag",
                    });
                };
                // As quick-xml's reader: white space may follow the name.
                let name = text[at + 2..end - 1].trim_end_matches([' ', '\t', '\r', '\n']);
                if name != &text[qname] {
                    return Err(ParseError::Syntax {
                        offset,
                        what: "end tag does not match its start tag",
                    });
                }
                scope.local.truncate(mark);
                if let Some(root) = attach(stack, el) {
                    return Ok(root);
                }
            }
        }
    }
    Err(ParseError::Syntax {
        offset,
        what: "element ended early",
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{HEADER, fixture};
    use super::super::{Event, Mode, ParseError, Parsed, StreamParser, both_builders};
    use crate::limits::Limits;

    /// Every event and error, feeding `input` whole or one byte at a time.
    fn both_ways(
        input: &[u8],
        make: impl Fn() -> StreamParser,
    ) -> [Vec<Result<Parsed, ParseError>>; 2] {
        let drain = |p: &mut StreamParser, out: &mut Vec<_>| {
            for _ in 0..1000 {
                match p.next_event() {
                    Ok(None) => return,
                    Ok(Some(ev)) => out.push(Ok(ev)),
                    Err(e) => {
                        out.push(Err(e));
                        if p.has_failed() {
                            return;
                        }
                    }
                }
            }
        };
        let mut whole = make();
        let mut a = Vec::new();
        whole.feed(input);
        drain(&mut whole, &mut a);
        let mut bytes = make();
        let mut b = Vec::new();
        for byte in input {
            if bytes.has_failed() {
                break;
            }
            bytes.feed(std::slice::from_ref(byte));
            drain(&mut bytes, &mut b);
        }
        [a, b]
    }

    #[test]
    fn whole_stanza_fast_path_agrees_with_the_byte_path_on_errors() {
        // A whole stanza in the buffer takes `whole_element`; fed one byte
        // at a time it takes the byte path. Both must give the same events
        // and the same errors at the same offsets.
        let small = Limits {
            max_stanza_bytes: 200,
            max_depth: 3,
            max_attributes: 4,
            max_name_bytes: 16,
        };
        for bad in [
            "<message>\u{1}</message>",
            "<message a='\u{8}'/>",
            "<message a='<'/>",
            "<message <a/>",
            "<message><body>x</message></body>",
            "<message a='1' a='2'/>",
            "<mess\"age/>",
            "<message><!-- c --></message>",
            "<message><?pi?></message>",
            "<message><!DOCTYPE x></message>",
            "< message/>",
            "<m a='1' b='2' c='3' d='4' e='5'/>",
            "<toolongnamexyzabc/>",
            "<a><b><c><d></d></c></b></a>",
            &format!("<m>{}</m>", "0123456789".repeat(20)),
            "<m a='1'/>trailing<m/>",
            "</m>",
            // Not errors in strict mode, but unusual: the byte path's.
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><m/>",
            "<m a='1'/>\n \t<n\tb\n=\r\"2\"/>",
        ] {
            for mode in [Mode::Strict, Mode::Lenient] {
                let input = format!("{HEADER}{bad}<ok/>");
                let [a, b] = both_ways(input.as_bytes(), || StreamParser::with_limits(mode, small));
                assert_eq!(a, b, "{mode:?} {bad}");
                if mode == Mode::Strict && !bad.starts_with("<stream") && !bad.contains('\t') {
                    assert!(a.iter().any(Result::is_err), "{bad}: {a:?}");
                }
            }
        }
        // And on good input, in lenient mode too.
        let [a, b] = both_ways(fixture().as_bytes(), || StreamParser::new(Mode::Lenient));
        assert_eq!(a, b);
    }

    #[test]
    fn both_element_builders_agree() {
        // `build_tagged` (tags from `whole_element`) against `build_element`
        // (quick-xml's reader): the same element, or an error from both.
        let cases = [
            "<message to='a@b' type=\"chat\"><body>hi &amp; &lt;bye&gt; &#x263A;&#65;</body></message>",
            "<m>line\r\nnext\rlast &#13;</m>",
            "<a:x xmlns:a='urn:a'><a:y/><z/></a:x>",
            "<a:x xmlns:a='urn:u' xmlns:b='urn:u'></b:x>",
            "<a></a >",
            "<a></ a>",
            "<a><b></a></b>",
            "<m>&nbsp;</m>",
            "<m>&#0;</m>",
            "<m>&#xD800;</m>",
            "<m>&amp</m>",
            "<m>& x</m>",
            "<a b>",
            "<a b/>",
            "<a b='1'c='2'/>",
            "<a b='1' b='2'/>",
            "<a p:b='1'/>",
            "<p:a/>",
            "<a:/>",
            "<:a/>",
            "<m>]]> and > </m>",
            "<a x=\"&lt;&apos;\" y='\t\n'/>",
            "<a x='&bogus;'/>",
            "<m xml:lang='fr'>caf\u{e9} \u{1F600}</m>",
            "<a xmlns='urn:d'><b xmlns=''/></a>",
            "<a><b/>text<c>more</c>tail</a>",
            "<a\n\tx\r='1'\n></a\n>",
            "<a =''/>",
            "<a x=''/>",
            "<a x='1'></a>",
            "<a><a><a></a></a></a>",
        ];
        let mut compared = 0;
        for case in cases {
            let Some((tagged, reader)) = both_builders(case.as_bytes()) else {
                continue;
            };
            compared += 1;
            match (&tagged, &reader) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{case}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{case}: tagged {tagged:?}, reader {reader:?}"),
            }
        }
        assert!(
            compared >= 25,
            "only {compared} cases reached both builders"
        );
    }

    /// The fast paths skip bytes in bulk; these are the places where a
    /// skipped byte still matters (a `/` that is or is not the end of a
    /// self-closing tag, a `>` inside a quoted value).
    #[test]
    fn skipped_bytes_keep_their_meaning() {
        let hdr =
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        for (input, names) in [
            ("<a x='v'/><b/>", vec!["a", "b"]),
            ("<a x=\"/\" y='/>'><c/></a><d/>", vec!["a", "d"]),
            ("<a  x = 'y' ><c>text / more</c></a>", vec!["a"]),
            ("<a x='1'\t/><b></b >", vec!["a", "b"]),
        ] {
            let mut p = StreamParser::new(Mode::Strict);
            p.feed(hdr.as_bytes());
            p.feed(input.as_bytes());
            assert!(matches!(
                p.next_event().unwrap().unwrap().event,
                Event::StreamOpen(_)
            ));
            for want in names {
                match p.next_event() {
                    Ok(Some(Parsed {
                        event: Event::Element(el),
                        ..
                    })) => assert_eq!(el.name, want, "{input}"),
                    other => panic!("{input}: {other:?}"),
                }
            }
            assert_eq!(p.next_event(), Ok(None), "{input}");
        }
    }
}

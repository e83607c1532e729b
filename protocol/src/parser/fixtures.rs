//! The stream the unit tests of both paths parse, and helpers to run a parser
//! to the end (tests only).

use super::error::ParseError;
use super::event::{Mode, Parsed};
use super::simple::StreamParser;

pub(super) const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

pub(super) fn all(p: &mut StreamParser) -> Result<Vec<Parsed>, ParseError> {
    let mut out = Vec::new();
    while let Some(ev) = p.next_event()? {
        out.push(ev);
    }
    Ok(out)
}

pub(super) fn parse_whole(input: &[u8]) -> Result<Vec<Parsed>, ParseError> {
    let mut p = StreamParser::new(Mode::Strict);
    p.feed(input);
    all(&mut p)
}

/// A session with every construct the parser must handle: declaration,
/// header, whitespace keepalive, nested namespaces, prefixes, entities,
/// character references, CDATA, non-ASCII text, self-closing elements and
/// the stream close.
pub(super) fn fixture() -> String {
    format!(
        "{HEADER}\n  <message to='bob@localhost' type='chat' id='m&amp;1'>\
         <body>caf\u{e9} &lt;3 &#x263A; &#65;<![CDATA[<raw> & ]]]]></body>\
         <request xmlns='urn:xmpp:receipts'/></message> \
         <iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>\
         <x:foo xmlns:x='urn:test'><x:bar a='1'/><plain/></x:foo>\
         <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>\
         <presence from=\"a@b/c\" xml:lang='en'\t\n><status a='x>y'>1 > 0</status ></presence>\
         <r xmlns='urn:xmpp:sm:3' />\
         <a:b xmlns:a='urn:a' c = \"/\"><a:c/><d xmlns='urn:d'><e/></d></a:b>\
         </stream:stream>"
    )
}

//! Fuzzes the incremental stream parser.
//!
//! Besides "never panics", it checks the parser's central promise: feeding
//! the same bytes in two chunks, split at a point the fuzzer chooses, gives
//! exactly the events (and errors) of feeding them at once, in strict and in
//! lenient mode. The first input byte picks the split.
//!
//! It also checks that `next_ref` (which lends usual stanzas as views of
//! their bytes instead of building trees) gives exactly the events and
//! errors of `next_event`, each view turned back into a tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::parser::{Event, EventRef, Mode, Parsed, ParseError, StreamParser};

/// Every result of `next` until it needs more bytes. Bounded: each call
/// consumes input or reports; lenient mode may report many errors, strict
/// mode stops at the first (repeated).
fn results<T>(
    mut next: impl FnMut() -> Result<Option<T>, ParseError>,
    out: &mut Vec<Result<T, ParseError>>,
) {
    for _ in 0..100_000 {
        match next() {
            Ok(Some(ev)) => out.push(Ok(ev)),
            Ok(None) => return,
            Err(e) => {
                let strict_stop = out.last().is_some_and(|l| l.as_ref().err() == Some(&e));
                out.push(Err(e));
                if strict_stop {
                    return;
                }
            }
        }
    }
}

fn drain(p: &mut StreamParser, out: &mut Vec<Result<Parsed, ParseError>>) {
    results(|| p.next_event(), out);
}

/// The events of `p` read with `next_ref`, each view turned into a tree.
fn drain_ref(p: &mut StreamParser, out: &mut Vec<Result<Event, ParseError>>) {
    results(
        || {
            p.next_ref().map(|ev| {
                ev.map(|ev| match ev {
                    EventRef::StreamOpen(h) => Event::StreamOpen(h),
                    EventRef::StreamClose => Event::StreamClose,
                    EventRef::Element(el) => Event::Element(el.to_element()),
                })
            })
        },
        out,
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    let cut = if bytes.is_empty() { 0 } else { split as usize % (bytes.len() + 1) };
    for mode in [Mode::Strict, Mode::Lenient] {
        let mut whole = StreamParser::new(mode);
        whole.feed(bytes);
        let mut a = Vec::new();
        drain(&mut whole, &mut a);

        let mut lent = StreamParser::new(mode);
        lent.feed(bytes);
        let mut r = Vec::new();
        drain_ref(&mut lent, &mut r);
        let events: Vec<_> = a.iter().map(|x| x.clone().map(|p| p.event)).collect();
        assert_eq!(events, r, "next_ref and next_event disagree");

        let mut parts = StreamParser::new(mode);
        let mut b = Vec::new();
        parts.feed(&bytes[..cut]);
        drain(&mut parts, &mut b);
        parts.feed(&bytes[cut..]);
        drain(&mut parts, &mut b);

        if mode == Mode::Strict {
            // Events before the first error must match exactly, and both
            // runs must agree on whether (and which) error ends the stream.
            let ok_a: Vec<_> = a.iter().take_while(|r| r.is_ok()).collect();
            let ok_b: Vec<_> = b.iter().take_while(|r| r.is_ok()).collect();
            assert_eq!(ok_a, ok_b, "split at {cut} changed the events");
            let err_a = a.iter().find(|r| r.is_err());
            let err_b = b.iter().find(|r| r.is_err());
            assert_eq!(err_a.is_some(), err_b.is_some(), "split at {cut} changed the outcome");
        }
    }
});

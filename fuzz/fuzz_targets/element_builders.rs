//! Fuzzes the parser's two element builders against each other.
//!
//! A stanza that arrived whole is built from the tags the scanner's fast path
//! found (`build_tagged`); others are built by quick-xml's own reader
//! (`build_element`). Both must give the same element, or both an error, for
//! any stanza: otherwise what a server or the sniffer sees would depend on
//! how the bytes were split into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((tagged, reader)) = protocol::parser::both_builders(data) {
        match (&tagged, &reader) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            _ => panic!("builders disagree: tagged {tagged:?}, reader {reader:?}"),
        }
    }
});

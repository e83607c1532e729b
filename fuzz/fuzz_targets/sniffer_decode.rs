//! Fuzzes frame decoding: any bytes, under every link type, give a segment
//! or an error, never a panic; a decoded payload lies inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniffer::decode::{LinkType, decode};

fuzz_target!(|data: &[u8]| {
    for n in [0, 1, 12, 101, 108, 113, 276, 147] {
        if let Ok(seg) = decode(LinkType::from_linktype(n), data) {
            assert!(seg.payload.len() <= data.len());
        }
    }
});

//! Fuzzes frame decoding: any bytes, under every link type, give a segment,
//! a datagram or an error, never a panic; a decoded payload lies inside the
//! frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniffer::decode::{LinkType, Packet, decode};

fuzz_target!(|data: &[u8]| {
    for n in [0, 1, 12, 101, 108, 113, 276, 147] {
        let payload = match decode(LinkType::from_linktype(n), data) {
            Ok(Packet::Tcp(s)) => s.payload,
            Ok(Packet::Udp(d)) => d.payload,
            Err(_) => continue,
        };
        assert!(payload.len() <= data.len());
    }
});

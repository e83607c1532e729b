//! Fuzzes TCP reassembly with segments the fuzzer makes up: each 6-byte
//! record is (flags, which side, sequence delta, length) and takes its
//! payload from the rest of the input. Checks: no panic, and each
//! direction's data and gaps tile the stream with no hole or overlap, with
//! bounded buffers.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sniffer::decode::Segment;
use sniffer::reassembly::{Event, Limits, Reassembler};

fuzz_target!(|data: &[u8]| {
    let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:5222".parse().unwrap();
    let c: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let mut r = Reassembler::new(Limits { max_buffer: 64, max_flows: 2 });
    let mut next: HashMap<(u64, bool), u64> = HashMap::new();
    let mut check = |e: Event<'_>| match e {
        Event::Data { conn, dir, offset, data, .. } => {
            let at = next.entry((conn, dir == sniffer::reassembly::Dir::ToServer)).or_default();
            assert_eq!(offset, *at);
            *at += data.len() as u64;
        }
        Event::Gap { conn, dir, offset, len } => {
            let at = next.entry((conn, dir == sniffer::reassembly::Dir::ToServer)).or_default();
            assert_eq!(offset, *at);
            *at += len;
        }
        _ => {}
    };
    let (head, payloads) = data.split_at(data.len().min(600));
    let mut seqs = [1000u32, 9000u32, 5u32];
    let mut p = 0usize;
    for (i, rec) in head.chunks_exact(6).enumerate() {
        let flags = rec[0];
        let side = usize::from(rec[1] % 3);
        let delta = i16::from_be_bytes([rec[2], rec[3]]);
        let len = usize::from(u16::from_be_bytes([rec[4], rec[5]]) % 300);
        let (src, dst) = match side {
            0 => (a, b),
            1 => (b, a),
            _ => (c, b),
        };
        let seq = seqs[side].wrapping_add(delta as i32 as u32);
        let end = (p + len).min(payloads.len());
        let payload = &payloads[p..end];
        p = end;
        let seg = Segment {
            src,
            dst,
            seq,
            syn: flags & 1 != 0,
            fin: flags & 2 != 0,
            rst: flags & 4 != 0,
            ack: flags & 8 != 0,
            payload,
        };
        if flags & 16 == 0 {
            seqs[side] = seq.wrapping_add(payload.len() as u32);
        }
        r.push(&seg, i as f64, &mut check);
        assert!(r.open_flows() <= 2);
    }
    r.finish_all(0.0, &mut check);
});

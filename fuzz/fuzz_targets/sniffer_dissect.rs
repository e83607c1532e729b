//! Fuzzes the dissectors: the input is cut into chunks that go to the XMPP
//! and TLS dissectors of one connection, alternating directions, as
//! reassembled bytes would. Malformed XML and TLS must be reported, never
//! panic, and the STARTTLS switch must be taken wherever it comes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sniffer::reassembly::Dir;
use sniffer::tls::TlsConn;
use sniffer::xmpp::XmppConn;

fuzz_target!(|data: &[u8]| {
    let mut x = XmppConn::default();
    let mut t = TlsConn::default();
    let mut sink = |_f: sniffer::findings::Finding| {};
    let mut switched = false;
    let mut rest = data;
    let mut i = 0u8;
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n % 64) + 1;
        let (chunk, after) = tail.split_at(n.min(tail.len()));
        rest = after;
        i = i.wrapping_add(1);
        let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
        if switched {
            t.feed(dir, chunk, 0.0, &mut sink);
        } else if let Some(sw) = x.feed(dir, chunk, 0.0, &mut sink) {
            switched = true;
            t.feed(Dir::ToServer, &sw.to_server_rest, 0.0, &mut sink);
            t.feed(Dir::ToClient, &sw.to_client_rest, 0.0, &mut sink);
        }
        let mut t2 = TlsConn::default();
        t2.feed(dir, chunk, 0.0, &mut sink);
    }
    x.unfinished();
    let _ = t.traffic();
});

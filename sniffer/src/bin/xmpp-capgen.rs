//! Writes a synthetic pcap of plaintext XMPP chat for the sniffer
//! benchmark: many clients on loopback, each signing in with PLAIN, binding,
//! fetching its roster and then exchanging chat messages with the server on
//! port 5222 (the port tshark's XMPP dissector listens on).
//!
//! ```text
//! xmpp-capgen --out target/bench/xmpp.pcap --megabytes 1024
//! ```
//!
//! It prints how many message bodies it wrote: the number the sniffer and
//! tshark must both find.
//!
//! `--one-packet-flows N` writes something else: N connections of one SYN
//! each, from N different client addresses, the shape of a SYN scan or flood.
//! It measures the flow table, not the dissectors: past `--max-flows` every
//! new connection evicts the least recently active one.
//!
//! ```text
//! xmpp-capgen --out target/bench/flows.pcap --one-packet-flows 130000
//! ```
//!
//! `--replicate FILE` writes no traffic of its own: it repeats a real
//! capture (`scripts/bench-sniffer-real.sh` records Prosody and slixmpp)
//! until the output reaches `--megabytes`, each copy's client side moved to
//! its own address (127.a.b.c) and the server to port 5222, and its times
//! after the copy before: so many distinct connections, every byte as the
//! third-party software sent it.
//!
//! ```text
//! xmpp-capgen --replicate session.pcap --server-port 5290 --out real.pcap --megabytes 100
//! ```
#![forbid(unsafe_code)]

use protocol::outln;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sniffer::decode::build::{Flags, PcapWriter, ethernet_tcp};

/// Synthetic XMPP capture for benchmarks.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Output pcap file.
    #[arg(long)]
    out: PathBuf,
    /// Approximate size of the capture, in MiB.
    #[arg(long, default_value_t = 1024)]
    megabytes: u64,
    /// Connections open at the same time (their packets interleave).
    #[arg(long, default_value_t = 64)]
    concurrent: usize,
    /// Messages per connection before it closes and a new one opens.
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Instead of synthetic chat: copies of this real capture (Ethernet,
    /// IPv4, as tcpdump writes from `lo`).
    #[arg(long, value_name = "FILE", requires = "server_port")]
    replicate: Option<PathBuf>,
    /// The server's port in the capture to replicate.
    #[arg(long)]
    server_port: Option<u16>,
    /// Instead of chat: this many one-packet connections (a SYN each, from
    /// distinct client addresses), to measure the flow table's eviction.
    #[arg(long, value_name = "N")]
    one_packet_flows: Option<u64>,
}

/// One simulated client connection.
struct Conn {
    client: SocketAddr,
    server: SocketAddr,
    cseq: u32,
    sseq: u32,
    sent: u64,
    user: String,
}

/// The capture being written, with a clock that advances 37 µs a frame.
struct Writer<W: Write> {
    pcap: PcapWriter<W>,
    ts_us: u64,
}

impl<W: Write> Writer<W> {
    fn frame(&mut self, f: &[u8]) -> std::io::Result<()> {
        self.ts_us += 37;
        // Timestamps start in 2026 (1,795,000,000 s after the epoch).
        self.pcap.frame(1_795_000_000_000_000 + self.ts_us, f)
    }
}

impl Conn {
    fn send_up<W: Write>(&mut self, out: &mut Writer<W>, payload: &[u8]) -> std::io::Result<()> {
        out.frame(&ethernet_tcp(
            self.client,
            self.server,
            self.cseq,
            Flags::default(),
            payload,
        ))?;
        self.cseq = self.cseq.wrapping_add(payload.len() as u32);
        Ok(())
    }
    fn send_down<W: Write>(&mut self, out: &mut Writer<W>, payload: &[u8]) -> std::io::Result<()> {
        out.frame(&ethernet_tcp(
            self.server,
            self.client,
            self.sseq,
            Flags::default(),
            payload,
        ))?;
        self.sseq = self.sseq.wrapping_add(payload.len() as u32);
        Ok(())
    }

    fn open<W: Write>(&mut self, out: &mut Writer<W>) -> std::io::Result<()> {
        let syn = Flags {
            syn: true,
            ..Default::default()
        };
        out.frame(&ethernet_tcp(
            self.client,
            self.server,
            self.cseq.wrapping_sub(1),
            syn,
            b"",
        ))?;
        let u = self.user.clone();
        self.send_up(out, b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")?;
        self.send_down(out, b"<?xml version='1.0'?><stream:stream from='localhost' id='s1' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>")?;
        let creds = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("\0{u}\0pw-{u}"),
        );
        self.send_up(
            out,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
            )
            .as_bytes(),
        )?;
        self.send_down(out, b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")?;
        self.send_up(out, b"<stream:stream to='localhost' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")?;
        self.send_down(out, b"<stream:stream from='localhost' id='s2' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>")?;
        self.send_up(
            out,
            b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        )?;
        self.send_down(
            out,
            format!("<iq type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>{u}@localhost/r1</jid></bind></iq>").as_bytes(),
        )?;
        self.send_up(
            out,
            b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>",
        )?;
        self.send_down(out, b"<iq type='result' id='r1'><query xmlns='jabber:iq:roster'><item jid='teacher@localhost' subscription='both'/></query></iq>")?;
        self.send_up(out, b"<presence><status>in the lab</status></presence>")
    }

    /// One message each way; returns the bodies written (2).
    fn exchange<W: Write>(&mut self, out: &mut Writer<W>) -> std::io::Result<u64> {
        let n = self.sent;
        let u = self.user.clone();
        self.send_up(
            out,
            format!("<message to='teacher@localhost' id='{u}-{n}' type='chat'><body>question {n} from {u}: how does the sniffer see this line?</body></message>").as_bytes(),
        )?;
        self.send_down(
            out,
            format!("<message from='teacher@localhost/desk' to='{u}@localhost/r1' id='t-{n}' type='chat'><body>answer {n} for {u}: every byte of it, in plaintext</body></message>").as_bytes(),
        )?;
        self.sent += 1;
        Ok(2)
    }

    fn close<W: Write>(&mut self, out: &mut Writer<W>) -> std::io::Result<()> {
        self.send_up(out, b"</stream:stream>")?;
        self.send_down(out, b"</stream:stream>")?;
        let fin = Flags {
            fin: true,
            ..Default::default()
        };
        out.frame(&ethernet_tcp(self.client, self.server, self.cseq, fin, b""))?;
        out.frame(&ethernet_tcp(self.server, self.client, self.sseq, fin, b""))
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(d) = cli.out.parent() {
        std::fs::create_dir_all(d).ok();
    }
    let f = std::fs::File::create(&cli.out)
        .with_context(|| format!("cannot create {}", cli.out.display()))?;
    let mut out = Writer {
        pcap: PcapWriter::new(BufWriter::with_capacity(1 << 20, f))?,
        ts_us: 0,
    };
    if let Some(n) = cli.one_packet_flows {
        return one_packet_flows(out, n, &cli.out);
    }
    if let (Some(src), Some(port)) = (&cli.replicate, cli.server_port) {
        return replicate(out, src, port, cli.megabytes * 1024 * 1024, &cli.out);
    }
    let target = cli.megabytes * 1024 * 1024;
    let server: SocketAddr = "127.0.0.1:5222".parse()?;
    let mut next_port = 20_000u16;
    let mut next_user = 0u64;
    let mut new_conn = |out: &mut Writer<_>| -> std::io::Result<Conn> {
        next_port = if next_port >= 60_000 {
            20_000
        } else {
            next_port + 1
        };
        next_user += 1;
        let mut c = Conn {
            client: SocketAddr::new(server.ip(), next_port),
            server,
            cseq: 1_000 + (next_user as u32).wrapping_mul(7919),
            sseq: 90_000 + (next_user as u32).wrapping_mul(104_729),
            sent: 0,
            user: format!("student{next_user}"),
        };
        c.open(out)?;
        Ok(c)
    };
    let mut conns: Vec<Conn> = Vec::new();
    for _ in 0..cli.concurrent.max(1) {
        conns.push(new_conn(&mut out)?);
    }
    let mut bodies = 0u64;
    let mut connections = conns.len() as u64;
    'outer: loop {
        for c in conns.iter_mut() {
            bodies += c.exchange(&mut out)?;
            if c.sent >= cli.messages {
                c.close(&mut out)?;
                *c = new_conn(&mut out)?;
                connections += 1;
            }
            if out.pcap.bytes >= target {
                break 'outer;
            }
        }
    }
    for c in &mut conns {
        c.close(&mut out)?;
    }
    out.pcap.flush()?;
    outln!(
        "wrote {} ({} bytes): {connections} connections, {bodies} message bodies",
        cli.out.display(),
        out.pcap.bytes
    );
    Ok(())
}

/// `n` connections of one SYN each: client 10.a.b.c, port 1024 + i % 60000,
/// to 127.0.0.1:5222; distinct endpoints, so each SYN is a new flow.
fn one_packet_flows<W: Write>(
    mut out: Writer<W>,
    n: u64,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let server: SocketAddr = "127.0.0.1:5222".parse()?;
    let syn = Flags {
        syn: true,
        ..Default::default()
    };
    for i in 0..n {
        let host = (i / 60_000) as u32;
        let ip = std::net::Ipv4Addr::from(0x0a00_0001 + host);
        let client = SocketAddr::new(ip.into(), 1024 + (i % 60_000) as u16);
        out.frame(&ethernet_tcp(client, server, i as u32, syn, b""))?;
    }
    out.pcap.flush()?;
    outln!(
        "wrote {} ({} bytes): {n} one-packet connections",
        path.display(),
        out.pcap.bytes
    );
    Ok(())
}

/// Copies of the capture at `src` until `target` bytes: see the module
/// documentation.
fn replicate<W: Write>(
    mut out: Writer<W>,
    src: &std::path::Path,
    server_port: u16,
    target: u64,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut cap =
        pcap::Capture::from_file(src).with_context(|| format!("cannot read {}", src.display()))?;
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    while let Ok(p) = cap.next_packet() {
        let ts = p.header.ts.tv_sec as u64 * 1_000_000 + p.header.ts.tv_usec as u64;
        frames.push((ts, p.data.to_vec()));
    }
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        anyhow::bail!("{} holds no frame", src.display());
    };
    let (t0, span) = (first.0, last.0 - first.0 + 1000);
    let mut copies = 0u32;
    while out.pcap.bytes < target {
        let ip = (copies + 1).to_be_bytes();
        let client = [127, ip[1], ip[2], ip[3]];
        for (ts, f) in &frames {
            let mut f = f.clone();
            rewrite(&mut f, server_port, client);
            out.pcap.frame(u64::from(copies) * span + (ts - t0), &f)?;
        }
        copies += 1;
    }
    out.pcap.flush()?;
    outln!(
        "wrote {} ({} bytes): {copies} copies of {} ({} frames each)",
        path.display(),
        out.pcap.bytes,
        src.display(),
        frames.len()
    );
    Ok(())
}

/// Moves one Ethernet/IPv4/TCP frame's client side to `client` and its
/// server side to port 5222 (the IPv4 header checksum made right again);
/// any other frame is left as it is.
fn rewrite(f: &mut [u8], server_port: u16, client: [u8; 4]) {
    if f.len() < 34 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return;
    }
    let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
    if f.len() < l4 + 4 {
        return;
    }
    let sport = u16::from_be_bytes([f[l4], f[l4 + 1]]);
    let dport = u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]);
    let (port_at, ip_at) = if sport == server_port {
        (l4, 30)
    } else if dport == server_port {
        (l4 + 2, 26)
    } else {
        return;
    };
    f[port_at..port_at + 2].copy_from_slice(&5222u16.to_be_bytes());
    f[ip_at..ip_at + 4].copy_from_slice(&client);
    if let Ok(h) = etherparse::Ipv4HeaderSlice::from_slice(&f[14..]) {
        let sum = h.to_header().calc_header_checksum();
        f[24..26].copy_from_slice(&sum.to_be_bytes());
    }
}

//! From captured frames to TCP segments and UDP datagrams: link layer
//! (Ethernet, Linux SLL and SLL2, BSD loopback, raw IP), then IPv4 or IPv6,
//! then TCP or UDP, with etherparse.
//!
//! Checksums are not checked, on purpose: packets captured on loopback
//! carry unfinished checksums (the kernel never computes them, since they
//! never leave the machine), and a sniffer that dropped them would see
//! nothing of a lab on `lo`.

use std::net::{IpAddr, SocketAddr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// The link types this decoder reads (pcap `LINKTYPE_*` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet (1). Linux `lo` captures look like this, with zero MACs.
    Ethernet,
    /// BSD loopback (0): a 4-byte address family in host byte order.
    Null,
    /// OpenBSD loopback (108): the family in network byte order.
    Loop,
    /// Raw IPv4 or IPv6 (101, and 12/14 on some systems; 228/229).
    Raw,
    /// Linux cooked capture v1 (113), from `-i any`.
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
    /// Anything else: frames are counted, not decoded.
    Unknown(i32),
}

/// The link types [`decode`] reads, for people: named in the one-line
/// error a capture of any other type gets (see `capture`), which is better
/// than counting each of its frames as malformed.
pub const SUPPORTED_LINK_TYPES: &str = "Ethernet (1), BSD loopback (0), OpenBSD loopback (108), raw IP (101, 12, 14, 228, 229), Linux cooked capture (113, 276)";

impl LinkType {
    /// Whether [`decode`] reads frames of this type.
    pub fn is_supported(self) -> bool {
        !matches!(self, LinkType::Unknown(_))
    }

    /// From the pcap link-type number.
    pub fn from_linktype(n: i32) -> Self {
        match n {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            108 => LinkType::Loop,
            12 | 14 | 101 | 228 | 229 => LinkType::Raw,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Unknown(other),
        }
    }
}

/// One TCP segment, borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// ACK flag.
    pub ack: bool,
    /// The TCP payload.
    pub payload: &'a [u8],
}

/// One UDP datagram, borrowed from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// What a frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A TCP segment.
    Tcp(Segment<'a>),
    /// A UDP datagram.
    Udp(Datagram<'a>),
}

/// Why a frame did not yield a TCP segment or a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The link type is not one this decoder reads.
    #[error("link type {0} is not supported")]
    UnsupportedLink(i32),
    /// The link-layer header is shorter than its fixed size.
    #[error("malformed frame: {link} header cut short ({got} of {need} bytes)")]
    LinkHeaderShort {
        /// Which header: `SLL`, `SLL2` or `loopback`.
        link: &'static str,
        /// Its fixed size.
        need: usize,
        /// The bytes the frame had.
        got: usize,
    },
    /// etherparse refused the frame's headers (Ethernet, IP, IP extension
    /// or TCP): damaged, or cut short by the capture's snap length.
    #[error("malformed frame headers")]
    Headers(#[from] etherparse::err::packet::SliceError),
    /// A fragment of a fragmented IP packet (not reassembled).
    #[error("IP fragment")]
    Fragment,
    /// Neither TCP nor UDP over IP (ARP, ICMP...): not an error, just not
    /// ours.
    #[error("neither TCP nor UDP")]
    NotTcpOrUdp,
}

/// Decodes one frame of `link` into a TCP segment or a UDP datagram.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, DecodeError> {
    // The fixed-size link header before the IP packet, or why there is none.
    let after = |link: &'static str, need: usize| {
        frame.get(need..).ok_or(DecodeError::LinkHeaderShort {
            link,
            need,
            got: frame.len(),
        })
    };
    let sliced = match link {
        LinkType::Ethernet => SlicedPacket::from_ethernet(frame)?,
        LinkType::LinuxSll => {
            // 16-byte header. Parsed by hand: etherparse refuses the ARP
            // hardware type of loopback (772), which is what `-i any` gives
            // for every packet of a lab on `lo`.
            SlicedPacket::from_ip(after("SLL", 16)?)?
        }
        LinkType::Raw => SlicedPacket::from_ip(frame)?,
        LinkType::Null | LinkType::Loop => {
            // 4 bytes of address family, then the IP packet; the family's
            // byte order differs between the two, the IP version nibble
            // does not, so that is what decides.
            SlicedPacket::from_ip(after("loopback", 4)?)?
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; the payload is IP for the protocol types we
            // care about, which from_ip checks by the version nibble.
            SlicedPacket::from_ip(after("SLL2", 20)?)?
        }
        LinkType::Unknown(n) => return Err(DecodeError::UnsupportedLink(n)),
    };
    let (src_ip, dst_ip, fragmented): (IpAddr, IpAddr, bool) = match &sliced.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v4.is_payload_fragmented(),
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                h.source_addr().into(),
                h.destination_addr().into(),
                v6.is_payload_fragmented(),
            )
        }
        _ => return Err(DecodeError::NotTcpOrUdp),
    };
    if fragmented {
        return Err(DecodeError::Fragment);
    }
    let tcp = match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => tcp,
        Some(TransportSlice::Udp(udp)) => {
            return Ok(Packet::Udp(Datagram {
                src: SocketAddr::new(src_ip, udp.source_port()),
                dst: SocketAddr::new(dst_ip, udp.destination_port()),
                payload: udp.payload(),
            }));
        }
        _ => return Err(DecodeError::NotTcpOrUdp),
    };
    Ok(Packet::Tcp(Segment {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        seq: tcp.sequence_number(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        ack: tcp.ack(),
        payload: tcp.payload(),
    }))
}

/// Builds frames for tests and for the benchmark's capture generator:
/// Ethernet, IPv4 or IPv6, TCP, checksums left at zero as on loopback.
pub mod build {
    use std::net::{IpAddr, SocketAddr};

    use etherparse::PacketBuilder;

    /// TCP flags of a built segment.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct Flags {
        /// SYN.
        pub syn: bool,
        /// FIN.
        pub fin: bool,
        /// RST.
        pub rst: bool,
    }

    /// A pcap file being written: the classic format (microsecond
    /// timestamps, Ethernet frames), which every reader opens.
    pub struct PcapWriter<W: std::io::Write> {
        w: W,
        /// Bytes written so far, headers included.
        pub bytes: u64,
    }

    impl<W: std::io::Write> PcapWriter<W> {
        /// Writes the file header.
        pub fn new(mut w: W) -> std::io::Result<PcapWriter<W>> {
            // Magic (microseconds, little-endian), version 2.4, no
            // timezone offset, snap length 65535, link type 1 (Ethernet).
            w.write_all(&[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0,
            ])?;
            Ok(PcapWriter { w, bytes: 24 })
        }

        /// Appends one frame seen at `ts_us` microseconds since the epoch.
        pub fn frame(&mut self, ts_us: u64, frame: &[u8]) -> std::io::Result<()> {
            let sec = u32::try_from(ts_us / 1_000_000).unwrap_or(u32::MAX);
            let usec = (ts_us % 1_000_000) as u32;
            let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            self.w.write_all(&sec.to_le_bytes())?;
            self.w.write_all(&usec.to_le_bytes())?;
            self.w.write_all(&len.to_le_bytes())?;
            self.w.write_all(&len.to_le_bytes())?;
            self.w.write_all(frame)?;
            self.bytes += 16 + frame.len() as u64;
            Ok(())
        }

        /// Pushes what is buffered to the file.
        pub fn flush(&mut self) -> std::io::Result<()> {
            self.w.flush()
        }
    }

    /// An Ethernet frame carrying one TCP segment from `src` to `dst`.
    /// Mixed address families are a caller bug and give an empty frame.
    pub fn ethernet_tcp(
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        flags: Flags,
        payload: &[u8],
    ) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2([0; 6], [0; 6]);
        let ip = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => return Vec::new(),
        };
        // A pure SYN carries no ACK; everything after it does.
        let mut tcp = if flags.syn {
            ip.tcp(src.port(), dst.port(), seq, 65535).syn()
        } else {
            ip.tcp(src.port(), dst.port(), seq, 65535).ack(1)
        };
        if flags.fin {
            tcp = tcp.fin();
        }
        if flags.rst {
            tcp = tcp.rst();
        }
        let mut out = Vec::with_capacity(tcp.size(payload.len()));
        if tcp.write(&mut out, payload).is_err() {
            return Vec::new();
        }
        out
    }

    /// An Ethernet frame carrying one UDP datagram from `src` to `dst`.
    pub fn ethernet_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2([0; 6], [0; 6]);
        let udp = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => return Vec::new(),
        }
        .udp(src.port(), dst.port());
        let mut out = Vec::with_capacity(udp.size(payload.len()));
        if udp.write(&mut out, payload).is_err() {
            return Vec::new();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    // A frame shaped like those tcpdump captures on Linux `lo`: Ethernet
    // with zero MACs, IPv4 127.0.0.1:40000 -> 127.0.0.1:5222, PSH|ACK, payload "<a/>",
    // and a TCP checksum left unfinished (0xfe30 is only the pseudo-header
    // sum) as loopback does.
    const LO_FRAME: [u8; 58] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, // Ethernet, IPv4
        0x45, 0x00, 0x00, 0x2c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // IPv4
        127, 0, 0, 1, 127, 0, 0, 1, //
        0x9c, 0x40, 0x14, 0x66, // ports 40000 -> 5222
        0x00, 0x00, 0x03, 0xe8, // seq 1000
        0x00, 0x00, 0x00, 0x01, // ack
        0x50, 0x18, 0xff, 0xff, 0xfe, 0x30, 0x00, 0x00, // offset, PSH|ACK, window, checksum
        b'<', b'a', b'/', b'>',
    ];

    #[test]
    fn a_loopback_frame_with_an_unfinished_checksum_is_decoded() {
        let s = tcp(decode(LinkType::Ethernet, &LO_FRAME).unwrap());
        assert_eq!(s.src, addr("127.0.0.1:40000"));
        assert_eq!(s.dst, addr("127.0.0.1:5222"));
        assert_eq!(s.seq, 1000);
        assert!(s.ack && !s.syn && !s.fin && !s.rst);
        assert_eq!(s.payload, b"<a/>");
    }

    #[test]
    fn every_link_type_reaches_the_same_segment() {
        let ip = &LO_FRAME[14..];
        let mut null = vec![2, 0, 0, 0];
        null.extend_from_slice(ip);
        let mut sll = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        sll2.extend_from_slice(ip);
        for (link, frame) in [
            (LinkType::Raw, ip.to_vec()),
            (LinkType::Null, null.clone()),
            (LinkType::Loop, null),
            (LinkType::LinuxSll, sll),
            (LinkType::LinuxSll2, sll2),
        ] {
            let s = tcp(decode(link, &frame).unwrap_or_else(|e| panic!("{link:?}: {e}")));
            assert_eq!(s.payload, b"<a/>", "{link:?}");
            assert_eq!(s.dst.port(), 5222);
        }
    }

    #[test]
    fn ipv6_and_built_frames_round_trip() {
        let f = build::ethernet_tcp(
            addr("[::1]:40000"),
            addr("[::1]:5223"),
            7,
            build::Flags {
                fin: true,
                ..Default::default()
            },
            b"hi",
        );
        let s = tcp(decode(LinkType::Ethernet, &f).unwrap());
        assert_eq!(s.src, addr("[::1]:40000"));
        assert_eq!((s.seq, s.fin, s.payload), (7, true, &b"hi"[..]));
        let f = build::ethernet_udp(addr("[::1]:5353"), addr("[::1]:9999"), b"canary");
        assert_eq!(
            decode(LinkType::Ethernet, &f).unwrap(),
            Packet::Udp(Datagram {
                src: addr("[::1]:5353"),
                dst: addr("[::1]:9999"),
                payload: b"canary",
            })
        );
    }

    fn tcp(p: Packet<'_>) -> Segment<'_> {
        match p {
            Packet::Tcp(s) => s,
            other => panic!("not TCP: {other:?}"),
        }
    }

    #[test]
    fn the_supported_list_names_exactly_the_decoded_link_types() {
        let listed: Vec<i32> = SUPPORTED_LINK_TYPES
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        for n in 0..=300 {
            assert_eq!(
                LinkType::from_linktype(n).is_supported(),
                listed.contains(&n),
                "link type {n}"
            );
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        for cut in 0..LO_FRAME.len() - 4 {
            // Any prefix shorter than the headers is an error, never a panic.
            let _ = decode(LinkType::Ethernet, &LO_FRAME[..cut]);
        }
        assert!(matches!(
            decode(LinkType::Ethernet, &LO_FRAME[..20]),
            Err(DecodeError::Headers(_))
        ));
        for (link, need) in [
            (LinkType::LinuxSll, 16),
            (LinkType::LinuxSll2, 20),
            (LinkType::Null, 4),
        ] {
            assert!(
                matches!(
                    decode(link, &LO_FRAME[..need - 1]),
                    Err(DecodeError::LinkHeaderShort { got, .. }) if got == need - 1
                ),
                "{link:?}"
            );
        }
        assert_eq!(
            decode(LinkType::Unknown(147), &LO_FRAME),
            Err(DecodeError::UnsupportedLink(147))
        );
        // Another protocol (here GRE, 47) is not ours.
        let mut other = LO_FRAME;
        other[14 + 9] = 47;
        assert_eq!(
            decode(LinkType::Ethernet, &other),
            Err(DecodeError::NotTcpOrUdp)
        );
    }
}

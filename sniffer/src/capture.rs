//! Where frames come from: pcap and pcapng files, or a live interface, both
//! through libpcap. Errors are one line saying what to do.
//!
//! A capture whose link type the decoder does not read (802.11, USER0, ...)
//! is refused at once with [`CaptureError::UnsupportedLink`], naming the
//! type and what is supported, instead of counting every frame as
//! malformed: a sniffer that silently sees nothing looks like a capture with
//! nothing in it.
//!
//! pcapng files may hold several interfaces with different link types.
//! libpcap reads one link type per file, the first interface's: that one
//! decides whether the file is supported, and when a later interface of
//! another type begins, libpcap stops there. The frames before it are
//! analysed and [`FileReport::damaged`] says, in one line, why the rest was
//! not read and how to split the file ([`FileReport::mixed_link`] is set).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::decode::LinkType;

/// Why frames could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened or is not a capture.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// libpcap's error (shown after this one's words, as its cause).
        source: pcap::Error,
    },
    /// The file is something else than a capture (libpcap: "unknown file
    /// format"): said in words a student knows what to do with.
    #[error("{}: not a pcap or pcapng file", path.display())]
    NotACapture {
        /// The file.
        path: PathBuf,
    },
    /// Live capture is not allowed for this user.
    #[error(
        "cannot capture on {iface}: permission denied. Run as root, or give the binary the capability once: sudo setcap cap_net_raw,cap_net_admin=eip {exe}"
    )]
    Permission {
        /// The interface.
        iface: String,
        /// This program's path, for the command.
        exe: String,
    },
    /// The interface does not exist.
    #[error("cannot capture on {iface}: no such interface (try lo)")]
    NoInterface {
        /// The interface.
        iface: String,
    },
    /// The BPF filter does not compile.
    #[error("bad capture filter '{filter}'")]
    Filter {
        /// The filter.
        filter: String,
        /// libpcap's error (shown after this one's words, as its cause).
        source: pcap::Error,
    },
    /// The capture's link type is not one [`crate::decode`] reads.
    #[error(
        "{input}: link type {linktype} ({name}) is not supported; the sniffer reads {}",
        crate::decode::SUPPORTED_LINK_TYPES
    )]
    UnsupportedLink {
        /// The file, or `interface NAME`.
        input: String,
        /// The pcap link-type number.
        linktype: i32,
        /// libpcap's name and description of it.
        name: String,
    },
    /// A libpcap failure on a live interface other than the two above.
    #[error("capture failed on {iface}")]
    Live {
        /// The interface.
        iface: String,
        /// libpcap's error (shown after this one's words, as its cause).
        source: pcap::Error,
    },
}

/// libpcap's name for a link type (`IEEE802_11, 802.11`). libpcap leaves
/// the private-use types 147 to 162 unnamed; they are named here.
fn link_name(n: i32) -> String {
    let l = pcap::Linktype(n);
    match (l.get_name(), l.get_description()) {
        (Ok(name), Ok(d)) if d != name => format!("{name}, {d}"),
        (Ok(name), _) => name,
        _ if (147..=162).contains(&n) => format!("USER{}, private use", n - 147),
        _ => "unknown to libpcap".into(),
    }
}

/// Refuses a capture whose link type cannot be decoded.
fn check_link(input: impl FnOnce() -> String, dlt: i32) -> Result<LinkType, CaptureError> {
    let link = LinkType::from_linktype(dlt);
    if link.is_supported() {
        Ok(link)
    } else {
        Err(CaptureError::UnsupportedLink {
            input: input(),
            linktype: dlt,
            name: link_name(dlt),
        })
    }
}

/// The words libpcap (1.x, `sf-pcapng.c`) stops a pcapng file with when an
/// interface's link type differs from the first interface's.
const PCAPNG_MIXED_LINK: &str = "different from the type of the first interface";

fn ts_of(h: &pcap::PacketHeader) -> f64 {
    h.ts.tv_sec as f64 + h.ts.tv_usec as f64 / 1e6
}

/// How reading a file went.
#[derive(Debug, Default)]
pub struct FileReport {
    /// Frames read.
    pub frames: u64,
    /// Set when the file ended in the middle of a frame or was damaged, or
    /// a pcapng interface of another link type began: what was read before
    /// still counts.
    pub damaged: Option<String>,
    /// Reading stopped at a pcapng interface of another link type.
    pub mixed_link: bool,
}

/// Reads every frame of a pcap or pcapng file, in order, calling `f` with
/// its link type, capture time and bytes. `progress` gets the bytes read so
/// far (frame headers included).
pub fn read_file(
    path: &Path,
    filter: Option<&str>,
    mut f: impl FnMut(LinkType, f64, &[u8]),
    mut progress: impl FnMut(u64),
) -> Result<FileReport, CaptureError> {
    let mut cap = pcap::Capture::from_file(path).map_err(|source| match &source {
        pcap::Error::PcapError(m) if m.contains("unknown file format") => {
            CaptureError::NotACapture {
                path: path.to_path_buf(),
            }
        }
        _ => CaptureError::File {
            path: path.to_path_buf(),
            source,
        },
    })?;
    apply_filter(&mut cap, filter)?;
    let dlt = cap.get_datalink().0;
    let link = check_link(|| path.display().to_string(), dlt)?;
    let mut report = FileReport::default();
    let mut read = 24u64;
    loop {
        match cap.next_packet() {
            Ok(p) => {
                report.frames += 1;
                read += 16 + u64::from(p.header.caplen);
                f(link, ts_of(p.header), p.data);
                if report.frames.is_multiple_of(4096) {
                    progress(read);
                }
            }
            Err(pcap::Error::NoMorePackets) => break,
            Err(e) if e.to_string().contains(PCAPNG_MIXED_LINK) => {
                report.mixed_link = true;
                report.damaged = Some(format!(
                    "{}: read stopped after {} frames, where an interface of another link type begins ({e}): libpcap reads only the first interface's type, {dlt} ({}); split the file per interface (tshark -r FILE -Y 'frame.interface_id == N' -w PART.pcapng) to read the rest",
                    path.display(),
                    report.frames,
                    link_name(dlt),
                ));
                break;
            }
            Err(e) => {
                report.damaged = Some(format!(
                    "{}: damaged or cut short after {} frames ({e}); the frames before were analysed",
                    path.display(),
                    report.frames
                ));
                break;
            }
        }
    }
    progress(read);
    Ok(report)
}

/// A live capture, optionally saving what it sees.
pub struct Live {
    cap: pcap::Capture<pcap::Active>,
    save: Option<pcap::Savefile>,
    link: LinkType,
    iface: String,
}

/// Compiles and sets a BPF filter (`tcp port 5222`), if one was given.
fn apply_filter<T: pcap::Activated + ?Sized>(
    cap: &mut pcap::Capture<T>,
    filter: Option<&str>,
) -> Result<(), CaptureError> {
    if let Some(bpf) = filter {
        cap.filter(bpf, true)
            .map_err(|source| CaptureError::Filter {
                filter: bpf.into(),
                source,
            })?;
    }
    Ok(())
}

/// The kernel's buffer for packets captured and not yet read, in bytes.
/// libpcap's default is 2 MiB: on loopback, whose packets reach 64 KiB,
/// that is about 32 packets, and a busy machine that leaves the sniffer
/// unscheduled for a moment loses the rest (seen: the leak check's
/// plaintext run missed a message it had sent). 32 MiB rides out such
/// pauses; what is dropped anyway is counted (see [`Live::dropped`]).
pub const CAPTURE_BUFFER_BYTES: i32 = 32 * 1024 * 1024;

/// Longest wait for a packet before the stop flag is looked at again, in
/// milliseconds (a packet ends the wait at once).
const STOP_CHECK_MS: u16 = 50;

/// How long a stopped capture keeps reading what the kernel already holds,
/// at most: enough to empty a full buffer, bounded for a link that never
/// goes quiet.
const DRAIN_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the kernel holds captured packets before handing them over, in
/// milliseconds: at most this late on the projector, which no one sees.
///
/// Not libpcap's immediate mode, which hands over each packet at once: on
/// Linux it uses a ring of fixed slots, each as large as the snap length
/// (256 KiB), so a 32 MiB buffer held only 128 packets and a burst of
/// small ones overflowed it (measured: 1,032 of 39,651 packets dropped at
/// 7,400 packets/s, where tcpdump, in this mode, dropped none). This mode
/// packs packets by their real size into blocks handed over when full or
/// after this timeout.
const BLOCK_TIMEOUT_MS: u16 = 20;

/// Opens `iface`: packets handed over in blocks, at most
/// [`BLOCK_TIMEOUT_MS`] late.
pub fn open_live(
    iface: &str,
    filter: Option<&str>,
    write: Option<&Path>,
) -> Result<Live, CaptureError> {
    // libpcap tells these failures apart only in its words (one error
    // code for all of them), so the words pick the variant.
    let live_err = |source: pcap::Error| {
        let lower = source.to_string().to_lowercase();
        if lower.contains("permission") || lower.contains("not permitted") {
            CaptureError::Permission {
                iface: iface.into(),
                exe: std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "sniffer".into()),
            }
        } else if lower.contains("no such device") || lower.contains("doesn't exist") {
            CaptureError::NoInterface {
                iface: iface.into(),
            }
        } else {
            CaptureError::Live {
                iface: iface.into(),
                source,
            }
        }
    };
    // Non-blocking: the loop below waits on the descriptor itself, so it
    // sees the stop flag whether or not traffic comes.
    let mut cap = pcap::Capture::from_device(iface)
        .map_err(live_err)?
        .buffer_size(CAPTURE_BUFFER_BYTES)
        .snaplen(262_144)
        .timeout(i32::from(BLOCK_TIMEOUT_MS))
        .open()
        .map_err(live_err)?
        .setnonblock()
        .map_err(live_err)?;
    apply_filter(&mut cap, filter)?;
    let save = match write {
        Some(p) => Some(cap.savefile(p).map_err(|source| CaptureError::File {
            path: p.to_path_buf(),
            source,
        })?),
        None => None,
    };
    // Before any frame: a monitor-mode Wi-Fi interface (802.11, radiotap)
    // would otherwise show nothing but malformed frames.
    let link = check_link(|| format!("interface {iface}"), cap.get_datalink().0)?;
    Ok(Live {
        cap,
        save,
        link,
        iface: iface.to_string(),
    })
}

impl Live {
    /// Captures until `stop` is set, calling `f` for each frame.
    pub fn run(
        &mut self,
        stop: &Arc<AtomicBool>,
        mut f: impl FnMut(LinkType, f64, &[u8]),
    ) -> Result<u64, CaptureError> {
        let mut n = 0u64;
        // Once stopped, what the kernel already holds is still read: the
        // packets of a command that has exited are all in the buffer, and
        // stopping at the flag would leave the last of them unjudged.
        let mut drain_until: Option<std::time::Instant> = None;
        loop {
            if drain_until.is_none() && stop.load(Ordering::Relaxed) {
                drain_until = Some(std::time::Instant::now() + DRAIN_AFTER_STOP);
            }
            if drain_until.is_some_and(|t| std::time::Instant::now() >= t) {
                break;
            }
            match self.cap.next_packet() {
                Ok(p) => {
                    n += 1;
                    if let Some(s) = self.save.as_mut() {
                        s.write(&p);
                    }
                    f(self.link, ts_of(p.header), p.data);
                }
                // Nothing waiting: done if stopping, else wait until the
                // kernel has a packet (poll on libpcap's descriptor wakes at
                // once: no sleeping while packets pile up), or a short
                // while, to see the stop flag.
                Err(pcap::Error::TimeoutExpired) => {
                    // Stopping: the last block may still be filling; once
                    // the kernel has had time to hand it over and nothing
                    // comes, everything captured has been read.
                    let wait = if drain_until.is_some() {
                        2 * BLOCK_TIMEOUT_MS
                    } else {
                        STOP_CHECK_MS
                    };
                    let mut fds = [PollFd::new(self.cap.as_fd(), PollFlags::POLLIN)];
                    // EINTR (Ctrl-C) just ends the wait early.
                    let ready = poll(&mut fds, PollTimeout::from(wait)).unwrap_or(0);
                    if ready == 0 && drain_until.is_some() {
                        break;
                    }
                }
                Err(source) => {
                    return Err(CaptureError::Live {
                        iface: self.iface.clone(),
                        source,
                    });
                }
            }
        }
        if let Some(s) = self.save.as_mut() {
            let _ = s.flush();
        }
        Ok(n)
    }

    /// Packets the kernel dropped since the capture opened because the
    /// sniffer did not read them in time (or the interface dropped them).
    /// Anything above zero means some traffic was never seen.
    pub fn dropped(&mut self) -> u64 {
        self.cap
            .stats()
            .map(|st| u64::from(st.dropped) + u64::from(st.if_dropped))
            .unwrap_or(0)
    }

    /// Reads what is already captured, for up to `for_ms` milliseconds
    /// without new packets (the tail after a guarded command exits).
    pub fn drain(
        &mut self,
        for_ms: u64,
        f: impl FnMut(LinkType, f64, &[u8]),
    ) -> Result<u64, CaptureError> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(for_ms));
            s.store(true, Ordering::Relaxed);
        });
        let r = self.run(&stop, f);
        let _ = t.join();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_truncated_and_garbage_files_are_one_line_errors() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("none.pcap");
        let e = read_file(&missing, None, |_, _, _| {}, |_| {}).unwrap_err();
        assert!(e.to_string().starts_with("cannot read"), "{e}");
        let garbage = d.path().join("garbage.pcap");
        std::fs::write(&garbage, b"this is not a capture file at all").unwrap();
        assert!(read_file(&garbage, None, |_, _, _| {}, |_| {}).is_err());

        // A valid header and one frame, then a frame cut in half.
        let mut pcap = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0,
            0,
        ];
        let frame = crate::decode::build::ethernet_tcp(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            1,
            Default::default(),
            b"x",
        );
        let rec = |buf: &mut Vec<u8>, f: &[u8]| {
            buf.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
            buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            buf.extend_from_slice(f);
        };
        rec(&mut pcap, &frame);
        rec(&mut pcap, &frame);
        pcap.truncate(pcap.len() - 10);
        let cut = d.path().join("cut.pcap");
        std::fs::write(&cut, &pcap).unwrap();
        let mut seen = 0;
        let r = read_file(&cut, None, |_, _, _| seen += 1, |_| {}).unwrap();
        assert_eq!((r.frames, seen), (1, 1));
        assert!(r.damaged.unwrap().contains("cut short after 1 frames"));
    }

    /// A pcapng block: type, body padded to 4 bytes, length at both ends.
    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    /// A pcapng file: for each `(frames, link type)` of `links`, an
    /// interface of that type followed by that many copies of `frame`.
    fn pcapng(links: &[(usize, u16)], frame: &[u8]) -> Vec<u8> {
        // Section header: byte-order magic, version 1.0, unknown length.
        let mut shb = 0x1a2b_3c4d_u32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut f = block(0x0a0d_0d0a, &shb);
        for (interface, &(frames, link)) in (0u32..).zip(links) {
            let mut idb = link.to_le_bytes().to_vec();
            idb.extend_from_slice(&[0, 0, 0xff, 0xff, 0, 0]);
            f.extend(block(1, &idb));
            for _ in 0..frames {
                let mut epb = interface.to_le_bytes().to_vec();
                epb.extend_from_slice(&[0; 8]);
                epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
                epb.extend_from_slice(frame);
                f.extend(block(6, &epb));
            }
        }
        f
    }

    #[test]
    fn an_unsupported_link_type_is_one_clear_error_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let frame = [0u8; 40];
        // Classic pcap, link type 147 (USER0).
        let mut pcap = vec![
            0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 147, 0,
            0, 0,
        ];
        pcap.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0, 40, 0, 0, 0]);
        pcap.extend_from_slice(&frame);
        let user0 = d.path().join("user0.pcap");
        std::fs::write(&user0, &pcap).unwrap();
        // pcapng, 802.11 (105), then an Ethernet interface it never reaches.
        let wifi = d.path().join("wifi.pcapng");
        std::fs::write(&wifi, pcapng(&[(2, 105), (1, 1)], &frame)).unwrap();
        for (file, n, name) in [(&user0, 147, "USER0"), (&wifi, 105, "802.11")] {
            let mut seen = 0;
            let e = read_file(file, None, |_, _, _| seen += 1, |_| {}).unwrap_err();
            assert!(
                matches!(e, CaptureError::UnsupportedLink { linktype, .. } if linktype == n),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("link type {n} (")) && msg.contains(name),
                "{msg}"
            );
            assert!(msg.contains("Ethernet (1)") && !msg.contains('\n'), "{msg}");
            assert_eq!(seen, 0, "no frame is handed on");
        }
    }

    #[test]
    fn a_pcapng_interface_of_another_link_type_stops_reading_with_a_clear_line() {
        let d = tempfile::tempdir().unwrap();
        let frame = crate::decode::build::ethernet_tcp(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            1,
            Default::default(),
            b"x",
        );
        let mixed = d.path().join("mixed.pcapng");
        // Two Ethernet frames, then a USER0 interface and its frame.
        std::fs::write(&mixed, pcapng(&[(2, 1), (1, 147)], &frame)).unwrap();
        let mut seen = 0;
        let r = read_file(&mixed, None, |_, _, _| seen += 1, |_| {}).unwrap();
        assert_eq!((r.frames, seen), (2, 2));
        assert!(r.mixed_link);
        let msg = r.damaged.unwrap();
        assert!(
            msg.contains("after 2 frames")
                && msg.contains("another link type")
                && msg.contains("type 147"),
            "{msg}"
        );
    }
}

//! TLS records seen as bytes going past (RFC 8446 5.1, RFC 5246 6.2): the
//! proxy cannot read them, but it can count them, and for `corrupt-tls`
//! flip one bit of one.
//!
//! A record is a 5-byte header (content type, version, length) and its
//! payload. Records arrive split across reads however TCP cut them, so the
//! tracker keeps its place between calls.

/// Content type of application data (23). Under TLS 1.3 every record
/// after the hellos has this outer type, encrypted handshake included.
pub const APPLICATION_DATA: u8 = 23;

/// The largest record payload a peer may send (2^14 plus the expansion
/// TLS 1.2 allows); a larger length means the bytes are not TLS records.
const MAX_PAYLOAD: usize = 16_384 + 2048;

/// Where the tracker is in the record stream.
#[derive(Debug, Default)]
pub struct Records {
    header: [u8; 5],
    /// Header bytes seen of the current record.
    filled: usize,
    /// Payload bytes of the current record still to come.
    remaining: usize,
    /// Content type of the current record.
    kind: u8,
    /// Application-data records seen so far (the current one included).
    app_data: u64,
    /// Flip a bit in this application-data record (1-based), if any.
    target: Option<u64>,
    /// Whether the flip happened.
    flipped: bool,
    /// The bytes stopped looking like TLS records.
    lost: bool,
}

impl Records {
    /// A tracker that flips one bit in application-data record `target`
    /// (counting from 1), or only counts with `None`.
    pub fn new(target: Option<u64>) -> Records {
        Records {
            target,
            ..Records::default()
        }
    }

    /// Application-data records seen so far.
    pub fn app_data(&self) -> u64 {
        self.app_data
    }

    /// Whether the bit was flipped.
    pub fn flipped(&self) -> bool {
        self.flipped
    }

    /// Follows `data` through the record stream, flipping the chosen bit
    /// in place when it goes past.
    pub fn track(&mut self, data: &mut [u8]) {
        let mut i = 0;
        while i < data.len() && !self.lost {
            if self.remaining == 0 && self.filled < 5 {
                self.header[self.filled] = data[i];
                self.filled += 1;
                i += 1;
                if self.filled == 5 {
                    self.kind = self.header[0];
                    let len = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                    if len > MAX_PAYLOAD || !(20..=24).contains(&self.kind) {
                        // Not (or no longer) TLS: stop following.
                        self.lost = true;
                        return;
                    }
                    self.remaining = len;
                    self.filled = 0;
                    if self.kind == APPLICATION_DATA {
                        self.app_data += 1;
                    }
                }
                continue;
            }
            let take = self.remaining.min(data.len() - i);
            if self.kind == APPLICATION_DATA
                && !self.flipped
                && self.target == Some(self.app_data)
                && take > 0
            {
                // The first payload byte in reach: its lowest bit. Any bit
                // will do; the AEAD tag covers every one.
                data[i] ^= 0x01;
                self.flipped = true;
            }
            self.remaining -= take;
            i += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn counts_records_and_flips_one_bit_of_the_chosen_one_however_split() {
        let mut stream = record(22, b"hello");
        stream.extend(record(APPLICATION_DATA, b"first"));
        stream.extend(record(APPLICATION_DATA, b"second"));
        stream.extend(record(APPLICATION_DATA, b"third"));
        for chunk in [1, 2, 7, stream.len()] {
            let mut t = Records::new(Some(2));
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                let mut p = piece.to_vec();
                t.track(&mut p);
                out.extend(p);
            }
            assert_eq!(t.app_data(), 3, "chunks of {chunk}");
            assert!(t.flipped());
            let diff: Vec<usize> = (0..out.len()).filter(|&i| out[i] != stream[i]).collect();
            // Exactly one bit, in the second application-data payload.
            let at = stream.windows(6).position(|w| w == b"second").unwrap();
            assert_eq!(diff, vec![at], "chunks of {chunk}");
            assert_eq!(out[at] ^ stream[at], 1);
        }
    }

    #[test]
    fn bytes_that_are_not_tls_are_left_alone() {
        let mut t = Records::new(Some(1));
        let mut data = b"<message>not tls</message>".to_vec();
        let before = data.clone();
        t.track(&mut data);
        assert_eq!(data, before);
        assert!(!t.flipped());
    }
}

//! Channel binding (RFC 5056) for SCRAM-*-PLUS, and the list a SCRAM
//! exchange signs against downgrades (XEP-0474).
//!
//! **The attack it stops.** A man in the middle who holds a certificate the
//! client accepts (a CA the client trusts by mistake, a stolen key) ends
//! the client's TLS and opens his own to the server. SCRAM alone does not
//! notice: the proof is valid on any channel, so the attacker relays it and
//! is signed in as the victim. With channel binding the client mixes a
//! value of *its* TLS channel into the proof (the `c=` attribute, covered
//! by the HMAC). The server compares it with the same value of *its*
//! channel. Through a relay there are two channels with two different
//! values, and the sign-in fails: the attacker never gets a proof that is
//! good on the server's side.
//!
//! The binding types:
//! - `tls-exporter` (RFC 9266): 32 bytes exported from the TLS session
//!   with the label `EXPORTER-Channel-Binding` (RFC 5705 / RFC 8446 7.5).
//!   Unique to the session; the one TLS 1.3 defines.
//! - `tls-server-end-point` (RFC 5929 4.1): the hash of the server's
//!   certificate. Weaker (a relay holding the server's own key passes it)
//!   but available on every TLS version and behind TLS offloaders.
//!
//! The GS2 header that starts the client-first message says what the
//! client does: `n` (no binding support), `y` (supports it but thinks the
//! server does not), `p=TYPE` (binds to TYPE). `y` is itself a downgrade
//! detector (RFC 5802 6): a server that offers -PLUS and receives `y`
//! knows someone removed -PLUS from what the client saw.

/// A channel-binding type this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelBindingType {
    /// RFC 9266: keying material exported from the TLS session.
    TlsExporter,
    /// RFC 5929: the hash of the server's certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// Every type, the client's preference first.
    pub const ALL: [ChannelBindingType; 2] = [
        ChannelBindingType::TlsExporter,
        ChannelBindingType::TlsServerEndPoint,
    ];

    /// The IANA name, as in the GS2 header and XEP-0440.
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses an IANA name.
    pub fn parse(s: &str) -> Option<ChannelBindingType> {
        ChannelBindingType::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// The label RFC 9266 exports `tls-exporter` data with (no context).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// How many bytes `tls-exporter` exports (RFC 9266 2).
pub const EXPORTER_LENGTH: usize = 32;

/// One side's value of one binding type for its TLS channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBinding {
    /// The type.
    pub kind: ChannelBindingType,
    /// The value: exported bytes, or the certificate hash.
    pub data: Vec<u8>,
}

/// What the client's GS2 header says about channel binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gs2 {
    /// `n`: the client does not support channel binding (no TLS).
    No,
    /// `y`: the client supports it but the server did not seem to offer
    /// it. A server that does offer it fails the exchange: the offer was
    /// removed on the way (a downgrade).
    NotOffered,
    /// `p=TYPE`: bound to this channel value.
    Bound(ChannelBinding),
}

impl Gs2 {
    /// The GS2 header, without authzid: `n,,`, `y,,` or `p=TYPE,,`.
    pub fn header(&self) -> String {
        match self {
            Gs2::No => "n,,".into(),
            Gs2::NotOffered => "y,,".into(),
            Gs2::Bound(b) => format!("p={},,", b.kind.name()),
        }
    }

    /// The channel-binding input the client-final `c=` attribute carries
    /// (before base64): the GS2 header, then the binding data if any.
    pub fn cbind_input(&self) -> Vec<u8> {
        let mut v = self.header().into_bytes();
        if let Gs2::Bound(b) = self {
            v.extend_from_slice(&b.data);
        }
        v
    }
}

/// The string XEP-0474 hashes: the mechanisms offered, sorted by octet
/// and joined by 0x1E; then, if channel-binding types were announced
/// (XEP-0440), 0x1F and those types, sorted and joined the same way.
///
/// The server puts the hash of this in its SCRAM server-first message (the
/// `h` attribute), which the client's proof then covers. A client that
/// computes a different hash from the features it saw knows the offer was
/// changed on the way (a mechanism or binding type removed), and stops
/// before it proves anything.
pub fn downgrade_input(mechanisms: &[&str], binding_types: Option<&[&str]>) -> Vec<u8> {
    let mut mechs = mechanisms.to_vec();
    mechs.sort_unstable();
    let mut s = mechs.join("\u{1e}");
    if let Some(types) = binding_types {
        let mut types = types.to_vec();
        types.sort_unstable();
        s.push('\u{1f}');
        s.push_str(&types.join("\u{1e}"));
    }
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gs2_headers_and_cbind_input() {
        assert_eq!(Gs2::No.header(), "n,,");
        assert_eq!(Gs2::NotOffered.header(), "y,,");
        let b = Gs2::Bound(ChannelBinding {
            kind: ChannelBindingType::TlsExporter,
            data: b"THIS IS FAKE CB DATA".to_vec(),
        });
        assert_eq!(b.header(), "p=tls-exporter,,");
        // XEP-0474's example: c=cD10bHMtZXhwb3J0ZXIsLFRISVMgSVMgRkFLRSBDQiBEQVRB.
        assert_eq!(b.cbind_input(), b"p=tls-exporter,,THIS IS FAKE CB DATA");
        let e = Gs2::Bound(ChannelBinding {
            kind: ChannelBindingType::TlsServerEndPoint,
            data: vec![0xab; 32],
        });
        assert_eq!(e.header(), "p=tls-server-end-point,,");
    }

    #[test]
    fn downgrade_input_sorts_by_octet() {
        // XEP-0474's example, given in another order.
        assert_eq!(
            downgrade_input(
                &["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"],
                Some(&["tls-server-end-point", "tls-exporter"])
            ),
            b"SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point"
        );
        assert_eq!(
            downgrade_input(&["SCRAM-SHA-256", "PLAIN"], None),
            b"PLAIN\x1eSCRAM-SHA-256"
        );
    }

    #[test]
    fn type_names() {
        for t in ChannelBindingType::ALL {
            assert_eq!(ChannelBindingType::parse(t.name()), Some(t));
        }
        assert_eq!(ChannelBindingType::parse("tls-unique"), None);
    }
}

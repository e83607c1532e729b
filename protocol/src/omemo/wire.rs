//! The protobuf messages of both versions (proto2: every required field is
//! written, zeros included, as the reference writes them), and OMEMO 0.3's
//! containers around them.

use prost::Message;

use super::{OLD_MESSAGE_VERSION, OmemoError};

/// OMEMO 2: a ratchet message (header and ciphertext).
#[derive(Clone, PartialEq, Message)]
pub struct TwoMessage {
    /// Its number in the sending chain.
    #[prost(uint32, required, tag = "1")]
    pub n: u32,
    /// The length of the sender's previous sending chain.
    #[prost(uint32, required, tag = "2")]
    pub pn: u32,
    /// The sender's ratchet public key.
    #[prost(bytes = "vec", required, tag = "3")]
    pub dh_pub: Vec<u8>,
    /// AES-256-CBC of the key material.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub ciphertext: Option<Vec<u8>>,
}

/// OMEMO 2: a ratchet message with its MAC.
#[derive(Clone, PartialEq, Message)]
pub struct TwoAuthenticated {
    /// HMAC-SHA-256 truncated to 16 bytes.
    #[prost(bytes = "vec", required, tag = "1")]
    pub mac: Vec<u8>,
    /// A serialized [`TwoMessage`], as it was MACed.
    #[prost(bytes = "vec", required, tag = "2")]
    pub message: Vec<u8>,
}

/// OMEMO 2: the key exchange that starts a session.
#[derive(Clone, PartialEq, Message)]
pub struct TwoKeyExchange {
    /// The recipient's one-time pre key used.
    #[prost(uint32, required, tag = "1")]
    pub pk_id: u32,
    /// The recipient's signed pre key used.
    #[prost(uint32, required, tag = "2")]
    pub spk_id: u32,
    /// The sender's identity key (Ed25519).
    #[prost(bytes = "vec", required, tag = "3")]
    pub ik: Vec<u8>,
    /// The sender's ephemeral key.
    #[prost(bytes = "vec", required, tag = "4")]
    pub ek: Vec<u8>,
    /// The first message.
    #[prost(message, required, tag = "5")]
    pub message: TwoAuthenticated,
}

/// OMEMO 0.3 (libsignal's WhisperMessage): a ratchet message.
#[derive(Clone, PartialEq, Message)]
pub struct OldMessage {
    /// The sender's ratchet public key, with its 0x05 type byte.
    #[prost(bytes = "vec", required, tag = "1")]
    pub dh_pub: Vec<u8>,
    /// Its number in the sending chain.
    #[prost(uint32, required, tag = "2")]
    pub n: u32,
    /// The length of the sender's previous sending chain.
    #[prost(uint32, required, tag = "3")]
    pub pn: u32,
    /// AES-256-CBC of the key material.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub ciphertext: Option<Vec<u8>>,
}

/// OMEMO 0.3 (libsignal's PreKeyWhisperMessage): the key exchange.
#[derive(Clone, PartialEq, Message)]
pub struct OldKeyExchange {
    /// The recipient's one-time pre key used.
    #[prost(uint32, required, tag = "1")]
    pub pk_id: u32,
    /// The sender's ephemeral key (0x05-prefixed).
    #[prost(bytes = "vec", required, tag = "2")]
    pub ek: Vec<u8>,
    /// The sender's identity key (Curve25519, 0x05-prefixed).
    #[prost(bytes = "vec", required, tag = "3")]
    pub ik: Vec<u8>,
    /// The first message: `0x33 ‖ OldMessage ‖ mac(8)`.
    #[prost(bytes = "vec", required, tag = "4")]
    pub message: Vec<u8>,
    /// libsignal's registration id; OMEMO leaves it out.
    #[prost(uint32, optional, tag = "5")]
    pub registration_id: Option<u32>,
    /// The recipient's signed pre key used.
    #[prost(uint32, required, tag = "6")]
    pub spk_id: u32,
}

/// Decodes a protobuf message, as one error for the user.
pub fn decode<M: Message + Default>(bytes: &[u8], what: &'static str) -> Result<M, OmemoError> {
    M::decode(bytes).map_err(|_| OmemoError::Malformed(what))
}

/// OMEMO 0.3's authenticated message: `0x33 ‖ message ‖ mac`, split.
pub fn split_old(bytes: &[u8]) -> Result<(&[u8], &[u8]), OmemoError> {
    match bytes.split_first() {
        Some((&OLD_MESSAGE_VERSION, rest)) if rest.len() > OLD_MAC_LEN => {
            Ok(rest.split_at(rest.len() - OLD_MAC_LEN))
        }
        Some((&OLD_MESSAGE_VERSION, _)) => Err(OmemoError::Malformed("a message too short")),
        _ => Err(OmemoError::Malformed("a message of an unknown version")),
    }
}

/// The length of OMEMO 0.3's truncated MAC.
pub const OLD_MAC_LEN: usize = 8;

/// The length of OMEMO 2's truncated MAC.
pub const TWO_MAC_LEN: usize = 16;

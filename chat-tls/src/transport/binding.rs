//! The values of a TLS channel that SCRAM-*-PLUS binds a sign-in to
//! (see `protocol::sasl` for the attack this stops: a relay that ends the
//! client's TLS with a certificate the client trusts).
//!
//! Each end computes them from its own side of its own channel. Through a
//! relay the client's channel and the server's are two different TLS
//! sessions, so the values differ and the server refuses the proof.

use protocol::sasl::{ChannelBinding, ChannelBindingType, EXPORTER_LABEL, EXPORTER_LENGTH};
use rustls::{ConnectionCommon, ProtocolVersion};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// `tls-server-end-point` (RFC 5929 4.1): the server certificate hashed
/// with the hash of its own signature algorithm; SHA-256 when that is MD5
/// or SHA-1, and for algorithms with no hash of their own (Ed25519), as
/// other implementations do. `None` for bytes that are not a certificate.
pub fn server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    Some(match oid.as_str() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Sha384::digest(cert_der).to_vec(),
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Sha512::digest(cert_der).to_vec(),
        _ => Sha256::digest(cert_der).to_vec(),
    })
}

/// This end's channel values once the handshake is done: `tls-exporter`
/// on TLS 1.3 (RFC 9266 forbids it on TLS 1.2 without the extended master
/// secret, which the peer may not have used), and `tls-server-end-point`,
/// the [`server_end_point`] hash (of our own certificate on the server,
/// computed once; of the peer's on the client).
pub fn channel_bindings<D>(
    conn: &ConnectionCommon<D>,
    end_point: Option<Vec<u8>>,
) -> Vec<ChannelBinding> {
    let mut out = Vec::new();
    if conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
        && let Ok(data) = conn.export_keying_material([0u8; EXPORTER_LENGTH], EXPORTER_LABEL, None)
    {
        out.push(ChannelBinding {
            kind: ChannelBindingType::TlsExporter,
            data: data.to_vec(),
        });
    }
    if let Some(data) = end_point {
        out.push(ChannelBinding {
            kind: ChannelBindingType::TlsServerEndPoint,
            data,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_point_hash_follows_the_signature_algorithm() {
        // rcgen signs with ECDSA P-256/SHA-256 by default, P-384 with SHA-384.
        for (alg, len) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, 32),
            (&rcgen::PKCS_ECDSA_P384_SHA384, 48),
            (&rcgen::PKCS_ED25519, 32),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let hash = server_end_point(cert.der()).unwrap();
            assert_eq!(hash.len(), len, "{alg:?}");
        }
        assert_eq!(server_end_point(b"not a certificate"), None);
    }
}

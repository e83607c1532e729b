//! How the client decides to trust the server: the certificate chain must
//! lead to a CA it trusts and name the server (the defence against a man in
//! the middle with his own certificate), and optionally the server's public
//! key must be the pinned one (the defence even against a CA that was
//! tricked or compromised into signing a forged certificate).

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest, Sha256};

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, the value a pin
/// names (`sha256:BASE64`, as HPKP and curl's `--pinnedpubkey` use). The key
/// survives certificate renewals; the certificate does not.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], PinError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| PinError::BadCertificate(e.to_string()))?;
    Ok(Sha256::digest(parsed.tbs_certificate.subject_pki.raw).into())
}

/// Why a pin or the key it names cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// The pin does not start with `sha256:`.
    #[error("--pin '{0}' must look like sha256:BASE64")]
    NotSha256(String),
    /// The part after `sha256:` is not base64.
    #[error("--pin '{pin}': bad base64 ({reason})")]
    BadBase64 {
        /// The pin as given.
        pin: String,
        /// The decoder's complaint.
        reason: String,
    },
    /// The hash is not 32 bytes long.
    #[error("--pin '{0}': a SHA-256 is 32 bytes")]
    WrongLength(String),
    /// The certificate whose key a pin would name is not X.509 DER.
    #[error("cannot parse the certificate: {0}")]
    BadCertificate(String),
}

/// A pin as written on the command line and in messages.
pub fn pin_text(hash: &[u8; 32]) -> String {
    format!("sha256:{}", B64.encode(hash))
}

/// Parses `sha256:BASE64` into the hash.
pub fn parse_pin(text: &str) -> Result<[u8; 32], PinError> {
    let b64 = text
        .strip_prefix("sha256:")
        .ok_or_else(|| PinError::NotSha256(text.to_string()))?;
    let bytes = B64.decode(b64.trim()).map_err(|e| PinError::BadBase64 {
        pin: text.to_string(),
        reason: e.to_string(),
    })?;
    bytes
        .try_into()
        .map_err(|_| PinError::WrongLength(text.to_string()))
}

/// The server's key is not the pinned one.
#[derive(Debug)]
pub struct PinMismatch {
    expected: [u8; 32],
    got: [u8; 32],
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "public key pin mismatch: the server's key is {}, the pin is {}",
            pin_text(&self.got),
            pin_text(&self.expected)
        )
    }
}

impl std::error::Error for PinMismatch {}

/// Chain and name checks (unless `--insecure`), then the pin (if any).
/// Handshake signatures are always checked: even `--insecure` makes the
/// server prove it holds the key of the certificate it sent.
#[derive(Debug)]
pub struct Verifier {
    /// `None` with `--insecure`: any certificate is accepted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
    /// The key of the last certificate shown, accepted or not: what the
    /// user compares with the server's real key (lab 3).
    seen: std::sync::Mutex<Option<[u8; 32]>>,
}

impl Verifier {
    /// A verifier over `webpki` (or none, for `--insecure`) and a pin.
    pub fn new(
        webpki: Option<Arc<WebPkiServerVerifier>>,
        pin: Option<[u8; 32]>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Verifier {
            webpki,
            pin,
            provider,
            seen: std::sync::Mutex::new(None),
        }
    }

    /// Forgets the last key (a new handshake begins).
    pub fn forget(&self) {
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The pin of the last certificate's key the server showed (`sha256:...`).
    pub fn seen_key(&self) -> Option<String> {
        let seen = *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.as_ref().map(pin_text)
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = spki_sha256(end_entity).ok();
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        if let Some(w) = &self.webpki {
            w.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(expected) = self.pin {
            let got = key.ok_or(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ))?;
            if got != expected {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    OtherError(Arc::new(PinMismatch { expected, got })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One line naming why a handshake failed, for people: the cases a student
/// meets (unknown issuer, name mismatch, expired, pin mismatch) get their
/// own words; anything else keeps rustls's.
pub fn explain(e: &std::io::Error, domain: &str) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    let Some(err) = inner else {
        return e.to_string();
    };
    match err {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => "certificate not trusted: unknown issuer (it is not signed by a CA you trust; for the lab CA pass --ca ca.pem; an interception proxy's forged certificate fails exactly like this)".to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate name mismatch: it is not valid for '{domain}'")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired: its validity period has ended".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet (check the clock)".to_string()
            }
            CertificateError::BadSignature => "certificate not trusted: its signature does not verify with the CA you trust (a certificate forged under that CA's name looks like this)".to_string(),
            CertificateError::Other(o) => o.to_string(),
            other => format!("invalid certificate: {other:?}"),
        },
        // What came back was not TLS at all: an XMPP stream header, most
        // likely, from a port that expects STARTTLS.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the server did not answer with TLS: is this the STARTTLS port? drop --direct-tls (or use the direct-TLS port)".to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_round_trip_and_bad_pins_are_explained() {
        let h = [7u8; 32];
        assert_eq!(parse_pin(&pin_text(&h)).unwrap(), h);
        let err = |p: &str| parse_pin(p).unwrap_err().to_string();
        assert!(err("md5:abcd").contains("sha256:BASE64"));
        assert!(err("sha256:!!!").contains("base64"));
        assert!(err("sha256:AAAA").contains("32 bytes"));
    }
}
